"""Appends finished matches to the durable outbox stream, exactly once per match.

Nodes append races and heats (``MatchRecord``), the tournament director appends a tournament's
final result (``TournamentFinalRecord``), ``python -m ops.review`` an operator's decision on a
result held for review (kind ``review_decision``, ``persistence.review.ReviewDecisionRecord``);
the entry's ``kind`` tells a consumer which it is.

A Lua script sets a per-match marker and appends in one atomic step, so a retry after a
lost reply (the append happened, the answer did not arrive) never writes the match twice.

``OutboxBatcher`` is how a node writes its results: one task takes the finished matches from a
queue and appends up to ``ARENA_OUTBOX_BATCH_MAX`` of them per round trip (the same script per
match, pipelined), retrying what Redis did not take with capped backoff. So a node that ends
thousands of races at once (a stop) uses one connection and a few dozen round trips, not a
connection and a retry loop per race.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from arena import keys
from arena.backoff import Backoff, BackoffSettings
from arena.ids import RaceId
from arena.redisutil import ScriptCall, is_cluster, run_script_many
from arena.settings import SettingsError, env_float, env_int
from arena.tasks import stop_tasks
from arena.waits import wait_event

log = structlog.get_logger(__name__)

# KEYS[1] marker, KEYS[2] stream; ARGV: marker ttl seconds, match id, kind, data.
# Returns the new entry id, or false when the match was already appended.
_APPEND_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'kind', ARGV[3], 'data', ARGV[4])
end
return false
"""

MARKER_TTL_S = 7 * 24 * 3600  # far longer than any redelivery window
RETRY_BASE_S = 0.05  # the first retry of a batch waits at most this; each further one twice that


class OutboxRecord(Protocol):
    """What the outbox carries: an idempotency key, a kind, and the msgpack payload."""

    @property
    def match_id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def to_bytes(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A record as the outbox stores it (encoded once, however often it is tried)."""

    match_id: str
    kind: str
    data: bytes

    @classmethod
    def of(cls, record: OutboxRecord) -> OutboxEntry:
        return cls(record.match_id, record.kind, record.to_bytes())


class OutboxWriter:
    def __init__(self, redis: aioredis.Redis, *, max_backoff_s: float = 5.0) -> None:
        self._redis = redis
        self._script = redis.register_script(_APPEND_ONCE)
        self._max_backoff_s = max_backoff_s

    async def append(self, record: OutboxRecord) -> bool:
        """Append once; True if this call wrote it, False if it was already there."""
        result = await self._script(
            keys=[keys.outbox_written(RaceId(record.match_id)), keys.OUTBOX_STREAM],
            args=[MARKER_TTL_S, record.match_id, record.kind, record.to_bytes()],
        )
        return result is not None

    async def append_many(self, entries: Sequence[OutboxEntry]) -> list[bool | Exception]:
        """Append each match once, all in one pipelined round trip (the append script per match,
        so each stays atomic and idempotent on its own).

        Returns, per entry: True if this call wrote it, False if it was already there, or the
        error Redis answered for that entry alone (the others are appended regardless). Raises
        when the round trip fails as a whole: any of them may have been appended then, and
        trying them all again is safe.
        """
        if not entries:
            return []
        calls: list[ScriptCall] = [
            (
                [keys.outbox_written(RaceId(e.match_id)), keys.OUTBOX_STREAM],
                [MARKER_TTL_S, e.match_id, e.kind, e.data],
            )
            for e in entries
        ]
        replies = await run_script_many(self._redis, self._script, calls)
        return [r if isinstance(r, Exception) else r is not None for r in replies]

    async def wait_replicated(self, replicas: int, timeout_ms: int) -> int:
        """Redis ``WAIT`` on the outbox's master: until ``replicas`` replicas hold every write made
        so far on this connection's master, at most ``timeout_ms``; returns how many do. Redis
        replicates asynchronously: an append a master confirmed and then lost in its death, before
        its replica had it, is gone after the failover; waiting for the replica closes that gap."""
        if is_cluster(self._redis):
            await self._redis.initialize()  # the slot map; returns at once when known
            node = self._redis.get_node_from_key(keys.OUTBOX_STREAM)  # type: ignore[attr-defined]
            reply = await self._redis.execute_command(  # type: ignore[no-untyped-call]
                "WAIT", replicas, timeout_ms, target_nodes=node
            )
        else:
            reply = await self._redis.execute_command("WAIT", replicas, timeout_ms)  # type: ignore[no-untyped-call]
        return int(reply)

    async def append_with_retry(self, record: OutboxRecord) -> bool:
        """Keep trying through Redis outages: a finished match must never be lost.

        For a single record (the director's tournament finals); a node's many results go
        through ``OutboxBatcher``. Cancellation is the only way out without success.
        """
        delay = 0.05
        while True:
            try:
                return await self.append(record)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("outbox_append_retry", race_id=record.match_id, error=str(exc), delay_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)


# ---- batching ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    # ARENA_OUTBOX_BATCH_MAX: matches appended in one pipelined round trip at most (1 to 1000).
    batch_max: int = 100
    # ARENA_OUTBOX_BATCH_BYTES: a batch takes no further match once its records reach this many
    # bytes (64 KiB to 64 MiB; a batch has at least one match): a marathon race's record with
    # every keystroke is tens of kB, and one round trip should not carry hundreds of MB.
    batch_bytes: int = 4 << 20
    # ARENA_OUTBOX_RETRY_CAP_S: a batch Redis did not take (unreachable, no free connection,
    # an error reply) is tried again after RETRY_BASE_S (50 ms), each wait about twice the last,
    # never more than this (0.05 to 30 s). One batch at a time: no retry storm, whatever the load.
    retry_cap_s: float = 2.0
    # ARENA_OUTBOX_WAIT_REPLICAS: after each batch, Redis WAITs until this many replicas hold it
    # (0: no wait, for a single Redis; 1 on a Redis Cluster, so a master's death loses no result
    # it confirmed), at most ARENA_OUTBOX_WAIT_TIMEOUT_MS (1 to 10,000): a replica that does not
    # answer in time is counted and logged, never waited for forever.
    wait_replicas: int = 0
    wait_timeout_ms: int = 500

    def __post_init__(self) -> None:
        if not 1 <= self.batch_max <= 1000:
            raise SettingsError("ARENA_OUTBOX_BATCH_MAX must be between 1 and 1000")
        if not 64 << 10 <= self.batch_bytes <= 64 << 20:
            raise SettingsError("ARENA_OUTBOX_BATCH_BYTES must be between 65536 and 67108864")
        if not RETRY_BASE_S <= self.retry_cap_s <= 30:
            raise SettingsError("ARENA_OUTBOX_RETRY_CAP_S must be between 0.05 and 30")
        if not 0 <= self.wait_replicas <= 5:
            raise SettingsError("ARENA_OUTBOX_WAIT_REPLICAS must be between 0 and 5")
        if not 1 <= self.wait_timeout_ms <= 10_000:
            raise SettingsError("ARENA_OUTBOX_WAIT_TIMEOUT_MS must be between 1 and 10000")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OutboxSettings:
        d = cls()
        return cls(
            batch_max=env_int(env, "ARENA_OUTBOX_BATCH_MAX", d.batch_max),
            batch_bytes=env_int(env, "ARENA_OUTBOX_BATCH_BYTES", d.batch_bytes),
            retry_cap_s=env_float(env, "ARENA_OUTBOX_RETRY_CAP_S", d.retry_cap_s),
            wait_replicas=env_int(env, "ARENA_OUTBOX_WAIT_REPLICAS", d.wait_replicas),
            wait_timeout_ms=env_int(env, "ARENA_OUTBOX_WAIT_TIMEOUT_MS", d.wait_timeout_ms),
        )


@dataclass(frozen=True, slots=True)
class OutboxMetrics:
    """The batcher's Prometheus metrics, in the owning process's registry and prefix."""

    batch_size: Histogram  # matches per round trip that Redis took
    retries: Counter  # round trips (or their leftovers) tried again
    backlog: Gauge  # matches waiting for their append: queued or in the round trip
    under_replicated: Counter  # batches a WAIT did not see on enough replicas in time

    @classmethod
    def create(cls, registry: CollectorRegistry, prefix: str) -> OutboxMetrics:
        return cls(
            batch_size=Histogram(
                f"{prefix}_outbox_batch_size",
                "Matches appended to the outbox per pipelined round trip",
                buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
                registry=registry,
            ),
            retries=Counter(
                f"{prefix}_outbox_retries_total",
                "Outbox batches tried again (Redis unreachable, no free connection, or an error reply)",
                registry=registry,
            ),
            backlog=Gauge(
                f"{prefix}_outbox_backlog",
                "Finished matches whose outbox append is not confirmed yet (queued or in flight)",
                registry=registry,
            ),
            under_replicated=Counter(
                f"{prefix}_outbox_under_replicated_total",
                "Outbox batches not on ARENA_OUTBOX_WAIT_REPLICAS replicas within the WAIT's timeout",
                registry=registry,
            ),
        )


T = TypeVar("T")
R = TypeVar("R", bound=OutboxRecord)


@dataclass(frozen=True, slots=True)
class Written(Generic[T, R]):
    """A match whose append Redis confirmed."""

    item: T
    record: R
    appended: bool  # False: it was already in the outbox (a retry after a lost reply)


@dataclass(frozen=True, slots=True)
class _Pending(Generic[T, R]):
    item: T
    record: R
    entry: OutboxEntry


_REDIS_TROUBLE = (RedisError, OSError)


class OutboxBatcher(Generic[T, R]):
    """One task that appends finished matches to the outbox in batches, in their order.

    ``submit`` queues an item (a node's race room); the task builds its record (``record_of``)
    when its batch leaves, appends up to ``batch_max`` records per round trip, and hands what
    Redis confirmed to ``on_written`` before it takes the next batch: whoever waits for a
    result (a player) hears of it only once it is in the outbox. A failed round trip, or the
    entries of one that Redis refused, are tried again with capped backoff, one log line per
    try for the whole batch. An item whose record cannot be built goes to ``on_unbuildable``.

    ``stop`` ends the task and returns the items whose append was not confirmed.
    """

    def __init__(
        self,
        writer: OutboxWriter,
        *,
        record_of: Callable[[T], R],
        on_written: Callable[[list[Written[T, R]]], Awaitable[None]],
        on_unbuildable: Callable[[T, Exception], None],
        settings: OutboxSettings,
        metrics: OutboxMetrics,
        name: str = "outbox-batcher",
        logger: Any = None,  # a bound structlog logger (the owner's ids); this module's by default
        rng: random.Random | None = None,
    ) -> None:
        self._log = logger or log
        self._writer = writer
        self._record_of = record_of
        self._on_written = on_written
        self._on_unbuildable = on_unbuildable
        self.settings = settings
        self._metrics = metrics
        self._name = name
        self._backoff = BackoffSettings(base_s=RETRY_BASE_S, cap_s=settings.retry_cap_s, jitter=0.5)
        self._rng = rng or random.Random()
        self._queue: deque[T] = deque()
        self._in_flight: list[_Pending[T, R]] = []  # taken from the queue, append not confirmed
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()  # nothing queued, in flight or being handed over
        self._empty.set()
        self._stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._run(), name=self._name)
        return self.task

    def submit(self, item: T) -> None:
        self._queue.append(item)
        self._empty.clear()
        self._wake.set()
        self._metrics.backlog.set(self.backlog)

    @property
    def backlog(self) -> int:
        """Items whose append is not confirmed yet."""
        return len(self._queue) + len(self._in_flight)

    async def wait_empty(self, timeout_s: float) -> bool:
        """Until every submitted item is written and handed over; False if ``timeout_s`` ran out."""
        return await wait_event(self._empty, timeout_s)

    async def stop(self, timeout_s: float = 5.0) -> list[T]:
        """End the task (a round trip in progress is cancelled); returns the unconfirmed items."""
        self._wake.set()
        await stop_tasks([self.task], self._stopping, timeout_s)
        unconfirmed = [p.item for p in self._in_flight] + list(self._queue)
        self._in_flight = []
        self._queue.clear()
        self._metrics.backlog.set(0)
        return unconfirmed

    async def _run(self) -> None:
        while not self._stopping.is_set():
            if not self._queue:
                self._empty.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            self._take()
            await self._write()

    async def _wait_replicated(self, matches: int) -> None:
        """Before anyone hears of the batch: on ``wait_replicas`` replicas, or said (a replica too
        slow for the timeout is counted, not waited for forever). Raises when the master cannot
        answer: the batch is then tried again."""
        s = self.settings
        if s.wait_replicas <= 0:
            return
        acked = await self._writer.wait_replicated(s.wait_replicas, s.wait_timeout_ms)
        if acked < s.wait_replicas:
            self._metrics.under_replicated.inc()
            self._log.warning(
                "outbox_under_replicated",
                matches=matches,
                replicas=acked,
                wanted=s.wait_replicas,
            )

    def _take(self) -> None:
        """The next batch, from the front of the queue: ``batch_max`` records or ``batch_bytes``."""
        s = self.settings
        size = 0
        batch: list[_Pending[T, R]] = []
        while self._queue and len(batch) < s.batch_max and size < s.batch_bytes:
            item = self._queue.popleft()
            try:
                record = self._record_of(item)
                entry = OutboxEntry.of(record)
            except Exception as exc:  # this item's fault alone: the rest of the batch goes on
                self._on_unbuildable(item, exc)
                continue
            batch.append(_Pending(item, record, entry))
            size += len(entry.data)
        self._in_flight = batch

    async def _write(self) -> None:
        """Append the batch in flight until Redis has confirmed every entry (or the task stops)."""
        backoff = Backoff(self._backoff, self._rng)
        loop = asyncio.get_running_loop()
        first_try = loop.time()
        while self._in_flight:
            pending = self._in_flight
            error: BaseException | None = None
            try:
                replies = await self._writer.append_many([p.entry for p in pending])
                await self._wait_replicated(len(pending))
            except Exception as exc:  # the whole round trip: Redis unreachable, no free connection
                # (or the master died before its replica said it had the batch: appended again,
                # idempotently, wherever the outbox lives now)
                error, replies = exc, [exc] * len(pending)
            done: list[Written[T, R]] = []
            failed: list[_Pending[T, R]] = []
            for p, reply in zip(pending, replies, strict=True):
                if isinstance(reply, Exception):
                    failed.append(p)
                    error = error or reply
                else:
                    done.append(Written(p.item, p.record, reply))
            self._in_flight = failed
            self._metrics.backlog.set(self.backlog)
            if done:
                self._metrics.batch_size.observe(len(done))
                try:
                    await self._on_written(done)
                except Exception:  # written all the same; the callback contains its own faults
                    self._log.exception("outbox_handover_failed", matches=len(done))
            if not failed:
                break
            delay = backoff.next_delay()
            self._metrics.retries.inc()
            self._log.warning(
                "outbox_batch_retry",
                matches=len(failed),
                written=len(done),
                attempt=backoff.failures,
                delay_s=round(delay, 3),
                error=repr(error),
                exc_info=error if not isinstance(error, _REDIS_TROUBLE) else None,
            )
            if await wait_event(self._stopping, delay):
                return  # stopping: what is left is reported by ``stop``
        if backoff.failures:
            self._log.info(
                "outbox_batch_written_after_retries",
                attempts=backoff.failures + 1,
                seconds=round(loop.time() - first_try, 3),
            )
