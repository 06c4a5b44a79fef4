"""Placement: a new account's results are provisional until its letter-pair evidence is complete,
then released (the rule passed) or held (it failed) (persistence/placement.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import random
from datetime import UTC, datetime
from typing import cast

import asyncpg
import msgpack
import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.keys import OUTBOX_STREAM, leaderboard
from arena.results import MatchRecord
from arena.settings import SettingsError
from ops.review import main as review_main
from persistence import synthetic
from persistence.leaderboards import score
from persistence.pairs import PairHistory, PairLimits, race_pairs
from persistence.placement import Settle, Step, placement_decision, step
from persistence.rebuild import rebuild
from persistence.recent import COMPLETE, RecentResult
from persistence.review import REVIEW_KIND, HoldReason, ReviewDecisionRecord, ReviewState
from persistence.settings import ReadSideSettings
from persistence.store import PostgresStore
from persistence.times import to_ms
from simulators.typing import TypingProfile
from tests.persistence.conftest import ServiceFactory
from tests.persistence.helpers import Env, db_count, drained, kafka_messages, push, wait_until
from tests.persistence.test_pairs import bot_race, person_race

P = ReviewState.PROVISIONAL
WPM = HoldReason.WPM
PAIRS = HoldReason.PAIRS_HISTORY


# ---- pure: the state transitions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "pairs_held", "short", "placing", "expected"),
    [
        # Not in placement (a ranked result stored, or placement off): the rules as before.
        (None, False, True, False, Step(ReviewState.CLEAR)),
        (None, True, False, False, Step(ReviewState.HELD, PAIRS)),
        (WPM, False, True, False, Step(ReviewState.HELD, WPM)),
        # In placement, evidence short: provisional; a WPM hold still wins.
        (None, False, True, True, Step(P)),
        (WPM, False, True, True, Step(ReviewState.HELD, WPM)),
        # Evidence complete and passing: ranked, and the provisional ones are released.
        (None, False, False, True, Step(ReviewState.CLEAR, None, Settle.RELEASE)),
        (WPM, False, False, True, Step(ReviewState.HELD, WPM, Settle.RELEASE)),
        # Evidence complete and failing: held, and so are the provisional ones.
        (None, True, False, True, Step(ReviewState.HELD, PAIRS, Settle.HOLD)),
        (WPM, True, False, True, Step(ReviewState.HELD, WPM, Settle.HOLD)),
    ],
)  # fmt: skip
def test_each_result_of_a_placing_player_is_provisional_until_the_evidence_settles(
    rule: HoldReason | None, pairs_held: bool, short: bool, placing: bool, expected: Step
) -> None:
    assert step(rule, pairs_held, short, placing) == expected


def test_the_evidence_is_short_until_the_rules_intervals_then_judged() -> None:
    limits = PairLimits()
    rng = random.Random(30)
    profile = TypingProfile(wpm=80, error_rate=0.03, jitter_cv=0.4, notice_delay_chars=1, pause_chance=0.05,
                            digraph_sd=0.3, keyboard=30)  # fmt: skip
    history, shorts = PairHistory(), []
    for n in range(5):
        text, times = person_race(rng, profile, 400)
        history, short = history.plus(f"r{n}", race_pairs(text, times), limits).assessed(limits)
        shorts.append(short)
    assert shorts[0] and not shorts[-1]  # one short race is never enough; five are
    assert shorts == sorted(shorts, reverse=True) and not history.held  # short, then judged: passes
    bot = PairHistory()
    for n in range(8):
        bot, short = bot.plus(f"b{n}", race_pairs(*bot_race(rng, 400)), limits).assessed(limits)
    assert bot.held and not short  # held: never short again
    off = PairLimits(min_f=0.0)
    assert PairHistory().plus("x", race_pairs(*bot_race(rng, 400)), off).assessed(off)[1] is False


def test_the_placement_setting_is_range_checked_and_can_turn_placement_off() -> None:
    assert ReadSideSettings().placement and ReadSideSettings().review_provisional_max_s == 30 * 86_400
    assert not ReadSideSettings.from_env({"ARENA_REVIEW_PROVISIONAL_MAX_S": "0"}).placement
    assert not ReadSideSettings.from_env({"ARENA_REVIEW_PAIRS_F": "0"}).placement  # no evidence to wait for
    for bad in ("60", "-1", str(367 * 86_400)):
        with pytest.raises(SettingsError, match="ARENA_REVIEW_PROVISIONAL_MAX_S"):
            ReadSideSettings.from_env({"ARENA_REVIEW_PROVISIONAL_MAX_S": bad})


def test_a_placement_decision_is_a_release_with_its_reason() -> None:
    d = placement_decision("r1", "ann", "r3", 5)
    assert (d.match_id, d.decision, d.decided_at) == ("r1:ann:review", "released", 5)
    assert "r3" in d.reason and d.reason.startswith("placement")


# ---- through the service ---------------------------------------------------------------------

PROFILE = TypingProfile(wpm=80, error_rate=0.03, jitter_cv=0.4, notice_delay_chars=1, pause_chance=0.05,
                        digraph_sd=0.3, keyboard=30)  # fmt: skip


def record(player: str, n: int, text_times: tuple[str, list[int]], wpm: float) -> MatchRecord:
    """A solo quick race of ``player``, the ``n``-th (ends n seconds after the first)."""
    text, times = text_times
    rng = random.Random(f"{player}{n}")
    ended = to_ms(datetime.now(UTC)) - 600_000 + n * 1000
    race = synthetic.match(rng, ended_at=ended, players=[player], keys=10)
    p = dataclasses.replace(race.participants[0], keys=text, key_times=times, valid=True, wpm=wpm, flags=[])
    return dataclasses.replace(race, race_type="quick", participants=[p])


def careers() -> tuple[list[MatchRecord], list[MatchRecord]]:
    """An honest typist whose evidence completes at race 3 (and passes), a letter-blind bot whose
    completes at race 4 (and fails): measured with persistence/pairs.py for these seeds."""
    rng = random.Random(30)
    honest = [person_race(rng, PROFILE, 400) for _ in range(5)]
    bots = [bot_race(rng, 400) for _ in range(5)]
    return (
        # The first (provisional) race is ann's best: on the board only if released.
        [record("ann", n, r, 95.0 if n == 0 else 80.0 + n) for n, r in enumerate(honest)],
        [record("bot", n, r, 140.0) for n, r in enumerate(bots)],
    )


STATES = "SELECT race_id, review_state, review_reason FROM race_participants WHERE player_id = $1"


async def states(dsn: str, player: str, races: list[MatchRecord]) -> list[tuple[str, str | None]]:
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch(STATES, player)
        rows = {r["race_id"]: (r["review_state"], r["review_reason"]) for r in found}
    finally:
        await conn.close()
    return [rows[r.match_id] for r in races if r.match_id in rows]


async def recent_reviews(redis: aioredis.Redis, player: str) -> list[str]:
    raw = cast(list[bytes], await redis.zrange(keys.recent_races(player), 0, -1))
    return [RecentResult.from_member(m).review for m in raw if m != COMPLETE]


def review_list(env: Env, *argv: str) -> str:
    out = io.StringIO()
    assert review_main(["--dsn", env.dsn, "--redis-url", env.redis_url, "list", *argv], out=out) == 0
    return out.getvalue()


async def decisions_published(env: Env, want: int) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for _ in range(5):
        messages = await kafka_messages(env.bootstrap, env.race_topic, 1, timeout=2)
        found = [msgpack.unpackb(v) for _, h, v in messages if h.get("kind") == REVIEW_KIND.encode()]
        if len(found) >= want:
            break
    return found


BOARD = leaderboard("quick", "alltime", "")


def best_score(races: list[MatchRecord]) -> float:
    first = races[0].participants[0]  # the best, and released
    return score(first.wpm, first.accuracy)


async def test_provisional_until_placement_then_released_or_held_and_rebuilt(
    env: Env, redis: aioredis.Redis, pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    honest, bots = careers()
    service = await start_service(env.settings(placement=True))
    registry = service.metrics.registry
    await push(redis, [honest[0], bots[0], honest[1], bots[1]])
    await wait_until(lambda: drained(redis), 15, "the first races acknowledged")
    # Short evidence: provisional, shown in history and recent results, on no board, no PB history.
    assert await states(env.dsn, "ann", honest) == [(P, None), (P, None)]
    assert await states(env.dsn, "bot", bots) == [(P, None), (P, None)]
    assert await redis.zcard(BOARD) == 0
    assert await recent_reviews(redis, "ann") == ["provisional", "provisional"]
    ranked = "SELECT ranked_races FROM players WHERE player_id = $1"
    assert await db_count(env.dsn, ranked, "ann") == 0
    out = await asyncio.to_thread(review_list, env, "--provisional")
    assert out.startswith("4 provisional result(s)")
    assert (await asyncio.to_thread(review_list, env)).startswith("0 held result(s)")  # nothing to decide

    await push(redis, [*honest[2:], *bots[2:]])
    await wait_until(lambda: drained(redis), 15, "the later races and the placement decisions acknowledged")

    async def settled() -> bool:
        return await redis.zcard(BOARD) == 1 and await recent_reviews(redis, "ann") == [
            "released", "released", "clear", "clear", "clear"
        ]  # fmt: skip

    await wait_until(settled, 15, "the released results on the board")
    # The third race completed ann's evidence, and it passed: the first two are released, once.
    assert await states(env.dsn, "ann", honest) == [("released", None)] * 2 + [("clear", None)] * 3
    assert await db_count(env.dsn, ranked, "ann") == 5  # all five in the personal-best history
    assert await redis.zrange(BOARD, 0, -1, withscores=True) == [(b"ann", best_score(honest))]
    placed = await db_count(
        env.dsn, "SELECT count(*) FROM review_decisions WHERE placed_by = $1 AND decision = 'released'",
        honest[2].match_id,
    )  # fmt: skip
    assert placed == 2
    # The fourth completed the bot's, and it failed: all held for an operator, none ranked.
    assert await states(env.dsn, "bot", bots) == [("held", "pairs_history")] * 5
    assert await db_count(env.dsn, ranked, "bot") == 0
    assert await recent_reviews(redis, "bot") == ["held"] * 5
    sample = registry.get_sample_value
    assert sample("arena_persistence_results_provisional_total") == 5  # ann 2, bot 3
    assert sample("arena_persistence_placement_settled_total", {"outcome": "released"}) == 2
    assert sample("arena_persistence_placement_settled_total", {"outcome": "held"}) == 3
    published = await decisions_published(env, 2)
    assert sorted((d["race_id"], d["decision"]) for d in published) == sorted(
        (r.match_id, "released") for r in honest[:2]
    )
    assert (await asyncio.to_thread(review_list, env)).startswith("5 held result(s)")

    # Rebuild from PostgreSQL: the released results count, provisional and held ones do not.
    cy = record("cy", 9, person_race(random.Random(3), PROFILE, 200), 70.0)  # still provisional
    await push(redis, [cy])
    await wait_until(lambda: drained(redis), 15, "cy's race acknowledged")
    assert await states(env.dsn, "cy", [cy]) == [(P, None)]
    built = await redis.zrange(BOARD, 0, -1, withscores=True)
    await redis.delete(BOARD)
    await rebuild(redis, pool, ReadSideSettings())
    assert await redis.zrange(BOARD, 0, -1, withscores=True) == built == [(b"ann", built[0][1])]


async def test_a_release_lost_to_a_stop_after_the_commit_is_made_by_the_redelivery_once(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    """The batch that released commits, then its process dies before the decisions reach the outbox
    (a stop that cannot finish the batch: cancelled, its entries handed back, as after a kill):
    the re-delivered batch appends them; delivered once more, nothing is counted twice."""
    honest, _ = careers()
    first = await start_service(env.settings(placement=True, delay_after_commit_s=30.0, shutdown_grace_s=0.3))
    await push(redis, honest[:3])

    async def committed() -> bool:
        return [s for s, _ in await states(env.dsn, "ann", honest)] == ["released", "released", "clear"]

    await wait_until(committed, 15, "the placing batch committed")
    await first.stop()
    kinds = [f[b"kind"] for _, f in await redis.xrange(OUTBOX_STREAM)]
    assert REVIEW_KIND.encode() not in kinds and await redis.zcard(BOARD) == 0  # lost with the process

    await start_service(env.settings(placement=True))
    await wait_until(lambda: drained(redis), 15, "the re-delivered batch and its decisions acknowledged")
    await wait_until(lambda: _on_board(redis), 15, "the released results on the board")
    await push(redis, honest[:3])  # delivered once more (a node's retry, say)
    await wait_until(lambda: drained(redis), 15, "the third delivery acknowledged")
    await asyncio.sleep(0.3)  # anything it would append has been read by now
    await wait_until(lambda: drained(redis), 15, "anything appended acknowledged")
    kinds = [f[b"kind"] for _, f in await redis.xrange(OUTBOX_STREAM)]
    assert kinds.count(REVIEW_KIND.encode()) <= 2  # appended once each (trimmed once acknowledged)
    ranked = "SELECT ranked_races FROM players WHERE player_id = 'ann'"
    assert await db_count(env.dsn, ranked) == 3  # the personal-best history counted each once
    assert await db_count(env.dsn, "SELECT count(*) FROM review_decisions") == 2
    published = await decisions_published(env, 2)
    assert sorted(d["race_id"] for d in published) == sorted(r.match_id for r in honest[:2])
    assert await redis.zrange(BOARD, 0, -1, withscores=True) == [(b"ann", best_score(honest))]
    assert await recent_reviews(redis, "ann") == ["released", "released", "clear"]


async def _on_board(redis: aioredis.Redis) -> bool:
    return await redis.zcard(BOARD) == 1


def solo(player: str, wpm: float, ended_at: int, *, valid: bool = True) -> MatchRecord:
    race = synthetic.match(random.Random(f"{player}{ended_at}"), ended_at=ended_at, players=[player], keys=40)
    p = dataclasses.replace(race.participants[0], wpm=wpm, valid=valid, status="finished")
    return dataclasses.replace(race, race_type="quick", participants=[p])


async def test_the_store_settles_once_holds_on_speed_first_and_leaves_old_provisional_results(
    pool: asyncpg.Pool,
) -> None:
    """In PostgreSQL alone: the steps as the store applies them, and a re-delivered settling race."""
    store = PostgresStore(pool, review=ReadSideSettings())
    now = to_ms(datetime.now(UTC))
    old = solo("di", 90.0, now - 40 * 86_400_000)  # older than ARENA_REVIEW_PROVISIONAL_MAX_S
    flagged = solo("cy", 90.0, now - 3000, valid=False)
    first = [solo("ada", 150.0, now - 3000), solo("bob", 250.0, now - 3000), flagged, old]
    short = {(r.match_id, r.participants[0].player_id) for r in first}
    written = await store.write(first, short=short)
    assert written.unranked == {
        (first[0].match_id, "ada"): "provisional",
        (first[1].match_id, "bob"): "held",  # the 200 WPM rule first
        (old.match_id, "di"): "provisional",
    }  # cy's flagged result: never ranked, never provisional
    assert written.provisional == 2 and written.placed == []

    settling = [solo("ada", 120.0, now - 1000), solo("di", 95.0, now - 1000)]
    written = await store.write(settling)  # evidence complete and passing for both
    assert sorted(d.match_id for d in written.placed) == [f"{first[0].match_id}:ada:review"]
    assert written.placement_released == 1 and written.unranked == {}
    again = await store.write(settling)  # re-delivered: nothing new, the decision read back
    assert [d.match_id for d in again.placed] == [d.match_id for d in written.placed]
    assert again.placement_released == 0 and again.inserted == set()
    rows = await pool.fetch(
        "SELECT player_id, review_state FROM race_participants ORDER BY created_at, player_id"
    )
    assert [(r["player_id"], r["review_state"]) for r in rows] == [
        ("di", "provisional"),  # 40 days old: stays provisional, off the boards
        ("ada", "released"), ("bob", "held"), ("cy", "clear"),
        ("ada", "clear"), ("di", "clear"),
    ]  # fmt: skip
    players = await pool.fetch("SELECT player_id, ranked_races FROM players")
    ranked = {r["player_id"]: r["ranked_races"] for r in players}
    assert ranked == {"ada": 2, "bob": 0, "cy": 0, "di": 1}  # counted once, re-delivery or not
    placed_by = await pool.fetchval("SELECT placed_by FROM review_decisions WHERE player_id = 'ada'")
    assert placed_by == settling[0].match_id


async def test_an_operators_release_also_releases_the_players_provisional_results(pool: asyncpg.Pool) -> None:
    """A fast newcomer: the first race held on speed, the second provisional. Released by an
    operator, the player is ranked from then on, so placement would never settle the second: the
    release takes it along (and a re-delivered release reads it back for the outbox)."""
    store = PostgresStore(pool, review=ReadSideSettings())
    now = to_ms(datetime.now(UTC))
    fast, next_ = solo("eve", 230.0, now - 3000), solo("eve", 150.0, now - 2000)
    written = await store.write([fast, next_], short={(fast.match_id, "eve"), (next_.match_id, "eve")})
    assert written.unranked == {(fast.match_id, "eve"): "held", (next_.match_id, "eve"): "provisional"}
    decision = ReviewDecisionRecord.of(fast.match_id, "eve", "released", "fine", now)
    written = await store.write([decision])
    assert [(d.race_id, d.decision) for d in written.placed] == [(next_.match_id, "released")]
    assert "an operator released race " + fast.match_id in written.placed[0].reason
    again = await store.write([decision])
    assert again.placed == written.placed and again.placement_released == 0
    states = await pool.fetch(
        "SELECT review_state FROM race_participants WHERE player_id = 'eve' ORDER BY created_at"
    )
    assert [r["review_state"] for r in states] == ["released", "released"]
    assert await pool.fetchval("SELECT ranked_races FROM players WHERE player_id = 'eve'") == 2
