"""Real gameserver nodes on loopback ports for the bot tests, backed by the session's Redis."""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from arena.ids import NodeId
from arena.settings import RedisSettings, SecretSettings
from gameserver.app import build_app
from gameserver.settings import NodeSettings, RaceSettings
from ops.services import free_port
from simulators.admin import CreatedRace, create_race

ADMIN_TOKEN = "sim-test-admin-token"
FAST_RACE = RaceSettings(countdown_s=1.0, wait_timeout_s=5.0, grace_s=5.0, tick_hz=20.0, ping_interval_s=1.0)
# ~60 characters: a race of fast bots takes a few seconds.
SHORT_TEXT = "Quick brown foxes jump over lazy dogs, then nap in the sun."


@dataclass
class SimNode:
    settings: NodeSettings

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def ws_url(self) -> str:
        return self.settings.ws_url

    async def create_race(self, names: list[str], text: str = SHORT_TEXT) -> CreatedRace:
        async with aiohttp.ClientSession() as http:
            return await create_race(
                http, self.http_url, ADMIN_TOKEN, names, race_type="custom", custom_text=text
            )


NodeStarter = Callable[..., Awaitable[SimNode]]


@pytest.fixture
async def start_node(redis_url: str) -> AsyncIterator[NodeStarter]:
    runners: list[web.AppRunner] = []

    async def start(node_id: str = "sim-a", race: RaceSettings = FAST_RACE) -> SimNode:
        port = free_port()
        settings = NodeSettings(
            node_id=NodeId(node_id),
            host="127.0.0.1",
            port=port,
            redis=RedisSettings(url=redis_url),
            secrets=SecretSettings(token_secret=b"sim-test-secret-0123456789", admin_token=ADMIN_TOKEN),
            race=race,
        )
        runner = web.AppRunner(build_app(settings), handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return SimNode(settings)

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def sim_node(start_node: NodeStarter) -> SimNode:
    return await start_node()
