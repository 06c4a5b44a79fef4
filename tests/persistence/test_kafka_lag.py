"""Consumer lag of the groups reading our topics, against the noida-db broker: the gauges,
``python -m ops.topics --lag``, and the monitor's clean start and stop."""

from __future__ import annotations

import asyncio
import io

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from arena.settings import SettingsError
from ops.services import KafkaBroker
from ops.topics import TopicSettings, show_lag
from persistence.kafka_lag import LagMonitor, group_lag, lag_by_topic
from persistence.metrics import PersistenceMetrics
from persistence.settings import KafkaSettings
from tests.persistence.helpers import unique, wait_until


async def _produce_and_consume(bootstrap: str, topic: str, group: str, produce: int, consume: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(produce):
            await producer.send_and_wait(topic, b"v", key=b"k%d" % i)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = 0
        async with asyncio.timeout(20):
            while got < consume:
                batches = await consumer.getmany(timeout_ms=300, max_records=consume - got)
                got += sum(len(m) for m in batches.values())
        await consumer.commit()
    finally:
        await consumer.stop()


async def test_lag_is_what_the_group_has_not_committed(kafka_broker: KafkaBroker) -> None:
    topic, group = unique("race-events"), unique("analytics")
    await _produce_and_consume(kafka_broker.bootstrap, topic, group, produce=30, consume=12)
    partitions = await group_lag(kafka_broker.bootstrap, group, 10.0, (topic,))
    assert len(partitions) == 3  # every partition of the topic, committed on or not
    assert lag_by_topic(partitions) == {topic: 18}

    metrics = PersistenceMetrics()
    settings = KafkaSettings(
        bootstrap=kafka_broker.bootstrap, race_topic=topic, lag_groups=(group, unique("idle"))
    )
    assert await LagMonitor(settings, metrics).refresh()
    assert (
        metrics.registry.get_sample_value(
            "arena_persistence_kafka_consumer_lag_messages", {"group": group, "topic": topic}
        )
        == 18
    )
    # A group that never read counts everything as unread.
    idle = settings.lag_groups[1]
    assert (
        metrics.registry.get_sample_value(
            "arena_persistence_kafka_consumer_lag_messages", {"group": idle, "topic": topic}
        )
        == 30
    )

    out = io.StringIO()
    assert await show_lag(TopicSettings(kafka=settings), group, out) == 0
    assert f"total {topic}: 18" in out.getvalue()


async def test_an_unreachable_broker_is_counted_and_the_monitor_stops_cleanly() -> None:
    metrics = PersistenceMetrics()
    settings = KafkaSettings(
        bootstrap="127.0.0.1:1", lag_groups=("g",), lag_interval_s=1.0, publish_timeout_s=1.0
    )
    monitor = LagMonitor(settings, metrics)
    task = monitor.start()
    assert task is not None

    async def failed_once() -> bool:
        return bool(metrics.registry.get_sample_value("arena_persistence_kafka_lag_failures_total"))

    await wait_until(failed_once, 15, "a failed round counted")
    await asyncio.wait_for(monitor.stop(), 6)
    assert task.done() and monitor.task is None


def test_no_groups_means_no_task() -> None:
    assert LagMonitor(KafkaSettings(), PersistenceMetrics()).start() is None


def test_lag_and_player_topic_settings() -> None:
    s = KafkaSettings.from_env(
        {"ARENA_KAFKA_LAG_GROUPS": " analytics, ,profiles ", "ARENA_KAFKA_LAG_INTERVAL_S": "5"}
    )
    assert (s.lag_groups, s.lag_interval_s, s.player_topic) == (
        ("analytics", "profiles"),
        5.0,
        "player-events",
    )
    off = KafkaSettings.from_env({"ARENA_KAFKA_PLAYER_TOPIC": ""})
    assert off.player_topic == "" and TopicSettings(kafka=off).topics == (
        "race-events",
        "tournament-scores",
        "test-results",
    )
    for bad in (
        {"ARENA_KAFKA_LAG_INTERVAL_S": "0"},
        {"ARENA_KAFKA_LAG_GROUPS": ",".join(f"g{i}" for i in range(21))},
        {"ARENA_KAFKA_LAG_GROUPS": "g" * 250},
    ):
        with pytest.raises(SettingsError):
            KafkaSettings.from_env(bad)
