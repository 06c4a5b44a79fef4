"""Every process answers ``/healthz`` (alive) and ``/readyz`` (can go on), as
docs/ARCHITECTURE.md says: each one is started as ``python -m <module>`` on its own Redis, must
become ready, and must turn unready (while staying alive) once that Redis is gone."""

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ops.services import KafkaBroker, PostgresServer, RedisServer, free_port
from tests.conftest import ADMIN

ROOT = Path(__file__).resolve().parents[2]

# module -> the setting that gives its HTTP port (where /healthz and /readyz are served)
PORT_SETTINGS = {
    "gameserver": "ARENA_NODE_PORT",
    "lobby": "ARENA_LOBBY_PORT",
    "matchmaker": "ARENA_MM_PORT",
    "tournaments": "ARENA_TOURNAMENT_PORT",
    "persistence": "ARENA_PERSIST_PORT",
}


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
        return resp.status, await resp.text()


async def wait_for_status(http: aiohttp.ClientSession, url: str, status: int, timeout_s: float) -> str:
    """Poll ``url`` until it answers ``status``; returns that answer's body."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: tuple[int, str] = (0, "no answer")
    while asyncio.get_running_loop().time() < deadline:
        try:
            last = await get(http, url)
            if last[0] == status:
                return last[1]
        except aiohttp.ClientError as exc:
            last = (0, repr(exc))
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {timeout_s} s; last: {last}")


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    """A Redis of this test's own, so the test can take it away."""
    server = await asyncio.to_thread(RedisServer().start)
    yield server
    await asyncio.to_thread(server.stop)


@pytest.mark.parametrize("module", list(PORT_SETTINGS))
async def test_each_process_is_alive_and_ready_and_unready_without_redis(
    module: str, own_redis: RedisServer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    port = free_port()
    env = dict(os.environ) | {
        "ARENA_REDIS_URL": own_redis.url,
        PORT_SETTINGS[module]: str(port),
        "ARENA_ADMIN_TOKEN": ADMIN,
        "ARENA_TOKEN_SECRET": "health-test-secret-0123456789",
        "ARENA_NODE_ADMIN_PORT": "0",  # the node's admin listener: any free port
        "ARENA_LOBBY_SCRYPT_N": "256",
        "ARENA_LOG_LEVEL": "warning",
    }
    if module == "persistence":  # it is ready only when PostgreSQL and Kafka answer too
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        kafka: KafkaBroker = request.getfixturevalue("kafka_broker")
        env |= {"ARENA_POSTGRES_DSN": postgres.dsn, "ARENA_KAFKA_BOOTSTRAP": kafka.bootstrap}
    with (tmp_path / f"{module}.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env=env, cwd=ROOT, stdout=log, stderr=log
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for_status(http, f"{base}/healthz", 200, 20)
            body = await wait_for_status(http, f"{base}/readyz", 200, 10)
            assert '"ready": true' in body
            await asyncio.to_thread(own_redis.stop)
            body = await wait_for_status(http, f"{base}/readyz", 503, 10)
            assert '"ready": false' in body and "redis" in body.lower(), body
            assert (await get(http, f"{base}/healthz"))[0] == 200  # alive, only not ready
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert proc.returncode is not None
