"""The read side the lobby calls: leaderboards, a player's recent races, one race's result.

Leaderboards come from Redis only (they are rebuilt from PostgreSQL by
``python -m persistence.rebuild``). A player's latest races come from the Redis cache when it
can answer, else from PostgreSQL, which then refills the cache; older pages always come from
PostgreSQL. Every function takes its clients as arguments and returns typed values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import cast

import asyncpg
import redis.asyncio as aioredis

from arena import keys
from arena.clock import now_ms
from persistence import keylog
from persistence.leaderboards import Timeframe, board_key, unscore
from persistence.recent import RecentCache, RecentResult, shown_place
from persistence.settings import ReadSideSettings
from persistence.times import to_datetime, to_ms


@dataclass(frozen=True, slots=True)
class LeaderboardEntry:
    rank: int  # 1 = best
    player_id: str
    name: str
    wpm: float
    accuracy: float


@dataclass(frozen=True, slots=True)
class ParticipantResult:
    player_id: str
    name: str
    place: int | None
    status: str
    valid: bool
    flags: list[str]
    wpm: float
    raw_wpm: float
    accuracy: float
    consistency: float
    correct_chars: int
    typed_chars: int
    errors: int
    elapsed_ms: int
    joined_at: int | None  # ms
    finished_at: int | None  # ms
    keys: str  # the keystroke log: typed keys (\b = backspace)...
    key_times: list[int]  # ...and their times, ms since the race start
    review: str = "clear"  # review.py: clear | provisional | held | released | rejected (place: null)


@dataclass(frozen=True, slots=True)
class RaceResult:
    race_id: str
    kind: str
    race_type: str
    state: str
    reason: str
    node_id: str
    passage_id: str
    passage_chars: int
    tournament_id: str | None
    round_no: int | None
    created_at: int  # ms
    started_at: int | None  # ms
    ended_at: int  # ms
    participants: list[ParticipantResult]


def _day(at_ms: int | None) -> date:
    return to_datetime(now_ms() if at_ms is None else at_ms).date()


async def leaderboard_top(
    redis: aioredis.Redis, race_type: str, timeframe: Timeframe, n: int = 10, *, at_ms: int | None = None
) -> list[LeaderboardEntry]:
    """The best ``n`` of a board; ``at_ms`` picks the day or week (default: now)."""
    key = board_key(race_type, timeframe, _day(at_ms))
    rows = cast(list[tuple[bytes, float]], await redis.zrevrange(key, 0, n - 1, withscores=True))
    if not rows:
        return []
    names = cast(list[bytes | None], await redis.hmget(keys.PLAYER_NAMES, [pid for pid, _ in rows]))
    entries = []
    for rank, ((pid, value), name) in enumerate(zip(rows, names, strict=True), start=1):
        wpm, accuracy = unscore(value)
        player_id = pid.decode()
        entries.append(LeaderboardEntry(rank, player_id, (name or pid).decode(), wpm, accuracy))
    return entries


async def player_rank(
    redis: aioredis.Redis, race_type: str, timeframe: Timeframe, player_id: str, *, at_ms: int | None = None
) -> LeaderboardEntry | None:
    """A player's own place on a board, None when not on it."""
    key = board_key(race_type, timeframe, _day(at_ms))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrevrank(key, player_id)
        pipe.zscore(key, player_id)
        pipe.hget(keys.PLAYER_NAMES, player_id)
        rank, value, name = await pipe.execute()
    if rank is None or value is None:
        return None
    wpm, accuracy = unscore(value)
    return LeaderboardEntry(int(rank) + 1, player_id, name.decode() if name else player_id, wpm, accuracy)


_RECENT_SQL = """
SELECT p.race_id, r.kind, r.race_type, p.created_at, r.players, p.place, p.status, p.valid, p.wpm, p.accuracy,
       p.review_state
FROM race_participants p JOIN races r ON r.race_id = p.race_id
WHERE p.player_id = $1 AND p.created_at <= $2 AND (p.created_at, p.race_id) < ($2, $3)
ORDER BY p.created_at DESC, p.race_id DESC
LIMIT $4
"""

_FAR_FUTURE_MS = 253_402_300_799_999


async def recent_races(
    redis: aioredis.Redis,
    pool: asyncpg.Pool,
    player_id: str,
    limit: int = 10,
    *,
    before: tuple[int, str] | None = None,
    settings: ReadSideSettings | None = None,
) -> list[RecentResult]:
    """A player's races, newest first. ``before`` = (ended_at ms, race id) of the last one seen.

    The first page (up to ``recent_keep``) is served from the Redis cache when it can answer;
    otherwise, and for every older page, from PostgreSQL.
    """
    settings = settings or ReadSideSettings()
    cache = RecentCache(redis, settings)
    if before is None and limit <= settings.recent_keep:
        cached = await cache.read(player_id, limit)
        if cached is not None:
            return cached
        rows = await _recent_from_db(pool, player_id, settings.recent_keep, None)
        await cache.fill(player_id, rows, complete=len(rows) < settings.recent_keep)
        return rows[:limit]
    return await _recent_from_db(pool, player_id, limit, before)


async def _recent_from_db(
    pool: asyncpg.Pool, player_id: str, limit: int, before: tuple[int, str] | None
) -> list[RecentResult]:
    at_ms, race_id = before or (_FAR_FUTURE_MS, "\uffff")
    async with pool.acquire() as conn:
        rows = await conn.fetch(_RECENT_SQL, player_id, to_datetime(at_ms), race_id, limit)
    return [
        RecentResult(
            race_id=row["race_id"],
            kind=row["kind"],
            race_type=row["race_type"],
            ended_at=to_ms(row["created_at"]),
            players=row["players"],
            place=shown_place(row["place"], row["review_state"]),
            status=row["status"],
            valid=row["valid"],
            wpm=row["wpm"],
            accuracy=row["accuracy"],
            review=row["review_state"],
        )
        for row in rows
    ]


async def race_result(pool: asyncpg.Pool, race_id: str) -> RaceResult | None:
    """One race with every participant's full result and keystroke log; None if unknown."""
    async with pool.acquire() as conn:
        race = await conn.fetchrow("SELECT * FROM races WHERE race_id = $1", race_id)
        if race is None:
            return None
        # created_at is the partition key: naming it prunes the search to one partition.
        rows = await conn.fetch(
            "SELECT * FROM race_participants WHERE race_id = $1 AND created_at = $2"
            " ORDER BY place NULLS LAST, wpm DESC, player_id",
            race_id,
            race["ended_at"],
        )
    return RaceResult(
        race_id=race["race_id"],
        kind=race["kind"],
        race_type=race["race_type"],
        state=race["state"],
        reason=race["reason"],
        node_id=race["node_id"],
        passage_id=race["passage_id"],
        passage_chars=race["passage_chars"],
        tournament_id=race["tournament_id"],
        round_no=race["round_no"],
        created_at=to_ms(race["created_at"]),
        started_at=_opt_ms(race["started_at"]),
        ended_at=to_ms(race["ended_at"]),
        participants=[_participant(row) for row in rows],
    )


def _participant(row: asyncpg.Record) -> ParticipantResult:
    typed, times = keylog.decode(row["keylog"])
    return ParticipantResult(
        player_id=row["player_id"],
        name=row["name"],
        place=shown_place(row["place"], row["review_state"]),
        status=row["status"],
        valid=row["valid"],
        flags=list(row["flags"]),
        wpm=row["wpm"],
        raw_wpm=row["raw_wpm"],
        accuracy=row["accuracy"],
        consistency=row["consistency"],
        correct_chars=row["correct_chars"],
        typed_chars=row["typed_chars"],
        errors=row["errors"],
        elapsed_ms=row["elapsed_ms"],
        joined_at=_opt_ms(row["joined_at"]),
        finished_at=_opt_ms(row["finished_at"]),
        keys=typed,
        key_times=times,
        review=row["review_state"],
    )


def _opt_ms(value: datetime | None) -> int | None:
    return None if value is None else to_ms(value)


__all__ = [
    "LeaderboardEntry",
    "ParticipantResult",
    "RaceResult",
    "Timeframe",
    "leaderboard_top",
    "player_rank",
    "race_result",
    "recent_races",
]
