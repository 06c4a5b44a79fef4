"""Shared helpers of the persistence tests: fast settings, pushing matches, waiting, counting."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from arena.clock import now_ms
from arena.keys import OUTBOX_STREAM
from arena.results import (
    FinalStanding,
    HeatRace,
    MatchRecord,
    SettledHeat,
    TournamentFinalRecord,
    final_match_id,
)
from arena.settings import RedisSettings
from persistence import synthetic
from persistence.settings import (
    ConsumerSettings,
    KafkaSettings,
    PersistenceSettings,
    PostgresSettings,
    ReadSideSettings,
)

# Small batches, short waits, fast retries: every scenario runs in seconds.
NO_PLACEMENT = ReadSideSettings(review_provisional_max_s=0)
FAST_CONSUMER = ConsumerSettings(
    consumer="test",
    workers=1,
    batch_size=50,
    block_ms=100,
    claim_idle_ms=400,
    claim_interval_ms=100,
    max_deliveries=3,
    backoff_min_s=0.02,
    backoff_max_s=0.25,
    shutdown_grace_s=3.0,
)


@dataclass(frozen=True)
class Env:
    """Where one test's persistence talks to: its own database, topics and consumer group."""

    redis_url: str
    dsn: str
    bootstrap: str
    race_topic: str
    heat_topic: str
    player_topic: str

    def settings(
        self,
        *,
        dsn: str | None = None,
        kafka_timeout_s: float = 3.0,
        placement: bool = False,
        **consumer: object,
    ) -> PersistenceSettings:
        """Placement off unless asked for: the synthetic players are all new accounts with short
        races, so every result of theirs would be provisional (off the boards)."""
        return PersistenceSettings(
            redis=RedisSettings(self.redis_url),
            postgres=PostgresSettings(dsn=dsn or self.dsn, pool_size=4, command_timeout_s=10.0),
            kafka=KafkaSettings(
                bootstrap=self.bootstrap,
                race_topic=self.race_topic,
                heat_topic=self.heat_topic,
                player_topic=self.player_topic,
                publish_timeout_s=kafka_timeout_s,
            ),
            consumer=replace(FAST_CONSUMER, **consumer),  # type: ignore[arg-type]
            readside=ReadSideSettings() if placement else NO_PLACEMENT,
        )

    def process_env(self, **extra: str) -> dict[str, str]:
        """The same, as ARENA_* variables for a `python -m persistence` subprocess."""
        c = FAST_CONSUMER
        return {
            "ARENA_REDIS_URL": self.redis_url,
            "ARENA_POSTGRES_DSN": self.dsn,
            "ARENA_KAFKA_BOOTSTRAP": self.bootstrap,
            "ARENA_KAFKA_RACE_TOPIC": self.race_topic,
            "ARENA_KAFKA_HEAT_TOPIC": self.heat_topic,
            "ARENA_KAFKA_PLAYER_TOPIC": self.player_topic,
            "ARENA_KAFKA_PUBLISH_TIMEOUT_S": "3",
            "ARENA_PERSIST_WORKERS": "1",
            "ARENA_PERSIST_BATCH_SIZE": str(c.batch_size),
            "ARENA_PERSIST_BLOCK_MS": str(c.block_ms),
            "ARENA_PERSIST_CLAIM_IDLE_MS": str(c.claim_idle_ms),
            "ARENA_PERSIST_CLAIM_INTERVAL_MS": str(c.claim_interval_ms),
            "ARENA_PERSIST_BACKOFF_MIN_S": str(c.backoff_min_s),
            "ARENA_PERSIST_BACKOFF_MAX_S": str(c.backoff_max_s),
            "ARENA_LOG_JSON": "1",
            "ARENA_REVIEW_PROVISIONAL_MAX_S": "0",  # placement off, as in settings()
            **extra,
        }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def matches(
    n: int, *, seed: int = 7, players: Sequence[str] | None = None, keys: int = 40
) -> list[MatchRecord]:
    """n finished races ending over the last days, among a small pool of players."""
    rng = random.Random(seed)
    pool = list(players or [f"p{i:04d}" for i in range(60)])
    now = now_ms()
    return [
        synthetic.match(
            rng,
            ended_at=now - rng.randint(0, 3 * 86_400_000),
            players=rng.sample(pool, rng.randint(2, 4)),
            keys=keys,
        )
        for _ in range(n)
    ]


def final(
    tournament_id: str,
    players: Sequence[str],
    *,
    ended_at: int = 1_790_000_000_000,
    heat_races: Sequence[MatchRecord] = (),
    prizes: Sequence[str] = ("gold", "silver"),
) -> TournamentFinalRecord:
    """A tournament's final result as the director appends it: ``players`` in rank order."""
    return TournamentFinalRecord(
        match_id=final_match_id(tournament_id),
        tournament_id=tournament_id,
        name=f"Cup {tournament_id}",
        race_type="quick",
        tournament_type="instant",
        visibility="public",
        rule="top_k",
        heat_size=4,
        advance=2,
        races_per_round=1,
        rounds=max([h.round_no or 0 for h in heat_races], default=1),
        created_at=ended_at - 600_000,
        started_at=ended_at - 300_000,
        ended_at=ended_at,
        standings=[
            FinalStanding(
                rank=i + 1,
                player_id=pid,
                name=pid.upper(),
                seed=len(players) - i,
                rating=1500.0 + 10 * i,
                last_round=1,
                prize=prizes[i] if i < len(prizes) else None,
            )
            for i, pid in enumerate(players)
        ],
        heat_races=[HeatRace(h.round_no or 0, h.heat_no or 0, 0, h.match_id) for h in heat_races],
        settled_heats=[] if heat_races else [SettledHeat(1, 1, "bye")],
    )


async def push(redis: aioredis.Redis, records: Sequence[MatchRecord | TournamentFinalRecord]) -> list[str]:
    """Append as a node (or the tournament director) does (fields id, kind, data), pipelined."""
    async with redis.pipeline(transaction=False) as pipe:
        for r in records:
            pipe.xadd(OUTBOX_STREAM, {"id": r.match_id, "kind": r.kind, "data": r.to_bytes()})
        ids = await pipe.execute()
    return [i.decode() for i in ids]


async def push_raw(redis: aioredis.Redis, match_id: str, data: bytes, kind: str = "race") -> str:
    entry_id = await redis.xadd(OUTBOX_STREAM, {"id": match_id, "kind": kind, "data": data})
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def db_count(dsn: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def stored(dsn: str) -> tuple[int, int]:
    """(races, participant rows) in PostgreSQL."""
    conn = await asyncpg.connect(dsn)
    try:
        races = await conn.fetchval("SELECT count(*) FROM races")
        rows = await conn.fetchval("SELECT count(*) FROM race_participants")
        return int(races), int(rows)
    finally:
        await conn.close()


async def kafka_keys(bootstrap: str, topic: str, want: int, timeout: float = 20.0) -> Counter[str]:
    """Keys of the messages on a topic, read from the start until ``want`` distinct keys or the timeout."""
    return Counter(key for key, _, _ in await kafka_messages(bootstrap, topic, want, timeout))


async def kafka_messages(
    bootstrap: str, topic: str, want: int, timeout: float = 20.0, *, count: int = 0
) -> list[tuple[str, dict[str, bytes], bytes]]:
    """(key, headers, value) of the messages on a topic, read from the start until ``want``
    distinct keys (and at least ``count`` messages) or the timeout."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique("verify"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: list[tuple[str, dict[str, bytes], bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while (len({key for key, _, _ in seen}) < want or len(seen) < count) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for messages in batches.values():
                seen.extend(
                    (m.key.decode(), dict(m.headers), m.value or b"") for m in messages if m.key is not None
                )
    finally:
        await consumer.stop()
    return seen


async def group_pending(redis: aioredis.Redis, group: str = "persistence") -> int:
    info = await redis.xpending(OUTBOX_STREAM, group)
    return int(info["pending"])


async def drained(redis: aioredis.Redis, group: str = "persistence") -> bool:
    """Every entry delivered to the group and acknowledged."""
    for g in await redis.xinfo_groups(OUTBOX_STREAM):
        if g["name"].decode() == group:
            return int(g["pending"]) == 0 and int(g["lag"] or 0) == 0
    return False
