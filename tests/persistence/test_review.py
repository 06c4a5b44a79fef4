"""Held for review at ingestion: a rare result is stored 'held' and kept off the leaderboards."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import random
from datetime import UTC, datetime

import asyncpg
import msgpack
import pytest
import redis.asyncio as aioredis

from arena.keys import OUTBOX_STREAM, leaderboard
from arena.results import MatchRecord
from arena.settings import SettingsError
from ops.review import main as review_main
from persistence import synthetic
from persistence.entries import Entry, PoisonEntry, decode
from persistence.leaderboards import record_placements
from persistence.review import (
    REVIEW_KIND,
    History,
    HoldReason,
    ReviewDecisionRecord,
    ReviewState,
    hold_reason,
    keystroke_stats,
    review_state,
)
from persistence.settings import ReadSideSettings
from persistence.times import to_ms
from tests.persistence.conftest import ServiceFactory
from tests.persistence.helpers import Env, db_count, drained, kafka_messages, push, wait_until

SETTINGS = ReadSideSettings()
NOW = to_ms(datetime.now(UTC))


def race_at(wpms: dict[str, float], seed: int = 1) -> MatchRecord:
    """A quick race whose players finished at these speeds."""
    race = synthetic.match(random.Random(seed), ended_at=NOW, players=list(wpms), keys=40)
    people = [dataclasses.replace(p, wpm=wpms[p.player_id], valid=True) for p in race.participants]
    return dataclasses.replace(race, race_type="quick", participants=people)


def test_only_a_ranked_result_at_or_above_the_threshold_is_held() -> None:
    race = race_at({"ada": 250.0, "bob": 199.99, "cy": 200.0, "dee": 150.0})
    states = {p.player_id: review_state(p, SETTINGS) for p in race.participants}
    assert states == {
        "ada": ReviewState.HELD,
        "bob": ReviewState.CLEAR,
        "cy": ReviewState.HELD,
        "dee": ReviewState.CLEAR,
    }
    flagged = dataclasses.replace(race.participants[0], valid=False)
    assert review_state(flagged, SETTINGS) is ReviewState.CLEAR  # never ranked anyway: nothing to review


def test_a_personal_best_far_above_the_history_is_held_once_the_history_is_long_enough() -> None:
    [p] = race_at({"ada": 196.5}).participants
    assert review_state(p, SETTINGS, History(150.0, 10)) is ReviewState.HELD  # 1.31x the best
    assert review_state(p, SETTINGS, History(152.0, 10)) is ReviewState.CLEAR  # 1.293x
    assert review_state(p, SETTINGS, History(150.0, 9)) is ReviewState.CLEAR  # too few races to judge
    assert review_state(p, SETTINGS, None) is ReviewState.CLEAR
    [slow] = race_at({"ada": 179.9}).participants
    assert review_state(slow, SETTINGS, History(60.0, 100)) is ReviewState.CLEAR  # below 180: never held
    # The reason is stored with the held result (race_participants.review_reason).
    assert hold_reason(p, SETTINGS, History(150.0, 10)) is HoldReason.PB
    assert hold_reason(dataclasses.replace(p, wpm=SETTINGS.review_wpm), SETTINGS) is HoldReason.WPM
    assert hold_reason(p, SETTINGS, History(152.0, 10)) is None
    assert History(100.0, 3).plus(90.0) == History(100.0, 4)


def test_held_results_are_not_placed_on_boards() -> None:
    race = race_at({"ada": 250.0, "dee": 150.0})
    assert {pl.player_id for pl in record_placements(race, SETTINGS)} == {"dee"}
    lenient = dataclasses.replace(SETTINGS, review_wpm=300.0)
    assert {pl.player_id for pl in record_placements(race, lenient)} == {"ada", "dee"}


def test_the_threshold_is_range_checked() -> None:
    assert ReadSideSettings.from_env({"ARENA_REVIEW_WPM": "180"}).review_wpm == 180.0
    for name, bad in [
        ("ARENA_REVIEW_WPM", "99"),
        ("ARENA_REVIEW_WPM", "1001"),
        ("ARENA_REVIEW_PB_RATIO", "1.0"),
        ("ARENA_REVIEW_PB_RATIO", "11"),
        ("ARENA_REVIEW_MIN_RACES", "0"),
        ("ARENA_REVIEW_PB_MIN_WPM", "201"),
    ]:
        with pytest.raises(SettingsError, match=name):
            ReadSideSettings.from_env({name: bad})


async def test_a_250_wpm_result_is_held_and_a_150_wpm_one_is_ranked(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    race = race_at({"ada": 250.0, "dee": 150.0})
    await start_service(env.settings())
    await push(redis, [race])
    await wait_until(lambda: drained(redis), 15, "the race acknowledged")
    held = "SELECT count(*) FROM race_participants WHERE review_state = $1 AND player_id = $2"
    assert await db_count(env.dsn, held, "held", "ada") == 1
    assert await db_count(env.dsn, held, "clear", "dee") == 1
    board = await redis.zrange(leaderboard("quick", "alltime", ""), 0, -1)
    assert board == [b"dee"]


def test_keystroke_stats_summarise_the_intervals() -> None:
    s = keystroke_stats("ab\bcd", [100, 200, 300, 400, 900])  # gaps 100, 100, 100, 500
    assert (s.keys, s.backspaces, s.interval_mean_ms, s.interval_min_ms) == (5, 1, 200.0, 100)
    assert s.interval_sd_ms == pytest.approx(173.2, abs=0.1)
    assert s.interval_skew > 1  # one long pause: right-skewed, as people are
    assert keystroke_stats("a", [50]).interval_sd_ms == 0.0


def test_a_malformed_decision_is_poison() -> None:
    good = ReviewDecisionRecord.of("r1", "ada", "released", "", NOW)
    assert decode(
        Entry("1-0", {b"id": good.match_id.encode(), b"kind": b"review_decision", b"data": good.to_bytes()})
    )
    bad = [
        {**dataclasses.asdict(good), "decision": "maybe"},
        {**dataclasses.asdict(good), "decision": "rejected", "reason": " "},
        {**dataclasses.asdict(good), "match_id": "other"},
        {**dataclasses.asdict(good), "decided_at": -1},
        {**dataclasses.asdict(good), "extra": 1},
    ]
    for raw in bad:
        fields = {
            b"id": str(raw["match_id"]).encode(),
            b"kind": b"review_decision",
            b"data": msgpack.packb(raw),
        }
        with pytest.raises(PoisonEntry):
            decode(Entry("1-0", fields))


def review(env: Env, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = review_main(["--dsn", env.dsn, "--redis-url", env.redis_url, *argv], out=out)
    return code, out.getvalue()


async def test_release_and_reject_flow_to_postgres_kafka_and_the_boards(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    race = race_at({"ada": 250.0, "ron": 260.0, "dee": 150.0})
    rid = race.match_id
    service = await start_service(env.settings())
    registry = service.metrics.registry
    await push(redis, [race])
    await wait_until(lambda: drained(redis), 15, "the race acknowledged")
    board = leaderboard("quick", "alltime", "")
    assert await redis.zrange(board, 0, -1) == [b"dee"]

    code, out = await asyncio.to_thread(review, env, "list")
    assert code == 0 and out.startswith("2 held result(s)")
    lines = out.splitlines()[2:]
    assert sorted(line.split("\t")[1] for line in lines) == ["ada", "ron"]
    assert out.splitlines()[1].split("\t")[4] == "reason"
    assert all(line.split("\t")[4] == "wpm" for line in lines)  # why: at or above ARENA_REVIEW_WPM
    assert all(line.split("\t")[9] == "40" for line in lines)  # key count from the keystroke log

    assert (await asyncio.to_thread(review, env, "release", rid, "ada"))[0] == 0
    assert (await asyncio.to_thread(review, env, "reject", rid, "ron", "--reason", "pasted"))[0] == 0
    state = (
        "SELECT count(*) FROM race_participants WHERE race_id = $1 AND player_id = $2 AND review_state = $3"
    )

    async def decided() -> bool:
        released = await db_count(env.dsn, state, rid, "ada", "released")
        rejected = await db_count(env.dsn, state, rid, "ron", "rejected")
        return released == rejected == 1

    await wait_until(decided, 15, "both decisions applied")
    await wait_until(lambda: drained(redis), 15, "the decisions acknowledged")
    assert set(await redis.zrange(board, 0, -1)) == {b"ada", b"dee"}
    assert (await asyncio.to_thread(review, env, "list"))[1].startswith("0 held result(s)")
    assert registry.get_sample_value("arena_persistence_results_held_total") == 2
    by_reason = "arena_persistence_results_held_by_reason_total"
    assert registry.get_sample_value(by_reason, {"reason": "wpm"}) == 2
    for decision in ("released", "rejected"):
        assert (
            registry.get_sample_value("arena_persistence_review_decisions_total", {"decision": decision}) == 1
        )

    async def published() -> list[dict[str, object]]:
        messages = await kafka_messages(env.bootstrap, env.race_topic, 1, timeout=3)
        return [msgpack.unpackb(v) for _, h, v in messages if h.get("kind") == REVIEW_KIND.encode()]

    decisions: list[dict[str, object]] = []
    for _ in range(5):
        decisions = await published()
        if len(decisions) == 2:
            break
    assert {(d["player_id"], d["decision"]) for d in decisions} == {("ada", "released"), ("ron", "rejected")}

    # Repeated and contrary decisions change nothing.
    code, out = await asyncio.to_thread(review, env, "release", rid, "ada")
    assert code == 0 and "already released" in out
    assert (await asyncio.to_thread(review, env, "reject", rid, "ada", "--reason", "x"))[0] == 1
    assert (await asyncio.to_thread(review, env, "release", rid, "ron"))[0] == 1
    assert (await asyncio.to_thread(review, env, "release", rid, "dee"))[0] == 1  # never held
    code, out = await asyncio.to_thread(review, env, "release", "no-such-race", "ada")
    assert code == 1 and "no such result" in out
    # A contrary decision that reaches the outbox anyway (past the command's check) is ignored.
    late = ReviewDecisionRecord.of(rid, "ron", "released", "", NOW)
    await redis.xadd(OUTBOX_STREAM, {"id": late.match_id, "kind": late.kind, "data": late.to_bytes()})
    await wait_until(lambda: drained(redis), 15, "the late decision acknowledged")
    assert await db_count(env.dsn, state, rid, "ron", "rejected") == 1
    assert await db_count(env.dsn, "SELECT count(*) FROM review_decisions") == 2
    assert set(await redis.zrange(board, 0, -1)) == {b"ada", b"dee"}


async def test_a_personal_best_far_above_the_stored_history_is_held(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    """Ten stored races at about 140 WPM, then 190 (held) and 185 (ranked: 1.29x) in one batch."""
    history = [
        dataclasses.replace(race_at({"ada": 134.0 + i}, seed=i), ended_at=NOW - 60_000 + i) for i in range(10)
    ]
    service = await start_service(env.settings())
    await push(redis, history)
    await wait_until(lambda: drained(redis), 15, "the history acknowledged")
    board = leaderboard("quick", "alltime", "")
    assert await redis.zscore(board, "ada") is not None
    jump = race_at({"ada": 190.0}, seed=20)  # 1.33x the best of 143
    steady = dataclasses.replace(race_at({"ada": 185.0}, seed=21), ended_at=NOW + 1)  # 1.29x
    await push(redis, [jump, steady])
    await wait_until(lambda: drained(redis), 15, "both acknowledged")
    state = "SELECT review_state FROM race_participants WHERE race_id = $1"
    assert await db_value(env.dsn, state, jump.match_id) == "held"
    assert await db_value(env.dsn, state, steady.match_id) == "clear"
    wpm = (await redis.zscore(board, "ada")) // 100_000 / 100
    assert wpm == 185.0  # the held 190 is not on the board
    best = "SELECT best_wpm FROM players WHERE player_id = 'ada'"
    assert await db_value(env.dsn, best) == 185.0
    code, out = await asyncio.to_thread(review, env, "list")
    assert code == 0 and [line.split("\t")[4] for line in out.splitlines()[2:]] == ["pb"]
    by_reason = "arena_persistence_results_held_by_reason_total"
    assert service.metrics.registry.get_sample_value(by_reason, {"reason": "pb"}) == 1
    assert (await asyncio.to_thread(review, env, "release", jump.match_id, "ada"))[0] == 0

    async def on_board() -> bool:
        return (await redis.zscore(board, "ada")) // 100_000 / 100 == 190.0

    await wait_until(on_board, 15, "the released personal best on the board")
    assert await db_value(env.dsn, best) == 190.0  # released: part of the history now


async def db_value(dsn: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()
