"""Persistence settings: one frozen section per concern, read from ``ARENA_*`` variables.

Every field names its environment variable in the comment beside it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from arena.settings import LogSettings, RedisSettings, SettingsError, env_bool, env_float, env_int, env_str


def _default_consumer() -> str:
    # Unique per process: a restarted process is a new consumer, and the entries its
    # predecessor left pending are claimed with XAUTOCLAIM once idle long enough.
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    dsn: str = "postgresql://postgres@127.0.0.1:5432/typogram"  # ARENA_POSTGRES_DSN
    pool_size: int = 4  # ARENA_POSTGRES_POOL_SIZE: most connections the pool opens
    command_timeout_s: float = 30.0  # ARENA_POSTGRES_COMMAND_TIMEOUT_S: one statement, at most

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PostgresSettings:
        d = cls()
        return cls(
            dsn=env_str(env, "ARENA_POSTGRES_DSN", d.dsn),
            pool_size=env_int(env, "ARENA_POSTGRES_POOL_SIZE", d.pool_size),
            command_timeout_s=env_float(env, "ARENA_POSTGRES_COMMAND_TIMEOUT_S", d.command_timeout_s),
        )


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap: str = "127.0.0.1:9092"  # ARENA_KAFKA_BOOTSTRAP: comma-separated host:port list
    race_topic: str = "race-events"  # ARENA_KAFKA_RACE_TOPIC: finished races (kind "race")
    heat_topic: str = "tournament-scores"  # ARENA_KAFKA_HEAT_TOPIC: finished tournament heats
    # ARENA_KAFKA_PLAYER_TOPIC: one event per player per record, keyed by player id ("": off)
    player_topic: str = "player-events"
    test_topic: str = "test-results"  # ARENA_KAFKA_TEST_TOPIC: typing tests' results (seed 002's name)
    linger_ms: int = 5  # ARENA_KAFKA_LINGER_MS: producer batching delay
    compression: str = "none"  # ARENA_KAFKA_COMPRESSION: none | gzip | snappy | lz4 | zstd
    publish_timeout_s: float = 10.0  # ARENA_KAFKA_PUBLISH_TIMEOUT_S: a batch's acks, at most
    # ARENA_KAFKA_LAG_GROUPS: comma-separated consumer groups whose lag is exported (persistence/kafka_lag.py)
    lag_groups: tuple[str, ...] = ()
    lag_interval_s: float = 30.0  # ARENA_KAFKA_LAG_INTERVAL_S: how often (1 to 3600)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSettings:
        d = cls()
        compression = env_str(env, "ARENA_KAFKA_COMPRESSION", d.compression).lower()
        if compression not in ("none", "gzip", "snappy", "lz4", "zstd"):
            raise SettingsError(
                f"ARENA_KAFKA_COMPRESSION must be none|gzip|snappy|lz4|zstd, got {compression!r}"
            )
        return cls(
            bootstrap=env_str(env, "ARENA_KAFKA_BOOTSTRAP", d.bootstrap),
            race_topic=env_str(env, "ARENA_KAFKA_RACE_TOPIC", d.race_topic),
            heat_topic=env_str(env, "ARENA_KAFKA_HEAT_TOPIC", d.heat_topic),
            player_topic=env_str(env, "ARENA_KAFKA_PLAYER_TOPIC", d.player_topic),
            test_topic=env_str(env, "ARENA_KAFKA_TEST_TOPIC", d.test_topic),
            linger_ms=env_int(env, "ARENA_KAFKA_LINGER_MS", d.linger_ms),
            compression=compression,
            publish_timeout_s=env_float(env, "ARENA_KAFKA_PUBLISH_TIMEOUT_S", d.publish_timeout_s),
            lag_groups=_groups(env_str(env, "ARENA_KAFKA_LAG_GROUPS", "")),
            lag_interval_s=env_float(env, "ARENA_KAFKA_LAG_INTERVAL_S", d.lag_interval_s),
        )

    def __post_init__(self) -> None:
        if not 1.0 <= self.lag_interval_s <= 3600.0:
            raise SettingsError("ARENA_KAFKA_LAG_INTERVAL_S must be between 1 and 3600")
        if len(self.lag_groups) > MAX_LAG_GROUPS:
            raise SettingsError(f"ARENA_KAFKA_LAG_GROUPS: at most {MAX_LAG_GROUPS} groups")


MAX_LAG_GROUPS = 20  # each is a label value of the lag gauges


def _groups(raw: str) -> tuple[str, ...]:
    groups = tuple(g.strip() for g in raw.split(",") if g.strip())
    if any(len(g) > 249 for g in groups):  # Kafka's limit for a group id
        raise SettingsError("ARENA_KAFKA_LAG_GROUPS: a group id is at most 249 characters")
    return groups


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    group: str = "persistence"  # ARENA_PERSIST_GROUP: the Redis consumer group on the outbox
    consumer: str = field(default_factory=_default_consumer)  # ARENA_PERSIST_CONSUMER: unique per process
    workers: int = 2  # ARENA_PERSIST_WORKERS: consumers in this process (named CONSUMER-1, CONSUMER-2...)
    batch_size: int = 200  # ARENA_PERSIST_BATCH_SIZE: entries read (and written) at once
    block_ms: int = 1000  # ARENA_PERSIST_BLOCK_MS: XREADGROUP wait for new entries; bounds stop latency
    claim_idle_ms: int = 30_000  # ARENA_PERSIST_CLAIM_IDLE_MS: pending this long -> another consumer takes it
    claim_interval_ms: int = 5_000  # ARENA_PERSIST_CLAIM_INTERVAL_MS: how often to look for such entries
    max_deliveries: int = 5  # ARENA_PERSIST_MAX_DELIVERIES: failures before the dead-letter stream
    backoff_min_s: float = 0.2  # ARENA_PERSIST_BACKOFF_MIN_S: first retry delay when a dependency fails
    backoff_max_s: float = 10.0  # ARENA_PERSIST_BACKOFF_MAX_S: the delay doubles up to this
    shutdown_grace_s: float = 20.0  # ARENA_PERSIST_SHUTDOWN_GRACE_S: time to finish the batch on stop
    # ARENA_PERSIST_STEP_TIMEOUT_S: one stage of a batch, or one Redis call, at most; then its
    # dependency counts as failing (one timer per step: cheaper than a socket timeout per reply).
    step_timeout_s: float = 30.0
    trim: bool = True  # ARENA_PERSIST_TRIM: trim entries every group has acknowledged
    rating_history: bool = True  # ARENA_PERSIST_RATING_HISTORY: copy {rating}:changes into rating_history
    prune_idle_ms: int = (
        3_600_000  # ARENA_PERSIST_PRUNE_IDLE_MS: forget consumers idle this long, none pending
    )
    # Test only: pause between the PostgreSQL commit and the rest of the batch (kill -9 tests).
    delay_after_commit_s: float = 0.0  # ARENA_PERSIST_DELAY_AFTER_COMMIT_S

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsumerSettings:
        d = cls()
        return cls(
            group=env_str(env, "ARENA_PERSIST_GROUP", d.group),
            consumer=env_str(env, "ARENA_PERSIST_CONSUMER", d.consumer),
            workers=env_int(env, "ARENA_PERSIST_WORKERS", d.workers),
            batch_size=env_int(env, "ARENA_PERSIST_BATCH_SIZE", d.batch_size),
            block_ms=env_int(env, "ARENA_PERSIST_BLOCK_MS", d.block_ms),
            claim_idle_ms=env_int(env, "ARENA_PERSIST_CLAIM_IDLE_MS", d.claim_idle_ms),
            claim_interval_ms=env_int(env, "ARENA_PERSIST_CLAIM_INTERVAL_MS", d.claim_interval_ms),
            max_deliveries=env_int(env, "ARENA_PERSIST_MAX_DELIVERIES", d.max_deliveries),
            backoff_min_s=env_float(env, "ARENA_PERSIST_BACKOFF_MIN_S", d.backoff_min_s),
            backoff_max_s=env_float(env, "ARENA_PERSIST_BACKOFF_MAX_S", d.backoff_max_s),
            shutdown_grace_s=env_float(env, "ARENA_PERSIST_SHUTDOWN_GRACE_S", d.shutdown_grace_s),
            step_timeout_s=env_float(env, "ARENA_PERSIST_STEP_TIMEOUT_S", d.step_timeout_s),
            trim=env_bool(env, "ARENA_PERSIST_TRIM", d.trim),
            rating_history=env_bool(env, "ARENA_PERSIST_RATING_HISTORY", d.rating_history),
            prune_idle_ms=env_int(env, "ARENA_PERSIST_PRUNE_IDLE_MS", d.prune_idle_ms),
            delay_after_commit_s=env_float(env, "ARENA_PERSIST_DELAY_AFTER_COMMIT_S", d.delay_after_commit_s),
        )


@dataclass(frozen=True, slots=True)
class ReadSideSettings:
    # ARENA_RECENT_KEEP: results per player cached in user:{id}:recent_races and (tests) :recent_results
    recent_keep: int = 10
    recent_ttl_s: int = 3600  # ARENA_RECENT_TTL_S: the cache expires when the player stops racing
    daily_keep_days: int = 8  # ARENA_LEADERBOARD_DAILY_KEEP_DAYS: a daily board lives this long after its day
    weekly_keep_weeks: int = 5  # ARENA_LEADERBOARD_WEEKLY_KEEP_WEEKS: likewise for weekly boards
    # ARENA_LEADERBOARD_RACE_TYPES: comma-separated; custom texts are not comparable, so not ranked.
    race_types: tuple[str, ...] = ("quick", "standard", "marathon")
    # ARENA_REVIEW_WPM: a valid finish at or above this many WPM is stored 'held' and kept off the
    # leaderboards until an operator releases it (persistence/review.py; 100 to 1000). 200: no honest
    # typist of the fair-play benchmark reaches it, and 180 WPM honest results are never held.
    review_wpm: float = 200.0
    # ARENA_REVIEW_PB_RATIO: a valid finish more than this times the player's best stored ranked
    # WPM is held too (1.05 to 10) ...
    review_pb_ratio: float = 1.3
    # ARENA_REVIEW_MIN_RACES: ... once the player has this many ranked finishes stored (1 to 10000):
    # a newcomer's first races say little about what they can do.
    review_min_races: int = 10
    # ARENA_REVIEW_PB_MIN_WPM: ... and only at or above this WPM (0 to ARENA_REVIEW_WPM): the goal is
    # that no honest typist below 180 WPM is ever held, and a jump below it is no threat to a board.
    review_pb_min_wpm: float = 180.0
    # ARENA_REVIEW_PAIRS_F: a valid finish is held when the player's letter-pair evidence pooled
    # over recent races (persistence/pairs.py) reaches 1,000 intervals and its F is below this, and
    # so are the player's later results until an operator releases one (0 to 10; 0: off). 1.3:
    # honest careers of benchmarks/rhythm_sweep.py --careers stayed above 1.4 (docs/FAIRPLAY.md).
    review_pairs_f: float = 1.3
    # ARENA_REVIEW_PAIRS_RACES: races per generation of that evidence (1 to 1000): it covers the
    # player's last N to 2N-1 valid finishes.
    review_pairs_races: int = 10
    # ARENA_REVIEW_PAIRS_TTL_S: the evidence expires this long after the player's last finish.
    review_pairs_ttl_s: int = 30 * 86_400
    # ARENA_REVIEW_PROVISIONAL_MAX_S: placement (docs/FAIRPLAY.md, "Placement"). A valid finish of a
    # player with no ranked result yet, stored while their letter-pair evidence is short of the
    # rule's 1,000 intervals, is 'provisional' (on no board) until the evidence is complete; then
    # those of the last this-many seconds are released (or held, if the rule fails). Older ones stay
    # provisional: their evidence has expired (ARENA_REVIEW_PAIRS_TTL_S). 0: placement off (also
    # off while ARENA_REVIEW_PAIRS_F is 0: there is no evidence to wait for). 0 or 3600 to 31622400.
    review_provisional_max_s: int = 30 * 86_400
    # ARENA_REVIEW_PAIRS_AGREEMENT_R: once the population profile is established, a valid finish
    # is held (reason pairs_population) when the player's pooled evidence reaches the 1,000
    # intervals of ARENA_REVIEW_PAIRS_F's rule and the Pearson r of their per-pair speeds with
    # other players' (persistence/pair_population.py) is below this; and so are their later
    # results until an operator releases one (-1 to 1; 0 or below: off). Calibrated with
    # benchmarks/rhythm_sweep.py --careers and benchmarks/human_keystrokes.py (docs/FAIRPLAY.md).
    review_pairs_agreement_r: float = 0.2
    # ARENA_REVIEW_PAIRS_POPULATION_MIN: players' contributions the profile needs before that rule
    # judges anyone (1 to 100000): a fresh deployment judges nobody until then.
    review_pairs_population_min: int = 50

    @property
    def placement(self) -> bool:
        return self.review_provisional_max_s > 0 and self.review_pairs_f > 0

    def __post_init__(self) -> None:
        if not 100 <= self.review_wpm <= 1000:
            raise SettingsError("ARENA_REVIEW_WPM must be between 100 and 1000")
        if not 1.05 <= self.review_pb_ratio <= 10:
            raise SettingsError("ARENA_REVIEW_PB_RATIO must be between 1.05 and 10")
        if not 1 <= self.review_min_races <= 10_000:
            raise SettingsError("ARENA_REVIEW_MIN_RACES must be between 1 and 10000")
        if not 0 <= self.review_pb_min_wpm <= self.review_wpm:
            raise SettingsError("ARENA_REVIEW_PB_MIN_WPM must be between 0 and ARENA_REVIEW_WPM")
        if not 0 <= self.review_pairs_f <= 10:
            raise SettingsError("ARENA_REVIEW_PAIRS_F must be between 0 and 10")
        if not 1 <= self.review_pairs_races <= 1000:
            raise SettingsError("ARENA_REVIEW_PAIRS_RACES must be between 1 and 1000")
        if not 60 <= self.review_pairs_ttl_s <= 366 * 86_400:
            raise SettingsError("ARENA_REVIEW_PAIRS_TTL_S must be between 60 and 31622400")
        if not -1 <= self.review_pairs_agreement_r < 1:
            raise SettingsError("ARENA_REVIEW_PAIRS_AGREEMENT_R must be between -1 and 1 (below 1)")
        if not 1 <= self.review_pairs_population_min <= 100_000:
            raise SettingsError("ARENA_REVIEW_PAIRS_POPULATION_MIN must be between 1 and 100000")
        if self.review_provisional_max_s != 0 and not 3600 <= self.review_provisional_max_s <= 366 * 86_400:
            raise SettingsError("ARENA_REVIEW_PROVISIONAL_MAX_S must be 0 or between 3600 and 31622400")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ReadSideSettings:
        d = cls()
        raw_types = env_str(env, "ARENA_LEADERBOARD_RACE_TYPES", ",".join(d.race_types))
        return cls(
            recent_keep=env_int(env, "ARENA_RECENT_KEEP", d.recent_keep),
            recent_ttl_s=env_int(env, "ARENA_RECENT_TTL_S", d.recent_ttl_s),
            daily_keep_days=env_int(env, "ARENA_LEADERBOARD_DAILY_KEEP_DAYS", d.daily_keep_days),
            weekly_keep_weeks=env_int(env, "ARENA_LEADERBOARD_WEEKLY_KEEP_WEEKS", d.weekly_keep_weeks),
            race_types=tuple(t.strip() for t in raw_types.split(",") if t.strip()),
            review_wpm=env_float(env, "ARENA_REVIEW_WPM", d.review_wpm),
            review_pb_ratio=env_float(env, "ARENA_REVIEW_PB_RATIO", d.review_pb_ratio),
            review_min_races=env_int(env, "ARENA_REVIEW_MIN_RACES", d.review_min_races),
            review_pb_min_wpm=env_float(env, "ARENA_REVIEW_PB_MIN_WPM", d.review_pb_min_wpm),
            review_pairs_f=env_float(env, "ARENA_REVIEW_PAIRS_F", d.review_pairs_f),
            review_pairs_races=env_int(env, "ARENA_REVIEW_PAIRS_RACES", d.review_pairs_races),
            review_pairs_ttl_s=env_int(env, "ARENA_REVIEW_PAIRS_TTL_S", d.review_pairs_ttl_s),
            review_pairs_agreement_r=env_float(
                env, "ARENA_REVIEW_PAIRS_AGREEMENT_R", d.review_pairs_agreement_r
            ),
            review_pairs_population_min=env_int(
                env, "ARENA_REVIEW_PAIRS_POPULATION_MIN", d.review_pairs_population_min
            ),
            review_provisional_max_s=env_int(
                env, "ARENA_REVIEW_PROVISIONAL_MAX_S", d.review_provisional_max_s
            ),
        )


@dataclass(frozen=True, slots=True)
class PersistenceSettings:
    host: str = "127.0.0.1"  # ARENA_PERSIST_HOST: listen address of /healthz /readyz /metrics
    port: int = 8300  # ARENA_PERSIST_PORT
    redis: RedisSettings = field(default_factory=RedisSettings)  # ARENA_REDIS_URL
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)
    readside: ReadSideSettings = field(default_factory=ReadSideSettings)
    log: LogSettings = field(default_factory=LogSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PersistenceSettings:
        d = cls()
        return cls(
            host=env_str(env, "ARENA_PERSIST_HOST", d.host),
            port=env_int(env, "ARENA_PERSIST_PORT", d.port),
            redis=RedisSettings.from_env(env),
            postgres=PostgresSettings.from_env(env),
            kafka=KafkaSettings.from_env(env),
            consumer=ConsumerSettings.from_env(env),
            readside=ReadSideSettings.from_env(env),
            log=LogSettings.from_env(env),
        )
