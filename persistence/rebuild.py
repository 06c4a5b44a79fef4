"""``python -m persistence.rebuild``: rebuild the leaderboards from PostgreSQL, the source of truth.

For each ranked race type: the all-time board, the daily boards of the last
``daily_keep_days`` days and the weekly boards of the last ``weekly_keep_weeks`` weeks; and the
daily challenge's boards (``daily:{day}:board``, best attempt per player) of the same days. Each
board is replaced atomically (one MULTI: delete, add every member, set the expiry), so a
reader sees the old board or the new one. Boards of those race types, and daily challenge
boards, that PostgreSQL no longer supports are deleted. Flagged results and results provisional,
held or rejected in review count on none (released ones do).

Results the consumers store while the rebuild reads would be lost by the swap, so the
results stored since shortly before the rebuild began are offered again afterwards (with
``ZADD GT``, which is idempotent).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import redis.asyncio as aioredis
import structlog

from arena import keys
from arena.clock import now_ms
from arena.logs import configure_logging
from arena.redisutil import connect
from arena.settings import LogSettings, RedisSettings, environ
from persistence.leaderboards import (
    LeaderboardWriter,
    Placement,
    Timeframe,
    board_key,
    daily_challenge_board,
    expires_at,
    score,
)
from persistence.settings import PostgresSettings, ReadSideSettings
from persistence.times import to_datetime, to_ms

log = structlog.get_logger(__name__)

CATCH_UP_MARGIN = timedelta(minutes=1)  # longer than any batch transaction
ZADD_CHUNK = 5_000

_BEST_SQL = """
SELECT DISTINCT ON (r.race_type, {period} p.player_id)
       r.race_type, p.player_id, p.name, p.wpm, p.accuracy, p.created_at
FROM race_participants p JOIN races r ON r.race_id = p.race_id
WHERE p.valid AND p.status = 'finished' AND p.review_state IN ('clear', 'released')
  AND r.race_type = ANY($1) AND p.created_at >= $2
ORDER BY r.race_type, {period} p.player_id, p.wpm DESC, p.accuracy DESC
"""
_PERIODS = {
    Timeframe.DAILY: "date_trunc('day', p.created_at AT TIME ZONE 'UTC'),",
    Timeframe.WEEKLY: "date_trunc('week', p.created_at AT TIME ZONE 'UTC'),",  # ISO weeks: from Monday
    Timeframe.ALLTIME: "",
}

# The daily challenge's boards: best attempt per player and day (index races_daily).
_DAILY_SQL = """
SELECT DISTINCT ON (r.daily, p.player_id) r.daily, p.player_id, p.name, p.wpm, p.accuracy
FROM races r JOIN race_participants p ON p.race_id = r.race_id AND p.created_at = r.ended_at
WHERE r.daily >= $1 AND p.valid AND p.status = 'finished' AND p.review_state IN ('clear', 'released')
ORDER BY r.daily, p.player_id, p.wpm DESC, p.accuracy DESC
"""

_STORED_SINCE_SQL = """
SELECT r.race_type, p.player_id, p.name, p.wpm, p.accuracy, p.created_at, r.daily
FROM races r JOIN race_participants p ON p.race_id = r.race_id AND p.created_at = r.ended_at
WHERE r.stored_at >= $1 AND p.valid AND p.status = 'finished' AND p.review_state IN ('clear', 'released')
  AND (r.race_type = ANY($2) OR r.daily IS NOT NULL)
"""


@dataclass(frozen=True, slots=True)
class RebuildReport:
    boards: int
    members: int
    deleted: int
    caught_up: int


def _window_start(timeframe: Timeframe, today: date, settings: ReadSideSettings) -> datetime:
    if timeframe is Timeframe.DAILY:
        first = today - timedelta(days=settings.daily_keep_days)
    elif timeframe is Timeframe.WEEKLY:
        first = today - timedelta(days=today.weekday(), weeks=settings.weekly_keep_weeks)
    else:
        return to_datetime(0)
    return datetime(first.year, first.month, first.day, tzinfo=UTC)


def _placement(row: asyncpg.Record, timeframe: Timeframe, settings: ReadSideSettings) -> Placement:
    day = row["created_at"].date()
    return Placement(
        key=board_key(row["race_type"], timeframe, day),
        player_id=row["player_id"],
        name=row["name"],
        score=score(row["wpm"], row["accuracy"]),
        expires_at=expires_at(timeframe, day, settings),
    )


def _daily_placement(row: asyncpg.Record, settings: ReadSideSettings) -> Placement | None:
    board = daily_challenge_board(row["daily"].isoformat(), settings) if row["daily"] else None
    if board is None:
        return None
    key, expiry = board
    return Placement(key, row["player_id"], row["name"], score(row["wpm"], row["accuracy"]), expiry)


async def rebuild(
    redis: aioredis.Redis, pool: asyncpg.Pool, settings: ReadSideSettings, *, at_ms: int | None = None
) -> RebuildReport:
    started = to_datetime(now_ms())
    today = to_datetime(at_ms if at_ms is not None else now_ms()).date()
    types = list(settings.race_types)
    boards: dict[str, list[Placement]] = {}
    async with pool.acquire() as conn:
        for tf in Timeframe:
            sql = _BEST_SQL.format(period=_PERIODS[tf])
            for row in await conn.fetch(sql, types, _window_start(tf, today, settings)):
                pl = _placement(row, tf, settings)
                boards.setdefault(pl.key, []).append(pl)
        for row in await conn.fetch(_DAILY_SQL, _window_start(Timeframe.DAILY, today, settings).date()):
            if (daily := _daily_placement(row, settings)) is not None:
                boards.setdefault(daily.key, []).append(daily)
    for key, members in boards.items():
        await _replace(redis, key, members)
    deleted = await _delete_stale(redis, set(boards), types)
    # Offer again what was stored while we read: the swap may have dropped it.
    async with pool.acquire() as conn:
        rows = await conn.fetch(_STORED_SINCE_SQL, started - CATCH_UP_MARGIN, types)
    writer = LeaderboardWriter(redis, settings)
    again = [_placement(row, tf, settings) for row in rows if row["race_type"] in types for tf in Timeframe]
    again += [found for row in rows if (found := _daily_placement(row, settings)) is not None]
    await writer.offer(again)
    report = RebuildReport(len(boards), sum(len(m) for m in boards.values()), deleted, len(rows))
    log.info("leaderboards_rebuilt", **dataclasses.asdict(report), took_ms=now_ms() - to_ms(started))
    return report


async def _replace(redis: aioredis.Redis, key: str, members: Sequence[Placement]) -> None:
    # Names first, on their own: a MULTI may touch one slot only on a Redis Cluster, and a name
    # written a moment before its board costs nothing. The board is swapped in one MULTI (one
    # key), so readers see the old board or the new one, never an empty one.
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(0, len(members), ZADD_CHUNK):
            pipe.hset(
                keys.PLAYER_NAMES, mapping={pl.player_id: pl.name for pl in members[i : i + ZADD_CHUNK]}
            )
        await pipe.execute()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        for i in range(0, len(members), ZADD_CHUNK):
            pipe.zadd(key, {pl.player_id: pl.score for pl in members[i : i + ZADD_CHUNK]})
        at = members[0].expires_at
        if at is not None:
            pipe.expireat(key, at)
        await pipe.execute()


async def _delete_stale(redis: aioredis.Redis, rebuilt: set[str], race_types: Sequence[str]) -> int:
    deleted = 0
    for race_type in race_types:
        async for raw in redis.scan_iter(match=keys.leaderboard(race_type, "*", ""), count=500):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            if key not in rebuilt:
                deleted += int(await redis.delete(key))
    async for raw in redis.scan_iter(match=keys.daily_board("*"), count=500):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        if key not in rebuilt:
            deleted += int(await redis.delete(key))
    return deleted


async def _run(redis_url: str, dsn: str, settings: ReadSideSettings) -> RebuildReport:
    redis = connect(RedisSettings(url=redis_url))
    try:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            return await rebuild(redis, pool, settings)
        finally:
            await pool.close()
    finally:
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    env = environ()
    parser = argparse.ArgumentParser(
        prog="python -m persistence.rebuild", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--redis-url", default=RedisSettings.from_env(env).url, help="default: ARENA_REDIS_URL"
    )
    parser.add_argument(
        "--dsn", default=PostgresSettings.from_env(env).dsn, help="default: ARENA_POSTGRES_DSN"
    )
    args = parser.parse_args(argv)
    configure_logging(LogSettings.from_env(env))
    try:
        report = asyncio.run(_run(args.redis_url, args.dsn, ReadSideSettings.from_env(env)))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"rebuild: {exc}", file=sys.stderr)
        return 1
    print(
        f"rebuilt {report.boards} board(s) with {report.members} member(s); "
        f"deleted {report.deleted} stale board(s); re-offered {report.caught_up} recent result(s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
