"""The outbox batcher: many matches per round trip, each once; what Redis refuses is tried
again alone; what cannot be built or written is handed back, never dropped silently."""

import asyncio
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis.exceptions import ResponseError

from arena import keys
from arena.outbox import OutboxBatcher, OutboxEntry, OutboxMetrics, OutboxSettings, OutboxWriter, Written
from arena.redisutil import is_cluster
from arena.settings import SettingsError
from ops.services import free_port
from tests.conftest import redis_client

# Run against one Redis and against a Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.redis_cluster


@dataclass(frozen=True)
class Rec:
    match_id: str
    kind: str = "race"

    def to_bytes(self) -> bytes:
        return self.match_id.encode()


class Harness:
    def __init__(self, redis: aioredis.Redis, record_of: object = None, **settings: object) -> None:
        self.registry = CollectorRegistry()
        self.writer = OutboxWriter(redis)
        self.handed: list[list[tuple[str, bool]]] = []
        self.unbuildable: list[str] = []
        self.batcher: OutboxBatcher[str, Rec] = OutboxBatcher(
            self.writer,
            record_of=record_of or Rec,  # type: ignore[arg-type]
            on_written=self.on_written,
            on_unbuildable=lambda item, exc: self.unbuildable.append(item),
            settings=OutboxSettings(**settings),  # type: ignore[arg-type]
            metrics=OutboxMetrics.create(self.registry, "test"),
        )

    async def on_written(self, written: list[Written[str, Rec]]) -> None:
        self.handed.append([(w.item, w.appended) for w in written])

    def metric(self, name: str) -> float | None:
        return self.registry.get_sample_value(name)


async def stream_ids(redis: aioredis.Redis) -> list[str]:
    return [fields[b"id"].decode() for _, fields in await redis.xrange(keys.OUTBOX_STREAM)]


async def test_batches_of_at_most_batch_max_in_order_each_once(redis_url: str) -> None:
    redis = redis_client(redis_url)
    h = Harness(redis, batch_max=10)
    for i in range(25):  # queued before the task runs: batches of 10, 10, 5
        h.batcher.submit(f"m{i:02}")
    h.batcher.submit("m00")  # the same match again: appended once, the second time "already there"
    assert h.batcher.backlog == 26
    h.batcher.start()
    assert await h.batcher.wait_empty(5)
    assert [len(b) for b in h.handed] == [10, 10, 6]
    handed = [pair for batch in h.handed for pair in batch]
    assert handed == [(f"m{i:02}", True) for i in range(25)] + [("m00", False)]
    assert await stream_ids(redis) == [f"m{i:02}" for i in range(25)]
    assert h.metric("test_outbox_batch_size_count") == 3 and h.metric("test_outbox_batch_size_sum") == 26
    assert h.metric("test_outbox_backlog") == 0 and h.metric("test_outbox_retries_total") == 0
    assert await h.batcher.stop() == []
    await redis.aclose()


async def test_an_entry_redis_refuses_is_tried_again_alone(redis_url: str) -> None:
    redis = redis_client(redis_url)
    h = Harness(redis, retry_cap_s=0.1)
    real = h.writer.append_many
    refused = True

    async def refuse_one(entries: list[OutboxEntry]) -> list[bool | Exception]:
        nonlocal refused
        replies = await real([e for e in entries if not (refused and e.match_id == "b")])
        if refused:
            refused = False
            return [*replies[:1], ResponseError("OOM command not allowed"), *replies[1:]]
        return replies

    h.writer.append_many = refuse_one  # type: ignore[method-assign]
    for item in "abc":
        h.batcher.submit(item)
    h.batcher.start()
    assert await h.batcher.wait_empty(5)
    assert h.handed == [[("a", True), ("c", True)], [("b", True)]]  # the others did not wait
    assert sorted(await stream_ids(redis)) == ["a", "b", "c"]
    assert h.metric("test_outbox_retries_total") == 1
    await h.batcher.stop()
    await redis.aclose()


async def test_a_record_that_cannot_be_built_is_handed_back_and_the_rest_goes_on(redis_url: str) -> None:
    redis = redis_client(redis_url)

    def record_of(item: str) -> Rec:
        if item == "bad":
            raise ValueError("cannot encode")
        return Rec(item)

    h = Harness(redis, record_of=record_of)
    for item in ("a", "bad", "c"):
        h.batcher.submit(item)
    h.batcher.start()
    assert await h.batcher.wait_empty(5)
    assert h.unbuildable == ["bad"] and h.handed == [[("a", True), ("c", True)]]
    await h.batcher.stop()
    await redis.aclose()


async def test_stop_hands_back_what_redis_never_confirmed() -> None:
    redis = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens
    h = Harness(redis, retry_cap_s=0.1)
    h.batcher.start()
    for item in ("a", "b", "c"):
        h.batcher.submit(item)
    assert not await h.batcher.wait_empty(0.5)
    retries = h.metric("test_outbox_retries_total")
    assert retries is not None and 2 <= retries <= 10  # capped backoff: a few tries, no storm
    assert sorted(await h.batcher.stop()) == ["a", "b", "c"]
    assert h.handed == [] and h.batcher.task is not None and h.batcher.task.done()
    assert h.metric("test_outbox_backlog") == 0
    await redis.aclose()


async def test_stop_of_an_idle_batcher_ends_its_task_at_once(redis_url: str) -> None:
    redis = redis_client(redis_url)
    h = Harness(redis)
    task = h.batcher.start()
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(h.batcher.stop(), 1) == [] and task.done()
    await redis.aclose()


async def test_a_batch_no_replica_holds_in_time_is_counted_not_held_forever(redis_url: str) -> None:
    """A single Redis has no replica: WAIT answers 0 after its timeout, the batch is confirmed
    all the same and counted as under-replicated. On the cluster each master's replica holds the
    batch: nothing counted."""
    redis = redis_client(redis_url)
    h = Harness(redis, batch_max=10, wait_replicas=1, wait_timeout_ms=50)
    assert await h.writer.wait_replicated(0, 10) == 0  # the command itself, on a single Redis
    for i in range(12):
        h.batcher.submit(f"w{i:02}")
    h.batcher.start()
    assert await h.batcher.wait_empty(5)
    assert [len(b) for b in h.handed] == [10, 2] and await stream_ids(redis) == [
        f"w{i:02}" for i in range(12)
    ]
    assert h.metric("test_outbox_under_replicated_total") == (0 if is_cluster(redis) else 2)
    assert await h.batcher.stop() == []
    await redis.aclose()


def test_wait_settings_are_bounded() -> None:
    s = OutboxSettings.from_env({"ARENA_OUTBOX_WAIT_REPLICAS": "1", "ARENA_OUTBOX_WAIT_TIMEOUT_MS": "250"})
    assert (s.wait_replicas, s.wait_timeout_ms) == (1, 250) and OutboxSettings().wait_replicas == 0
    for env in ({"ARENA_OUTBOX_WAIT_REPLICAS": "6"}, {"ARENA_OUTBOX_WAIT_TIMEOUT_MS": "0"}):
        with pytest.raises(SettingsError):
            OutboxSettings.from_env(env)
