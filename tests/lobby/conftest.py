"""Lobby fixtures: a real lobby app on a loopback port against the session's real Redis.

``lobby_factory(**settings)`` starts one with test-friendly settings (cheap scrypt, fast
flushes) overridden as the test needs; ``Api`` is a small JSON client for it; ``FakeNode``
heartbeats a node into the registry without running one, so a test can let it die.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from arena.clock import now_ms
from arena.registry import NodeInfo, NodeRegistry
from arena.settings import RedisSettings, SecretSettings
from lobby.app import build_app
from lobby.context import LOBBY_KEY, Lobby
from lobby.settings import LobbySettings
from ops.services import free_port
from tests.conftest import ADMIN, redis_client

SECRET = b"test-secret-0123456789"  # the same secret as the test nodes: tokens work on both


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    def ok(self, status: int = 200) -> Any:
        assert self.status == status, (self.status, self.body)
        return self.body


class Api:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.base + path, data=data, headers=hdrs) as resp:
            text = await resp.text()
            assert resp.content_type == "application/json" or path == "/metrics", (resp.status, text)
            parsed = json.loads(text) if resp.content_type == "application/json" else text
            return Reply(resp.status, parsed, dict(resp.headers))

    async def guest(self, name: str = "ada") -> dict[str, Any]:
        session: dict[str, Any] = (await self.call("POST", "/v1/guests", body={"name": name})).ok(201)
        return session


@dataclass
class RunningLobby:
    settings: LobbySettings
    runner: web.AppRunner
    api: Api

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def lobby(self) -> Lobby:
        return self.runner.app[LOBBY_KEY]


LobbyFactory = Callable[..., Awaitable[RunningLobby]]


def lobby_settings(redis_url: str, **changes: Any) -> LobbySettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": free_port(),
        "scrypt_n": 2**8,  # production cost is 2**14; tests only need the code path
        "presence_flush_s": 0.2,
        "long_poll_max_s": 5.0,
        "regions": ("local", "eu"),
        "redis": RedisSettings(url=redis_url),
        "secrets": SecretSettings(token_secret=SECRET, admin_token=ADMIN),
    }
    return LobbySettings(**(base | changes))


@pytest.fixture
async def lobby_factory(redis_url: str) -> AsyncIterator[LobbyFactory]:
    started: list[tuple[web.AppRunner, aiohttp.ClientSession]] = []

    async def start(
        app_hook: Callable[[web.Application], None] | None = None, **changes: Any
    ) -> RunningLobby:
        settings = lobby_settings(redis_url, **changes)
        app = build_app(settings)
        if app_hook is not None:
            app_hook(app)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.port).start()
        http = aiohttp.ClientSession()
        started.append((runner, http))
        return RunningLobby(settings, runner, Api(http, f"http://127.0.0.1:{settings.port}"))

    yield start
    for runner, http in reversed(started):
        await http.close()
        await runner.cleanup()


@pytest.fixture
async def lobby(lobby_factory: LobbyFactory) -> RunningLobby:
    return await lobby_factory()


@pytest.fixture
async def api(lobby: RunningLobby) -> Api:
    return lobby.api


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


class FakeNode:
    """A registry entry kept fresh by a task; ``die()`` stops it like a SIGKILL would.

    The loop stops on a flag, not on cancel(): redis-py can swallow a cancellation that lands
    mid-command (redis/redis-py#2028), which would leave ``die()`` waiting forever.
    """

    def __init__(self, redis: aioredis.Redis, node_id: str, region: str = "local") -> None:
        self.registry = NodeRegistry(redis)
        self.node_id = node_id
        self.region = region
        self._task: asyncio.Task[None] | None = None
        self._alive = True

    def info(self) -> NodeInfo:
        return NodeInfo(
            node_id=self.node_id,
            url=f"ws://127.0.0.1:9/{self.node_id}",
            http_url="http://127.0.0.1:9",  # nothing listens: only for liveness tests
            admin_url="http://127.0.0.1:9",
            region=self.region,
            capacity=100,
            players=0,
            races=0,
            state="ready",
            heartbeat_at=now_ms(),
        )

    async def start(self) -> FakeNode:
        await self.registry.heartbeat(self.info())
        self._task = asyncio.create_task(self._beat())
        return self

    async def _beat(self) -> None:
        while self._alive:
            await asyncio.sleep(0.1)
            if self._alive:
                await self.registry.heartbeat(self.info())

    async def die(self) -> None:
        self._alive = False
        if self._task is not None:
            await self._task
            self._task = None


@pytest.fixture
async def fake_nodes(redis: aioredis.Redis) -> AsyncIterator[Callable[..., Awaitable[FakeNode]]]:
    nodes: list[FakeNode] = []

    async def start(node_id: str = "fake-1", region: str = "local") -> FakeNode:
        node = await FakeNode(redis, node_id, region).start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        await node.die()
