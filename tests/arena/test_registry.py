"""The node registry against a real Redis: liveness, regions, stale clean-up."""

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.clock import now_ms
from arena.registry import NodeInfo, NodeRegistry
from tests.conftest import redis_client

# Run against one Redis and against a Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.redis_cluster


def info(node_id: str, region: str = "eu", beat: int | None = None, state: str = "ready") -> NodeInfo:
    return NodeInfo(
        node_id=node_id,
        url=f"ws://127.0.0.1/{node_id}",
        http_url="http://127.0.0.1:1",
        admin_url="http://127.0.0.1:2",
        region=region,
        capacity=100,
        players=10,
        races=2,
        state=state,
        heartbeat_at=now_ms() if beat is None else beat,
    )


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


async def test_live_nodes_by_region(redis: aioredis.Redis) -> None:
    registry = NodeRegistry(redis, stale_after_ms=3000)
    await registry.heartbeat(info("a", "eu"))
    await registry.heartbeat(info("b", "us", state="draining"))
    assert {n.node_id for n in await registry.live_nodes()} == {"a", "b"}
    eu = await registry.live_nodes("eu")
    assert [n.node_id for n in eu] == ["a"] and eu[0].accepting and eu[0].free_seats == 90
    us = await registry.live_nodes("us")
    assert not us[0].accepting
    assert (await registry.get("a")) == eu[0]


async def test_stale_nodes_drop_out_and_are_cleaned(redis: aioredis.Redis) -> None:
    registry = NodeRegistry(redis, stale_after_ms=3000)
    await registry.heartbeat(info("old", beat=now_ms() - 10_000))
    await registry.heartbeat(info("new"))
    assert [n.node_id for n in await registry.live_nodes()] == ["new"]
    assert await redis.zscore(keys.NODES_ALIVE, "old") is None


async def test_remove(redis: aioredis.Redis) -> None:
    registry = NodeRegistry(redis)
    await registry.heartbeat(info("a"))
    await registry.remove("a")
    assert await registry.get("a") is None and await registry.live_nodes() == []


async def test_the_admin_url_is_published_and_old_entries_fall_back(redis: aioredis.Redis) -> None:
    registry = NodeRegistry(redis, stale_after_ms=3000)
    await registry.heartbeat(info("a"))
    got = await registry.get("a")
    assert got is not None and got.admin_url == "http://127.0.0.1:2"
    # A node from before the admin listener has no admin_url: its /admin/* was on http_url.
    await redis.hdel(keys.node_info("a"), "admin_url")
    old = await registry.get("a")
    assert old is not None and old.admin_url == old.http_url == "http://127.0.0.1:1"
