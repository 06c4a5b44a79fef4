"""Which nodes are alive, as the lobby sees them, and whether an assignment still holds.

``NodeWatch`` caches the registry's live node list briefly (every long-poll and ticket read
asks, so one read per ``refresh_s`` serves them all). When an assignment's node left
the registry (it stopped heartbeating: SIGKILL, crash, partition) while the race had not ended
(the race state hash a node mirrors, ``race:{id}:state``, does not say finished or aborted),
the race may have *moved*: a live node adopted it (``race:{id}:owner``, gameserver/adoption.py)
and the player is sent there; or it is about to (the dead node's checkpoint list still holds it
and a live node can adopt it): the assignment stands meanwhile. Otherwise it is *lost* (aborted by a reaper,
or no live node left to adopt it): the player is told ``node_lost`` and queues again.

``GET /v1/regions`` (the regions offered and their live nodes) is served by ``lobby.region_routes``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis

from arena import keys
from arena.ids import RaceId
from arena.protocol import RaceState
from arena.redisutil import as_text
from arena.registry import NodeInfo, NodeRegistry

ENDED_STATES = frozenset({RaceState.FINISHED.value, RaceState.ABORTED.value})
NODE_LOST_REASON = "the race's node stopped responding before the race ended; queue again"


class NodeWatch:
    def __init__(self, registry: NodeRegistry, redis: aioredis.Redis, *, refresh_s: float = 0.5) -> None:
        self._registry = registry
        self._redis = redis
        self._refresh_s = refresh_s
        self._nodes: list[NodeInfo] = []
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def live(self, region: str | None = None) -> list[NodeInfo]:
        """Live nodes (of ``region`` if given), at most ``refresh_s`` old."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._read_at >= self._refresh_s:
            async with self._lock:
                if loop.time() - self._read_at >= self._refresh_s:  # nobody refreshed while we waited
                    self._nodes = await self._registry.live_nodes()
                    self._read_at = loop.time()
        return [n for n in self._nodes if region is None or n.region == region]

    def forget(self) -> None:
        """Read the registry again on the next call (after a node refused us, say)."""
        self._read_at = -float("inf")

    async def is_alive(self, node_id: str) -> bool:
        return any(n.node_id == node_id for n in await self.live())

    async def race_ended(self, race_id: str) -> bool:
        state = await self._redis.hget(keys.race_state(RaceId(race_id)), "state")
        return state is not None and as_text(state) in ENDED_STATES

    async def assignment_lost(self, node_id: str, race_id: str) -> bool:
        """The node is gone and the race never ended nor moved: the player cannot race there."""
        return (await self.follow(node_id, race_id)).lost

    async def follow(self, node_id: str, race_id: str) -> Whereabouts:
        """Where a race assigned to ``node_id`` is now (one Redis round trip when the node died)."""
        if await self.is_alive(node_id):
            return Whereabouts()
        rid = RaceId(race_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.race_owner(rid))
            pipe.hget(keys.race_state(rid), "state")
            # Still on the dead node's checkpoint list: no reaper has adopted or aborted it yet.
            pipe.sismember(keys.node_checkpoints(node_id), rid)
            owner, state, checkpointed = await pipe.execute()
        live = await self.live()
        if owner is not None:
            adopter = next((n for n in live if n.node_id == as_text(owner)), None)
            if adopter is not None:
                return Whereabouts(moved_to=adopter)
        if state is not None and as_text(state) in ENDED_STATES:
            return Whereabouts()  # its players got the results over their sockets
        # Awaiting a reaper, and some node alive to be one: it moves within a few heartbeats.
        return Whereabouts(lost=not (checkpointed and live))


@dataclass(frozen=True, slots=True)
class Whereabouts:
    """What became of an assignment: lost (tell ``node_lost``), moved (to a live adopter), or
    neither (the node lives, the race ended, or an adoption is on its way)."""

    lost: bool = False
    moved_to: NodeInfo | None = None


@dataclass(frozen=True, slots=True)
class AssignmentView:
    """Where a player races and the tokens to get in (tickets and private races alike)."""

    race_id: str
    node_id: str
    url: str  # the node's WebSocket URL
    player_token: str  # for hello
    ticket: str  # the join ticket, for join
    region: str
