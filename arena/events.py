"""Change notices for long-polls: one Redis pub/sub connection per process, channels on demand.

A waiter gets an ``asyncio.Event`` set whenever a message arrives on its channel; it then
re-reads the state it cares about. Notices are hints only: waiters also re-read on a timer,
so a lost message or a pub/sub outage delays an answer, never loses it.
Used by ticket long-polls (``arena.tickets``) and the lobby's private races.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import structlog

from arena.redisutil import as_text

log = structlog.get_logger(__name__)


class ChannelEvents:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pubsub: Any = None  # redis.asyncio.client.PubSub, created on first use
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    @asynccontextmanager
    async def watch(self, channel: str) -> AsyncIterator[asyncio.Event]:
        """Subscribe for the duration of the block; the event is set on each notice."""
        event = await self._subscribe(channel)
        try:
            yield event
        finally:
            await self._unsubscribe(channel, event)

    async def _subscribe(self, channel: str) -> asyncio.Event:
        event = asyncio.Event()
        waiters = self._waiters.setdefault(channel, set())
        waiters.add(event)
        if self._closed:
            return event  # shutting down: the waiter's timer still answers it
        if len(waiters) == 1:
            try:
                if self._pubsub is None:
                    self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(channel)
            except Exception as exc:  # the waiter still re-reads on its timer
                log.warning("events_subscribe_failed", error=str(exc))
        if self._reader is None and self._pubsub is not None:
            self._reader = asyncio.create_task(self._read(), name="channel-events")
        return event

    async def _unsubscribe(self, channel: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(channel)
        if waiters is None:
            return
        waiters.discard(event)
        if waiters:
            return
        del self._waiters[channel]
        if self._pubsub is None or self._closed:
            return
        try:
            await self._pubsub.unsubscribe(channel)
        except Exception as exc:
            log.warning("events_unsubscribe_failed", error=str(exc))

    async def _read(self) -> None:
        # Ends on the flag too: redis-py can swallow a cancel that lands mid-read (redis/redis-py#2028).
        while not self._closed:
            try:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except Exception as exc:  # connection trouble: waiters fall back to their timers
                log.warning("events_read_failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            if msg is None or msg.get("type") != "message":
                continue
            for event in self._waiters.get(as_text(msg["channel"]), ()):
                event.set()

    async def aclose(self) -> None:
        self._closed = True
        for waiters in self._waiters.values():  # wake long-polls so they answer now
            for event in waiters:
                event.set()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
