"""A real gameserver node on a loopback port, backed by the session's real Redis."""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from arena.settings import RedisSettings, SecretSettings
from gameserver.app import NODE_KEY, build_app
from gameserver.node import Node
from gameserver.settings import LimitSettings, NodeSettings, RaceSettings
from ops.services import free_port

ADMIN = "test-admin-token"
FAST_RACE = RaceSettings(countdown_s=1.0, wait_timeout_s=5.0, grace_s=3.0, tick_hz=20.0, ping_interval_s=1.0)


@dataclass
class RunningNode:
    settings: NodeSettings
    runner: web.AppRunner

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def ws_url(self) -> str:
        return self.settings.ws_url

    @property
    def node(self) -> Node:
        return self.runner.app[NODE_KEY]

    async def create_race(self, names: list[str], **extra: Any) -> dict[str, Any]:
        body = {"race_type": "quick", "players": [{"name": n} for n in names], **extra}
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"{self.http_url}/admin/races", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
            )
            data: dict[str, Any] = await resp.json()
            assert resp.status == 201, data
            return data


NodeFactory = Callable[..., Awaitable[RunningNode]]


@pytest.fixture
async def node_factory(redis_url: str) -> AsyncIterator[NodeFactory]:
    runners: list[web.AppRunner] = []

    async def start(
        node_id: str = "node-a", race: RaceSettings = FAST_RACE, limits: LimitSettings | None = None
    ) -> RunningNode:
        port = free_port()
        settings = NodeSettings(
            node_id=node_id,  # type: ignore[arg-type]
            port=port,
            redis=RedisSettings(url=redis_url),
            secrets=SecretSettings(token_secret=b"test-secret-0123456789", admin_token=ADMIN),
            race=race,
            limits=limits or LimitSettings(),
        )
        runner = web.AppRunner(build_app(settings), handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return RunningNode(settings, runner)

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def node(node_factory: NodeFactory) -> RunningNode:
    return await node_factory()


def with_race(**changes: Any) -> RaceSettings:
    return replace(FAST_RACE, **changes)
