"""PostgreSQL or Kafka down for a while: the outbox keeps the matches, the service reports itself
unready, retries with backoff and catches up, exactly once in PostgreSQL, all in Kafka."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from ops.services import KafkaBroker, PostgresServer
from persistence.app import PersistenceService
from persistence.errors import Dependency
from persistence.migrate import migrate
from tests.persistence.conftest import ServiceFactory
from tests.persistence.helpers import Env, drained, kafka_keys, matches, push, stored, unique, wait_until

OUTAGE_S = 1.5


@pytest.fixture
async def own_postgres() -> AsyncIterator[PostgresServer]:
    """A PostgreSQL of this test's own, with a data dir that survives stop/start."""
    data = Path(tempfile.mkdtemp(prefix="typogram-pg-outage-"))
    server = PostgresServer(data_dir=data, fsync=False)
    await asyncio.to_thread(server.start)
    conn = await asyncpg.connect(server.dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield server
    await asyncio.to_thread(server.stop)
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
async def own_kafka() -> AsyncIterator[KafkaBroker]:
    data = Path(tempfile.mkdtemp(prefix="typogram-kafka-outage-"))
    server = KafkaBroker(data_dir=data)
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)
    shutil.rmtree(data, ignore_errors=True)


async def unready_because(service: PersistenceService, dependency: str) -> bool:
    return dependency in (await service.readiness() or "")


async def test_postgres_outage(
    redis_url: str, redis: aioredis.Redis, kafka_broker: KafkaBroker, own_postgres: PostgresServer,
    start_service: ServiceFactory,
) -> None:  # fmt: skip
    env = Env(
        redis_url,
        own_postgres.dsn,
        kafka_broker.bootstrap,
        unique("race-events"),
        unique("heats"),
        unique("players"),
    )
    records = matches(300)
    service = await start_service(env.settings())
    await push(redis, records[:100])
    await wait_until(lambda: drained(redis), 10, "the first 100 processed")
    assert await service.readiness() is None

    await asyncio.to_thread(own_postgres.stop)
    await push(redis, records[100:])
    await wait_until(lambda: unready_because(service, "postgres"), 10, "readiness to report postgres")
    await asyncio.sleep(OUTAGE_S)
    assert not await drained(redis)  # the stream keeps them meanwhile
    back = PostgresServer(data_dir=own_postgres.data_dir, port=own_postgres.port, fsync=False)
    await asyncio.to_thread(back.start)
    try:
        await wait_until(lambda: drained(redis), 30, "catching up after postgres came back")
        assert await stored(env.dsn) == (300, sum(len(r.participants) for r in records))
        assert set(await kafka_keys(env.bootstrap, env.race_topic, 300)) == {r.match_id for r in records}
        await wait_until(lambda: _ready(service), 5, "ready again")
    finally:
        await service.stop()
        await asyncio.to_thread(back.stop)


async def test_kafka_outage(
    redis_url: str, redis: aioredis.Redis, pg_dsn: str, own_kafka: KafkaBroker, start_service: ServiceFactory
) -> None:
    env = Env(
        redis_url, pg_dsn, own_kafka.bootstrap, unique("race-events"), unique("heats"), unique("players")
    )
    records = matches(300)
    service = await start_service(env.settings(kafka_timeout_s=1.0))
    await push(redis, records[:100])
    await wait_until(lambda: drained(redis), 10, "the first 100 processed")

    await asyncio.to_thread(own_kafka.stop)
    await push(redis, records[100:])
    await wait_until(lambda: unready_because(service, "kafka"), 10, "readiness to report kafka")

    async def batch_retrying() -> bool:
        return Dependency.KAFKA in service.health.down

    await wait_until(batch_retrying, 10, "the batch in hand to retry with backoff")
    await asyncio.sleep(OUTAGE_S)
    assert not await drained(redis)
    back = KafkaBroker(data_dir=own_kafka.data_dir, port=own_kafka.port)
    await asyncio.to_thread(back.start)
    try:
        await wait_until(lambda: drained(redis), 30, "catching up after kafka came back")
        assert await stored(env.dsn) == (300, sum(len(r.participants) for r in records))
        assert set(await kafka_keys(env.bootstrap, env.race_topic, 300)) == {r.match_id for r in records}
        await wait_until(lambda: _ready(service), 5, "ready again")
    finally:
        await service.stop()
        await asyncio.to_thread(back.stop)


async def _ready(service: PersistenceService) -> bool:
    return await service.readiness() is None
