"""Presence: heartbeats are batched (a few Redis writes, not one per beat) and counted per region."""

import asyncio
import json

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from arena import keys
from arena.clock import now_ms
from arena.redisutil import as_text, is_cluster
from lobby.metrics import LobbyMetrics
from lobby.presence import PresenceBatcher
from tests.lobby.conftest import Api, LobbyFactory

# Run against one Redis and against a Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.redis_cluster


async def command_calls(redis: aioredis.Redis, *names: str) -> dict[str, int]:
    """Calls of each command so far, summed over a cluster's masters."""
    if is_cluster(redis):
        per_node = await redis.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        nodes = list(per_node.values())
    else:
        nodes = [await redis.info("commandstats")]
    return {name: sum(int(n.get(f"cmdstat_{name}", {}).get("calls", 0)) for n in nodes) for name in names}


async def test_heartbeats_are_batched(lobby_factory: LobbyFactory, redis: aioredis.Redis) -> None:
    """60 heartbeats from 3 players -> nothing written per beat; one flush: 3 SETs and 1 ZADD.

    The timer is set far off so the test decides when the flush happens (the next test checks
    the timer itself)."""
    running = await lobby_factory(presence_flush_s=30.0)
    api = running.api
    tokens = [(await api.guest(f"p{i}"))["token"] for i in range(3)]
    before = await command_calls(redis, "set", "zadd")
    replies = await asyncio.gather(
        *(api.call("POST", "/v1/presence", token=tokens[i % 3], body={"region": "eu"}) for i in range(60))
    )
    assert all(r.status == 202 and r.body["accepted"] for r in replies)
    assert replies[0].body["interval_s"] == 120 and replies[0].body["ttl_s"] == 300
    assert await command_calls(redis, "set", "zadd") == before

    assert await running.lobby.presence.flush() == 3
    after = await command_calls(redis, "set", "zadd")
    assert {name: after[name] - before[name] for name in after} == {"set": 3, "zadd": 1}
    metrics = running.lobby.metrics.registry
    assert metrics.get_sample_value("arena_lobby_presence_heartbeats_total") == 60
    assert metrics.get_sample_value("arena_lobby_presence_flushes_total") == 1

    members = await redis.zrange(keys.presence_online("eu"), 0, -1)
    assert len(members) == 3
    one = as_text(members[0])
    value = json.loads(as_text(await redis.get(keys.user_presence(one))))
    assert value["region"] == "eu" and abs(value["seen_at"] - now_ms()) < 5000
    assert 290 <= await redis.ttl(keys.user_presence(one)) <= 300


async def test_the_timer_flushes(lobby_factory: LobbyFactory, redis: aioredis.Redis) -> None:
    running = await lobby_factory(presence_flush_s=0.1)
    session = await running.api.guest()
    (await running.api.call("POST", "/v1/presence", token=session["token"], body={"region": "local"})).ok(202)
    for _ in range(40):
        if await redis.exists(keys.user_presence(session["player_id"])):
            break
        await asyncio.sleep(0.05)
    assert await redis.zscore(keys.presence_online("local"), session["player_id"]) is not None


async def test_online_counts_per_region(lobby_factory: LobbyFactory, redis: aioredis.Redis) -> None:
    running = await lobby_factory(presence_flush_s=0.1)
    api = running.api
    for i, region in enumerate(["eu", "eu", "eu", "local"]):
        token = (await api.guest(f"p{i}"))["token"]
        (await api.call("POST", "/v1/presence", token=token, body={"region": region})).ok(202)
    # A player last seen long ago: counted out, and trimmed away.
    await redis.zadd(keys.presence_online("eu"), {"p-stale": now_ms() - 3_600_000})
    await asyncio.sleep(0.35)
    online = (await api.call("GET", "/v1/presence/online")).ok()
    assert online == {"regions": {"local": 1, "eu": 3}, "total": 4, "ttl_s": 300}
    assert await redis.zscore(keys.presence_online("eu"), "p-stale") is None


async def test_heartbeat_errors(api: Api) -> None:
    token = (await api.guest())["token"]
    reply = await api.call("POST", "/v1/presence", token=token, body={"region": "mars"})
    assert reply.status == 400 and reply.body["error"] == "unknown_region"
    reply = await api.call("POST", "/v1/presence", body={"region": "eu"})
    assert reply.status == 401


async def test_buffer_is_bounded_and_stop_flushes(redis: aioredis.Redis) -> None:
    metrics = LobbyMetrics()
    batcher = PresenceBatcher(redis, metrics, regions=("eu",), ttl_s=60, flush_s=30.0, max_buffer=2)
    await batcher.start()
    assert batcher.beat("a", "eu") and batcher.beat("b", "eu")
    assert not batcher.beat("c", "eu")  # full: a new player's beat is dropped
    assert batcher.beat("a", "eu")  # a buffered player's newer beat still counts
    assert metrics.registry.get_sample_value("arena_lobby_presence_dropped_total") == 1
    await batcher.stop()  # long before the 30 s flush: stop writes what is buffered
    assert await redis.exists(keys.user_presence("a"), keys.user_presence("b")) == 2
    assert await redis.exists(keys.user_presence("c")) == 0


async def test_buffered_gauge_reads_the_buffer(redis: aioredis.Redis) -> None:
    metrics = LobbyMetrics()
    batcher = PresenceBatcher(redis, metrics, regions=("local",), ttl_s=300, flush_s=60, max_buffer=10)
    assert batcher.beat("a", "local") and batcher.beat("b", "local") and batcher.beat("a", "local")
    assert metrics.registry.get_sample_value("arena_lobby_presence_buffered") == 2
    assert await batcher.flush() == 2
    assert metrics.registry.get_sample_value("arena_lobby_presence_buffered") == 0


async def test_a_big_flush_goes_in_slices_and_lets_the_loop_run(redis: aioredis.Redis) -> None:
    """7 players in slices of 3 -> 3 round trips (one ZADD per region of a slice: 2 + 2 + 1), and the loop
    gets control between them: a flush of thousands of players must not hold it (issue 19)."""
    metrics = LobbyMetrics()
    batcher = PresenceBatcher(
        redis, metrics, regions=("eu", "us"), ttl_s=60, flush_s=30.0, max_buffer=100, slice_players=3
    )
    for i in range(7):
        assert batcher.beat(f"s{i}", "eu" if i % 2 else "us")
    before = await command_calls(redis, "set", "zadd")
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    try:
        assert await batcher.flush() == 7
    finally:
        tick.cancel()
    after = await command_calls(redis, "set", "zadd")
    assert {name: after[name] - before[name] for name in after} == {"set": 7, "zadd": 5}
    assert turns >= 3
    assert await redis.zcard(keys.presence_online("eu")) == 3
    assert await redis.zcard(keys.presence_online("us")) == 4
    assert await redis.exists(*(keys.user_presence(f"s{i}") for i in range(7))) == 7
    assert 0 < await redis.ttl(keys.presence_online("eu")) <= 120


async def test_a_flush_after_redis_lost_its_scripts_writes_again(redis: aioredis.Redis) -> None:
    """On one Redis a slice's SETs are one script call; a Redis that lost its scripts (a restart,
    SCRIPT FLUSH) answers NOSCRIPT, and the flush loads the script and writes the slice again."""
    batcher = PresenceBatcher(redis, LobbyMetrics(), regions=("eu",), ttl_s=60, flush_s=30.0, max_buffer=10)
    assert batcher.beat("n1", "eu")
    assert await batcher.flush() == 1
    await redis.script_flush()  # on a cluster: every master's (no script is used there)
    assert batcher.beat("n2", "eu")
    assert await batcher.flush() == 1
    assert await redis.exists(keys.user_presence("n1"), keys.user_presence("n2")) == 2
    assert 0 < await redis.ttl(keys.user_presence("n2")) <= 60
    assert await redis.zcard(keys.presence_online("eu")) == 2
