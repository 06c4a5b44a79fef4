"""Running a started tournament: rounds, heats on nodes, results, advancement, the final result.

The director calls ``step`` for every running tournament on each tick, and ``apply_result``
for every heat record the outbox delivers. Every change is a guarded write (``store.py``), so
a step repeated after a crash, or by the next director, finds the work done and moves on.

No heat is played twice: a heat's race is created on a node only after the heat is marked
``placing`` (attempt n); its seats reach the players only once it is recorded ``placed`` with
that race id. A director that dies in between leaves the heat ``placing``: the next one places
attempt n + 1, and the race of attempt n, which nobody was told about, is aborted by its node
("nobody joined") and ignored here, as is any record of a race that is not the heat's current
one. A heat is re-run only when its node died (or aborted it) before reporting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis
import structlog

from arena import keys
from arena.clock import now_ms
from arena.ids import RaceId
from arena.outbox import OutboxWriter
from arena.placement import Placer, SeatRequest
from arena.protocol import RaceState
from arena.redisutil import as_text
from arena.registry import NodeInfo
from arena.results import (
    FinalStanding,
    HeatRace,
    MatchRecord,
    SettledHeat,
    TournamentFinalRecord,
    final_match_id,
)
from tournaments.bracket import Entrant, RoundOutcome, Standing, deal_heats, seed_order
from tournaments.encoding import heat_fields
from tournaments.lease import Lease
from tournaments.metrics import DirectorMetrics
from tournaments.model import (
    Heat,
    HeatState,
    Seat,
    Tournament,
    TournamentState,
    check_heat_transition,
    check_tournament_transition,
)
from tournaments.rules import (
    Placing,
    decide_heat,
    final_placings,
    heat_deadline_ms,
    provisional_ranking,
    race_results,
    race_time_limit_s,
    ranking_scores,
)
from tournaments.settings import DirectorSettings
from tournaments.store import GuardedWrite, TournamentStore

log = structlog.get_logger(__name__)

PLACEMENT_RETRY_S = 1.0
ENDED_RACE_STATES = frozenset({RaceState.FINISHED.value, RaceState.ABORTED.value})


class NotLeader(Exception):
    """The lease is not held (any more): the director must not write."""


class Referee:
    def __init__(
        self,
        settings: DirectorSettings,
        redis: aioredis.Redis,
        store: TournamentStore,
        placer: Placer,
        lease: Lease,
        outbox: OutboxWriter,
        metrics: DirectorMetrics,
    ) -> None:
        self.settings = settings
        self._redis = redis
        self.store = store
        self.placer = placer
        self.lease = lease
        self.outbox = outbox
        self.metrics = metrics
        self._locks: dict[str, asyncio.Lock] = {}  # per tournament: decisions read and write as one
        self._retry_at: dict[str, float] = {}  # heat id -> loop time of the next placement try
        self._dead_seen: dict[str, int] = {}  # race id -> when its node was first seen dead (ms)

    def lock(self, tournament_id: str) -> asyncio.Lock:
        return self._locks.setdefault(tournament_id, asyncio.Lock())

    def forget(self, tournament_id: str) -> None:
        self._locks.pop(tournament_id, None)

    # ---- writes ------------------------------------------------------------------------

    def _write(self, t_id: str, guard: str, version: int) -> GuardedWrite:
        if not self.lease.held:
            raise NotLeader()
        return GuardedWrite(t_id, guard, version, epoch=self.lease.epoch)

    async def _commit(self, write: GuardedWrite) -> bool:
        outcome = await self.store.commit(write)
        if outcome == "ok":
            return True
        self.metrics.conflicts.labels(outcome).inc()
        log.info("tournament_write_refused", tournament_id=write.tournament_id, outcome=outcome)
        return False

    def _heat_write(self, old: Heat, new: Heat) -> GuardedWrite:
        if old.state is not new.state or old.state is HeatState.PLACING:
            check_heat_transition(old.state, new.state)
        key = keys.tournament_heat(old.tournament_id, old.round_no, old.heat_no)
        return self._write(old.tournament_id, key, old.version).hset(key, heat_fields(new))

    # ---- one look at a running tournament ----------------------------------------------

    async def step(self, t: Tournament, live: dict[str, NodeInfo]) -> None:
        if t.round == 0:
            async with self.lock(t.id):
                await self._open_round(t, 1, list(t.entrants))
            return
        counts = await self.store.heats_per_round(t.id)
        heats = await self.store.heats(t.id, t.round, counts[t.round - 1])
        if any(h is None for h in heats):
            log.error("heat_missing", tournament_id=t.id, round=t.round)
            return
        current = [h for h in heats if h is not None]
        for heat in current:
            if not heat.done:
                await self._drive(t, heat, live)
        if all(h.done for h in current):
            async with self.lock(t.id):
                await self._close_round(t)

    async def _drive(self, t: Tournament, heat: Heat, live: dict[str, NodeInfo]) -> None:
        if heat.state in (HeatState.PENDING, HeatState.PLACING):
            # placing: an attempt whose outcome we cannot know (its director died): a new one
            await self._place(t, heat)
        elif heat.state is HeatState.PLACED:
            await self._watch(t, heat, live)

    # ---- placing a heat's race ------------------------------------------------------

    async def _place(self, t: Tournament, heat: Heat) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at.get(heat.heat_id, 0.0):
            return
        placing = replace(
            heat, state=HeatState.PLACING, attempt=heat.attempt + 1, placing_epoch=self.lease.epoch
        )
        if not await self._commit(self._heat_write(heat, placing)):
            return
        placing = replace(placing, version=heat.version + 1)
        placed = await self.placer.place(
            t.spec.race_type,
            [t.spec.region],
            [SeatRequest(m.player_id, m.name) for m in heat.members],
            custom_text=t.spec.custom_text,
            heat={"tournament_id": t.id, "round": heat.round_no, "heat": heat.heat_no},  # into the record
        )
        now = now_ms()
        if placed is None:
            self.metrics.placements.labels("failed").inc()
            self._retry_at[heat.heat_id] = loop.time() + PLACEMENT_RETRY_S
            since = heat.failing_since or now
            if now - since >= self.settings.placement_timeout_s * 1000:
                async with self.lock(t.id):
                    await self._settle(t, placing, "unplaceable")
                return
            failed = replace(
                placing, state=HeatState.PENDING, failures=heat.failures + 1, failing_since=since
            )
            await self._commit(self._heat_write(placing, failed))
            return
        limit_s = race_time_limit_s(t.spec.race_type, len(t.spec.custom_text or ""), self.settings.race)
        new = replace(
            placing,
            state=HeatState.PLACED,
            race_id=placed.race_id,
            node_id=placed.node_id,
            url=placed.url,
            seats={pid: Seat(s.player_token, s.join_ticket) for pid, s in placed.seats.items()},
            placed_at=now,
            deadline_at=heat_deadline_ms(now, limit_s, self.settings.race, self.settings.heat_margin_s),
            failures=0,
            failing_since=None,
        )
        write = self._heat_write(placing, new)
        write.hset(
            keys.tournament_races(t.id), {placed.race_id: f"{heat.round_no}:{heat.heat_no}:{heat.race_no}"}
        )
        write.event("heat_placed", _heat_brief(new))
        if await self._commit(write):
            self._retry_at.pop(heat.heat_id, None)
            self.metrics.placements.labels("placed").inc()
            log.info(
                "heat_placed",
                tournament_id=t.id,
                round=heat.round_no,
                heat=heat.heat_no,
                race_no=heat.race_no,
                attempt=new.attempt,
                race_id=placed.race_id,
                node_id=placed.node_id,
            )
        # refused: a newer director took the heat over; this race's seats were never handed
        # out, so nobody joins it and its node aborts it.

    # ---- a placed heat whose result has not come -----------------------------------------

    async def _watch(self, t: Tournament, heat: Heat, live: dict[str, NodeInfo]) -> None:
        assert heat.race_id is not None
        now = now_ms()
        if heat.node_id in live:
            if heat.deadline_at is not None and now >= heat.deadline_at:
                async with self.lock(t.id):
                    await self._settle(t, heat, "timed_out")
            return
        # The node is gone. Its race may have moved: a live node adopted it (gameserver/adoption.py).
        rid = RaceId(heat.race_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.race_owner(rid))
            pipe.hget(keys.race_state(rid), "state")
            # Still on the dead node's checkpoint list: no reaper has adopted or aborted it yet.
            pipe.sismember(keys.node_checkpoints(heat.node_id or ""), rid)
            owner, state, awaiting = await pipe.execute()
        adopter = live.get(as_text(owner)) if owner is not None else None
        if adopter is not None:
            self._dead_seen.pop(heat.race_id, None)
            async with self.lock(t.id):
                await self._moved(heat, adopter)
            return
        # A race that ended just before may still deliver its record; one awaiting a reaper
        # is adopted within a few heartbeats while some node lives.
        ended = state is not None and as_text(state) in ENDED_RACE_STATES
        wait_s = 0.0
        if ended:
            wait_s = self.settings.dead_node_grace_s
        elif awaiting and live:
            wait_s = self.settings.adoption_wait_s
        if wait_s > 0:
            first = self._dead_seen.setdefault(heat.race_id, now)
            if now - first < wait_s * 1000:
                return
        await self._node_lost(t, heat, "node_lost")

    async def _moved(self, heat: Heat, adopter: NodeInfo) -> None:
        """The heat's race was adopted by a live node: its players rejoin it there (``/heat``
        answers with the adopter's URL; their tickets still name the dead node, which it honours)."""
        moved = replace(heat, node_id=adopter.node_id, url=adopter.url)
        write = self._heat_write(heat, moved)
        write.event("heat_moved", {**_heat_brief(moved), "from": heat.node_id})
        if await self._commit(write):
            self.metrics.heats_moved.inc()
            log.warning(
                "heat_moved",
                tournament_id=heat.tournament_id,
                round=heat.round_no,
                heat=heat.heat_no,
                race_id=heat.race_id,
                dead_node=heat.node_id,
                node_id=adopter.node_id,
            )

    async def _node_lost(self, t: Tournament, heat: Heat, reason: str) -> None:
        """Re-run the heat's race on another node, or settle the heat once re-runs are used up."""
        self._dead_seen.pop(heat.race_id or "", None)
        async with self.lock(t.id):
            if heat.reruns >= self.settings.max_reruns:
                await self._settle(t, heat, reason)
                return
            rerun = replace(
                heat,
                state=HeatState.PENDING,
                race_id=None,
                node_id=None,
                url=None,
                seats={},
                placed_at=None,
                deadline_at=None,
                reruns=heat.reruns + 1,
            )
            write = self._heat_write(heat, rerun)
            write.event("heat_rerun", {**_heat_brief(rerun), "reason": reason})
            if await self._commit(write):
                self.metrics.reruns.inc()
                log.warning(
                    "heat_rerun", tournament_id=t.id, round=heat.round_no, heat=heat.heat_no, reason=reason
                )

    # ---- deciding heats ----------------------------------------------------------------

    async def _settle(self, t: Tournament, heat: Heat, reason: str) -> None:
        """Decide a heat without a complete result (see rules.py). Caller holds the lock."""
        outcome = decide_heat(
            heat.members, heat.races, t.seeds, t.spec.heat_size, t.spec.advance, settled=True
        )
        new = replace(
            heat,
            state=HeatState.SETTLED,
            standings=tuple(outcome.standings),
            advancers=tuple(outcome.advancers),
            no_shows=(),
            reason=reason,
            finished_at=now_ms(),
        )
        if await self._decide(t, heat, new):
            self.metrics.heats.labels(reason).inc()
            log.warning(
                "heat_settled", tournament_id=t.id, round=heat.round_no, heat=heat.heat_no, reason=reason
            )

    async def _decide(self, t: Tournament, old: Heat, new: Heat) -> bool:
        """Write a heat's new state with the standings it implies, in one guarded write."""
        rounds = await self.store.all_heats(t.id)
        rounds = [[new if _same(h, new) else h for h in heats] for heats in rounds]
        ranking = provisional_ranking(_outcomes(t, rounds))
        write = self._heat_write(old, new)
        write.replace_zset(keys.tournament_rankings(t.id), ranking_scores(ranking))
        if new.done:
            write.event("heat_finished", _heat_result(new))
        write.event("standings", {"round": t.round, "standings": _standings_brief(t, ranking)})
        return await self._commit(write)

    async def apply_result(self, record: MatchRecord, entry_id: str) -> str:
        """A heat race's record from the outbox: applied, stale (already applied or superseded)
        or unknown (not a race this tournament placed)."""
        tid = record.tournament_id
        if tid is None:
            return "unknown"
        where = await self.store.race_location(tid, record.match_id)
        if where is None:
            return "unknown"
        async with self.lock(tid):
            t = await self.store.get(tid)
            heat = await self.store.heat(tid, where[0], where[1])
            if (
                t is None
                or heat is None
                or heat.state is not HeatState.PLACED
                or heat.race_id != record.match_id
            ):
                return "stale"
            nobody_came = record.state == RaceState.ABORTED.value and not record.participants
            if record.state == RaceState.FINISHED.value or nobody_came:
                await self._count_race(t, heat, record, entry_id)
                return "applied"
        # Aborted with players in it: its node was shutting down. Not the players' fault.
        await self._node_lost(t, heat, "race_aborted")
        return "rerun"

    async def apply_rejection(self, tid: str, race_id: str, player_id: str) -> str:
        """An operator rejected a heat result held for review (docs/TOURNAMENTS.md, "Results held
        for review"). While the heat's round is open, the result counts as flagged from now on
        (it scores like a DNF) and the heat is decided again; once the next round is dealt (or
        the tournament ended) the bracket stands: ``rejection_late``. Idempotent."""
        where = await self.store.race_location(tid, race_id)
        if where is None:
            return "unknown"
        async with self.lock(tid):
            t = await self.store.get(tid)
            heat = await self.store.heat(tid, where[0], where[1])
            if t is None or heat is None or race_id not in heat.race_ids:
                return "unknown"  # a superseded attempt, or a heat that was re-run
            if t.state is not TournamentState.RUNNING or heat.round_no != t.round:
                log.warning(
                    "heat_rejection_late",
                    tournament_id=tid,
                    round=heat.round_no,
                    race_id=race_id,
                    player_id=player_id,
                )
                return "rejection_late"
            i = heat.race_ids.index(race_id)
            if not any(r.player_id == player_id and r.valid for r in heat.races[i]):
                return "stale"  # already counted as flagged
            race = tuple(replace(r, valid=False) if r.player_id == player_id else r for r in heat.races[i])
            new = replace(heat, races=(*heat.races[:i], race, *heat.races[i + 1 :]))
            if heat.done:
                outcome = decide_heat(
                    heat.members,
                    new.races,
                    t.seeds,
                    t.spec.heat_size,
                    t.spec.advance,
                    settled=heat.state is HeatState.SETTLED,
                )
                new = replace(
                    new,
                    standings=tuple(outcome.standings),
                    advancers=tuple(outcome.advancers),
                    no_shows=tuple(outcome.no_shows),
                )
            if not await self._decide(t, heat, new):
                return "stale"
        log.info(
            "heat_result_rejected",
            tournament_id=tid,
            round=heat.round_no,
            heat=heat.heat_no,
            race_id=race_id,
            player_id=player_id,
            advancers=list(new.advancers),
        )
        return "rejected"

    async def _count_race(self, t: Tournament, heat: Heat, record: MatchRecord, entry_id: str) -> None:
        """One race of the heat is over: the next race of a points heat, or the heat's result."""
        results = tuple(race_results(record))
        now = now_ms()
        lag = max(0, now - int(entry_id.split("-", 1)[0]))
        races = (*heat.races, results)
        counted = replace(
            heat,
            races=races,
            race_ids=(*heat.race_ids, record.match_id),
            present=heat.present | {r.player_id for r in results},
            race_id=None,
            node_id=None,
            url=None,
            seats={},
            placed_at=None,
            deadline_at=None,
            result_lag_ms=lag,
        )
        if heat.race_no + 1 < t.spec.races_per_round:
            new = replace(counted, state=HeatState.PENDING, race_no=heat.race_no + 1)
        else:
            outcome = decide_heat(
                heat.members, races, t.seeds, t.spec.heat_size, t.spec.advance, settled=False
            )
            new = replace(
                counted,
                state=HeatState.FINISHED,
                standings=tuple(outcome.standings),
                advancers=tuple(outcome.advancers),
                no_shows=tuple(outcome.no_shows),
                finished_at=now,
            )
        if await self._decide(t, heat, new):
            self.metrics.result_lag_seconds.observe(lag / 1000)
            if new.done:
                self.metrics.heats.labels("finished").inc()
            log.info(
                "heat_result",
                tournament_id=t.id,
                round=heat.round_no,
                heat=heat.heat_no,
                race_id=record.match_id,
                state=new.state.value,
                lag_ms=lag,
            )

    # ---- rounds --------------------------------------------------------------------

    async def _open_round(self, t: Tournament, round_no: int, pool: Sequence[Entrant]) -> None:
        """Deal the players into the round's heats; a heat of one is a bye, decided at once."""
        dealt = deal_heats(seed_order(pool), t.spec.heat_size)
        counts = [*(await self.store.heats_per_round(t.id))[: round_no - 1], len(dealt)]
        state_key = keys.tournament_state(t.id)
        write = self._write(t.id, state_key, t.version).hset(
            state_key, {"round": round_no, "heats": _json(counts)}
        )
        heats = []
        now = now_ms()
        for heat_no, members in enumerate(dealt, start=1):
            heat = Heat(t.id, round_no, heat_no, HeatState.PENDING, 0, tuple(members))
            if len(members) == 1:
                outcome = decide_heat(members, [], t.seeds, t.spec.heat_size, t.spec.advance, settled=True)
                heat = replace(
                    heat,
                    state=HeatState.SETTLED,
                    standings=tuple(outcome.standings),
                    advancers=tuple(outcome.advancers),
                    reason="bye",
                    finished_at=now,
                )
            heats.append(heat)
            key = keys.tournament_heat(t.id, round_no, heat_no)
            write.hset(key, {**heat_fields(heat), "version": 0})
            write.hset(
                keys.tournament_assignments(t.id), {m.player_id: f"{round_no}:{heat_no}" for m in members}
            )
        rounds = [*(await self.store.all_heats(t.id))[: round_no - 1], heats]
        ranking = provisional_ranking(_outcomes(t, rounds))
        write.replace_zset(keys.tournament_rankings(t.id), ranking_scores(ranking))
        body = {"round": round_no, "heats": [_heat_brief(h) for h in heats]}
        write.event("round_started", body)
        if await self._commit(write):
            log.info("round_started", tournament_id=t.id, round=round_no, heats=len(heats), players=len(pool))

    async def _close_round(self, t: Tournament) -> None:
        """Every heat of the current round is decided: the next round, or the end."""
        rounds = await self.store.all_heats(t.id)
        current = rounds[t.round - 1]
        if not current or not all(h.done for h in current):
            return  # re-read under the lock: not done after all
        going = {pid for h in current for pid in h.advancers}
        if len(current) == 1 or not going:
            await self._finish(t, rounds, decided=len(current) == 1)
            return
        pool = [e for e in t.entrants if e.player_id in going]
        await self._open_round(t, t.round + 1, pool)

    # ---- the end ---------------------------------------------------------------------

    async def _finish(self, t: Tournament, rounds: list[list[Heat]], *, decided: bool) -> None:
        check_tournament_transition(t.state, TournamentState.FINISHED)
        placings = final_placings(_outcomes(t, rounds), t.spec.prizes, decided=decided)
        ended_at = max((h.finished_at or 0 for heats in rounds for h in heats), default=now_ms())
        record = _final_record(t, rounds, placings, ended_at)
        if await self.outbox.append(record):  # before the state: a retry finds the marker
            log.info("tournament_final_appended", tournament_id=t.id, match_id=record.match_id)
        state_key = keys.tournament_state(t.id)
        write = self._write(t.id, state_key, t.version).hset(
            state_key,
            {
                "state": TournamentState.FINISHED.value,
                "finished_at": ended_at,
                "final": _json([[p.rank, p.player_id, p.prize] for p in placings]),
            },
        )
        write.replace_zset(keys.tournament_rankings(t.id), ranking_scores([p.player_id for p in placings]))
        prizes = {p.player_id: p.prize for p in placings if p.prize is not None}
        write.hset(keys.tournament_prizes(t.id), prizes)
        names = {e.player_id: e.name for e in t.entrants}
        ranking = [
            {"rank": p.rank, "player_id": p.player_id, "name": names.get(p.player_id, ""), "prize": p.prize}
            for p in placings
        ]
        write.event("tournament_finished", {"ranking": ranking})
        for key in _all_keys(t, rounds):
            write.expire(key, self.settings.retain_s)
        if await self._commit(write):
            self.metrics.tournaments.labels("finished").inc()
            log.info("tournament_finished", tournament_id=t.id, players=len(placings), rounds=len(rounds))
            done = replace(t, state=TournamentState.FINISHED, finished_at=ended_at)
            await self.store.sync_indexes(done)
            self.forget(t.id)


# ---- helpers -------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _same(a: Heat, b: Heat) -> bool:
    return a.round_no == b.round_no and a.heat_no == b.heat_no


def _live_standings(t: Tournament, heat: Heat) -> list[Standing]:
    """A heat's standings now: decided ones as decided, others from the races played so far."""
    if heat.done:
        return list(heat.standings)
    return decide_heat(
        heat.members, heat.races, t.seeds, t.spec.heat_size, t.spec.advance, settled=True
    ).standings


def _outcomes(t: Tournament, rounds: Sequence[Sequence[Heat]]) -> list[RoundOutcome]:
    return [RoundOutcome(heats=[_live_standings(t, h) for h in heats]) for heats in rounds]


def _heat_brief(heat: Heat) -> dict[str, Any]:
    return {
        "round": heat.round_no,
        "heat": heat.heat_no,
        "state": heat.state.value,
        "race_no": heat.race_no,
        "race_id": heat.race_id,
        "node_id": heat.node_id,
        "players": [m.player_id for m in heat.members],
    }


def _heat_result(heat: Heat) -> dict[str, Any]:
    return {
        **_heat_brief(heat),
        "reason": heat.reason,
        "standings": [
            {"player_id": s.player_id, "points": s.points, "best_place": s.best_place, "wpm": s.total_wpm}
            for s in heat.standings
        ],
        "advancers": list(heat.advancers),
        "no_shows": list(heat.no_shows),
    }


STANDINGS_IN_EVENT = 50  # the top of the standings in each update; the full list is one GET away


def _standings_brief(t: Tournament, ranking: Sequence[str]) -> list[dict[str, Any]]:
    names = {e.player_id: e.name for e in t.entrants}
    return [
        {"rank": i, "player_id": pid, "name": names.get(pid, "")}
        for i, pid in enumerate(ranking[:STANDINGS_IN_EVENT], start=1)
    ]


def _final_record(
    t: Tournament, rounds: Sequence[Sequence[Heat]], placings: Sequence[Placing], ended_at: int
) -> TournamentFinalRecord:
    seeds = t.seeds
    entrants = {e.player_id: e for e in t.entrants}
    last_round = {m.player_id: h.round_no for heats in rounds for h in heats for m in h.members}
    standings = [
        FinalStanding(
            rank=p.rank,
            player_id=p.player_id,
            name=entrants[p.player_id].name,
            seed=seeds[p.player_id],
            rating=entrants[p.player_id].rating,
            last_round=last_round.get(p.player_id, 0),
            prize=p.prize,
        )
        for p in placings
    ]
    heat_races = [
        HeatRace(h.round_no, h.heat_no, race_no, race_id)
        for heats in rounds
        for h in heats
        for race_no, race_id in enumerate(h.race_ids)
    ]
    settled = [
        SettledHeat(h.round_no, h.heat_no, h.reason)
        for heats in rounds
        for h in heats
        if h.state is HeatState.SETTLED
    ]
    s = t.spec
    return TournamentFinalRecord(
        match_id=final_match_id(t.id),
        tournament_id=t.id,
        name=s.name,
        race_type=s.race_type,
        tournament_type=s.kind.value,
        visibility=s.visibility.value,
        rule=s.rule.value,
        heat_size=s.heat_size,
        advance=s.advance,
        races_per_round=s.races_per_round,
        rounds=len(rounds),
        created_at=t.created_at,
        started_at=t.started_at or t.created_at,
        ended_at=ended_at,
        standings=standings,
        heat_races=heat_races,
        settled_heats=settled,
    )


def _all_keys(t: Tournament, rounds: Sequence[Sequence[Heat]]) -> list[str]:
    per_tournament = [
        keys.tournament_state(t.id),
        keys.tournament_participants(t.id),
        keys.tournament_rankings(t.id),
        keys.tournament_races(t.id),
        keys.tournament_assignments(t.id),
        keys.tournament_prizes(t.id),
    ]
    heats = [keys.tournament_heat(t.id, h.round_no, h.heat_no) for hs in rounds for h in hs]
    return per_tournament + heats
