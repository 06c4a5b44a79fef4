"""Rating changes reach PostgreSQL's rating_history once each; unreadable ones are skipped."""

import random
from typing import cast

import asyncpg
import redis.asyncio as aioredis

from arena import keys
from arena.rating import RatingStore
from persistence import synthetic
from tests.persistence.conftest import ServiceFactory
from tests.persistence.helpers import Env, db_count, wait_until


async def test_changes_are_copied_once(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    rng = random.Random(1)
    store = RatingStore(redis)
    first = synthetic.match(rng, ended_at=1_790_000_000_000, players=["ada", "bob"])
    second = synthetic.match(rng, ended_at=1_790_000_060_000, players=["ada", "cy", "dee"])
    changes = [*(await store.apply_record(first) or []), *(await store.apply_record(second) or [])]
    assert len(changes) == 5
    # A copy of the first change entry: a re-delivery must not duplicate rows.
    [(_, fields)] = cast(
        list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(keys.RATING_CHANGES_STREAM, count=1)
    )
    await redis.xadd(keys.RATING_CHANGES_STREAM, fields)  # type: ignore[arg-type]
    await redis.xadd(keys.RATING_CHANGES_STREAM, {"match_id": "r-bad", "at": "x", "changes": "[{"})
    service = await start_service(env.settings())

    async def copied() -> bool:
        return await db_count(env.dsn, "SELECT count(*) FROM rating_history") == 5 and (
            service.metrics.entry_failures.labels("rating_history")._value.get() == 1
        )

    await wait_until(copied, 10, "five history rows and one skipped entry")
    conn = await asyncpg.connect(env.dsn)
    try:
        ada = await conn.fetch(
            "SELECT race_id, rating_before, rating_after FROM rating_history"
            " WHERE player_id = 'ada' ORDER BY created_at"
        )
    finally:
        await conn.close()
    ada_changes = [c for c in changes if c.player_id == "ada"]
    assert [(r["race_id"], r["rating_before"], r["rating_after"]) for r in ada] == [
        (first.match_id, ada_changes[0].before.rating, ada_changes[0].after.rating),
        (second.match_id, ada_changes[1].before.rating, ada_changes[1].after.rating),
    ]

    async def acknowledged() -> bool:
        return int((await redis.xpending(keys.RATING_CHANGES_STREAM, "persistence"))["pending"]) == 0

    await wait_until(acknowledged, 5, "every change entry acknowledged")
