"""Poison entries: retried up to max_deliveries, then dead-lettered with the reason, and replayable
once the cause is fixed. The rest of their batch goes through."""

from __future__ import annotations

import dataclasses

import asyncpg
import redis.asyncio as aioredis

from arena.keys import OUTBOX_STREAM
from persistence.deadletters import DeadLetters
from tests.persistence.conftest import ServiceFactory
from tests.persistence.helpers import Env, drained, kafka_keys, matches, push, push_raw, stored, wait_until


async def dead_count(redis: aioredis.Redis) -> int:
    return await DeadLetters(redis).count()


async def test_undecodable_entry_is_dead_lettered_after_max_deliveries(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    good = matches(5)
    await push(redis, good[:2])
    await push_raw(redis, "r-garbage", b"\xc1 not msgpack")
    await push(redis, good[2:])
    service = await start_service(env.settings(max_deliveries=3))
    await wait_until(lambda: drained(redis), 10, "the poison entry dead-lettered and the rest stored")
    assert await stored(env.dsn) == (5, sum(len(r.participants) for r in good))
    [letter] = await DeadLetters(redis).read()
    assert letter.match_id == "r-garbage"
    assert letter.deliveries == 3
    assert "undecodable" in letter.reason
    assert service.metrics.dead_letters.labels("decode")._value.get() == 1


async def test_rejected_by_postgres_then_replayed_after_the_fix(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    good = matches(6)
    # A node on a newer version ran a race type this schema does not know yet.
    poison = dataclasses.replace(matches(1, seed=99)[0], race_type="sprint")
    await push(redis, [*good[:3], poison, *good[3:]])
    await start_service(env.settings(max_deliveries=3))
    await wait_until(lambda: drained(redis), 10, "the rejected match dead-lettered")
    assert (await stored(env.dsn))[0] == 6  # the rest of the batch went through
    [letter] = await DeadLetters(redis).read()
    assert letter.match_id == poison.match_id
    assert "races_race_type_check" in letter.reason

    # The fix: a migration that admits the new race type. Then an operator replays.
    conn = await asyncpg.connect(env.dsn)
    try:
        await conn.execute("ALTER TABLE races DROP CONSTRAINT races_race_type_check")
    finally:
        await conn.close()
    assert await DeadLetters(redis).replay(letter.dead_id) is not None
    assert await dead_count(redis) == 0

    async def poison_stored() -> bool:
        return (await stored(env.dsn))[0] == 7

    await wait_until(poison_stored, 10, "the replayed match stored")
    await wait_until(lambda: drained(redis), 5, "the replayed entry acknowledged")
    assert poison.match_id in await kafka_keys(env.bootstrap, env.race_topic, 7)


async def test_an_entry_that_keeps_killing_its_consumers_is_dead_lettered(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    [record] = matches(1)
    [entry_id] = await push(redis, [record])
    # Three consumers took it and died (each delivery counted, none acknowledged).
    await redis.xgroup_create(OUTBOX_STREAM, "persistence", id="0")
    await redis.xreadgroup("persistence", "crashed", {OUTBOX_STREAM: ">"})
    await redis.xclaim(OUTBOX_STREAM, "persistence", "crashed", 0, [entry_id], retrycount=3, idle=60_000)
    await start_service(env.settings(max_deliveries=3))
    await wait_until(lambda: drained(redis), 10, "the entry buried")
    [letter] = await DeadLetters(redis).read()
    assert letter.entry_id == entry_id
    assert letter.reason == "not acknowledged after 3 deliveries"
    assert await stored(env.dsn) == (0, 0)
