"""A rejected result is undone: rating change, recent results, tournament standing."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable
from datetime import UTC, datetime

import asyncpg
import pytest
import redis.asyncio as aioredis

from arena.keys import OUTBOX_STREAM
from arena.keys import recent_races as recent_races_key
from arena.rating import DEFAULT, Placing, Rating, RatingStore, rate_race
from arena.results import MatchRecord
from persistence import synthetic
from persistence.queries import race_result, recent_races
from persistence.recent import COMPLETE, RecentResult
from persistence.rejection import Rejection, corrections
from persistence.review import ReviewDecisionRecord
from persistence.times import to_ms
from tests.persistence.conftest import ServiceFactory
from tests.persistence.helpers import Env, db_count, drained, wait_until
from tests.persistence.test_review import review

NOW = to_ms(datetime.now(UTC))
RANKING = [Placing("cheat", 1), Placing("ron", 2), Placing("dee", 3)]


def rejection(ranking: list[Placing], before: dict[str, Rating]) -> Rejection:
    return Rejection("r1", "cheat", ranking, before, rate_race(before, ranking))


def test_the_cheats_gain_is_taken_back_and_its_opponents_get_what_it_cost_them() -> None:
    before = {"cheat": Rating(1500, 200, 0.06), "ron": Rating(1700, 80, 0.06), "dee": Rating(1400, 120, 0.06)}
    r = rejection(RANKING, before)
    fix = corrections(r)
    assert fix["cheat"] == pytest.approx(before["cheat"].rating - r.after["cheat"].rating)
    assert fix["cheat"] < -50  # an upset win over a 1700 player is a big gain
    fair = rate_race(before, [RANKING[1], RANKING[2]])  # the race without the cheat
    for pid in ("ron", "dee"):
        assert fix[pid] > 0
        assert r.after[pid].rating + fix[pid] == pytest.approx(fair[pid].rating)


def test_nobody_is_charged_for_beating_the_cheat_and_a_cheats_loss_is_not_refunded() -> None:
    before = {pid: DEFAULT for pid in ("cheat", "ron", "dee")}
    ranking = [Placing("ron", 1), Placing("cheat", 2), Placing("dee", 3)]
    fix = corrections(rejection(ranking, before))
    assert "ron" not in fix  # ron's win over the cheat stands
    assert fix["dee"] > 0 and fix.get("cheat", 0.0) <= 0  # a win and a loss: about even
    last = [Placing("ron", 1), Placing("dee", 2), Placing("cheat", 3)]
    assert "cheat" not in corrections(rejection(last, before))  # a cheat's loss stays a loss


def test_a_two_player_race_puts_the_opponent_back_where_it_was() -> None:
    before = {"cheat": DEFAULT, "ron": Rating(1600, 100, 0.06)}
    r = rejection([Placing("cheat", 1), Placing("ron", 2)], before)
    fix = corrections(r)
    assert r.after["ron"].rating + fix["ron"] == pytest.approx(1600)
    assert corrections(Rejection("r1", "cheat", [], {}, {})) == {}  # the race moved no rating


def race(players: list[str], wpms: list[float], **kw: object) -> MatchRecord:
    """A quick race (or heat) finished in this order at these speeds."""
    r = synthetic.match(random.Random(7), ended_at=NOW, players=players, keys=40, **kw)  # type: ignore[arg-type]
    people = [dataclasses.replace(p, wpm=w, valid=True) for p, w in zip(r.participants, wpms, strict=True)]
    return dataclasses.replace(r, race_type="quick", participants=people)


async def test_a_rejection_undoes_ratings_once_and_marks_recent_results(
    env: Env, redis: aioredis.Redis, pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    """ada (250 WPM, held) beat ron and dee; rejected: her gain goes, theirs comes back."""
    r = race(["ada", "ron", "dee"], [250.0, 150.0, 120.0])
    ratings = RatingStore(redis)
    await start_service(env.settings())
    await redis.xadd(OUTBOX_STREAM, {"id": r.match_id, "kind": r.kind, "data": r.to_bytes()})
    history = "SELECT count(*) FROM rating_history WHERE race_id = $1"
    await wait_until(lambda: drained(redis), 15, "the race acknowledged")
    await wait_until(lambda: _is(db_count(env.dsn, history, r.match_id), 3), 15, "its rating history stored")
    rated = await ratings.get_many(["ada", "ron", "dee"])
    assert rated["ada"].rating > 1500 > rated["dee"].rating
    [held] = [x for x in await recent_races(redis, pool, "ada") if x.race_id == r.match_id]
    assert (held.review, held.place) == ("held", 1)

    assert (await asyncio.to_thread(review, env, "reject", r.match_id, "ada", "--reason", "pasted"))[0] == 0
    await wait_until(
        lambda: _is(db_count(env.dsn, history, f"{r.match_id}:ada:review"), 3), 15, "corrections"
    )
    now = await ratings.get_many(["ada", "ron", "dee"])
    assert now["ada"].rating == pytest.approx(1500)  # her gain from the race is gone
    fair = rate_race({p: DEFAULT for p in ("ron", "dee")}, [Placing("ron", 2), Placing("dee", 3)])
    for pid in ("ron", "dee"):
        assert now[pid].rating == pytest.approx(fair[pid].rating)
        assert now[pid].rating > rated[pid].rating
        assert now[pid].rd == rated[pid].rd  # only the rating moves
    # The cached line (no PostgreSQL read) and the stored one agree: rejected, no place.
    members = await redis.zrange(recent_races_key("ada"), 0, -1)
    [cached] = [RecentResult.from_member(m) for m in members if m != COMPLETE]
    assert (cached.review, cached.place) == ("rejected", None)
    await redis.delete(recent_races_key("ada"))
    [stored] = await recent_races(redis, pool, "ada")
    assert stored == cached
    full = await race_result(pool, r.match_id)
    assert full is not None
    assert {(p.player_id, p.place, p.review) for p in full.participants} == {
        ("ada", None, "rejected"), ("ron", 2, "clear"), ("dee", 3, "clear"),
    }  # fmt: skip

    # The same decision delivered again changes nothing (the marker, the decisions table).
    # So does a contrary one that got past the command's check.
    for decision in ("rejected", "released"):
        again = ReviewDecisionRecord.of(r.match_id, "ada", decision, "pasted", NOW)
        await redis.xadd(OUTBOX_STREAM, {"id": again.match_id, "kind": again.kind, "data": again.to_bytes()})
        await wait_until(lambda: drained(redis), 15, "the repeat acknowledged")
    assert await ratings.get_many(["ada", "ron", "dee"]) == now
    assert await redis.ttl(f"{{rating}}:rejected:{r.match_id}:ada") == -1  # kept for good
    members = await redis.zrange(recent_races_key("ada"), 0, -1)
    assert [RecentResult.from_member(m).review for m in members if m != COMPLETE] == ["rejected"]


async def test_a_rejected_heat_result_leaves_the_tournament_standing(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    """Two heats of one tournament: ada's 250 WPM heat is held, then rejected."""
    fast = race(["ada", "ron"], [250.0, 150.0], tournament_id="t-rev", round_no=1, heat_no=1)
    slow = dataclasses.replace(
        race(["ron", "ada"], [160.0, 140.0], tournament_id="t-rev", round_no=2, heat_no=1),
        match_id="r-second-heat",
        ended_at=NOW + 1,
    )
    await start_service(env.settings())
    for rec in (fast, slow):
        await redis.xadd(OUTBOX_STREAM, {"id": rec.match_id, "kind": rec.kind, "data": rec.to_bytes()})
    await wait_until(lambda: drained(redis), 15, "both heats acknowledged")
    standing = "SELECT finished, best_wpm FROM tournament_participants WHERE tournament_id = 't-rev'"
    standing += " AND player_id = $1"

    async def ada() -> tuple[int, float]:
        conn = await asyncpg.connect(env.dsn)
        try:
            row = await conn.fetchrow(standing, "ada")
            assert row is not None
            return row["finished"], row["best_wpm"]
        finally:
            await conn.close()

    assert await ada() == (2, 250.0)  # the held heat counts while held
    assert (await asyncio.to_thread(review, env, "reject", fast.match_id, "ada", "--reason", "x"))[0] == 0

    async def recounted() -> bool:
        return await ada() == (1, 140.0)

    await wait_until(recounted, 15, "ada's standing without the rejected heat")
    tid = "SELECT count(*) FROM review_decisions WHERE race_id = $1"
    assert await db_count(env.dsn, tid, fast.match_id) == 1


async def _is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected
