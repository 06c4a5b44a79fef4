"""The outbox consumer: matches from the Redis stream into PostgreSQL and Kafka.

One ``OutboxConsumer`` is one member of the consumer group, with one task. Per batch:

1. read new entries (``XREADGROUP >``), or claim entries a dead or stuck consumer left
   pending for ``claim_idle_ms`` (``XAUTOCLAIM``);
2. decode (a race or heat ``MatchRecord``, or a ``TournamentFinalRecord`` by the entry's
   kind); an undecodable entry fails on its own;
3. write to PostgreSQL (one transaction, idempotent on match id);
4. update leaderboards and recent-result caches (idempotent; races and heats only);
5. publish every match to Kafka and await every ack;
6. acknowledge (``XACK``) what got through; failed entries stay pending and come back by a
   claim after ``claim_idle_ms``, until the ``max_deliveries``-th failure buries them in the
   dead-letter stream.

A dependency that is down never fails an entry: the stage is retried with backoff, the
batch stays in the stream, ``Health`` says unready, and the entries in hand are kept from
being claimed by refreshing their idle time. Stopping finishes the batch in hand (up to
``shutdown_grace_s``); if it cannot, the entries are handed back with their delivery count
restored, claimable at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar, cast

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import StreamIdT

from arena import keys
from arena.clock import now_ms
from arena.outbox import OutboxEntry, OutboxWriter
from arena.redisutil import execute_loading
from arena.results import MatchRecord
from arena.typing_tests import TypingTestRecord
from arena.waits import wait_event
from persistence import streams
from persistence.deadletters import DeadLetters
from persistence.entries import Entry, Match, PoisonEntry, decode
from persistence.errors import Dependency, DependencyDown
from persistence.leaderboards import LeaderboardWriter
from persistence.metrics import PersistenceMetrics
from persistence.pair_store import PairEvidence, PairVerdict
from persistence.publisher import KafkaPublisher, PublishBatch
from persistence.ratings import RatingCatchUp
from persistence.recent import RecentCache
from persistence.rejection import RatingUndo, Rejection
from persistence.review import (
    DecidedResult,
    ReleasedResult,
    ReviewDecisionRecord,
    ReviewState,
    released_placements,
)
from persistence.settings import ConsumerSettings
from persistence.store import PostgresStore
from persistence.test_results import TestReadSide

log = structlog.get_logger(__name__)

T = TypeVar("T")

_Rows = list[tuple[bytes, dict[bytes, bytes] | None]]  # stream entries as redis-py returns them
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
MAX_CLAIM_ROUNDS = 10  # per maintenance pass, so new entries are read in between
SUSPECT_DELIVERIES = 3  # from this many deliveries on, an entry is processed alone
HAND_BACK_TIMEOUT_S = 5.0  # stop() must end: if Redis is gone, the entries are claimed later anyway


class State(StrEnum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


_TRANSITIONS = {
    State.NEW: {State.RUNNING, State.STOPPED},
    State.RUNNING: {State.STOPPING},
    State.STOPPING: {State.STOPPED},
    State.STOPPED: set(),
}


@dataclass
class Health:
    """What the consumers last saw of their dependencies; ``/readyz`` reads it.

    A failure counts until a success clears it, or until nobody has repeated it for
    ``stale_after_s`` (a retrying loop repeats it at least every ``backoff_max_s``), so
    readiness cannot stay stuck on a failure no one is retrying any more.
    """

    metrics: PersistenceMetrics
    stale_after_s: float = 30.0
    _failures: dict[Dependency, tuple[str, float]] = field(default_factory=dict)

    @property
    def down(self) -> dict[Dependency, str]:
        """The dependencies failing now, with the last reason."""
        now = time.monotonic()
        return {dep: reason for dep, (reason, at) in self._failures.items() if now - at < self.stale_after_s}

    @property
    def ready(self) -> bool:
        return not self.down

    def failed(self, dependency: Dependency, reason: str) -> None:
        if dependency not in self.down:
            log.warning("dependency_down", dependency=dependency.value, reason=reason)
        self._failures[dependency] = (reason, time.monotonic())
        self.metrics.dependency_up.labels(dependency.value).set(0)

    def succeeded(self, dependency: Dependency) -> None:
        if self._failures.pop(dependency, None) is not None:
            log.info("dependency_back", dependency=dependency.value)
        self.metrics.dependency_up.labels(dependency.value).set(1)


@dataclass(frozen=True, slots=True)
class ReadSide:
    """What the lobby reads, updated after the PostgreSQL commit."""

    leaderboards: LeaderboardWriter
    recent: RecentCache
    ratings: RatingCatchUp
    redis: aioredis.Redis
    tests: TestReadSide | None = None  # typing tests' recent results and histograms
    undo: RatingUndo | None = None  # None: made from ``redis`` when first needed
    pairs: PairEvidence | None = None  # None: no letter-pair holds (persistence/pair_store.py)

    async def pair_holds(self, records: Sequence[MatchRecord]) -> PairVerdict:
        """Results to hold on the players' pooled letter-pair evidence, and those it is still short
        for (placement), before the store."""
        return await self.pairs.assess(records) if self.pairs is not None and records else PairVerdict()

    async def append_placements(self, decisions: Sequence[ReviewDecisionRecord]) -> None:
        """Placement's releases to the outbox, once each (the append is idempotent on the decision's
        match id): from there they flow like an operator's release (boards, recent results, Kafka)."""
        if not decisions:
            return
        replies = await OutboxWriter(self.redis).append_many([OutboxEntry.of(d) for d in decisions])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply  # the batch stays pending; its re-delivery appends them again

    async def apply(
        self,
        records: Sequence[MatchRecord],
        released: Sequence[ReleasedResult] = (),
        unranked: Mapping[tuple[str, str], str] | None = None,
        tests: Sequence[TypingTestRecord] = (),
        new_tests: frozenset[str] | set[str] = frozenset(),
    ) -> int:
        """Boards and recent results in one pipeline, then ratings a node missed (how many).

        ``released``: results an operator released from review, offered to their boards now;
        ``unranked``: (race, player) -> review state of results not clear, kept off the boards
        unless released, and marked so in recent results; ``tests``: typing tests (never on boards or rated),
        ``new_tests`` the ids stored now.
        """
        if released:
            await self.leaderboards.offer(released_placements(released, self.leaderboards.settings))
        tests = tests if self.tests is not None else ()
        if not records and not tests:
            return 0
        if records:

            def build(pipe: Pipeline) -> None:
                off = {k for k, state in (unranked or {}).items() if state != ReviewState.RELEASED}
                self.leaderboards.queue_records(pipe, records, off)
                self.recent.queue(pipe, records, unranked)

            # Idempotent (best-of boards, recent results by member), so it may run twice: see
            # execute_loading.
            await execute_loading(self.redis, build, [self.recent.script])
        if tests and self.tests is not None:
            # Apart: its histogram counts only tests stored now, but a rerun must not count twice.
            async with self.redis.pipeline(transaction=False) as pipe:
                self.tests.queue(pipe, tests, set(new_tests))
                await pipe.execute()
        return await self.ratings.apply(records) if records else 0

    async def apply_decisions(self, decided: Sequence[DecidedResult], rejections: Sequence[Rejection]) -> int:
        """Review decisions: the held line in recent results becomes released or rejected, and a
        rejection's rating change is undone, once (persistence/rejection.py). Returns how many
        ratings moved."""
        # An operator's release starts the player's evidence over; placement's does not.
        released = [d.player_id for d in decided if d.review == ReviewState.RELEASED and not d.placed]
        if released and self.pairs is not None:
            await self.pairs.forget(released)
        if decided:
            swaps = [(d.player_id, d.recent(d.was), d.recent(d.review)) for d in decided]
            # A swap replaces one member by another: running it twice changes nothing more.
            await execute_loading(
                self.redis, lambda pipe: self.recent.queue_swaps(pipe, swaps), [self.recent.swap_script]
            )
        if not rejections:
            return 0
        undo = self.undo or RatingUndo(self.redis)
        return await undo.apply(rejections)


@dataclass
class _Batch:
    entries: list[Entry]
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)  # entry id -> (stage, reason)

    def fail(self, match_ids: dict[str, str], stage: str, matches: Sequence[Match]) -> list[Match]:
        """Mark the entries of rejected matches failed; returns the matches still going."""
        for m in matches:
            if m.match_id in match_ids:
                self.failed[m.entry.entry_id] = (stage, match_ids[m.match_id])
        return [m for m in matches if m.match_id not in match_ids]


class Backoff:
    """Doubling delays with jitter, so consumers do not retry in step."""

    def __init__(self, low: float, high: float) -> None:
        self._low, self._high = low, high
        self._next = low

    def __call__(self) -> float:
        delay = self._next
        self._next = min(self._high, self._next * 2)
        return delay * random.uniform(0.5, 1.0)


class OutboxConsumer:
    def __init__(
        self,
        *,
        name: str,
        settings: ConsumerSettings,
        redis: aioredis.Redis,
        store: PostgresStore,
        publisher: KafkaPublisher,
        readside: ReadSide,
        dead: DeadLetters,
        metrics: PersistenceMetrics,
        health: Health,
    ) -> None:
        self.name = name
        self.settings = settings
        self._redis = redis
        self._store = store
        self._publisher = publisher
        self._readside = readside
        self._dead = dead
        self._metrics = metrics
        self._health = health
        self.state = State.NEW
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._in_hand: list[Entry] = []  # entries of the batch being processed

    # -- life cycle -------------------------------------------------------------------

    def _transition(self, to: State) -> None:
        if to not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"consumer {self.name}: {self.state} -> {to} is not allowed")
        self.state = to

    async def start(self) -> None:
        self._transition(State.RUNNING)
        self._task = asyncio.create_task(self._run(), name=f"outbox-consumer-{self.name}")

    @property
    def alive(self) -> bool:
        """Its loop runs (``/readyz``): False once it ended, stopped or crashed."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop reading, finish the batch in hand (up to the grace), else cancel and hand it back."""
        if self.state is State.NEW:
            self._transition(State.STOPPED)
            return
        if self.state is not State.RUNNING:
            return
        self._transition(State.STOPPING)
        self._stopping.set()
        task = self._task
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=self.settings.shutdown_grace_s)
            if not done:
                log.warning("consumer_stop_cancelling", consumer=self.name, in_hand=len(self._in_hand))
                task.cancel()
            [outcome] = await asyncio.gather(task, return_exceptions=True)
            if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
                log.error("consumer_crashed", consumer=self.name, error=repr(outcome))
        if self._in_hand:
            await self._hand_back(self._in_hand)
        self._transition(State.STOPPED)

    async def _run(self) -> None:
        log.info("consumer_started", consumer=self.name, group=self.settings.group)
        group_ready = False
        next_maintenance = 0.0
        backoff = Backoff(self.settings.backoff_min_s, self.settings.backoff_max_s)
        while not self._stopping.is_set():
            try:
                if not group_ready:
                    async with self._redis_deadline():
                        await self._create_group()
                    group_ready = True
                if time.monotonic() >= next_maintenance:
                    next_maintenance = time.monotonic() + self.settings.claim_interval_ms / 1000
                    await self._claim_stale()
                    async with self._redis_deadline():
                        await self._maintain()
                entries = await self._read_new()
                if entries:
                    await self._process(entries)
                backoff = Backoff(self.settings.backoff_min_s, self.settings.backoff_max_s)
            except REDIS_DOWN as exc:
                self._health.failed(Dependency.REDIS, f"{type(exc).__name__}: {exc}")
                self._metrics.retries.labels(Dependency.REDIS.value).inc()
                await self._pause(backoff())
            except ResponseError as exc:
                if "NOGROUP" in str(exc) or "no such key" in str(exc):
                    group_ready = False  # the stream or the group was deleted under us
                    continue
                log.exception("consumer_loop_error", consumer=self.name)
                await self._pause(backoff())
            except Exception:
                # A bug, not an outage: the batch stays pending and is claimed again later.
                log.exception("consumer_loop_error", consumer=self.name)
                await self._pause(backoff())
        log.info("consumer_stopped", consumer=self.name)

    def _redis_deadline(self, extra_s: float = 0.0) -> asyncio.Timeout:
        """A bound on one Redis call (its TimeoutError counts as Redis failing)."""
        return asyncio.timeout(self.settings.step_timeout_s + extra_s)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        await wait_event(self._stopping, seconds)

    # -- reading ----------------------------------------------------------------------

    async def _create_group(self) -> None:
        await streams.create_group(self._redis, keys.OUTBOX_STREAM, self.settings.group)

    async def _read_new(self) -> list[Entry]:
        async with self._redis_deadline(self.settings.block_ms / 1000):
            reply = await self._redis.xreadgroup(
                self.settings.group,
                self.name,
                {keys.OUTBOX_STREAM: ">"},
                count=self.settings.batch_size,
                block=self.settings.block_ms,
            )
        self._health.succeeded(Dependency.REDIS)
        per_stream = cast(list[tuple[bytes, _Rows]], reply or [])
        entries = [Entry(streams.text(i), f) for _, rows in per_stream for i, f in rows if f]
        self._metrics.entries_read.labels("new").inc(len(entries))
        return entries

    async def _claim_stale(self) -> None:
        """Take over entries left pending too long by any consumer (a dead one, or our own failures)."""
        cursor: bytes | str = "0-0"
        for _ in range(MAX_CLAIM_ROUNDS):
            if self._stopping.is_set():
                return
            async with self._redis_deadline():
                reply = await self._redis.xautoclaim(
                    keys.OUTBOX_STREAM,
                    self.settings.group,
                    self.name,
                    min_idle_time=self.settings.claim_idle_ms,
                    start_id=cursor,
                    count=self.settings.batch_size,
                )
            cursor, rows = cast(bytes, reply[0]), [(i, f) for i, f in cast(_Rows, reply[1]) if f]
            if rows:
                entries = await self._with_deliveries([Entry(streams.text(i), f) for i, f in rows])
                self._metrics.entries_read.labels("claimed").inc(len(entries))
                log.info("entries_claimed", consumer=self.name, count=len(entries))
                await self._process_claimed(entries)
            if streams.text(cursor) == "0-0":
                return

    async def _with_deliveries(self, entries: list[Entry]) -> list[Entry]:
        async with self._redis_deadline():
            rows = await self._redis.xpending_range(
                keys.OUTBOX_STREAM,
                self.settings.group,
                min=entries[0].entry_id,
                max=entries[-1].entry_id,
                count=len(entries) * 2 + 100,
                consumername=self.name,
            )
        counts = {streams.text(cast(bytes, r["message_id"])): int(r["times_delivered"]) for r in rows}
        return [Entry(e.entry_id, e.fields, counts.get(e.entry_id, 1)) for e in entries]

    async def _process_claimed(self, entries: list[Entry]) -> None:
        limit = self.settings.max_deliveries
        exhausted = [e for e in entries if e.deliveries > limit]
        for e in exhausted:
            # More deliveries than allowed failures: consumers died holding it, again and again.
            await self._bury(e, "claim", f"not acknowledged after {e.deliveries - 1} deliveries")
        suspects = [e for e in entries if SUSPECT_DELIVERIES <= e.deliveries <= limit]
        for e in suspects:
            await self._process([e])  # alone, so one bad entry cannot take a batch down with it
        rest = [e for e in entries if e.deliveries < SUSPECT_DELIVERIES]
        if rest:
            await self._process(rest)

    # -- one batch --------------------------------------------------------------------

    async def _process(self, entries: list[Entry]) -> None:
        self._in_hand = entries
        batch = _Batch(entries)
        self._metrics.batch_size.observe(len(entries))
        matches = self._decode(batch)
        if matches:
            races = [m.record for m in matches if isinstance(m.record, MatchRecord)]
            with self._metrics.stage_seconds.labels("pairs").time():
                pairs = await self._retry(Dependency.REDIS, lambda: self._readside.pair_holds(races))
            if pairs.contributions is not None:
                self._metrics.pair_population.set(pairs.contributions)
            with self._metrics.stage_seconds.labels("postgres").time():
                written = await self._retry(
                    Dependency.POSTGRES,
                    lambda: self._store.write(
                        [m.record for m in matches], pairs.held, pairs.short, pairs.population
                    ),
                )
            self._metrics.matches_inserted.inc(len(written.inserted))
            self._metrics.matches_duplicate.inc(len(matches) - len(written.inserted) - len(written.rejected))
            self._metrics.participant_rows.inc(written.participant_rows)
            self._metrics.results_held.inc(written.held)
            self._metrics.results_held_pairs.inc(written.held_pairs)
            for reason, n in written.held_by_reason.items():
                self._metrics.results_held_by_reason.labels(reason).inc(n)
            for decision, n in written.decided.items():
                self._metrics.review_decisions.labels(decision).inc(n)
            self._metrics.results_provisional.inc(written.provisional)
            self._metrics.placement_settled.labels("released").inc(written.placement_released)
            self._metrics.placement_settled.labels("held").inc(written.placement_held)
            matches = batch.fail(written.rejected, "postgres", matches)
            if self.settings.delay_after_commit_s:
                await asyncio.sleep(self.settings.delay_after_commit_s)
            if written.placed:
                # Before the ack: a kill in between re-delivers the batch, whose re-delivered races
                # read their placement decisions back (persistence/store.py) and append them again.
                await self._retry(Dependency.REDIS, lambda: self._readside.append_placements(written.placed))
            # Races and heats only: a tournament's final result has no board, recent result or rating.
            records = [m.record for m in matches if isinstance(m.record, MatchRecord)]
            tests = [m.record for m in matches if isinstance(m.record, TypingTestRecord)]
            new_tests = {t.match_id for t in tests if t.match_id in written.inserted}
            self._metrics.tests_stored.inc(len(new_tests))
            with self._metrics.stage_seconds.labels("readside").time():
                rated = await self._retry(
                    Dependency.REDIS,
                    lambda: self._readside.apply(
                        records, written.released, written.unranked, tests=tests, new_tests=new_tests
                    ),
                )
                if written.decided_results:
                    undone = await self._retry(
                        Dependency.REDIS,
                        lambda: self._readside.apply_decisions(written.decided_results, written.rejections),
                    )
                    self._metrics.ratings_undone.inc(undone)
            self._metrics.ratings_caught_up.inc(rated)
            publish = PublishBatch(self._publisher, matches)
            with self._metrics.stage_seconds.labels("kafka").time():
                rejected = await self._retry(Dependency.KAFKA, publish.run)
            matches = batch.fail(rejected, "kafka", matches)
            self._metrics.messages_published.inc(len(matches))
        with self._metrics.stage_seconds.labels("ack").time():
            await self._retry(Dependency.REDIS, lambda: self._settle(batch))
        self._in_hand = []

    def _decode(self, batch: _Batch) -> list[Match]:
        matches = []
        for entry in batch.entries:
            try:
                matches.append(decode(entry))
            except PoisonEntry as exc:
                batch.failed[entry.entry_id] = ("decode", str(exc))
        return matches

    async def _settle(self, batch: _Batch) -> None:
        done = [e.entry_id for e in batch.entries if e.entry_id not in batch.failed]
        if done:
            await self._redis.xack(keys.OUTBOX_STREAM, self.settings.group, *done)
            self._metrics.entries_acked.inc(len(done))
            now = now_ms()
            for entry_id in done:
                self._metrics.lag_seconds.observe(max(0, now - int(entry_id.split("-", 1)[0])) / 1000)
        for entry in batch.entries:
            failure = batch.failed.get(entry.entry_id)
            if failure is None:
                continue
            stage, reason = failure
            self._metrics.entry_failures.labels(stage).inc()
            if entry.deliveries >= self.settings.max_deliveries:
                await self._bury(entry, stage, reason)
            else:
                # Left pending: claimed again (by anyone) once idle for claim_idle_ms.
                log.warning(
                    "entry_failed",
                    entry_id=entry.entry_id,
                    match_id=entry.match_id,
                    stage=stage,
                    reason=reason,
                    deliveries=entry.deliveries,
                )

    async def _bury(self, entry: Entry, stage: str, reason: str) -> None:
        dead_id = await self._dead.bury(entry, group=self.settings.group, consumer=self.name, reason=reason)
        self._metrics.dead_letters.labels(stage).inc()
        log.error(
            "entry_dead_lettered",
            entry_id=entry.entry_id,
            dead_id=dead_id,
            match_id=entry.match_id,
            stage=stage,
            reason=reason,
            deliveries=entry.deliveries,
        )

    async def _retry(self, dependency: Dependency, step: Callable[[], Awaitable[T]]) -> T:
        """Run a step until it succeeds; a failing dependency is retried with backoff, forever.

        Only ``stop()`` ends this early (by cancelling after the grace period).
        """
        backoff = Backoff(self.settings.backoff_min_s, self.settings.backoff_max_s)
        last_touch = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(self.settings.step_timeout_s):
                    result = await step()
            except DependencyDown as exc:
                failed, reason = exc.dependency, exc.reason
            except TimeoutError:  # before REDIS_DOWN: a TimeoutError is an OSError
                failed, reason = dependency, f"no answer within {self.settings.step_timeout_s}s"
            except REDIS_DOWN as exc:
                failed, reason = Dependency.REDIS, f"{type(exc).__name__}: {exc}"
            else:
                self._health.succeeded(dependency)
                return result
            self._health.failed(failed, reason)
            self._metrics.retries.labels(failed.value).inc()
            if time.monotonic() - last_touch > self.settings.claim_idle_ms / 3000:
                await self._keep_in_hand()
                last_touch = time.monotonic()
            await asyncio.sleep(backoff())

    async def _keep_in_hand(self) -> None:
        """Reset the idle time of the entries in hand, so no other consumer claims them meanwhile."""
        ids: list[StreamIdT] = [e.entry_id for e in self._in_hand]
        if not ids:
            return
        with contextlib.suppress(*REDIS_DOWN):  # best effort; includes the deadline's TimeoutError
            async with self._redis_deadline():
                await self._redis.xclaim(
                    keys.OUTBOX_STREAM,
                    self.settings.group,
                    self.name,
                    min_idle_time=0,
                    message_ids=ids,
                    justid=True,
                )

    async def _hand_back(self, entries: list[Entry]) -> None:
        """After a cancelled batch: undo this delivery's count and make the entries claimable now."""
        by_count: dict[int, list[StreamIdT]] = {}
        for e in entries:
            by_count.setdefault(e.deliveries, []).append(e.entry_id)
        try:
            async with asyncio.timeout(HAND_BACK_TIMEOUT_S):
                for deliveries, ids in by_count.items():
                    await self._redis.xclaim(
                        keys.OUTBOX_STREAM,
                        self.settings.group,
                        self.name,
                        min_idle_time=0,
                        message_ids=ids,
                        idle=self.settings.claim_idle_ms,
                        retrycount=deliveries - 1,
                        justid=True,
                    )
            log.info("entries_handed_back", consumer=self.name, count=len(entries))
        except REDIS_DOWN as exc:  # the deadline's TimeoutError included
            log.warning("hand_back_failed", consumer=self.name, error=repr(exc))
        self._in_hand = []

    # -- housekeeping -------------------------------------------------------------------

    async def _maintain(self) -> None:
        state = await streams.tidy(
            self._redis,
            keys.OUTBOX_STREAM,
            self.settings.group,
            me=self.name,
            trim=self.settings.trim,
            prune_idle_ms=self.settings.prune_idle_ms,
        )
        if state is not None:
            self._metrics.pending.set(state.pending)
            if state.lag is not None:
                self._metrics.backlog.set(state.lag)
