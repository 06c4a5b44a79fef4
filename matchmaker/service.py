"""The matchmaker: pairs queued tickets into races, places them on nodes, publishes assignments.

For each queue (race type x region) a pass:

1. takes the queue's short lease (another matchmaker pairing it right now means skip it:
   only an optimisation, the claims below are what make double matching impossible);
2. peeks the oldest tickets, and the long-waiting ones of neighbouring regions;
3. forms groups (``pairing.form_groups``) and claims them atomically, group by group;
4. hands the claimed batch to a placement task and moves on: the task reserves seats on a
   node for each group, then assigns (matched) or releases (back to the queue) the tickets.

A reaper task requeues claims whose deadline passed, whoever owned them, so a matchmaker that
dies mid-batch loses no ticket. Several matchmakers may run against one Redis.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from arena import keys
from arena.clock import now_ms
from arena.placement import Placed, Placer, SeatRequest
from arena.tickets import Assignment, QueuedTicket, QueueRef, QueueStats, TicketStore
from arena.waits import wait_event, within
from matchmaker.metrics import MatchmakerMetrics
from matchmaker.pairing import Group, form_groups
from matchmaker.settings import MatchmakerSettings

log = structlog.get_logger(__name__)

LEASE_MS = 2000  # far longer than a pass (peek + pair + claim) takes
STATS_EVERY_S = 1.0
ERROR_BACKOFF_S = 1.0
LOOP_STALE_S = 10.0  # /readyz: the loop has not finished a round for this long (it is stuck)
PROBE_TIMEOUT_S = 2.0  # /readyz: Redis must answer a PING within this
_WAIT_EWMA_ALPHA = 0.2

# KEYS[1] lease. ARGV[1] owner. Deletes the lease only if we still hold it.
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class _Part:
    """The tickets of one group that live in one queue, under one claim."""

    queue: QueueRef
    claim_id: str
    tickets: tuple[QueuedTicket, ...]


@dataclass(frozen=True, slots=True)
class _Claimed:
    group: Group
    parts: tuple[_Part, ...]


class Matchmaker:
    def __init__(
        self,
        settings: MatchmakerSettings,
        redis: aioredis.Redis,
        tickets: TicketStore,
        placer: Placer,
        metrics: MatchmakerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.rules = settings.rules()
        self.tickets = tickets
        self.placer = placer
        self.metrics = metrics or MatchmakerMetrics()
        self.owner = settings.matchmaker_id
        self.queues = [QueueRef(t, r) for t in settings.race_types for r in settings.regions]
        self._redis = redis
        self._release_lease = redis.register_script(_RELEASE_LEASE)
        self._lease_token = f"{self.owner}:{secrets.token_hex(4)}"
        self._slots = asyncio.Semaphore(settings.max_inflight)
        self._inflight: dict[asyncio.Task[None], list[_Claimed]] = {}
        self._wait_ewma_ms: dict[QueueRef, float] = {}
        self._stats_at: dict[QueueRef, float] = {}
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._reaper_task: asyncio.Task[None] | None = None
        self._next_queue = 0
        self._round_ended_at = 0.0  # monotonic: when the loop last finished a round, well or not
        self.log = log.bind(matchmaker_id=self.owner)

    # ---- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        if self.running:
            return
        self._stopping.clear()
        self._round_ended_at = time.monotonic()
        self._loop_task = asyncio.create_task(self._loop(), name=f"{self.owner}-loop")
        self._reaper_task = asyncio.create_task(self._reap_loop(), name=f"{self.owner}-reaper")
        self.log.info("matchmaker_started", queues=[str(q) for q in self.queues])

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def readiness(self) -> str | None:
        """None when the matchmaker can make matches, else why not (``/readyz``): its loop runs
        and finishes rounds, its reaper runs, and Redis answers."""
        if not self.running:
            return "stopped"
        if self._reaper_task is None or self._reaper_task.done():
            return "reaper stopped"
        stalled = time.monotonic() - self._round_ended_at
        if stalled > LOOP_STALE_S:
            return f"loop stuck: no round ended for {stalled:.0f} s"
        try:
            await within(self._redis.ping(), PROBE_TIMEOUT_S)
        except Exception as exc:
            return f"redis: {exc!r}"
        return None

    async def stop(self, deadline_s: float = 5.0) -> None:
        """Stop pairing, let placements finish until the deadline, cancel and release the rest."""
        self._stopping.set()
        started = time.monotonic()
        if self._loop_task is not None:
            await _finish(self._loop_task, deadline_s)
        remaining = max(0.0, deadline_s - (time.monotonic() - started))
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=remaining)
            unfinished = [claimed for task in pending for claimed in self._inflight.get(task, [])]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self._release(unfinished)  # back to the queue now rather than at the deadline
        if self._reaper_task is not None:
            await _finish(self._reaper_task, 0.0)
        self._loop_task = self._reaper_task = None
        self.log.info("matchmaker_stopped")

    # ---- the loop ----------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            pause = self.settings.poll_interval_s
            try:
                if await self._round(settle_inline=False):
                    pause = 0.0  # a queue has more than a pool's worth: go straight on
            except Exception:  # Redis trouble or a bug: log, back off, keep serving
                self.log.exception("matchmaker_round_failed")
                pause = ERROR_BACKOFF_S
            self._round_ended_at = time.monotonic()
            if pause > 0:
                await wait_event(self._stopping, pause)

    async def run_once(self) -> None:
        """One round over every queue, placing what it claims before returning (tests, tools)."""
        await self._round(settle_inline=True)

    async def _round(self, *, settle_inline: bool) -> bool:
        """One pass per queue, starting at a rotating queue; True if a queue had a backlog."""
        backlog = False
        start = self._next_queue
        self._next_queue = (self._next_queue + 1) % len(self.queues)
        for queue in self.queues[start:] + self.queues[:start]:
            if self._stopping.is_set() and not settle_inline:
                break
            claimed, full_pool = await self._pass(queue)
            backlog = backlog or full_pool
            if not claimed:
                continue
            if settle_inline:
                await self._settle(claimed)
                continue
            try:
                await self._spawn_settle(claimed)
            except asyncio.CancelledError:  # stopped while waiting for a slot: give them back
                await self._release(claimed)
                raise
        return backlog

    async def _pass(self, queue: QueueRef) -> tuple[list[_Claimed], bool]:
        """Peek, pair and claim one queue under its lease; returns the claimed groups."""
        lease = keys.mm_lease(queue.race_type, queue.region)
        if not await self._redis.set(lease, self._lease_token, nx=True, px=LEASE_MS):
            return [], False
        started = time.perf_counter()
        try:
            now = now_ms()
            home = await self.tickets.peek(queue, limit=self.settings.pool_size)
            self.metrics.queue_depth.labels(queue.race_type, queue.region).set(home.depth)
            neighbours = await self._peek_neighbours(queue, now)
            groups = form_groups(home.tickets, neighbours, self.rules, now)
            claimed = await self._claim(queue, groups)
            await self._maybe_publish_stats(queue)
        finally:
            await self._release_lease(keys=[lease], args=[self._lease_token])
            self.metrics.pass_seconds.observe(time.perf_counter() - started)
        return claimed, len(home.tickets) >= self.settings.pool_size

    async def _peek_neighbours(self, queue: QueueRef, now: int) -> list[QueuedTicket]:
        if self.settings.neighbour_pool_size <= 0:
            return []
        cutoff = now - self.rules.neighbour_wait_ms
        out: list[QueuedTicket] = []
        for region in self.settings.neighbours.get(queue.region, ()):
            snapshot = await self.tickets.peek(
                QueueRef(queue.race_type, region),
                limit=self.settings.neighbour_pool_size,
                enqueued_before=cutoff,
            )
            out += snapshot.tickets
        return out

    async def _claim(self, queue: QueueRef, groups: list[Group]) -> list[_Claimed]:
        """Claim each group's home part in one call, then its neighbour parts; a group whose
        neighbour part was taken meanwhile gives its other parts back."""
        if not groups:
            return []
        ttl_ms = int(self.settings.claim_ttl_s * 1000)
        home_parts = [tuple(t for t in g.tickets if t.region == queue.region) for g in groups]
        claim = await self.tickets.claim(
            queue, [[t.id for t in part] for part in home_parts], owner=self.owner, ttl_ms=ttl_ms
        )
        held: list[list[_Part]] = []
        for part, ok in zip(home_parts, claim.claimed, strict=True):
            held.append([_Part(queue, claim.claim_id, part)] if ok else [])
        self.metrics.claim_conflicts.inc(claim.claimed.count(False))
        await self._claim_foreign(queue, groups, held, ttl_ms)
        return [
            _Claimed(group, tuple(parts))
            for group, parts in zip(groups, held, strict=True)
            if parts and sum(len(p.tickets) for p in parts) == len(group.tickets)
        ]

    async def _claim_foreign(
        self, queue: QueueRef, groups: list[Group], held: list[list[_Part]], ttl_ms: int
    ) -> None:
        by_region: dict[str, list[int]] = defaultdict(list)
        for i, group in enumerate(groups):
            if held[i] and any(t.region != queue.region for t in group.tickets):
                for region in sorted({t.region for t in group.tickets} - {queue.region}):
                    by_region[region].append(i)
        failed: set[int] = set()
        for region, indexes in by_region.items():
            indexes = [i for i in indexes if i not in failed]
            if not indexes:
                continue
            other = QueueRef(queue.race_type, region)
            parts = [tuple(t for t in groups[i].tickets if t.region == region) for i in indexes]
            claim = await self.tickets.claim(
                other, [[t.id for t in p] for p in parts], owner=self.owner, ttl_ms=ttl_ms
            )
            for i, part, ok in zip(indexes, parts, claim.claimed, strict=True):
                if ok:
                    held[i].append(_Part(other, claim.claim_id, part))
                else:
                    failed.add(i)
        if failed:
            self.metrics.claim_conflicts.inc(len(failed))
            await self._release([_Claimed(groups[i], tuple(held[i])) for i in failed])
            for i in failed:
                held[i] = []

    # ---- placing and assigning ---------------------------------------------------

    async def _spawn_settle(self, claimed: list[_Claimed]) -> None:
        await self._slots.acquire()  # back-pressure: at most max_inflight batches being placed
        task = asyncio.create_task(self._settle(claimed), name=f"{self.owner}-settle")
        self._inflight[task] = claimed
        self.metrics.inflight_batches.set(len(self._inflight))

        def done(t: asyncio.Task[None]) -> None:
            self._inflight.pop(t, None)
            self._slots.release()
            self.metrics.inflight_batches.set(len(self._inflight))
            if not t.cancelled() and t.exception() is not None:
                self.log.error("settle_failed", error=repr(t.exception()))

        task.add_done_callback(done)

    async def _settle(self, claimed: list[_Claimed]) -> None:
        """Place every group of a batch on a node, then assign or release its tickets."""
        # Whatever is not placed well before the claims expire is released, not left to the reaper.
        budget_s = max(0.5, self.settings.claim_ttl_s - 1.0)
        placed = await asyncio.gather(*(self._place(c.group, budget_s) for c in claimed))
        assignments: dict[tuple[QueueRef, str], list[tuple[str, Assignment]]] = defaultdict(list)
        failed: list[_Claimed] = []
        for item, result in zip(claimed, placed, strict=True):
            if result is None or any(t.player_id not in result.seats for t in item.group.tickets):
                failed.append(item)
                continue
            self.metrics.races_placed.labels(item.group.anchor.race_type, item.group.kind.value).inc()
            for part in item.parts:
                for t in part.tickets:
                    assignments[(part.queue, part.claim_id)].append((t.id, _assignment(result, t)))
        await self._release(failed)
        for (queue, claim_id), batch in assignments.items():
            ok = await self.tickets.assign(queue, claim_id, batch)
            self._record_matches(
                queue, claimed, {tid for (tid, _), good in zip(batch, ok, strict=True) if good}
            )
            lost = ok.count(False)
            if lost:
                self.metrics.assignments_lost.inc(lost)
                self.log.warning("assignments_lost", queue=str(queue), tickets=lost)
        self.log.debug("batch_settled", groups=len(claimed), failed=len(failed))

    async def _place(self, group: Group, budget_s: float) -> Placed | None:
        regions = [group.region]
        # The whole group may move to a neighbouring region only if everyone in it may.
        now = now_ms()
        if all(now - t.enqueued_at >= self.rules.neighbour_wait_ms for t in group.tickets):
            regions += [r for r in self.settings.neighbours.get(group.region, ()) if r not in regions]
        players = [SeatRequest(t.player_id, t.name) for t in group.tickets]
        try:
            return await within(
                self.placer.place(group.anchor.race_type, regions, players), budget_s
            )
        except TimeoutError:
            self.log.warning("placement_timed_out", region=group.region, players=len(players))
            return None
        except Exception:  # a placer bug must not strand the batch: release and retry later
            self.log.exception("placement_crashed")
            return None

    def _record_matches(self, queue: QueueRef, claimed: list[_Claimed], assigned: set[str]) -> None:
        now = now_ms()
        waits: list[int] = []
        for item in claimed:
            kind = item.group.kind.value
            for part in item.parts:
                if part.queue != queue:
                    continue
                for t in part.tickets:
                    if t.id in assigned:
                        waits.append(now - t.enqueued_at)
                        self.metrics.tickets_matched.labels(t.race_type, kind).inc()
                        self.metrics.time_to_match_seconds.labels(t.race_type).observe(
                            (now - t.enqueued_at) / 1000
                        )
        if waits:
            mean = sum(waits) / len(waits)
            old = self._wait_ewma_ms.get(queue)
            self._wait_ewma_ms[queue] = mean if old is None else old + _WAIT_EWMA_ALPHA * (mean - old)

    async def _release(self, claimed: list[_Claimed]) -> None:
        by_claim: dict[tuple[QueueRef, str], list[str]] = defaultdict(list)
        for item in claimed:
            for part in item.parts:
                by_claim[(part.queue, part.claim_id)] += [t.id for t in part.tickets]
        for (queue, claim_id), ids in by_claim.items():
            try:
                n = await self.tickets.release(queue, claim_id, ids)
            except Exception as exc:  # the reaper returns them at the claim deadline
                self.log.warning("release_failed", queue=str(queue), error=str(exc))
                continue
            self.metrics.tickets_released.inc(n)

    async def _maybe_publish_stats(self, queue: QueueRef) -> None:
        """The queue's figures for expected waits; at most once a second per queue."""
        now = time.monotonic()
        if now - self._stats_at.get(queue, -STATS_EVERY_S) < STATS_EVERY_S:
            return
        self._stats_at[queue] = now
        r = self.rules
        stats = QueueStats(
            wait_ms=int(self._wait_ewma_ms.get(queue, 0.0)),
            fallback_ms=r.fallback_wait_ms,
            neighbour_ms=r.neighbour_wait_ms,
            max_wait_ms=r.max_wait_ms,
        )
        await self.tickets.set_stats(queue, stats)

    # ---- the reaper --------------------------------------------------------------

    async def _reap_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.reap()
            except Exception as exc:
                self.log.warning("reap_failed", error=str(exc))
            await wait_event(self._stopping, self.settings.reap_interval_s)

    async def reap(self) -> int:
        """Requeue every expired claim of the served queues; returns how many."""
        total = 0
        for queue in self.queues:
            n = await self.tickets.reap(queue)
            if n:
                self.metrics.tickets_reaped.inc(n)
                self.log.warning("claims_reaped", queue=str(queue), tickets=n)
            total += n
        return total


def _assignment(placed: Placed, ticket: QueuedTicket) -> Assignment:
    seat = placed.seats[ticket.player_id]
    return Assignment(
        race_id=placed.race_id,
        node_id=placed.node_id,
        url=placed.url,
        player_token=seat.player_token,
        join_ticket=seat.join_ticket,
        region=placed.region,
    )


async def _finish(task: asyncio.Task[None], deadline_s: float) -> None:
    """Wait for a task up to a deadline, then cancel it; either way wait for it to end."""
    done, _ = await asyncio.wait({task}, timeout=deadline_s)
    if not done:
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
