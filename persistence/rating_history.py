"""Rating changes into PostgreSQL: the ``{rating}:changes`` stream becomes ``rating_history``.

``arena/rating.py`` appends one entry per rated match (``match_id``, ``at``, ``changes``: a
JSON list of ``{player_id, before: [r, rd, vol], after: [r, rd, vol]}``) in the same script
that changes the ratings. This consumer copies them with its group, idempotently (the
primary key is player and race: ``ON CONFLICT DO NOTHING``), then acknowledges. While
PostgreSQL is down the entries wait in the stream; a dead consumer's are claimed after
``claim_idle_ms``. An unreadable entry (a bug, not an outage) is logged, counted and
acknowledged: ratings themselves live in Redis, this is their history.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import cast

import asyncpg
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from arena import keys
from arena.waits import wait_event
from persistence import streams
from persistence.consumer import REDIS_DOWN, Backoff, Health, State
from persistence.errors import Dependency, DependencyDown, postgres_rejects_data
from persistence.metrics import PersistenceMetrics
from persistence.settings import ConsumerSettings
from persistence.times import to_datetime

log = structlog.get_logger(__name__)

_INSERT = """
INSERT INTO rating_history (player_id, race_id, rating_before, rd_before, volatility_before,
                            rating_after, rd_after, volatility_after, created_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::float8[],
                     $6::float8[], $7::float8[], $8::float8[], $9::timestamptz[])
ON CONFLICT (player_id, race_id) DO NOTHING
"""

Row = tuple[str, str, float, float, float, float, float, float, object]
_Rows = list[tuple[bytes, dict[bytes, bytes] | None]]


def rows_of(fields: dict[bytes, bytes]) -> list[Row]:
    """The history rows of one change entry; ValueError/KeyError/TypeError if unreadable."""
    race_id = fields[b"match_id"].decode()
    at = to_datetime(int(fields[b"at"]))
    rows: list[Row] = []
    for change in json.loads(fields[b"changes"]):
        before, after = [float(v) for v in change["before"]], [float(v) for v in change["after"]]
        if len(before) != 3 or len(after) != 3:
            raise ValueError("before and after must be [rating, rd, volatility]")
        rows.append((str(change["player_id"]), race_id, *before[:3], *after[:3], at))  # type: ignore[arg-type]
    return rows


class RatingHistoryConsumer:
    def __init__(
        self,
        *,
        name: str,
        settings: ConsumerSettings,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        metrics: PersistenceMetrics,
        health: Health,
    ) -> None:
        self.name = name
        self.settings = settings
        self._redis = redis
        self._pool = pool
        self._metrics = metrics
        self._health = health
        self.state = State.NEW
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._group_ready = False
        self._next_claim = 0.0

    async def start(self) -> None:
        self.state = State.RUNNING
        self._task = asyncio.create_task(self._run(), name=f"rating-history-{self.name}")

    @property
    def alive(self) -> bool:
        """Its loop runs (``/readyz``): False once it ended, stopped or crashed."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop reading; finish the batch in hand up to the grace period, else cancel (it stays pending)."""
        if self.state is not State.RUNNING or self._task is None:
            self.state = State.STOPPED
            return
        self.state = State.STOPPING
        self._stopping.set()
        done, _ = await asyncio.wait({self._task}, timeout=self.settings.shutdown_grace_s)
        if not done:
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.state = State.STOPPED

    async def _run(self) -> None:
        backoff = Backoff(self.settings.backoff_min_s, self.settings.backoff_max_s)
        while not self._stopping.is_set():
            try:
                await self._once()
                backoff = Backoff(self.settings.backoff_min_s, self.settings.backoff_max_s)
                continue
            except DependencyDown as exc:
                self._health.failed(exc.dependency, exc.reason)
                self._metrics.retries.labels(exc.dependency.value).inc()
            except REDIS_DOWN as exc:  # the deadline's TimeoutError included
                self._health.failed(Dependency.REDIS, f"{type(exc).__name__}: {exc}")
                self._metrics.retries.labels(Dependency.REDIS.value).inc()
            except ResponseError as exc:
                if "NOGROUP" in str(exc) or "no such key" in str(exc):
                    self._group_ready = False  # the stream or the group was deleted under us
                    continue
                log.exception("rating_history_error", consumer=self.name)
            except Exception:  # a bug, not an outage: the entries stay pending, claimed later
                log.exception("rating_history_error", consumer=self.name)
            await self._pause(backoff())

    async def _once(self) -> None:
        """One read (or, every claim interval, one claim and the housekeeping), then the writes."""
        async with asyncio.timeout(self.settings.step_timeout_s + self.settings.block_ms / 1000):
            if not self._group_ready:
                await streams.create_group(self._redis, keys.RATING_CHANGES_STREAM, self.settings.group)
                self._group_ready = True
            if time.monotonic() >= self._next_claim:
                self._next_claim = time.monotonic() + self.settings.claim_interval_ms / 1000
                entries = await self._claim()
                await streams.tidy(
                    self._redis,
                    keys.RATING_CHANGES_STREAM,
                    self.settings.group,
                    me=self.name,
                    trim=self.settings.trim,
                    prune_idle_ms=self.settings.prune_idle_ms,
                )
            else:
                entries = await self._read()
            self._health.succeeded(Dependency.REDIS)
        if entries:
            await self._store(entries)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        await wait_event(self._stopping, seconds)

    async def _read(self) -> list[tuple[str, dict[bytes, bytes]]]:
        reply = await self._redis.xreadgroup(
            self.settings.group,
            self.name,
            {keys.RATING_CHANGES_STREAM: ">"},
            count=self.settings.batch_size,
            block=self.settings.block_ms,
        )
        per_stream = cast(list[tuple[bytes, _Rows]], reply or [])
        return [(streams.text(i), f) for _, rows in per_stream for i, f in rows if f]

    async def _claim(self) -> list[tuple[str, dict[bytes, bytes]]]:
        reply = await self._redis.xautoclaim(
            keys.RATING_CHANGES_STREAM,
            self.settings.group,
            self.name,
            min_idle_time=self.settings.claim_idle_ms,
            start_id="0-0",
            count=self.settings.batch_size,
        )
        return [(streams.text(i), f) for i, f in cast(_Rows, reply[1]) if f]

    async def _store(self, entries: Sequence[tuple[str, dict[bytes, bytes]]]) -> None:
        rows: list[Row] = []
        for entry_id, fields in entries:
            try:
                rows += rows_of(fields)
            except (KeyError, ValueError, TypeError) as exc:
                self._skip(entry_id, exc)
        if rows:
            try:
                async with asyncio.timeout(self.settings.step_timeout_s), self._pool.acquire() as conn:
                    await conn.execute(_INSERT, *(list(column) for column in zip(*rows, strict=True)))
            except Exception as exc:
                if not postgres_rejects_data(exc):
                    raise DependencyDown(Dependency.POSTGRES, exc) from exc
                self._skip(",".join(i for i, _ in entries), exc)
            self._health.succeeded(Dependency.POSTGRES)
        async with asyncio.timeout(self.settings.step_timeout_s):
            await self._redis.xack(keys.RATING_CHANGES_STREAM, self.settings.group, *(i for i, _ in entries))
        self._metrics.rating_changes.inc(len(rows))

    def _skip(self, entry_id: str, exc: BaseException) -> None:
        self._metrics.entry_failures.labels("rating_history").inc()
        log.error("rating_change_skipped", entry_id=entry_id, error=repr(exc))
