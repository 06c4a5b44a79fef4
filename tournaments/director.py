"""The tournament director: one active at a time, it runs every tournament's schedule.

Any number of directors run; the one holding the lease (``lease.py``) acts, the others
try to take the lease every ``lease_renew_s``. A leader that cannot renew stops acting
before its lease can lapse, and its successor continues from the state in Redis.

The leader owns two tasks besides the lease loop:

- the **tick** (every ``tick_s``): start due tournaments (scheduled ones at their time,
  instant ones once full; too few players cancels), then one ``Referee.step`` per running
  tournament (place heats, watch them, close rounds, finish);
- the **intake** (``intake.py``): heat records from the outbox, applied as they arrive, so
  standings move within a second of a heat's result.

``stop`` stops taking work, waits for the current tick, cancels the intake and releases the
lease so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import redis.asyncio as aioredis
import structlog

from arena import keys
from arena.clock import now_ms
from arena.outbox import OutboxWriter
from arena.placement import Placer
from arena.rating import RatingStore
from arena.registry import NodeInfo, NodeRegistry
from arena.tasks import stop_tasks
from arena.waits import wait_event
from tournaments.bracket import Entrant, seed_order
from tournaments.encoding import entrants_json
from tournaments.intake import ResultIntake
from tournaments.lease import Lease
from tournaments.metrics import DirectorMetrics
from tournaments.model import (
    Tournament,
    TournamentKind,
    TournamentState,
    check_tournament_transition,
    rounds_needed,
)
from tournaments.referee import NotLeader, Referee
from tournaments.rules import ranking_scores
from tournaments.settings import DirectorSettings
from tournaments.store import GuardedWrite, TournamentStore

log = structlog.get_logger(__name__)

STOP_DEADLINE_S = 5.0
STEPS_AT_ONCE = 32  # tournaments stepped concurrently within one tick


class Director:
    def __init__(
        self,
        settings: DirectorSettings,
        redis: aioredis.Redis,
        placer: Placer,
        metrics: DirectorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or DirectorMetrics()
        self._redis = redis
        self.store = TournamentStore(redis)
        self.registry = NodeRegistry(redis, stale_after_ms=settings.node_stale_ms)
        self.ratings = RatingStore(redis)
        self.lease = Lease(redis, settings.director_id, ttl_ms=int(settings.lease_ttl_s * 1000))
        self.referee = Referee(
            settings, redis, self.store, placer, self.lease, OutboxWriter(redis), self.metrics
        )
        self.intake = ResultIntake(
            redis,
            settings.director_id,
            self.referee.apply_result,
            block_ms=settings.intake_block_ms,
            claim_idle_ms=settings.claim_idle_ms,
            on_outcome=lambda outcome: self.metrics.results.labels(outcome).inc(),
            reject=self.referee.apply_rejection,
        )
        self.log = log.bind(director_id=settings.director_id)
        self._stopping = asyncio.Event()
        self._lease_task: asyncio.Task[None] | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._intake_task: asyncio.Task[None] | None = None
        self._intake_stopping = asyncio.Event()
        self._swept_at = 0.0
        self._steps = asyncio.Semaphore(STEPS_AT_ONCE)

    # ---- lifecycle -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._tick_task is not None and not self._tick_task.done()

    @property
    def loops_alive(self) -> bool:
        """The tick and the lease loop both run (``/readyz``); the intake runs only while leading."""
        return self.running and self._lease_task is not None and not self._lease_task.done()

    @property
    def leading(self) -> bool:
        return self.lease.held

    async def start(self) -> None:
        self._lease_task = asyncio.create_task(self._lease_loop(), name="director-lease")
        self._tick_task = asyncio.create_task(self._tick_loop(), name="director-tick")
        self.log.info("director_started")

    async def stop(self) -> None:
        """Stop taking work, let the current tick end (up to a deadline), then let go of the lease."""
        self._stopping.set()
        for task in (self._tick_task, self._lease_task):
            if task is None:
                continue
            done, _ = await asyncio.wait({task}, timeout=STOP_DEADLINE_S)
            if not done:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._demote()
        try:
            await self.lease.release()
        except Exception as exc:  # Redis gone: the lease lapses by itself
            self.log.warning("lease_release_failed", error=str(exc))
        self._tick_task = self._lease_task = None
        self.log.info("director_stopped")

    def tasks_alive(self) -> list[asyncio.Task[None]]:
        tasks = (self._lease_task, self._tick_task, self._intake_task)
        return [t for t in tasks if t is not None and not t.done()]

    # ---- leadership ------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.lease.token:
                    if not await self.lease.renew():
                        self.log.warning("leadership_lost")
                        await self._demote()
                elif await self.lease.acquire():
                    await self._elected()
            except Exception as exc:  # Redis hiccup: leadership lapses by itself if it lasts
                self.log.warning("lease_loop_failed", error=str(exc))
            if self.lease.token and not self.lease.held:
                self.lease.lose()  # could not renew in time: let go before anyone else can take it
                await self._demote()
            await wait_event(self._stopping, self.settings.lease_renew_s)

    async def _elected(self) -> None:
        self.metrics.elections.inc()
        self.metrics.leader.set(1)
        self.log.info("leadership_won", epoch=self.lease.epoch)
        self._intake_stopping = asyncio.Event()
        intake = self.intake.run(self._intake_stopping)
        self._intake_task = asyncio.create_task(intake, name="director-intake")

    async def _demote(self) -> None:
        self.metrics.leader.set(0)
        task, self._intake_task = self._intake_task, None
        if task is not None:  # flag, cancel, wait up to a deadline: a swallowed cancel cannot hang us
            await stop_tasks([task], self._intake_stopping, timeout_s=STOP_DEADLINE_S)

    # ---- the tick ----------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            if self.lease.held:
                started = loop.time()
                try:
                    await self.tick()
                except NotLeader:
                    pass
                except Exception:  # one bad tournament or a Redis hiccup must not stop the director
                    self.log.exception("director_tick_failed")
                self.metrics.tick_seconds.observe(loop.time() - started)
            await wait_event(self._stopping, self.settings.tick_s)

    async def tick(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._swept_at >= self.settings.instant_sweep_s:
            self._swept_at = loop.time()
            await self._sweep_instant()
        for tid in await self.store.due(now_ms()):
            try:
                await self._start(tid)
            except NotLeader:
                raise
            except Exception:  # this tournament's fault: the others still start and step
                self.metrics.faults.labels("start").inc()
                self.log.exception("tournament_start_failed", tournament_id=tid)
        running = await self.store.running_ids()
        if not running:
            return
        live = {n.node_id: n for n in await self.registry.live_nodes()}
        found = await self.store.get_many(running)
        await asyncio.gather(*(self._step(tid, t, live) for tid, t in zip(running, found, strict=True)))

    async def _step(self, tid: str, t: Tournament | None, live: dict[str, NodeInfo]) -> None:
        """One running tournament; tournaments step side by side, so a slow node holds up only its own."""
        async with self._steps:
            if t is None:
                await self.store.forget(tid)  # expired or deleted
            elif t.state is not TournamentState.RUNNING:
                await self.store.sync_indexes(t)  # a transition whose index update was lost
            else:
                try:
                    await self.referee.step(t, live)
                except NotLeader:
                    pass
                except Exception:
                    self.metrics.faults.labels("step").inc()
                    self.log.exception("tournament_step_failed", tournament_id=t.id)

    async def _sweep_instant(self) -> None:
        """Instant tournaments that filled up while the 'full' notice was lost."""
        ids = await self.store.waiting_instant()
        for t in await self.store.get_many(ids):
            if t is not None and (
                t.players >= t.spec.max_players or t.state is not TournamentState.REGISTERING
            ):
                await self.store.sync_indexes(t)

    # ---- starting ----------------------------------------------------------------------

    async def _start(self, tid: str) -> None:
        t = await self.store.get(tid)
        if t is None:
            await self.store.forget(tid)
            return
        now = now_ms()
        if t.state is not TournamentState.REGISTERING:
            await self.store.sync_indexes(t)
            return
        if t.spec.kind is TournamentKind.SCHEDULED and now < (t.spec.starts_at or 0):
            return
        if t.spec.kind is TournamentKind.INSTANT and t.players < t.spec.max_players:
            await self.store.sync_indexes(t)  # someone left after it filled: wait again
            return
        participants = await self.store.participants(tid)
        if len(participants) < self.settings.min_players:
            await self._cancel(
                t, f"{len(participants)} players registered, {self.settings.min_players} needed"
            )
            return
        ratings = await self.ratings.get_many(p.player_id for p in participants)
        entrants = tuple(
            seed_order([Entrant(p.player_id, p.name, ratings[p.player_id].rating) for p in participants])
        )
        check_tournament_transition(t.state, TournamentState.RUNNING)
        state_key = keys.tournament_state(t.id)
        planned = rounds_needed(len(entrants), t.spec.rules())
        write = self._write(t, state_key).hset(
            state_key,
            {
                "state": TournamentState.RUNNING.value,
                "started_at": now,
                "entrants": entrants_json(entrants),
                "rounds_planned": planned,
                "players": len(entrants),
            },
        )
        write.replace_zset(keys.tournament_rankings(t.id), ranking_scores([e.player_id for e in entrants]))
        write.event("tournament_started", {"players": len(entrants), "rounds_planned": planned})
        if await self.store.commit(write) != "ok":
            return  # a registration came in meanwhile (or a newer director acted): next tick
        started = replace(t, state=TournamentState.RUNNING, started_at=now, entrants=entrants)
        await self.store.sync_indexes(started)
        self.metrics.tournaments.labels("started").inc()
        if t.spec.kind is TournamentKind.SCHEDULED and t.spec.starts_at is not None:
            self.metrics.start_lateness_seconds.observe(max(0, now - t.spec.starts_at) / 1000)
        self.log.info("tournament_started", tournament_id=t.id, players=len(entrants), rounds_planned=planned)

    async def _cancel(self, t: Tournament, reason: str) -> None:
        check_tournament_transition(t.state, TournamentState.CANCELLED)
        now = now_ms()
        state_key = keys.tournament_state(t.id)
        write = self._write(t, state_key).hset(
            state_key, {"state": TournamentState.CANCELLED.value, "finished_at": now, "reason": reason}
        )
        write.event("tournament_cancelled", {"reason": reason})
        for key in (state_key, keys.tournament_participants(t.id)):
            write.expire(key, self.settings.retain_s)
        if await self.store.commit(write) == "ok":
            await self.store.sync_indexes(replace(t, state=TournamentState.CANCELLED, finished_at=now))
            self.metrics.tournaments.labels("cancelled").inc()
            self.log.info("tournament_cancelled", tournament_id=t.id, reason=reason)

    def _write(self, t: Tournament, guard: str) -> GuardedWrite:
        if not self.lease.held:
            raise NotLeader()
        return GuardedWrite(t.id, guard, t.version, epoch=self.lease.epoch)
