"""The node registry: which gameserver nodes are alive, where they are, how loaded.

Each node heartbeats a hash ``node:{id}`` (with a TTL) and its score in the ``nodes:alive``
sorted set (score = last heartbeat, ms). A node that stops heartbeating drops out of
``live_nodes`` after ``stale_after_ms``; whoever reads first removes its stale entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis

from arena import keys
from arena.clock import now_ms
from arena.redisutil import as_text, text_map


class NodeState(StrEnum):
    READY = "ready"
    DRAINING = "draining"
    # Up but not keeping up (loop lag over ARENA_NODE_FULL_LAG_MS, gameserver/admission.py): its
    # races run on, placement gives it no new ones until it catches up.
    FULL = "full"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    url: str  # public WebSocket URL players connect to
    http_url: str  # the players' listener over HTTP (/healthz, /readyz)
    admin_url: str  # the admin listener: /admin/* (seat reservations, drain, status), /metrics
    region: str
    capacity: int  # players
    players: int  # seated in live races
    races: int  # live races
    state: str  # NodeState value
    heartbeat_at: int  # ms

    @property
    def free_seats(self) -> int:
        return max(0, self.capacity - self.players)

    @property
    def accepting(self) -> bool:
        return self.state == NodeState.READY.value and self.free_seats > 0


def _decode(raw: Mapping[Any, Any]) -> NodeInfo | None:
    try:
        d = text_map(raw)
        return NodeInfo(
            node_id=d["node_id"],
            url=d["url"],
            http_url=d["http_url"],
            # A node from before the admin listener served /admin/* on its players' listener.
            admin_url=d.get("admin_url") or d["http_url"],
            region=d["region"],
            capacity=int(d["capacity"]),
            players=int(d["players"]),
            races=int(d["races"]),
            state=d["state"],
            heartbeat_at=int(d["heartbeat_at"]),
        )
    except (KeyError, ValueError):
        return None  # a half-written or foreign entry: treat as absent


class NodeRegistry:
    def __init__(self, redis: aioredis.Redis, *, stale_after_ms: int = 3000) -> None:
        self._redis = redis
        self.stale_after_ms = stale_after_ms

    async def heartbeat(self, info: NodeInfo) -> None:
        key = keys.node_info(info.node_id)
        fields = {k: str(v) for k, v in asdict(info).items()}
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.pexpire(key, self.stale_after_ms * 2)
            pipe.zadd(keys.NODES_ALIVE, {info.node_id: info.heartbeat_at})
            await pipe.execute()

    async def remove(self, node_id: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.node_info(node_id))
            pipe.zrem(keys.NODES_ALIVE, node_id)
            await pipe.execute()

    async def get(self, node_id: str) -> NodeInfo | None:
        raw = await self._redis.hgetall(keys.node_info(node_id))
        return _decode(raw) if raw else None

    async def live_nodes(self, region: str | None = None) -> list[NodeInfo]:
        """Nodes that heartbeat recently, in ``region`` if given; stale ones are cleaned up."""
        cutoff = now_ms() - self.stale_after_ms
        stale = await self._redis.zrangebyscore(keys.NODES_ALIVE, "-inf", f"({cutoff}")
        if stale:
            await self._redis.zrem(keys.NODES_ALIVE, *stale)
        ids = await self._redis.zrangebyscore(keys.NODES_ALIVE, cutoff, "+inf")
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.hgetall(keys.node_info(as_text(node_id)))
            raws = await pipe.execute()
        nodes = [n for n in (_decode(r) for r in raws if r) if n is not None]
        return [n for n in nodes if region is None or n.region == region]
