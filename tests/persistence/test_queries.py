"""The read side the lobby calls: leaderboards, recent races (cache first), one race's full result."""

import dataclasses
import random
from datetime import UTC, datetime

import asyncpg
import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.results import MatchRecord
from persistence import synthetic
from persistence.consumer import ReadSide
from persistence.leaderboards import LeaderboardWriter, Timeframe
from persistence.queries import leaderboard_top, player_rank, race_result, recent_races
from persistence.ratings import RatingCatchUp
from persistence.recent import RecentCache
from persistence.settings import ReadSideSettings
from persistence.store import PostgresStore
from persistence.times import to_ms

SETTINGS = ReadSideSettings()
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
NOON = to_ms(TODAY) + 12 * 3_600_000  # boards of past days expire: keep the data recent


async def persist(pool: asyncpg.Pool, redis: aioredis.Redis, records: list[MatchRecord]) -> None:
    """What the consumer does: PostgreSQL, then the read side."""
    await PostgresStore(pool).write(records)
    readside = ReadSide(
        LeaderboardWriter(redis, SETTINGS), RecentCache(redis, SETTINGS), RatingCatchUp(redis), redis
    )
    await readside.apply(records)


def with_scores(record: MatchRecord, scores: dict[str, tuple[float, float]]) -> MatchRecord:
    return dataclasses.replace(
        record,
        participants=[
            dataclasses.replace(p, wpm=scores[p.player_id][0], accuracy=scores[p.player_id][1])
            for p in record.participants
        ],
    )


@pytest.fixture
async def closed_pool(pg_dsn: str) -> asyncpg.Pool:
    """A pool that fails if used: proves an answer came from Redis."""
    p = await asyncpg.create_pool(pg_dsn, min_size=0)
    await p.close()
    return p


async def test_top_n_and_own_rank(pool: asyncpg.Pool, redis: aioredis.Redis) -> None:
    rng = random.Random(1)
    first = synthetic.match(rng, ended_at=NOON, players=["ada", "bob", "cy"])
    second = synthetic.match(rng, ended_at=NOON + 60_000, players=["ada", "cy"])
    await persist(pool, redis, [
        with_scores(first, {"ada": (100.0, 95.0), "bob": (100.0, 97.0), "cy": (90.0, 99.0)}),
        with_scores(second, {"ada": (80.0, 100.0), "cy": (95.5, 90.0)}),
    ])  # fmt: skip
    top = await leaderboard_top(redis, "quick", Timeframe.DAILY, 10, at_ms=NOON)
    assert [(e.rank, e.player_id, e.wpm, e.accuracy) for e in top] == [
        (1, "bob", 100.0, 97.0),  # same WPM as ada: accuracy breaks the tie
        (2, "ada", 100.0, 95.0),  # her later, slower race does not lower her best
        (3, "cy", 95.5, 90.0),
    ]
    assert top[0].name == first.participants[1].name
    assert [e.player_id for e in await leaderboard_top(redis, "quick", Timeframe.WEEKLY, 2, at_ms=NOON)] == [
        "bob",
        "ada",
    ]
    assert len(await leaderboard_top(redis, "quick", Timeframe.ALLTIME, 10)) == 3
    assert await leaderboard_top(redis, "quick", Timeframe.DAILY, 10, at_ms=NOON + 86_400_000) == []
    cy = await player_rank(redis, "quick", Timeframe.DAILY, "cy", at_ms=NOON)
    assert cy is not None and (cy.rank, cy.wpm) == (3, 95.5)
    assert await player_rank(redis, "quick", Timeframe.DAILY, "nobody", at_ms=NOON) is None


async def test_recent_races_first_page_from_the_cache_older_pages_from_postgres(
    pool: asyncpg.Pool, redis: aioredis.Redis, closed_pool: asyncpg.Pool
) -> None:
    rng = random.Random(2)
    races = [synthetic.match(rng, ended_at=NOON + i * 60_000, players=["ada", f"x{i}"]) for i in range(13)]
    await persist(pool, redis, races)
    newest_first = [r.match_id for r in reversed(races)]
    page = await recent_races(redis, closed_pool, "ada", 10)
    assert [r.race_id for r in page] == newest_first[:10]
    assert page[0].players == 2 and page[0].race_type == "quick" and page[0].ended_at == races[-1].ended_at
    older = await recent_races(redis, pool, "ada", 10, before=(page[-1].ended_at, page[-1].race_id))
    assert [r.race_id for r in older] == newest_first[10:]
    assert await recent_races(redis, pool, "ada", 50) == page + older  # more than the cache holds: PostgreSQL


async def test_a_lost_cache_is_refilled_from_postgres(
    pool: asyncpg.Pool, redis: aioredis.Redis, closed_pool: asyncpg.Pool
) -> None:
    rng = random.Random(3)
    races = [synthetic.match(rng, ended_at=NOON + i * 60_000, players=["ada", "bob"]) for i in range(3)]
    await persist(pool, redis, races)
    await redis.delete(keys.recent_races("ada"))
    # A new result after the cache expired: the set now holds one result and is not trusted.
    newest = synthetic.match(rng, ended_at=NOON + 3_600_000, players=["ada", "bob"])
    await persist(pool, redis, [newest])
    expected = [newest.match_id, *(r.match_id for r in reversed(races))]
    assert [r.race_id for r in await recent_races(redis, pool, "ada")] == expected
    # Refilled with everything ada has (fewer than 10) and marked complete: Redis answers alone now.
    assert [r.race_id for r in await recent_races(redis, closed_pool, "ada")] == expected
    # Members built from PostgreSQL rows equal those built from records: re-applying adds nothing.
    await RecentCache(redis, SETTINGS).apply([newest, *races])
    assert await redis.zcard(keys.recent_races("ada")) == 4 + 1  # four results and the marker


async def test_one_race_full_result(pool: asyncpg.Pool, redis: aioredis.Redis) -> None:
    record = synthetic.match(random.Random(4), ended_at=NOON, players=["ada", "bob", "cy"])
    record = dataclasses.replace(
        record,
        participants=[
            *record.participants[:2],
            dataclasses.replace(record.participants[2], place=None, status="dnf", finished_at=None),
        ],
    )
    await persist(pool, redis, [record])
    result = await race_result(pool, record.match_id)
    assert result is not None
    assert (result.race_id, result.ended_at, result.started_at) == (
        record.match_id,
        record.ended_at,
        record.started_at,
    )
    assert [p.player_id for p in result.participants] == ["ada", "bob", "cy"]
    for got, sent in zip(result.participants, record.participants, strict=True):
        assert (got.keys, got.key_times, got.wpm, got.place, got.finished_at) == (
            sent.keys, sent.key_times, sent.wpm, sent.place, sent.finished_at,
        )  # fmt: skip
    assert await race_result(pool, "r-unknown") is None
