"""Persistence fixtures: a migrated database per test (cloned from a template), unique topics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from ops.services import KafkaBroker, PostgresServer
from persistence.app import PersistenceService
from persistence.migrate import migrate
from persistence.settings import PersistenceSettings
from tests.conftest import redis_client
from tests.persistence.helpers import Env, unique

TEMPLATE = "persist_template"


def _in_thread(coro: Awaitable[Any]) -> Any:
    """Run a coroutine on its own loop in a worker thread, away from the tests' loops."""

    async def wrapper() -> Any:
        return await coro

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wrapper()).result()


async def create_template(server: PostgresServer, name: str) -> None:
    admin = await asyncpg.connect(server.dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(server.dsn.rsplit("/", 1)[0] + f"/{name}")
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_template(postgres_server: PostgresServer) -> str:
    _in_thread(create_template(postgres_server, TEMPLATE))
    return TEMPLATE


@pytest.fixture
async def pg_dsn(postgres_server: PostgresServer, pg_template: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test."""
    name = unique("t").replace("-", "_")
    admin = await asyncpg.connect(postgres_server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    finally:
        await admin.close()
    yield postgres_server.dsn.rsplit("/", 1)[0] + f"/{name}"
    admin = await asyncpg.connect(postgres_server.dsn)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def env(redis_url: str, pg_dsn: str, kafka_broker: KafkaBroker) -> Env:
    return Env(
        redis_url,
        pg_dsn,
        kafka_broker.bootstrap,
        unique("race-events"),
        unique("tournament-scores"),
        unique("player-events"),
    )


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    yield p
    await p.close()


ServiceFactory = Callable[[PersistenceSettings], Awaitable[PersistenceService]]


@pytest.fixture
async def start_service() -> AsyncIterator[ServiceFactory]:
    """Start in-process persistence services; whatever the test did not stop is stopped after it."""
    started: list[PersistenceService] = []

    async def start(settings: PersistenceSettings) -> PersistenceService:
        service = PersistenceService(settings)
        await service.start()
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        await service.stop()  # idempotent
