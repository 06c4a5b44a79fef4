"""Bot tests run against the shared real-node fixture (tests/conftest.py) with a wider grace."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import aiohttp
import pytest

from gameserver.settings import NodeSettings, RaceSettings
from simulators.admin import CreatedRace, create_race
from tests.conftest import ADMIN, FAST_RACE, NodeFactory

ADMIN_TOKEN = ADMIN
SIM_RACE = replace(FAST_RACE, grace_s=5.0)
# ~60 characters: a race of fast bots takes a few seconds.
SHORT_TEXT = "Quick brown foxes jump over lazy dogs, then nap in the sun."


@dataclass
class SimNode:
    settings: NodeSettings
    admin_url: str  # the admin listener, where races are created (the simulators' --node)

    @property
    def ws_url(self) -> str:
        return self.settings.ws_url

    async def create_race(self, names: list[str], text: str = SHORT_TEXT) -> CreatedRace:
        async with aiohttp.ClientSession() as http:
            return await create_race(
                http, self.admin_url, ADMIN_TOKEN, names, race_type="custom", custom_text=text
            )


NodeStarter = Callable[..., Awaitable[SimNode]]


@pytest.fixture
def start_node(node_factory: NodeFactory) -> NodeStarter:
    async def start(node_id: str = "sim-a", race: RaceSettings = SIM_RACE) -> SimNode:
        running = await node_factory(node_id=node_id, race=race)
        return SimNode(running.settings, running.admin_url)

    return start


@pytest.fixture
async def sim_node(start_node: NodeStarter) -> SimNode:
    return await start_node()
