"""Appends finished matches to the durable outbox stream, exactly once per match.

Nodes append races and heats (``MatchRecord``), the tournament director appends a tournament's
final result (``TournamentFinalRecord``); the entry's ``kind`` tells a consumer which it is.

A Lua script sets a per-match marker and appends in one atomic step, so a retry after a
lost reply (the append happened, the answer did not arrive) never writes the match twice.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from arena import keys
from arena.ids import RaceId

log = structlog.get_logger(__name__)

# KEYS[1] marker, KEYS[2] stream; ARGV: marker ttl seconds, match id, kind, data.
# Returns the new entry id, or false when the match was already appended.
_APPEND_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'kind', ARGV[3], 'data', ARGV[4])
end
return false
"""

MARKER_TTL_S = 7 * 24 * 3600  # far longer than any redelivery window


class OutboxRecord(Protocol):
    """What the outbox carries: an idempotency key, a kind, and the msgpack payload."""

    @property
    def match_id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def to_bytes(self) -> bytes: ...


class OutboxWriter:
    def __init__(self, redis: aioredis.Redis, *, max_backoff_s: float = 5.0) -> None:
        self._redis = redis
        self._script = redis.register_script(_APPEND_ONCE)
        self._max_backoff_s = max_backoff_s

    async def append(self, record: OutboxRecord) -> bool:
        """Append once; True if this call wrote it, False if it was already there."""
        result = await self._script(
            keys=[keys.outbox_written(RaceId(record.match_id)), keys.OUTBOX_STREAM],
            args=[MARKER_TTL_S, record.match_id, record.kind, record.to_bytes()],
        )
        return result is not None

    async def append_with_retry(self, record: OutboxRecord) -> bool:
        """Keep trying through Redis outages: a finished race must never be lost.

        Cancellation (node shutdown) is the only way out without success; the caller logs it.
        """
        delay = 0.05
        while True:
            try:
                return await self.append(record)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("outbox_append_retry", race_id=record.match_id, error=str(exc), delay_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)
