"""A Redis Cluster master dies under load: its replica takes over and no finished race is lost.

A node's results writer (``OutboxBatcher``, with ``wait_replicas=1`` as on a cluster) appends races
to the outbox while persistence consumes them into PostgreSQL; the master holding ``{outbox}`` is
killed with SIGKILL mid-stream. Its replica is promoted (cluster-node-timeout 1 s), both clients
find it (redis-py's cluster client refreshes its slot map on the connection errors), and every race
the writer had confirmed, before the kill or after it, is in the stream once and stored once: a
batch is confirmed only once a replica holds it (Redis ``WAIT``), so the dead master took none
with it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from arena import keys
from arena.outbox import OutboxBatcher, OutboxMetrics, OutboxSettings, OutboxWriter, Written
from arena.results import MatchRecord
from ops.rediscluster import LocalRedisCluster
from ops.services import KafkaBroker
from tests.conftest import redis_client
from tests.persistence.conftest import ServiceFactory
from tests.persistence.helpers import Env, db_count, matches, unique, wait_until

RACES = 240
KILL_AFTER = 80  # appended before the kill
PACE_S = 0.01  # one race submitted every 10 ms: ~2.4 s of load, the kill in its first third


@pytest.fixture
def failover_cluster() -> Iterator[LocalRedisCluster]:
    """A cluster of its own: the session's must keep every master."""
    with LocalRedisCluster(node_timeout_ms=1000) as cluster:
        yield cluster


@pytest.mark.timeout(60)
async def test_a_killed_master_loses_no_race_the_writer_confirmed(
    failover_cluster: LocalRedisCluster, pg_dsn: str, kafka_broker: KafkaBroker, start_service: ServiceFactory
) -> None:
    cluster = failover_cluster
    env = Env(
        cluster.url,
        pg_dsn,
        kafka_broker.bootstrap,
        unique("race-events"),
        unique("tournament-scores"),
        unique("players"),
    )
    await start_service(env.settings())
    redis = redis_client(cluster.url)
    acked_at: dict[str, float] = {}  # race id -> when the writer had Redis' confirmation

    unbuildable: list[str] = []

    async def on_written(written: list[Written[MatchRecord, MatchRecord]]) -> None:
        now = time.monotonic()
        for w in written:
            acked_at.setdefault(w.record.match_id, now)

    batcher: OutboxBatcher[MatchRecord, MatchRecord] = OutboxBatcher(
        OutboxWriter(redis),
        record_of=lambda race: race,
        on_written=on_written,
        on_unbuildable=lambda race, exc: unbuildable.append(race.match_id),
        settings=OutboxSettings(batch_max=20, wait_replicas=1, wait_timeout_ms=2000),
        metrics=OutboxMetrics.create(CollectorRegistry(), "test_failover"),
    )
    races = matches(RACES, seed=17)
    master = cluster.master_of(keys.OUTBOX_STREAM)
    batcher.start()
    killed_at = 0.0
    try:
        for i, race in enumerate(races):
            if i == KILL_AFTER:
                await asyncio.to_thread(cluster.kill, master)
                killed_at = time.monotonic()
            batcher.submit(race)
            await asyncio.sleep(PACE_S)
        assert await batcher.wait_empty(30.0), "the writer did not get through the failover"
    finally:
        assert await batcher.stop() == [] and unbuildable == []
    promoted = cluster.master_of(keys.OUTBOX_STREAM)
    assert promoted.port != master.port and promoted.running

    after = {race_id for race_id, at in acked_at.items() if at > killed_at}
    gap_s = min(at for at in acked_at.values() if at > killed_at) - killed_at
    print(f"failover: the first append after the kill confirmed {gap_s:.2f} s after it")  # pytest -s
    assert gap_s < 10.0  # node timeout 1 s, then the vote; the client's retries span ~8 s
    assert len(after) >= RACES - KILL_AFTER - 20, len(after)  # a batch may have been in flight
    assert set(acked_at) == {r.match_id for r in races}  # every race confirmed in the end
    # Persistence trims what it acknowledged, so the stream shows only what is left: never twice.
    entries = await redis.xrange(keys.OUTBOX_STREAM)
    in_stream = Counter(fields[b"id"].decode() for _, fields in entries)
    assert all(n == 1 for n in in_stream.values()), "a race appended twice"

    async def all_stored() -> bool:
        stored = await db_count(pg_dsn, "SELECT count(*) FROM races WHERE race_id = ANY($1)", list(acked_at))
        return stored == len(acked_at)

    await wait_until(all_stored, 30.0, "every confirmed race stored by persistence")
    await redis.aclose()
