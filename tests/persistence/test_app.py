"""The process's HTTP side: /healthz, /readyz (with reasons), /metrics; and clean start and stop."""

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from ops.services import free_port
from persistence.app import build_app
from persistence.settings import PersistenceSettings
from tests.persistence.helpers import Env, drained, matches, push, wait_until

Serve = Callable[[PersistenceSettings], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(settings: PersistenceSettings) -> str:
        runner = web.AppRunner(build_app(settings))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


async def test_health_ready_and_metrics(env: Env, redis: aioredis.Redis, serve: Serve) -> None:
    base = await serve(env.settings())
    assert await get(f"{base}/healthz") == (200, '{"status": "ok"}')
    status, body = await get(f"{base}/readyz")
    assert (status, body) == (200, '{"ready": true}')
    await push(redis, matches(5))
    await wait_until(lambda: drained(redis), 10, "drained")
    status, body = await get(f"{base}/metrics")
    assert status == 200
    assert "arena_persistence_entries_acked_total 5.0" in body
    assert 'arena_persistence_dependency_up{dependency="postgres"} 1.0' in body
    assert "arena_persistence_lag_seconds_count 5.0" in body


async def test_unready_with_a_reason_while_a_dependency_is_down(env: Env, serve: Serve) -> None:
    base = await serve(env.settings(dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"))
    assert (await get(f"{base}/healthz"))[0] == 200
    status, body = await get(f"{base}/readyz")
    assert status == 503
    assert '"ready": false' in body and "postgres" in body
