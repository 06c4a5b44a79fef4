"""Typing tests' results: decoded from the outbox, stored once in test_results (monthly partitions),
cached and counted in Redis, read back as history, bests and percentiles."""

import dataclasses
from typing import Any

import asyncpg
import msgpack
import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.typing_tests import TEST_KIND, TypingTestRecord
from persistence import test_results
from persistence.entries import Entry, PoisonEntry, decode
from persistence.recent import COMPLETE, RecentResult
from persistence.settings import ReadSideSettings
from persistence.store import PostgresStore
from persistence.test_results import RECORD_COLUMNS, TestReadSide

NOON = 1_796_558_400_000  # 2026-12-06T12:00:00Z


def a_test(test_id: str = "t-1", **changes: Any) -> TypingTestRecord:
    base = TypingTestRecord(
        match_id=test_id,
        node_id="node-a",
        mode="time-15",
        content_id=test_id,
        passage_chars=400,
        state="finished",
        reason="time up",
        player_id="ada",
        name="Ada",
        status="finished",
        valid=True,
        flags=[],
        wpm=72.5,
        raw_wpm=75.0,
        accuracy=97.5,
        consistency=80.0,
        correct_chars=181,
        typed_chars=190,
        errors=4,
        elapsed_ms=15_000,
        created_at=NOON - 20_000,
        started_at=NOON - 15_000,
        ended_at=NOON,
        keys="the\bhe",
        key_times=[100, 200, 300, 400, 500, 600],
    )
    return dataclasses.replace(base, **changes)


def entry(data: bytes, test_id: str = "t-1", kind: str = TEST_KIND) -> Entry:
    return Entry("1-1", {b"id": test_id.encode(), b"kind": kind.encode(), b"data": data})


def packed(**changes: Any) -> bytes:
    raw = {f.name: getattr(a_test(), f.name) for f in dataclasses.fields(TypingTestRecord)} | changes
    data: bytes = msgpack.packb(raw)
    return data


def test_a_test_record_decodes_to_itself() -> None:
    r = a_test()
    m = decode(entry(r.to_bytes()))
    assert m.record == r and m.key == "t-1" and m.data == r.to_bytes()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"mode": "time-16"}, "record.mode"),
        ({"wpm": "fast"}, "record.wpm has type str"),
        ({"ended_at": -1}, "record.ended_at out of range"),
        ({"errors": 2**40}, "record.errors out of range"),
        ({"state": "paused"}, "state 'paused'"),
        ({"player_id": ""}, "empty test or player id"),
        ({"flags": [1]}, "flags must be strings"),
        ({"surprise": 1}, "unknown fields"),
        ({"version": 99}, "newer than this consumer"),
    ],
)
def test_a_bad_test_record_is_poison(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(PoisonEntry, match=reason):
        decode(entry(packed(**changes)))


def test_every_record_field_has_a_column() -> None:
    assert set(RECORD_COLUMNS) == {f.name for f in dataclasses.fields(TypingTestRecord)}


async def test_stored_once_cached_counted_and_read_back(pool: asyncpg.Pool, redis: aioredis.Redis) -> None:
    store = PostgresStore(pool)
    readside = TestReadSide(redis, ReadSideSettings())
    ada_15 = a_test("t-1")
    ada_words = a_test("t-2", mode="words-25", wpm=88.0, ended_at=NOON + 60_000, reason="")
    flagged = a_test("t-3", wpm=300.0, valid=False, flags=["too_fast"], ended_at=NOON + 120_000)
    bob = a_test("t-4", player_id="bob", name="Bob", wpm=50.0, ended_at=NOON + 1000)
    batch = [ada_15, ada_words, flagged, bob]
    written = await store.write(batch)
    assert written.inserted == {"t-1", "t-2", "t-3", "t-4"} and not written.rejected
    await readside.apply(batch, written.inserted)
    again = await store.write(batch)  # re-delivered: nothing stored, nothing counted twice
    assert again.inserted == set() and not again.rejected
    await readside.apply(batch, again.inserted)

    row = await pool.fetchrow("SELECT * FROM test_results WHERE id = 't-1'")
    assert row is not None
    assert (row["user_id"], row["test_id"], row["type"], row["mode"], row["wpm"], row["errors"]) == (
        "ada", "t-1", "time", "time-15", 72.5, 4,
    )  # fmt: skip
    assert row["accuracy"] == 97.5 and row["keylog"] and row["record_version"] == 1
    parts = {r[0] for r in await pool.fetch("SELECT tableoid::regclass::text FROM test_results")}
    assert parts == {"test_results_y2026m12"}  # the month's partition, not the default one
    assert await pool.fetchval("SELECT to_regclass('test_results_y2027m01') IS NOT NULL")  # made ahead

    history = await test_results.history(pool, "ada", 10)
    assert [t.test_id for t in history] == ["t-3", "t-2", "t-1"]
    page = await test_results.history(pool, "ada", 2)
    rest = await test_results.history(pool, "ada", 2, before=(page[-1].ended_at, page[-1].test_id))
    assert [t.test_id for t in page + rest] == ["t-3", "t-2", "t-1"]
    assert [t.test_id for t in await test_results.history(pool, "ada", 10, mode="words-25")] == ["t-2"]
    bests = {b.mode: b for b in await test_results.bests(pool, "ada")}
    assert set(bests) == {"time-15", "words-25"} and bests["time-15"].test_id == "t-1"  # flagged t-3 never
    stored = await test_results.result(pool, "t-3")
    assert stored is not None and not stored.counted and stored.flags == ["too_fast"]
    assert await test_results.result(pool, "nope") is None

    # Redis: every test in its player's recent results, only counted ones in the histograms.
    recent = await redis.zrevrange(keys.recent_results("ada"), 0, -1)
    assert [getattr(test_results.TestSummary.from_member(m), "test_id", None) for m in recent] == [
        "t-3", "t-2", "t-1",
    ]  # fmt: skip
    assert 3000 < await redis.ttl(keys.recent_results("ada")) <= 3600
    assert await test_results.recent(redis, "ada", 10) is None  # not full: PostgreSQL answers
    assert [t.test_id for t in await test_results.recent(redis, "ada", 3) or []] == ["t-3", "t-2", "t-1"]
    day = keys.test_wpm_histogram("time-15", "2026-12-06")
    assert await redis.hgetall(day) == {b"72": b"1", b"50": b"1"}  # once each despite the re-delivery
    assert await test_results.percentile(redis, "time-15", 72.5, NOON) == (75.0, 2)
    aged_out = NOON + 8 * 86_400_000
    assert await test_results.percentile(redis, "time-15", 72.5, aged_out) == (0.0, 0)


async def test_a_set_left_from_before_the_rename_is_never_read_as_tests(redis: aioredis.Redis) -> None:
    """``user:{id}:recent_results`` held a player's races before tests took the name: while such a
    line is among the newest, the cache does not answer (PostgreSQL does) until it is trimmed or expires."""
    race = RecentResult("r-1", "race", "quick", NOON - 1, 2, 1, "finished", True, 60.0, 95.0)
    held = dataclasses.replace(race, race_id="r-2", review="held")  # 11 fields, like a test's line
    await redis.zadd(keys.recent_results("ada"), {race.member(): NOON - 1, held.member(): NOON - 2})
    await redis.zadd(keys.recent_results("ada"), {COMPLETE: float("-inf")})
    readside = TestReadSide(redis, ReadSideSettings(recent_keep=3))
    for member in (race.member(), held.member(), COMPLETE):
        assert test_results.TestSummary.from_member(member) is None
    await readside.apply([a_test("t-1"), a_test("t-2", ended_at=NOON + 1)], set())
    assert await test_results.recent(redis, "ada", 3) is None  # a race line among the newest three
    await readside.apply([a_test("t-3", ended_at=NOON + 2)], set())  # trims the old lines away
    assert [t.test_id for t in await test_results.recent(redis, "ada", 3) or []] == ["t-3", "t-2", "t-1"]
    assert await redis.zcard(keys.recent_results("ada")) == 3
