"""Consumer lag of the groups that read our topics, exported as a Prometheus gauge.

Persistence publishes; other services consume (analytics, notifications, a profile service).
Their lag — messages produced but not yet committed by the group — is what an operator alerts
on, and Kafka does not export it by itself. With ``ARENA_KAFKA_LAG_GROUPS`` set (comma-separated
group ids), persistence asks the cluster every ``ARENA_KAFKA_LAG_INTERVAL_S`` (30 s) for each
group's committed offsets (OffsetFetch) and the partitions' end offsets (ListOffsets), and sets
``arena_persistence_kafka_consumer_lag_messages{group,topic}`` to the sum over the group's
partitions of that topic. A partition the group never committed on counts from offset 0 (all of
it is unread). A round that fails is logged and counted
(``arena_persistence_kafka_lag_failures_total``); the gauges keep their last value and
``arena_persistence_kafka_lag_updated_timestamp_seconds`` says how old it is.

``python -m ops.topics --lag GROUP`` prints the same per partition.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from arena.tasks import stop_tasks
from arena.waits import wait_event, within
from persistence.metrics import PersistenceMetrics
from persistence.settings import KafkaSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int  # -1: the group never committed here
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - max(self.committed, 0))


async def group_lag(
    bootstrap: str, group: str, timeout_s: float, topics: tuple[str, ...] = ()
) -> list[PartitionLag]:
    """Lag of ``group`` per partition: the partitions it committed on, and every partition of
    ``topics`` (counted from 0 where it never committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    ends_client = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:  # both closed whatever fails, a half-started client included
        await admin.start()
        await ends_client.start()
        committed = {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
        if topics:
            for meta in await admin.describe_topics(list(topics)):
                if meta.get("error_code", 0) == 0:  # a topic not created yet has no lag
                    for p in meta["partitions"]:
                        committed.setdefault(TopicPartition(meta["topic"], p["partition"]), -1)
        if not committed:
            return []
        ends = await ends_client.end_offsets(list(committed))
    finally:
        await ends_client.stop()
        await admin.close()
    return [
        PartitionLag(tp.topic, tp.partition, committed[tp], ends.get(tp, 0))
        for tp in sorted(committed, key=lambda t: (t.topic, t.partition))
    ]


def lag_by_topic(partitions: list[PartitionLag]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for p in partitions:
        out[p.topic] += p.lag
    return dict(out)


class LagMonitor:
    """Owns the loop that refreshes the lag gauges; started and stopped by the service."""

    def __init__(self, settings: KafkaSettings, metrics: PersistenceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> asyncio.Task[None] | None:
        if not self.settings.lag_groups:
            return None
        self.task = asyncio.create_task(self._run(), name="kafka-lag")
        return self.task

    async def stop(self) -> None:
        await stop_tasks((self.task,), self._stopping)
        self.task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self.refresh()
            await wait_event(self._stopping, self.settings.lag_interval_s)

    async def refresh(self) -> bool:
        """One round over every configured group; False when one of them failed."""
        ok = True
        s = self.settings
        topics = tuple(t for t in (s.race_topic, s.heat_topic, s.test_topic, s.player_topic) if t)
        for group in s.lag_groups:
            try:
                partitions = await within(
                    group_lag(s.bootstrap, group, s.publish_timeout_s, topics), s.publish_timeout_s * 2
                )
            except Exception as exc:  # Kafka down or slow: keep the last values, say so
                ok = False
                self.metrics.kafka_lag_failures.inc()
                log.warning("kafka_lag_failed", group=group, error=repr(exc))
                continue
            for topic, lag in lag_by_topic(partitions).items():
                if topic in topics:  # bounded labels: only the topics we publish
                    self.metrics.kafka_consumer_lag.labels(group, topic).set(lag)
            self.metrics.kafka_lag_updated.labels(group).set_to_current_time()
        return ok
