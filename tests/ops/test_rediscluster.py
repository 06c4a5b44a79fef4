"""The session's Redis Cluster is real (3 masters, a replica each, slots enforced), and
``arena.redisutil.connect`` reaches it through a ``redis+cluster://`` URL with the pool bound."""

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterCrossSlotError, RedisClusterException

from arena.redisutil import connect, is_cluster
from arena.settings import RedisSettings
from ops.rediscluster import LocalRedisCluster


def test_three_masters_with_a_replica_each_all_slots_served(redis_cluster: LocalRedisCluster) -> None:
    assert redis_cluster.url.startswith("redis+cluster://127.0.0.1:")
    roles = []
    for node in redis_cluster.nodes:
        info = redis_cluster.cli(node.port, "CLUSTER", "INFO")
        assert "cluster_state:ok" in info and "cluster_slots_ok:16384" in info, info
        replication = redis_cluster.cli(node.port, "INFO", "replication")
        roles.append("master" if "role:master" in replication else "replica")
    assert sorted(roles) == ["master"] * 3 + ["replica"] * 3


async def test_connect_gives_the_cluster_client_with_the_per_node_bound(
    redis_cluster: LocalRedisCluster,
) -> None:
    settings = RedisSettings(url=redis_cluster.url, max_connections=7)
    assert settings.cluster and not RedisSettings(url="redis://127.0.0.1:6379/0").cluster
    client = connect(settings)
    try:
        assert is_cluster(client) and isinstance(client, RedisCluster)
        assert client.connection_kwargs["max_connections"] == 7
        # Keys spread over the three masters, and every one reads back.
        for i in range(30):
            await client.set(f"k{i}", i)
        assert [int(await client.get(f"k{i}")) for i in range(30)] == list(range(30))
        masters = {client.get_node_from_key(f"k{i}").port for i in range(30)}
        assert len(masters) == 3
        assert redis_cluster.master_of("k0").port == client.get_node_from_key("k0").port
    finally:
        await client.aclose()


async def test_a_script_across_slots_is_refused_and_a_hash_tag_makes_it_one_slot(
    redis_cluster: LocalRedisCluster,
) -> None:
    """What docs/ARCHITECTURE.md "Redis Cluster" asks of every script: its keys share a tag."""
    client = connect(RedisSettings(url=redis_cluster.url))
    script = "redis.call('SET', KEYS[1], 1) redis.call('SET', KEYS[2], 2) return 3"
    try:
        with pytest.raises((RedisClusterException, ClusterCrossSlotError), match="same (key )?slot"):
            await client.eval(script, 2, "race:a:state", "race:b:state")
        assert await client.eval(script, 2, "{race:a}:state", "{race:a}:claim") == 3
    finally:
        await client.aclose()
