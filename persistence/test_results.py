"""Typing tests' results: stored in ``test_results``, cached in Redis, read back for the lobby.

Write side (persistence's consumer, inside the batch's transaction): ``insert`` with
``ON CONFLICT DO NOTHING RETURNING``, so a re-delivered test inserts nothing. After the commit,
``TestReadSide.queue`` adds every test to its player's recent results
(``keys.recent_results``: the newest ``recent_keep``, TTL ``recent_ttl_s``; members are
deterministic, so adding one twice changes nothing) and each *newly stored* counted test to its
mode's WPM histogram of the day (``arena.wpm_histogram``; one ``HINCRBY`` each: a re-delivery
adds nothing, a crash between the commit and Redis loses one count, never doubles one).

Read side (the lobby): ``history`` (newest first, keyset cursor on ``(created_at, id)`` over
``idx_test_results_user_created``), ``bests`` (per mode, over the partial index
``idx_test_results_user_mode_wpm``), ``result`` (one test) and ``percentile`` (seven daily
histograms, O(buckets) whatever the number of results).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, cast

import asyncpg
import msgpack
import redis.asyncio as aioredis
from asyncpg.pool import PoolConnectionProxy
from redis.asyncio.client import Pipeline

from arena import keys, wpm_histogram
from arena.typing_tests import MODE_NAMES, TypingMode, TypingTestRecord
from persistence import keylog
from persistence.settings import ReadSideSettings
from persistence.times import opt_datetime, to_datetime, to_ms

_INSERT = """
INSERT INTO test_results (id, user_id, test_id, created_at, type, mode, name, state, reason, status, valid,
                          flags, wpm, raw_wpm, accuracy, consistency, correct_chars, typed_chars, errors,
                          elapsed_ms, passage_chars, node_id, started_at, test_created_at, keylog,
                          record_version)
SELECT u.id, u.user_id, u.test_id, u.created_at, u.type, u.mode, u.name, u.state, u.reason, u.status, u.valid,
       ARRAY(SELECT jsonb_array_elements_text(u.flags)), u.wpm, u.raw_wpm, u.accuracy, u.consistency,
       u.correct_chars, u.typed_chars, u.errors, u.elapsed_ms, u.passage_chars, u.node_id, u.started_at,
       u.test_created_at, u.keylog, u.record_version
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[], $11::bool[], $12::jsonb[], $13::float8[], $14::float8[],
            $15::float8[], $16::float8[], $17::int[], $18::int[], $19::int[], $20::int[], $21::int[],
            $22::text[], $23::timestamptz[], $24::timestamptz[], $25::bytea[], $26::smallint[])
    AS u(id, user_id, test_id, created_at, type, mode, name, state, reason, status, valid, flags, wpm,
         raw_wpm, accuracy, consistency, correct_chars, typed_chars, errors, elapsed_ms, passage_chars,
         node_id, started_at, test_created_at, keylog, record_version)
ON CONFLICT (id, created_at) DO NOTHING
RETURNING id
"""

# Where each record field is stored (the tests check that none is forgotten).
RECORD_COLUMNS = {
    "match_id": "id", "player_id": "user_id", "content_id": "test_id", "ended_at": "created_at",
    "mode": "type, mode", "name": "name", "state": "state", "reason": "reason", "status": "status",
    "valid": "valid", "flags": "flags", "wpm": "wpm", "raw_wpm": "raw_wpm", "accuracy": "accuracy",
    "consistency": "consistency", "correct_chars": "correct_chars", "typed_chars": "typed_chars",
    "errors": "errors", "elapsed_ms": "elapsed_ms", "passage_chars": "passage_chars", "node_id": "node_id",
    "started_at": "started_at", "created_at": "test_created_at", "keys": "keylog", "key_times": "keylog",
    "version": "record_version", "kind": "(the table)",
}  # fmt: skip

_SUMMARY = """id, mode, created_at, status, valid, wpm, raw_wpm, accuracy, errors, elapsed_ms, test_id"""


@dataclass(frozen=True, slots=True)
class TestSummary:
    """One line of a player's test history; the same from a record, a cache member or a row."""

    __test__ = False  # not a pytest class

    test_id: str
    mode: str
    ended_at: int  # ms
    status: str
    valid: bool
    wpm: float
    raw_wpm: float
    accuracy: float
    errors: int
    elapsed_ms: int
    content_id: str

    def member(self) -> bytes:
        packed: bytes = msgpack.packb(
            [self.test_id, self.mode, self.ended_at, self.status, self.valid, self.wpm, self.raw_wpm,
             self.accuracy, self.errors, self.elapsed_ms, self.content_id],
        )  # fmt: skip
        return packed

    @classmethod
    def from_member(cls, raw: bytes) -> TestSummary | None:
        """None for anything not a test's member: until they expire, sets made before the key was
        renamed hold a player's *races* (``keys.recent_races``), another shape."""
        try:
            fields = msgpack.unpackb(raw)
        except (ValueError, msgpack.UnpackException):
            return None
        if not isinstance(fields, list) or len(fields) != 11 or fields[1] not in MODE_NAMES:
            return None
        if not isinstance(fields[2], int) or not isinstance(fields[0], str):
            return None
        return cls(*fields)

    @classmethod
    def of(cls, r: TypingTestRecord) -> TestSummary:
        return cls(
            test_id=r.match_id,
            mode=r.mode,
            ended_at=r.ended_at,
            status=r.status,
            valid=r.valid,
            wpm=float(r.wpm),
            raw_wpm=float(r.raw_wpm),
            accuracy=float(r.accuracy),
            errors=r.errors,
            elapsed_ms=r.elapsed_ms,
            content_id=r.content_id,
        )

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> TestSummary:
        return cls(
            test_id=row["id"],
            mode=row["mode"],
            ended_at=to_ms(row["created_at"]),
            status=row["status"],
            valid=row["valid"],
            wpm=row["wpm"],
            raw_wpm=row["raw_wpm"],
            accuracy=row["accuracy"],
            errors=row["errors"],
            elapsed_ms=row["elapsed_ms"],
            content_id=row["test_id"],
        )


# ---- write side -------------------------------------------------------------------------


def months_of(records: Sequence[TypingTestRecord]) -> set[date]:
    """The months these tests' partitions must exist for, and each next month (made ahead)."""
    months = set()
    for r in records:
        month = to_datetime(r.ended_at).date().replace(day=1)
        months |= {month, (month.replace(day=28) + timedelta(days=31)).replace(day=1)}
    return months


def _columns(records: Sequence[TypingTestRecord]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(26)]
    for r in records:
        row = (
            r.match_id, r.player_id, r.content_id, to_datetime(r.ended_at),
            TypingMode.parse(r.mode).type.value, r.mode, r.name, r.state, r.reason, r.status, r.valid,
            json.dumps(r.flags), float(r.wpm), float(r.raw_wpm), float(r.accuracy), float(r.consistency),
            r.correct_chars, r.typed_chars, r.errors, r.elapsed_ms, r.passage_chars, r.node_id,
            opt_datetime(r.started_at), to_datetime(r.created_at),
            keylog.encode(r.keys, r.key_times), r.version,
        )  # fmt: skip
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


async def insert(conn: PoolConnectionProxy, records: Sequence[TypingTestRecord]) -> set[str]:
    """Inside the caller's transaction: the ids stored now (re-delivered tests are not)."""
    if not records:
        return set()
    rows = await conn.fetch(_INSERT, *_columns(sorted(records, key=lambda r: r.match_id)))
    return {row["id"] for row in rows}


class TestReadSide:
    """Recent results and WPM histograms in Redis, after the PostgreSQL commit."""

    __test__ = False  # not a pytest class

    def __init__(self, redis: aioredis.Redis, settings: ReadSideSettings) -> None:
        self._redis = redis
        self._keep = settings.recent_keep
        self._ttl_s = settings.recent_ttl_s

    async def apply(self, records: Sequence[TypingTestRecord], new: set[str]) -> None:
        """Every test to its player's recent results; the new counted ones to the histograms."""
        if not records:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            self.queue(pipe, records, new)
            await pipe.execute()

    def queue(self, pipe: Pipeline, records: Sequence[TypingTestRecord], new: set[str]) -> None:
        for r in records:
            key = keys.recent_results(r.player_id)
            pipe.zadd(key, {TestSummary.of(r).member(): r.ended_at})
            pipe.zremrangebyrank(key, 0, -self._keep - 1)
            pipe.expire(key, self._ttl_s)
            if r.match_id in new and r.counts:
                day = keys.test_wpm_histogram(r.mode, wpm_histogram.day_of(r.ended_at))
                pipe.hincrby(day, str(wpm_histogram.bucket_of(r.wpm)), 1)
                pipe.expire(day, wpm_histogram.KEEP_S)


# ---- read side (the lobby) ----------------------------------------------------------------


async def recent(redis: aioredis.Redis, player_id: str, keep: int) -> list[TestSummary] | None:
    """The cached newest ``keep`` results, or None when the cache cannot answer for sure: a set
    recreated after expiry holds only what arrived since, so only a full one is trusted."""
    raw = cast(list[bytes], await redis.zrevrange(keys.recent_results(player_id), 0, keep - 1))
    if len(raw) < keep:
        return None
    found = [TestSummary.from_member(m) for m in raw]
    tests = [t for t in found if t is not None]
    return tests if len(tests) == len(found) else None  # an old race line among them: PostgreSQL


async def history(
    pool: asyncpg.Pool,
    player_id: str,
    limit: int,
    *,
    before: tuple[int, str] | None = None,
    mode: str | None = None,
) -> list[TestSummary]:
    """A player's tests, newest first; ``before`` = (ended_at ms, test id) of the last one seen."""
    sql = f"SELECT {_SUMMARY} FROM test_results WHERE user_id = $1"
    args: list[Any] = [player_id]
    if before is not None:
        sql += " AND (created_at, id) < ($2, $3)"
        args += [to_datetime(before[0]), before[1]]
    if mode is not None:
        args.append(mode)
        sql += f" AND mode = ${len(args)}"
    args.append(limit)
    sql += f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}"
    rows = await pool.fetch(sql, *args)
    return [TestSummary.from_row(r) for r in rows]


async def bests(pool: asyncpg.Pool, player_id: str) -> list[TestSummary]:
    """The best counted result of each mode the player has one in (first reached wins ties)."""
    rows = await pool.fetch(
        f"SELECT DISTINCT ON (mode) {_SUMMARY} FROM test_results"
        " WHERE user_id = $1 AND valid AND status = 'finished' AND state = 'finished'"
        " ORDER BY mode, wpm DESC, created_at",
        player_id,
    )
    return [TestSummary.from_row(r) for r in rows]


@dataclass(frozen=True, slots=True)
class StoredTest:
    summary: TestSummary
    player_id: str
    name: str
    state: str
    flags: list[str]
    counted: bool


def _stored(row: asyncpg.Record) -> StoredTest:
    summary = TestSummary.from_row(row)
    counted = row["state"] == "finished" and summary.status == "finished" and summary.valid
    return StoredTest(summary, row["user_id"], row["name"], row["state"], list(row["flags"]), counted)


async def result(pool: asyncpg.Pool, test_id: str) -> StoredTest | None:
    row = await pool.fetchrow(
        f"SELECT {_SUMMARY}, user_id, name, state, flags FROM test_results WHERE id = $1 LIMIT 1", test_id
    )
    return _stored(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class StoredKeylog:
    """A stored test with its keystroke log: what its speed chart and replay are made from."""

    test: StoredTest
    passage_chars: int
    started_at: int | None  # ms; None for a test aborted before its start
    keys: str  # ``\b`` is a backspace (persistence/keylog.py)
    key_times: list[int]  # ms since the test's start


async def with_keylog(pool: asyncpg.Pool, test_id: str) -> StoredKeylog | None:
    """One test and its decoded keystroke log; ``keylog.KeylogError`` if the log is unreadable."""
    row = await pool.fetchrow(
        f"SELECT {_SUMMARY}, user_id, name, state, flags, passage_chars, started_at, keylog"
        " FROM test_results WHERE id = $1 LIMIT 1",
        test_id,
    )
    if row is None:
        return None
    keys, times = keylog.decode(row["keylog"])
    started = to_ms(row["started_at"]) if row["started_at"] is not None else None
    return StoredKeylog(_stored(row), row["passage_chars"], started, keys, times)


async def percentile(redis: aioredis.Redis, mode: str, wpm: float, now_ms: int) -> tuple[float, int]:
    """(faster than this percent of the mode's counted results of the last 7 days, how many)."""
    async with redis.pipeline(transaction=False) as pipe:
        for day in wpm_histogram.window_days(now_ms):
            pipe.hgetall(keys.test_wpm_histogram(mode, day))
        days = await pipe.execute()
    return wpm_histogram.percentile(wpm_histogram.merge(days), wpm)
