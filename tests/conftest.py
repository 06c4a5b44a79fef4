"""Shared fixtures: real Redis, PostgreSQL and Kafka-protocol servers on loopback ports.

Each server starts the first time a test asks for it and stops at the end of
the session; tests that never ask start nothing.

A test marked ``redis_cluster`` runs twice: against one Redis and against a real Redis Cluster
(``redis_cluster``: 3 masters with a replica each), its ``redis_url`` then a ``redis+cluster://``
URL that every process's ``arena.redisutil.connect`` turns into redis-py's cluster client.
"""

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web

from arena import keys
from arena.ids import NodeId
from arena.redisutil import connect
from arena.results import MatchRecord
from arena.settings import RedisSettings, SecretSettings
from gameserver.app import NODE_KEY, build_app
from gameserver.listener import NodeSite
from gameserver.node import Node
from gameserver.settings import LimitSettings, NodeSettings, RaceSettings
from ops.rediscluster import LocalRedisCluster
from ops.services import KafkaBroker, PostgresServer, RedisServer, free_port

# The processes tests start (python -m gameserver, lobby, ...) inherit this: their short test
# secrets are development secrets. Tests of production mode set ARENA_ENV=production themselves.
os.environ["ARENA_ENV"] = "development"

REDIS_MODES = ("single", "cluster")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "redis_cluster: run the test against one Redis and against a Redis Cluster (redis_url)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("redis_cluster") and "redis_mode" in metafunc.fixturenames:
        metafunc.parametrize("redis_mode", REDIS_MODES)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A real Redis Cluster on loopback: 3 masters, a replica each (ops/rediscluster.py)."""
    with LocalRedisCluster() as cluster:
        yield cluster


@pytest.fixture
def redis_mode() -> str:
    """Single Redis ("single") unless the test is marked redis_cluster: then both, by parametrization."""
    return "single"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # fsync off: the data is thrown away, and it makes DDL-heavy tests faster.
    with PostgresServer(fsync=False) as server:
        yield server


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    with KafkaBroker() as server:
        yield server


@pytest.fixture
def redis_url(redis_mode: str, request: pytest.FixtureRequest) -> str:
    """URL of the session's Redis (or Redis Cluster, see redis_mode), emptied before this test."""
    if redis_mode == "cluster":
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        flush_cluster(cluster.url)
        return cluster.url
    server: RedisServer = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return server.url


def flush_cluster(url: str) -> None:
    """FLUSHALL on every master (replicas follow)."""
    client = redis.RedisCluster.from_url(url.replace("+cluster://", "://", 1))
    try:
        client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    finally:
        client.close()


def redis_client(url: str) -> aioredis.Redis:
    """A test's own client for ``url``, single or cluster (close it with ``aclose()``)."""
    return connect(RedisSettings(url=url))


# ---- gameserver nodes ----------------------------------------------------------

ADMIN = "test-admin-token"
FAST_RACE = RaceSettings(countdown_s=1.0, wait_timeout_s=5.0, grace_s=3.0, tick_hz=20.0, ping_interval_s=1.0)


@dataclass
class RunningNode:
    settings: NodeSettings
    runner: web.AppRunner

    @property
    def http_url(self) -> str:
        """The players' listener (/ws, /healthz, /readyz)."""
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def admin_url(self) -> str:
        """The admin listener (/admin/*, /metrics, /healthz, /readyz): the port it bound."""
        return self.node.settings.admin_url

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
                f"{self.admin_url}/admin/races", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
            )
            data: dict[str, Any] = await resp.json()
            assert resp.status == 201, data
            return data


NodeFactory = Callable[..., Awaitable[RunningNode]]


@pytest.fixture
async def node_factory(redis_url: str) -> AsyncIterator[NodeFactory]:
    runners: list[web.AppRunner] = []

    async def start(
        node_id: str = "node-a",
        race: RaceSettings = FAST_RACE,
        limits: LimitSettings | None = None,
        region: str = "local",
        capacity: int = 10000,
    ) -> RunningNode:
        port = free_port()
        settings = NodeSettings(
            node_id=NodeId(node_id),
            port=port,
            admin_port=0,  # any free port: RunningNode.admin_url
            region=region,
            capacity=capacity,
            redis=RedisSettings(url=redis_url),
            secrets=SecretSettings(token_secret=b"test-secret-0123456789", admin_token=ADMIN),
            race=race,
            limits=limits or LimitSettings(),
        )
        runner = web.AppRunner(build_app(settings), handle_signals=False)
        await runner.setup()
        await NodeSite(runner, "127.0.0.1", port).start()
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


async def read_outbox(redis_url: str) -> list[MatchRecord]:
    redis = redis_client(redis_url)
    try:
        entries = await redis.xrange(keys.OUTBOX_STREAM)
    finally:
        await redis.aclose()
    return [MatchRecord.from_bytes(fields[b"data"]) for _, fields in entries]
