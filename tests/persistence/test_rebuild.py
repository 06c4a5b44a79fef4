"""Rebuilding the leaderboards from PostgreSQL gives the boards the consumer built, and only those."""

import random
from datetime import UTC, datetime
from typing import cast

import asyncpg
import pytest
import redis.asyncio as aioredis

from persistence import synthetic
from persistence.rebuild import main, rebuild
from persistence.settings import ReadSideSettings
from persistence.times import to_ms
from tests.persistence.test_queries import persist

SETTINGS = ReadSideSettings()
DAY = 86_400_000


async def boards(redis: aioredis.Redis) -> dict[str, list[tuple[bytes, float]]]:
    found: dict[str, list[tuple[bytes, float]]] = {}
    async for key in redis.scan_iter(match="leaderboard:*"):
        found[key.decode()] = cast(list[tuple[bytes, float]], await redis.zrange(key, 0, -1, withscores=True))
    return found


@pytest.mark.redis_cluster
async def test_rebuild_matches_what_the_consumer_built(pool: asyncpg.Pool, redis: aioredis.Redis) -> None:
    now = to_ms(datetime.now(UTC))
    rng = random.Random(1)
    players = [f"p{i}" for i in range(8)]
    records = [
        synthetic.match(rng, ended_at=now - offset, players=rng.sample(players, 3), race_type=race_type)
        for offset in (0, 3_600_000, 2 * DAY, 9 * DAY, 40 * DAY)
        for race_type in ("quick", "standard", "custom")
    ]
    await persist(pool, redis, records)
    built = await boards(redis)
    assert "leaderboard:quick:alltime" in built and not any(":custom:" in k for k in built)
    # Damage: a lost board, a junk member, a board PostgreSQL has nothing for.
    await redis.delete("leaderboard:standard:alltime")
    await redis.zadd("leaderboard:quick:alltime", {"cheater": 1e12})
    await redis.zadd("leaderboard:quick:daily:2000-01-01", {"ghost": 1.0})

    report = await rebuild(redis, pool, SETTINGS)
    rebuilt = await boards(redis)
    # Daily boards older than the retention are not rebuilt (they would expire at once); the rest match.
    assert {k: v for k, v in built.items() if k in rebuilt} == rebuilt
    assert set(built) - set(rebuilt) <= {k for k in built if ":daily:" in k}
    assert report.deleted == 1 and report.caught_up > 0


def test_command_line(
    redis_url: str, pg_dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("persistence.rebuild.configure_logging", lambda settings: None)
    assert main(["--redis-url", redis_url, "--dsn", pg_dsn]) == 0
    assert "rebuilt 0 board(s)" in capsys.readouterr().out
