"""Never silent: the races of a dead node are finalised from their checkpoints (issue 15, item 3).

Every node with checkpoints on (``ARENA_RACE_CHECKPOINT``) runs a reaper. Once a heartbeat
interval it reads ``checkpoints:nodes`` (node id -> region of every node that wrote a
checkpoint) and, for each node the registry no longer lists as alive (no heartbeat for three
intervals) in its own region (or in a region with no live node at all), finalises each race
listed in ``node:{id}:checkpoints``:

1. claim it: ``SET race:{id}:claim <me> NX EX`` — exactly one live node does the rest;
2. rebuild it from its checkpoint (``checkpoint.rebuild``: its journal replayed through ``Race``);
3. end it as aborted (``node lost``: its racers' partial results, DNF) unless its journal had
   already ended it, and append the record to the outbox (idempotent per race: a result the
   dead owner had written stays the only one);
4. delete its checkpoint and its stale ``race:{id}:state`` mirror, drop it from the live races
   index and from the dead node's list.

With adoption on (``ARENA_RACE_ADOPT``, the default), step 3 becomes: a race still running (or
waiting, or counting down) whose result is not in the outbox is handed to the node's ``adopt``
(``gameserver/adoption.py``), which runs it on for its players; only a race that is over, or
whose adoption fails, is finalised as aborted.

Each round also reads ``races:handoff:{region}``: the races a live, draining node of the region
hands off (drain with move, ``gameserver/mover.py``). Each is claimed and adopted the same way
(the outage given back runs from its freeze); one that cannot be adopted is left listed, never
aborted here: its node is alive and takes it back. A draining node adopts no hand-off.

A checkpoint that cannot be replayed is logged (``checkpoint_unreadable``), counted and cleaned
up. A node also reaps what its own id left behind at start (a restart after a crash: it holds
no race yet).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
import structlog

from arena import keys
from arena.clock import now_ms
from arena.ids import RaceId
from arena.outbox import OutboxWriter
from arena.redisutil import as_text, text_map
from arena.registry import NodeRegistry
from arena.tasks import stop_tasks
from gameserver.checkpoint import CheckpointError, replay
from gameserver.metrics import NodeMetrics
from gameserver.race import Race
from gameserver.settings import NodeSettings

# Runs a rebuilt race on as this node's own: (race, dead node, instant of its checkpoint's last
# entry, or of its freeze if a draining node handed it off; whether it was handed off).
Adopter = Callable[[Race, str, int, bool], Awaitable[None]]

NODE_LOST_REASON = "node lost"
# A claim outlives one finalisation by far; if the claimer dies mid-way another node retries after it.
CLAIM_TTL_S = 60


class Reaper:
    def __init__(
        self,
        redis: aioredis.Redis,
        registry: NodeRegistry,
        outbox: OutboxWriter,
        settings: NodeSettings,
        metrics: NodeMetrics,
        logger: structlog.stdlib.BoundLogger,
        adopt: Adopter | None = None,
        adopts_moves: Callable[[], bool] = lambda: True,
    ) -> None:
        self.redis = redis
        self.adopt = adopt  # None: every race found is finalised as aborted
        self.adopts_moves = adopts_moves  # False while this node drains: it takes no hand-off
        self.registry = registry
        self.outbox = outbox
        self.settings = settings
        self.metrics = metrics
        self.log = logger
        self.task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._run(), name="node-reaper")
        return self.task

    async def stop(self) -> None:
        await stop_tasks((self.task,), self._stopping)
        self.task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self.adopt_moved()
                await self.reap_once()
            except Exception as exc:  # Redis hiccup: the next round retries (claims expire)
                self.log.warning("reap_failed", error=repr(exc))

    async def reap_once(self) -> int:
        """Finalise the races of every dead node this node should look after; returns how many."""
        me = self.settings.node_id
        nodes = text_map(await self.redis.hgetall(keys.CHECKPOINT_NODES))
        if not any(n != me for n in nodes):
            return 0
        live = await self.registry.live_nodes()
        alive = {n.node_id for n in live}
        regions = {n.region for n in live}
        reaped = 0
        for node_id, region in nodes.items():
            if node_id in alive or node_id == me:
                continue
            if region == self.settings.region or region not in regions:
                reaped += await self.reap_node(node_id)
        return reaped

    async def adopt_moved(self) -> int:
        """Adopt the races draining nodes of this region hand off (``gameserver/mover.py``);
        returns how many. A race this node cannot adopt stays listed: its node takes it back."""
        if self.adopt is None or not self.adopts_moves():
            return 0
        me = self.settings.node_id
        offered = text_map(await self.redis.hgetall(keys.race_handoffs(self.settings.region)))
        adopted = 0
        for race_id, raw in offered.items():
            try:
                offer = json.loads(raw)
                node_id, at = str(offer["node"]), int(offer["at"])
            except (ValueError, KeyError, TypeError):
                self.log.error("handoff_unreadable", race_id=race_id, offer=raw[:200])
                await self.redis.hdel(keys.race_handoffs(self.settings.region), race_id)
                continue
            if node_id != me:
                adopted += await self._finalise(node_id, RaceId(race_id), moved_at=at)
        return adopted

    async def reap_node(self, node_id: str) -> int:
        """Finalise every checkpointed race of ``node_id`` (dead, or this node before its start)."""
        race_ids = await self.redis.smembers(keys.node_checkpoints(node_id))
        if not race_ids:
            # Forgotten; a node back with this id lists itself again with its next race.
            await self.redis.hdel(keys.CHECKPOINT_NODES, node_id)
            return 0
        reaped = 0
        for raw_id in race_ids:
            reaped += await self._finalise(node_id, RaceId(as_text(raw_id)))
        return reaped

    async def _finalise(self, node_id: str, race_id: RaceId, moved_at: int | None = None) -> int:
        """``moved_at``: the race was handed off by a live, draining node (frozen at that instant)."""
        me = self.settings.node_id
        claimed = await self.redis.set(keys.race_claim(race_id), me, nx=True, ex=CLAIM_TTL_S)
        if not claimed:  # another node has it
            return 0
        if moved_at is not None:
            return await self._adopt_moved(node_id, race_id, moved_at)
        if not await self.redis.sismember(keys.node_checkpoints(node_id), race_id):
            # Another node adopted or finalised it since we listed the dead node's races.
            await self.redis.delete(keys.race_claim(race_id))
            return 0
        raw = await self.redis.lrange(keys.race_checkpoint(race_id), 0, -1)
        s = self.settings
        players = 0
        try:
            race, last = replay(raw, s.race, s.scoring, s.fairplay)
        except CheckpointError as exc:
            outcome = "unreadable"
            self.log.error("checkpoint_unreadable", race_id=race_id, dead_node=node_id, error=str(exc))
        else:
            players = len(race.racers)
            if await self._adopted(race, node_id, last):
                self.metrics.races_reaped.labels("adopted").inc()
                return 1
            race.abort(now_ms(), NODE_LOST_REASON)  # nothing if its journal had ended it
            appended = await self.outbox.append(race.outbox_record())  # a typing test's own record
            outcome = race.state.value if appended else "already_written"
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.race_checkpoint(race_id), keys.race_state(race_id), keys.race_owner(race_id))
            pipe.zrem(keys.LIVE_RACES, race_id)
            pipe.srem(keys.node_checkpoints(node_id), race_id)
            pipe.hdel(keys.race_handoffs(self.settings.region), race_id)  # its node died moving it
            await pipe.execute()
        self.metrics.races_reaped.labels(outcome).inc()
        # A result the owner had written is only a clean-up; anything else is a race cut short.
        say = self.log.info if outcome == "already_written" else self.log.warning
        say("race_reaped", race_id=race_id, dead_node=node_id, outcome=outcome, players=players)
        return 1

    async def _adopt_moved(self, node_id: str, race_id: RaceId, moved_at: int) -> int:
        """A handed-off race, under its claim: adopt it, or leave it to its node (which takes
        it back after ``ARENA_NODE_DRAIN_MOVE_WAIT_S``). Nothing here aborts it: its node lives."""
        adopted = False
        try:
            # Re-read under the claim: its node may have taken it back since we listed it.
            handoffs = keys.race_handoffs(self.settings.region)
            if not await self.redis.sismember(keys.node_checkpoints(node_id), race_id):
                await self.redis.hdel(handoffs, race_id)  # finalised since (its node died): a stale offer
            elif await self.redis.hexists(handoffs, race_id):
                raw = await self.redis.lrange(keys.race_checkpoint(race_id), 0, -1)
                s = self.settings
                race, _ = replay(raw, s.race, s.scoring, s.fairplay)
                adopted = await self._adopted(race, node_id, moved_at, moved=True)
        except CheckpointError as exc:
            self.log.error("checkpoint_unreadable", race_id=race_id, moving_node=node_id, error=str(exc))
        finally:
            if not adopted:  # take_over deleted it when adopted
                await self.redis.delete(keys.race_claim(race_id))
        if adopted:
            self.metrics.races_reaped.labels("adopted").inc()
        return int(adopted)

    async def _adopted(self, race: Race, node_id: str, last: int, moved: bool = False) -> bool:
        """Hand a race that is not over to this node (``gameserver/adoption.py``); False when it
        is not to be adopted (over, adoption off) or the adoption failed: then it is aborted."""
        if self.adopt is None or race.ended:
            return False
        if await self.redis.exists(keys.outbox_written(race.id)):
            return False  # the owner wrote its result and died before deleting the checkpoint
        try:
            await self.adopt(race, node_id, last, moved)
        except Exception as exc:  # this race alone: it takes today's aborted path
            self.log.error("race_adoption_failed", race_id=race.id, dead_node=node_id, error=repr(exc))
            return False
        return True
