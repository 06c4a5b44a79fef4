"""Settings from ARENA_* variables: defaults, every override, bad values refused."""

import pytest

from arena.settings import SettingsError
from persistence.settings import PersistenceSettings


def test_defaults() -> None:
    s = PersistenceSettings.from_env({})
    assert s.kafka.race_topic == "race-events" and s.kafka.heat_topic == "tournament-scores"
    assert s.consumer.group == "persistence" and s.consumer.max_deliveries == 5
    assert s.readside.race_types == ("quick", "standard", "marathon")
    assert s.consumer.consumer  # host-pid: unique per process


def test_overrides() -> None:
    s = PersistenceSettings.from_env(
        {
            "ARENA_REDIS_URL": "redis://r:1/2",
            "ARENA_POSTGRES_DSN": "postgresql://u@h/db",
            "ARENA_POSTGRES_POOL_SIZE": "9",
            "ARENA_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
            "ARENA_KAFKA_RACE_TOPIC": "races",
            "ARENA_KAFKA_COMPRESSION": "LZ4",
            "ARENA_PERSIST_CONSUMER": "c7",
            "ARENA_PERSIST_WORKERS": "3",
            "ARENA_PERSIST_BATCH_SIZE": "500",
            "ARENA_PERSIST_CLAIM_IDLE_MS": "1000",
            "ARENA_PERSIST_MAX_DELIVERIES": "2",
            "ARENA_PERSIST_TRIM": "no",
            "ARENA_PERSIST_PORT": "9999",
            "ARENA_LEADERBOARD_RACE_TYPES": "quick, marathon",
            "ARENA_RECENT_KEEP": "20",
        }
    )
    assert (
        s.redis.url == "redis://r:1/2"
        and s.postgres.dsn == "postgresql://u@h/db"
        and s.postgres.pool_size == 9
    )
    assert (
        s.kafka.bootstrap == "k1:9092,k2:9092"
        and s.kafka.race_topic == "races"
        and s.kafka.compression == "lz4"
    )
    c = s.consumer
    assert (c.consumer, c.workers, c.batch_size, c.claim_idle_ms, c.max_deliveries, c.trim) == (
        "c7",
        3,
        500,
        1000,
        2,
        False,
    )
    assert s.port == 9999 and s.readside.race_types == ("quick", "marathon") and s.readside.recent_keep == 20


@pytest.mark.parametrize(
    ("name", "value"), [("ARENA_KAFKA_COMPRESSION", "brotli"), ("ARENA_PERSIST_BATCH_SIZE", "lots")]
)
def test_bad_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        PersistenceSettings.from_env({name: value})
