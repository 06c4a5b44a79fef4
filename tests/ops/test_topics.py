"""ops.topics against the noida-db broker (tests/conftest.py): topics created with their
partitions and a topic-level min.insync.replicas, a second run leaves them, a replication factor
the cluster cannot hold is reported, not raised. Settings are checked without a broker."""

import io
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from arena.settings import SettingsError
from ops.services import KafkaBroker, free_port
from ops.topics import EXIT_FAILED, TopicSettings, ensure_topics, main, run
from persistence.settings import KafkaSettings

TOPIC_CONFIG_SOURCE = 1  # DescribeConfigs: the value was set on the topic itself (not a default)


def settings(broker: KafkaBroker, suffix: str, **kw: int) -> TopicSettings:
    kafka = KafkaSettings(
        bootstrap=broker.bootstrap,
        race_topic=f"races-{suffix}",
        heat_topic=f"heats-{suffix}",
        player_topic=f"players-{suffix}",
        test_topic=f"tests-{suffix}",
    )
    return TopicSettings(kafka=kafka, admin_timeout_s=20.0, **kw)


async def describe(broker: KafkaBroker, topic: str) -> tuple[int, dict[str, tuple[str, int]]]:
    """(partitions, {config name: (value, source)}) as the broker reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        [meta] = await admin.describe_topics([topic])
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    [resource] = response.resources
    configs = {entry[0]: (entry[1], entry[3]) for entry in resource[4]}
    return len(meta["partitions"]), configs


async def test_creates_topics_with_partitions_and_min_insync(kafka_broker: KafkaBroker) -> None:
    s = settings(kafka_broker, "create", partitions=6, replication_factor=1, min_insync_replicas=1)
    report = await ensure_topics(s)
    assert sorted(report.created) == sorted(s.topics) and not report.failed and not report.existing
    for topic in s.topics:
        partitions, configs = await describe(kafka_broker, topic)
        assert partitions == 6
        assert configs["min.insync.replicas"] == ("1", TOPIC_CONFIG_SOURCE)

    again = await ensure_topics(s)  # idempotent: nothing created, nothing failed
    assert again.created == () and sorted(again.existing) == sorted(s.topics) and not again.failed


async def test_check_reports_missing_topics(kafka_broker: KafkaBroker) -> None:
    s = settings(kafka_broker, "check")
    report = await ensure_topics(s, create=False)
    assert set(report.failed) == set(s.topics) and report.created == ()
    assert await run(s, create=False, out=io.StringIO()) == EXIT_FAILED


async def test_unreachable_replication_is_reported(kafka_broker: KafkaBroker) -> None:
    # One broker: a replication factor of 3 (the prod overlay's) cannot be placed; exit 1, named.
    s = settings(kafka_broker, "rf3", partitions=2, replication_factor=3, min_insync_replicas=2)
    out = io.StringIO()
    assert await run(s, create=True, out=out) == EXIT_FAILED
    assert out.getvalue().count("FAILED") == len(s.topics) == 4 and "replicat" in out.getvalue()


def test_settings_from_env_and_ranges() -> None:
    env = {
        "ARENA_KAFKA_PARTITIONS": "24",
        "ARENA_KAFKA_REPLICATION_FACTOR": "3",
        "ARENA_KAFKA_MIN_INSYNC_REPLICAS": "2",
        "ARENA_KAFKA_RACE_TOPIC": "r",
        "ARENA_KAFKA_TEST_TOPIC": "t",
    }
    s = TopicSettings.from_env(env)
    assert (s.partitions, s.replication_factor, s.min_insync_replicas) == (24, 3, 2)
    [race, _, tests, players] = s.new_topics()
    assert players.name == "player-events"
    assert race.name == "r" and race.topic_configs == {"min.insync.replicas": "2"}
    assert tests.name == "t" and tests.topic_configs == {"min.insync.replicas": "2"}
    for bad in (
        {"ARENA_KAFKA_PARTITIONS": "0"},
        {"ARENA_KAFKA_REPLICATION_FACTOR": "17"},
        {"ARENA_KAFKA_REPLICATION_FACTOR": "2", "ARENA_KAFKA_MIN_INSYNC_REPLICAS": "3"},
        {"ARENA_KAFKA_MIN_INSYNC_REPLICAS": "0"},
        {"ARENA_KAFKA_PARTITIONS": "many"},
    ):
        with pytest.raises(SettingsError):
            TopicSettings.from_env(bad)


def test_main_exits_2_on_bad_settings() -> None:
    with pytest.raises(SystemExit) as exc:
        main([], env={"ARENA_KAFKA_PARTITIONS": "-1"})
    assert exc.value.code == 2


async def test_unreachable_broker_is_exit_1_within_the_deadline() -> None:
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}")  # nothing listens there
    s = TopicSettings(kafka=kafka, admin_timeout_s=3.0)
    started = time.monotonic()
    assert await run(s, create=True, out=io.StringIO()) == EXIT_FAILED
    assert time.monotonic() - started < 15  # bounded by the deadline, generous on a shared machine
