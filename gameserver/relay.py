"""Spectators of races owned by other nodes: frames arrive over Redis pub/sub and are relayed.

The owner publishes a race's msgpack frames on ``race:{id}:updates`` (sharded pub/sub, SPUBLISH:
on a Redis Cluster a race's frames stay on its slot's shard, ``arena/shardfeed.py``) only while some node
says it is watched (``races:watched``, see ``arena.watched``; refreshed here), so unwatched races
cost Redis nothing. This node subscribes once per watched race, however many of its
spectators watch it, and writes each frame to every local spectator (msgpack bytes as they
came, or JSON made once per frame).
"""

from __future__ import annotations

import asyncio
import json

import msgpack
import redis.asyncio as aioredis
import structlog

from arena import keys, watched
from arena.clock import now_ms
from arena.codec import WireFormat
from arena.ids import NodeId, RaceId
from arena.shardfeed import ShardedFeed
from arena.tasks import stop_tasks
from gameserver.connection import Connection
from gameserver.frames import ws_frame

log = structlog.get_logger(__name__)

REFRESH_S = 3.0


class SpectatorRelay:
    def __init__(self, redis: aioredis.Redis, node_id: NodeId) -> None:
        self._redis = redis
        self._node_id = node_id
        self._feed = ShardedFeed(redis)
        self._watchers: dict[str, set[Connection]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()  # loops check it: a cancel can be swallowed (arena.tasks)
        self.frames_relayed = 0

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="relay-subscription"),
            asyncio.create_task(self._refresh_loop(), name="relay-refresh"),
        ]

    async def stop(self) -> None:
        await stop_tasks(self._tasks, self._stopping)
        self._tasks = []
        await self._feed.aclose()

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    def tasks_alive(self) -> bool:
        """Both loops run (the node's /readyz asks)."""
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    def watched_races(self) -> int:
        return len(self._watchers)

    async def watch(self, race_id: RaceId, conn: Connection) -> None:
        conns = self._watchers.get(race_id)
        if conns is None:
            conns = self._watchers[race_id] = set()
            await self._feed.subscribe(keys.race_updates(race_id))
            await watched.mark(self._redis, [race_id], now_ms())
        conns.add(conn)

    async def unwatch(self, race_id: RaceId, conn: Connection) -> None:
        conns = self._watchers.get(race_id)
        if conns is None:
            return
        conns.discard(conn)
        if not conns:
            del self._watchers[race_id]
            await self._feed.unsubscribe(keys.race_updates(race_id))

    async def _read_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                message = await self._feed.get_message(timeout=1.0)
            except Exception as exc:  # Redis gone, or the client in a bad state: retry in a second
                log.warning("relay_read_failed", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            if message is None:
                continue
            race_id = message.channel.split("{", 1)[-1].split("}", 1)[0]
            try:
                await self._deliver(race_id, message.data)
            except Exception:  # one bad frame costs that frame, never the relay
                log.exception("relay_deliver_failed", race_id=race_id)

    async def _deliver(self, race_id: str, payload: bytes) -> None:
        conns = self._watchers.get(race_id)
        if not conns:
            return
        frames: dict[WireFormat, bytes] = {}
        for conn in conns:
            frame = frames.get(conn.fmt)
            if frame is None:
                frame = frames[conn.fmt] = ws_frame(_in_format(payload, conn.fmt))
            self.frames_relayed += conn.write(frame)

    async def _refresh_loop(self) -> None:
        """Keep telling owners that these races are watched."""
        while not self._stopping.is_set():
            await asyncio.sleep(REFRESH_S)
            if not self._watchers:
                continue
            try:
                await watched.mark(self._redis, list(self._watchers), now_ms())
            except Exception as exc:  # Redis hiccup: the next round retries
                log.warning("relay_refresh_failed", error=str(exc))


def _in_format(payload: bytes, fmt: WireFormat) -> bytes | str:
    """The relayed msgpack payload as the spectator's format wants it."""
    if fmt is WireFormat.MSGPACK:
        return payload
    return json.dumps(msgpack.unpackb(payload, raw=False), separators=(",", ":"))
