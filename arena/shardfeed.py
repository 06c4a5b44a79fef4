"""Subscriptions to sharded pub/sub channels (SSUBSCRIBE), read by one loop, on Redis or a Redis Cluster.

Race frames (``race:{id}:updates``) go out with SPUBLISH: on a Redis Cluster a shard channel
lives on the master that owns its slot, so a frame crosses one shard, not the whole cluster bus
as a classic PUBLISH does, and fan-out grows with the shards. Redis 7 takes the same commands
on a single Redis, so there is one code path. redis-py's cluster pub/sub keeps one connection
per master and moves a channel to its slot's new owner after a failover or MOVED.

``get_message`` waits for a subscription when there is none (a pub/sub without subscriptions
has no connection to read), so a reader loop can call it all along.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import redis.asyncio as aioredis

from arena.redisutil import as_text


@dataclass(frozen=True, slots=True)
class ShardMessage:
    channel: str
    data: bytes


class ShardedFeed:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._channels: set[str] = set()
        self._any = asyncio.Event()  # set while there is at least one subscription

    @property
    def channels(self) -> int:
        return len(self._channels)

    async def subscribe(self, *channels: str) -> None:
        await self._pubsub.ssubscribe(*channels)
        self._channels.update(channels)
        self._any.set()

    async def unsubscribe(self, *channels: str) -> None:
        mine = [c for c in channels if c in self._channels]
        if not mine:
            return
        self._channels.difference_update(mine)
        if not self._channels:
            self._any.clear()
        await self._pubsub.sunsubscribe(*mine)

    async def get_message(self, timeout: float) -> ShardMessage | None:
        """The next frame of a subscribed channel, or None after ``timeout`` seconds."""
        if not self._channels:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._any.wait()
            return None
        message = await self._pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=timeout)
        if message is None or message.get("type") != "smessage":
            return None
        return ShardMessage(as_text(message["channel"]), message["data"])

    async def aclose(self) -> None:
        self._channels.clear()
        await self._pubsub.aclose()
