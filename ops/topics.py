"""Create the Kafka topics persistence publishes to, with their partitions and replication.

    python -m ops.topics                # create what is missing; report what exists
    python -m ops.topics --check        # create nothing: exit 1 if a topic is missing
    python -m ops.topics --lag GROUP    # a consumer group's lag on our topics, per partition

A real cluster must not rely on the broker's auto-creation (one partition, the broker's default
replication): the topics are created once per cluster, by this command (the prod overlay runs it
as a Kubernetes Job, ``deploy/k8s``). A topic that already exists is left alone (partitions are
never changed here: more partitions would move keys, see docs/DEPLOY.md) and reported.

Settings (``TopicSettings``), besides ``ARENA_KAFKA_BOOTSTRAP`` and the topic names
(``ARENA_KAFKA_RACE_TOPIC``, ``ARENA_KAFKA_HEAT_TOPIC``,
``ARENA_KAFKA_TEST_TOPIC``) of ``persistence.settings.KafkaSettings``:

- ``ARENA_KAFKA_PARTITIONS`` (12): partitions of each topic;
- ``ARENA_KAFKA_REPLICATION_FACTOR`` (1): copies of each partition (prod: 3);
- ``ARENA_KAFKA_MIN_INSYNC_REPLICAS`` (1): the copies an ``acks=all`` write waits for (prod: 2,
  so one broker may be down and no acknowledged message lives on a single disk);
- ``ARENA_KAFKA_ADMIN_TIMEOUT_S`` (30): the whole command's deadline.

Exit 0 when every topic exists (created now or before), 1 when one could not be created (or is
missing with ``--check``), 2 on bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from arena.logs import configure_logging
from arena.settings import LogSettings, SettingsError, env_float, env_int, environ
from arena.startup import load_settings
from arena.waits import within
from persistence.kafka_lag import group_lag, lag_by_topic
from persistence.settings import KafkaSettings

log = structlog.get_logger(__name__)

EXIT_FAILED = 1


@dataclass(frozen=True, slots=True)
class TopicSettings:
    partitions: int = 12  # ARENA_KAFKA_PARTITIONS: partitions per topic (1 to 10,000)
    replication_factor: int = 1  # ARENA_KAFKA_REPLICATION_FACTOR: copies of each partition (1 to 16)
    # ARENA_KAFKA_MIN_INSYNC_REPLICAS: copies an acks=all write waits for (1 to the replication factor)
    min_insync_replicas: int = 1
    admin_timeout_s: float = 30.0  # ARENA_KAFKA_ADMIN_TIMEOUT_S: the command's deadline (1 to 600)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    log: LogSettings = field(default_factory=LogSettings)

    def __post_init__(self) -> None:
        if not 1 <= self.partitions <= 10_000:
            raise SettingsError("ARENA_KAFKA_PARTITIONS must be between 1 and 10000")
        if not 1 <= self.replication_factor <= 16:
            raise SettingsError("ARENA_KAFKA_REPLICATION_FACTOR must be between 1 and 16")
        if not 1 <= self.min_insync_replicas <= self.replication_factor:
            raise SettingsError(
                "ARENA_KAFKA_MIN_INSYNC_REPLICAS must be between 1 and ARENA_KAFKA_REPLICATION_FACTOR"
            )
        if not 1 <= self.admin_timeout_s <= 600:
            raise SettingsError("ARENA_KAFKA_ADMIN_TIMEOUT_S must be between 1 and 600")

    @property
    def topics(self) -> tuple[str, ...]:
        k = self.kafka
        return tuple(t for t in (k.race_topic, k.heat_topic, k.test_topic, k.player_topic) if t)

    def new_topics(self) -> list[NewTopic]:
        configs = {"min.insync.replicas": str(self.min_insync_replicas)}
        return [
            NewTopic(name, self.partitions, self.replication_factor, topic_configs=configs)
            for name in self.topics
        ]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TopicSettings:
        d = cls()
        return cls(
            partitions=env_int(env, "ARENA_KAFKA_PARTITIONS", d.partitions),
            replication_factor=env_int(env, "ARENA_KAFKA_REPLICATION_FACTOR", d.replication_factor),
            min_insync_replicas=env_int(env, "ARENA_KAFKA_MIN_INSYNC_REPLICAS", d.min_insync_replicas),
            admin_timeout_s=env_float(env, "ARENA_KAFKA_ADMIN_TIMEOUT_S", d.admin_timeout_s),
            kafka=KafkaSettings.from_env(env),
            log=LogSettings.from_env(env),
        )


@dataclass(frozen=True, slots=True)
class TopicReport:
    created: tuple[str, ...]
    existing: tuple[str, ...]
    failed: dict[str, str]  # topic -> the broker's error


async def ensure_topics(settings: TopicSettings, *, create: bool = True) -> TopicReport:
    """Create the topics that are missing (unless ``create`` is false); report each one."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka.bootstrap,
        request_timeout_ms=int(settings.admin_timeout_s * 1000),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics()) & set(settings.topics)
        missing = [t for t in settings.new_topics() if t.name not in existing]
        failed: dict[str, str] = {}
        created: list[str] = []
        if not create:
            failed = {t.name: "missing" for t in missing}
        elif missing:
            response = await admin.create_topics(missing, timeout_ms=int(settings.admin_timeout_s * 1000))
            for name, code, *rest in response.topic_errors:
                error = for_code(code)
                if code == 0:
                    created.append(name)
                elif error is TopicAlreadyExistsError:  # another run created it meanwhile
                    existing.add(name)
                else:
                    message = rest[0] if rest and rest[0] else error.__name__
                    failed[name] = str(message)
    finally:
        await admin.close()
    return TopicReport(tuple(created), tuple(sorted(existing)), failed)


async def run(settings: TopicSettings, *, create: bool, out: TextIO) -> int:
    try:
        report = await within(ensure_topics(settings, create=create), settings.admin_timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        log.error("kafka_topics_failed", bootstrap=settings.kafka.bootstrap, error=repr(exc))
        return EXIT_FAILED
    for name in report.created:
        log.info(
            "kafka_topic_created",
            topic=name,
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            min_insync_replicas=settings.min_insync_replicas,
        )
        print(f"created {name}", file=out)
    for name in report.existing:
        print(f"exists  {name} (left as it is)", file=out)
    for name, error in report.failed.items():
        log.error("kafka_topic_not_created", topic=name, error=error)
        print(f"FAILED  {name}: {error}", file=out)
    return EXIT_FAILED if report.failed else 0


async def show_lag(settings: TopicSettings, group: str, out: TextIO) -> int:
    """Print ``group``'s lag on our topics per partition (persistence/kafka_lag.py exports the sums)."""
    try:
        partitions = await within(
            group_lag(settings.kafka.bootstrap, group, settings.admin_timeout_s, settings.topics),
            settings.admin_timeout_s,
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        log.error("kafka_lag_failed", group=group, error=repr(exc))
        return EXIT_FAILED
    print(f"{'topic':<24} {'partition':>9} {'committed':>10} {'end':>10} {'lag':>8}", file=out)
    for p in partitions:
        committed = "-" if p.committed < 0 else str(p.committed)
        print(f"{p.topic:<24} {p.partition:>9} {committed:>10} {p.end:>10} {p.lag:>8}", file=out)
    for topic, lag in lag_by_topic(partitions).items():
        print(f"total {topic}: {lag}", file=out)
    return 0


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create the Kafka topics (partitions, replication)")
    parser.add_argument("--check", action="store_true", help="create nothing; exit 1 if a topic is missing")
    parser.add_argument("--lag", metavar="GROUP", help="print a consumer group's lag on our topics")
    args = parser.parse_args(argv)
    settings = load_settings(TopicSettings.from_env, environ() if env is None else env)
    configure_logging(settings.log)
    if args.lag:
        return asyncio.run(show_lag(settings, args.lag, sys.stdout))
    return asyncio.run(run(settings, create=not args.check, out=sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
