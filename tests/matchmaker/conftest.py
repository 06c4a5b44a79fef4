"""Real nodes in regions, and in-process matchmakers against the session's real Redis.

Nodes get a tiny corpus of short quick passages so bot races take seconds, not minutes.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from arena.ids import NodeId
from arena.placement import NodePlacer, Placer
from arena.registry import NodeRegistry
from arena.settings import RedisSettings, SecretSettings
from arena.tickets import TicketStore
from gameserver.app import NODE_KEY, build_app
from gameserver.node import Node
from gameserver.passages import Corpus, Passage, PassageKind
from gameserver.settings import NodeSettings, RaceSettings
from matchmaker.metrics import MatchmakerMetrics
from matchmaker.service import Matchmaker
from matchmaker.settings import MatchmakerSettings
from ops.services import free_port
from tests.conftest import redis_client

ADMIN = "mm-test-admin-token"
RACE = RaceSettings(countdown_s=1.0, wait_timeout_s=4.0, grace_s=3.0, tick_hz=20.0, ping_interval_s=1.0)
SHORT_TEXTS = [
    "Quick brown foxes nap in the sun.",
    "Small boats drift past the old pier.",
    "Warm bread cools on the kitchen sill.",
]
SHORT_CORPUS = Corpus(
    Passage(id=f"t{i}", kind=PassageKind.QUICK, text=text, source="test")
    for i, text in enumerate(SHORT_TEXTS)
)
# Fast waits so the policy steps happen within a test: fallback 1 s, neighbour 2.5 s, solo 6 s.
FAST_MM = MatchmakerSettings(
    matchmaker_id="mm-test",
    race_types=("quick",),
    regions=("eu", "us"),
    neighbours={"eu": ("us",), "us": ("eu",)},
    min_players=2,
    max_players=5,
    base_window=100.0,
    widen_per_s=100.0,
    max_window=1000.0,
    fallback_wait_s=1.0,
    neighbour_wait_s=2.5,
    max_wait_s=6.0,
    poll_interval_s=0.05,
    claim_ttl_s=5.0,
    reap_interval_s=0.2,
    node_timeout_s=1.0,
    node_attempts=3,
    secrets=SecretSettings(admin_token=ADMIN),
)


@dataclass
class RegionNode:
    settings: NodeSettings
    runner: web.AppRunner

    @property
    def node(self) -> Node:
        return self.runner.app[NODE_KEY]

    @property
    def admin_url(self) -> str:
        return self.node.settings.admin_url


NodeStarter = Callable[..., Awaitable[RegionNode]]


@pytest.fixture
async def start_node(redis_url: str) -> AsyncIterator[NodeStarter]:
    runners: list[web.AppRunner] = []

    async def start(node_id: str, region: str, capacity: int = 1000) -> RegionNode:
        port = free_port()
        settings = NodeSettings(
            node_id=NodeId(node_id),
            port=port,
            admin_port=0,  # any free port: the registry carries it
            region=region,
            capacity=capacity,
            heartbeat_s=0.2,
            redis=RedisSettings(url=redis_url),
            secrets=SecretSettings(token_secret=b"mm-test-secret-0123456789", admin_token=ADMIN),
            race=RACE,
        )
        runner = web.AppRunner(build_app(settings, SHORT_CORPUS), handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return RegionNode(settings, runner)

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def tickets(redis: aioredis.Redis) -> AsyncIterator[TicketStore]:
    store = TicketStore(redis, recheck_s=0.5)
    yield store
    await store.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def node_placer(redis: aioredis.Redis, http: aiohttp.ClientSession, metrics: MatchmakerMetrics) -> NodePlacer:
    return NodePlacer(
        NodeRegistry(redis, stale_after_ms=1000),
        http,
        ADMIN,
        timeout_s=FAST_MM.node_timeout_s,
        attempts=FAST_MM.node_attempts,
        refresh_s=0.2,
        on_failure=lambda reason: metrics.placement_failures.labels(reason).inc(),
    )


MatchmakerFactory = Callable[..., Matchmaker]


@pytest.fixture
async def make_matchmaker(redis_url: str, http: aiohttp.ClientSession) -> AsyncIterator[MatchmakerFactory]:
    """Matchmakers with their own Redis client each (like separate processes); stopped at the end."""
    made: list[tuple[Matchmaker, aioredis.Redis, TicketStore]] = []

    def make(name: str, placer: Placer | None = None, **changes: Any) -> Matchmaker:
        client = redis_client(redis_url)
        store = TicketStore(client)
        metrics = MatchmakerMetrics()
        settings = replace(FAST_MM, matchmaker_id=name, **changes)
        mm = Matchmaker(settings, client, store, placer or node_placer(client, http, metrics), metrics)
        made.append((mm, client, store))
        return mm

    yield make
    for mm, client, store in reversed(made):
        await mm.stop(deadline_s=1.0)
        await store.aclose()
        await client.aclose()
