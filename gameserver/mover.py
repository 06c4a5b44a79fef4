"""Drain with move: a draining node hands its running races to live nodes of its region
(issue 15, item 5), so a rolling update does not wait for a marathon.

The races take the same path as a dead node's (``gameserver/reaper.py``,
``gameserver/adoption.py``); only the moving node is alive and says so:

1. ``Mover.start`` freezes every race the node holds that is not over (``RaceRoom.moving_at``):
   the tick skips it (no start, no time limit, no mirror), its inputs are dropped unanswered
   (the clients resend them above the ``seq`` of their next ``joined``), and a join is closed
   with 4012 (retry);
2. the next tick appends the race's whole journal to its checkpoint (the tick's append, forced)
   and, in the same round trip, lists it in ``races:handoff:{region}`` (race id -> this node and
   the freeze instant);
3. the reapers of the live nodes of the region read that hash once a heartbeat interval and
   adopt each race listed as they adopt a dead node's (claim, rebuild from the checkpoint, own);
   the outage they give back runs from the freeze, not from this node's heartbeat (it is alive);
4. once ``race:{id}:owner`` names another node, this node closes the race's players and
   spectators with 4012 "race moved" (they rejoin here, or anywhere, and their ticket is
   redirected to the adopter) and forgets the race without a result: the adopter writes it;
5. a race nobody adopted within ``ARENA_NODE_DRAIN_MOVE_WAIT_S`` is taken back under its claim
   (``SET race:{id}:claim NX``: not while a reaper adopts it), removed from the hash, given back
   the frozen time, and runs on here as in a drain without move; its players are closed with
   4012 as well, so they rejoin and resend what the freeze dropped. The outbox's append-once
   stays the guard against a result written twice.
"""

from __future__ import annotations

import asyncio
import json
from typing import Protocol

import redis.asyncio as aioredis
from structlog.typing import FilteringBoundLogger

from arena import keys
from arena.clock import now_ms
from arena.ids import RaceId
from arena.protocol import CloseCode
from arena.redisutil import as_text
from arena.tasks import stop_tasks
from gameserver.adoption import adopted_journal, extend_by_outage
from gameserver.drain import DrainReport
from gameserver.metrics import NodeMetrics
from gameserver.room import RaceRoom
from gameserver.settings import NodeSettings

CHECK_S = 0.2  # how often the mover asks who owns the races it handed off
SETTLE_S = 3.0  # at stop: how long to wait for races a reaper is adopting right now
TAKE_BACK_CLAIM_S = 10  # the claim held while taking a race back (released at once)
MOVED_REASON = "race moved to another node"
TAKEN_BACK_REASON = "race resumed on this node"


def movable(room: RaceRoom) -> bool:
    """A race that can move: checkpointed (and not frozen: its checkpoint is behind the race),
    not over, not already moving, not faulted."""
    return (
        room.checkpointed
        and not room.checkpoint_frozen
        and room.moving_at is None
        and not room.taken_back
        and not room.faulted
        and not room.finalized
        and not room.race.ended
    )


def handoff_entry(node_id: str, at: int) -> str:
    return json.dumps({"node": node_id, "at": at}, separators=(",", ":"))


class MoverHost(Protocol):
    """What the mover needs of its node (``gameserver.node.Node``): named here so that the node
    imports the mover and not the other way round."""

    settings: NodeSettings
    redis: aioredis.Redis
    metrics: NodeMetrics
    log: FilteringBoundLogger
    rooms: dict[RaceId, RaceRoom]
    drain_report: DrainReport | None

    def maybe_idle(self) -> None: ...


class Mover:
    """Owned by the node: started by a drain with move, stopped by ``Node.stop`` (after
    ``settle`` in ``Node.shutdown``) and by an undrain."""

    def __init__(self, node: MoverHost) -> None:
        self.node = node
        self.task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        if self.running:
            return
        self._stopping = asyncio.Event()
        self.freeze(now_ms())
        self.task = asyncio.create_task(self._run(), name="node-mover")

    async def stop(self) -> None:
        await stop_tasks((self.task,), self._stopping)
        self.task = None

    def freeze(self, now: int) -> int:
        """Freeze every movable race (the next tick hands it off); returns how many."""
        n = 0
        for room in self.node.rooms.values():
            if movable(room):
                room.moving_at = now
                n += 1
        return n

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.freeze(now_ms())  # a dead node's race adopted meanwhile moves on too
                await self.check(now_ms())
            except Exception as exc:  # Redis hiccup: the next round asks again
                self.node.log.warning("move_check_failed", error=repr(exc))
            await asyncio.sleep(CHECK_S)

    def moving(self) -> list[RaceRoom]:
        return [r for r in self.node.rooms.values() if r.moving_at is not None]

    async def check(self, now: int, *, wait_ms: int | None = None) -> int:
        """Forget the handed-off races another node owns now, take back those nobody adopted
        within ``wait_ms`` (default ``ARENA_NODE_DRAIN_MOVE_WAIT_S``); returns how many are
        still moving."""
        node = self.node
        me = node.settings.node_id
        if wait_ms is None:
            wait_ms = int(node.settings.drain_move_wait_s * 1000)
        handed = [r for r in self.moving() if r.handed_off]
        if handed:
            async with node.redis.pipeline(transaction=False) as pipe:
                for room in handed:
                    pipe.get(keys.race_owner(room.race.id))
                owners = await pipe.execute()
            for room, raw in zip(handed, owners, strict=True):
                owner = as_text(raw) if raw is not None else None
                if owner is not None and owner != me:
                    self.forget(room, owner, now)
                elif room.moving_at is not None and now - room.moving_at >= wait_ms:
                    await self.take_back(room, now)
        return len(self.moving())

    def forget(self, room: RaceRoom, owner: str, now: int) -> None:
        """Another node runs the race: send its sockets there (4012) and drop it, no result."""
        node = self.node
        race = room.race
        for conn in room.sockets():
            conn.close(CloseCode.RACE_MOVED, MOVED_REASON)
        node.rooms.pop(race.id, None)
        node.metrics.races_moved.labels("adopted").inc()
        if node.drain_report is not None:
            node.drain_report.moved += 1
        frozen_ms = now - (room.moving_at or now)
        players = len(race.racers)
        node.log.info("race_moved", race_id=race.id, to_node=owner, frozen_ms=frozen_ms, players=players)
        node.maybe_idle()

    async def take_back(self, room: RaceRoom, now: int) -> bool:
        """Nobody adopted the race in time: run it on here. False while a reaper holds its claim
        (it is being adopted: the next check finds its new owner)."""
        node = self.node
        race = room.race
        me = node.settings.node_id
        claim = keys.race_claim(race.id)
        if not await node.redis.set(claim, me, nx=True, ex=TAKE_BACK_CLAIM_S):
            return False
        try:
            async with node.redis.pipeline(transaction=False) as pipe:
                pipe.hdel(keys.race_handoffs(node.settings.region), race.id)
                pipe.get(keys.race_owner(race.id))
                _, raw = await pipe.execute()
        finally:
            await node.redis.delete(claim)
        owner = as_text(raw) if raw is not None else None
        if owner is not None and owner != me:  # adopted between our check and the claim
            self.forget(room, owner, now)
            return True
        frozen_ms = now - (room.moving_at or now)
        extend_by_outage(race, frozen_ms)  # the frozen time is given back, as an adopter would
        if race.journal is not None:
            race.journal.extend(adopted_journal(race, now))  # the checkpoint learns the new instants
        room.moving_at = None
        room.handed_off = False
        room.taken_back = True
        for conn in list(room.players.values()):  # they rejoin and resend what the freeze dropped
            conn.close(CloseCode.RACE_MOVED, TAKEN_BACK_REASON)
        node.metrics.races_moved.labels("taken_back").inc()
        node.log.warning("race_move_taken_back", race_id=race.id, frozen_ms=frozen_ms)
        return True

    async def settle(self) -> None:
        """At shutdown: resolve every moving race within ``SETTLE_S`` (adopted: forgotten; else
        taken back, so the shutdown aborts it and writes its result). A race still claimed by a
        reaper after that is left to it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_S
        while self.moving():
            try:
                await self.check(now_ms(), wait_ms=0)
            except Exception as exc:  # Redis gone: what is left is aborted here (append-once guards)
                self.node.log.warning("move_settle_failed", error=repr(exc))
                break
            if not self.moving() or loop.time() >= deadline:
                break
            await asyncio.sleep(CHECK_S)
        for room in self.moving():
            if room.handed_off:  # a reaper is adopting it: it is not ours to abort
                self.forget(room, "?", now_ms())
            else:  # never handed off: it simply runs on (and the shutdown aborts it)
                room.moving_at = None
                room.taken_back = True
