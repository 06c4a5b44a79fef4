"""Leader election for the tournament director: one lease in Redis, an epoch per election.

``acquire`` sets the lease only if nobody holds it (``SET NX PX``) and, in the same script,
bumps the epoch: every write a director makes carries its epoch, and a tournament refuses
writes from an epoch older than the newest it has seen (``store._GUARDED_WRITE``), so a
director that lost its lease without noticing cannot undo its successor's work.

``renew`` extends the lease only while it still holds our token. The holder counts itself
leader until ``valid_until`` (monotonic): the time of its last successful renewal plus the
TTL, less a safety margin, so it stops acting before anyone else can take over.
"""

from __future__ import annotations

import secrets
import time

import redis.asyncio as aioredis

from arena import keys
from arena.redisutil import as_text

# KEYS[1] lease, KEYS[2] epoch counter. ARGV[1] token, ARGV[2] ttl ms. The new epoch, or false.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
"""

# KEYS[1] lease. ARGV[1] token, ARGV[2] ttl ms. 1 if extended, 0 if the lease is not ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS[1] lease. ARGV[1] token. Deletes the lease only if we still hold it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    def __init__(
        self, redis: aioredis.Redis, owner: str, *, ttl_ms: int, margin_ms: int | None = None
    ) -> None:
        self._redis = redis
        self.owner = owner
        self.ttl_ms = ttl_ms
        self.margin_ms = margin_ms if margin_ms is not None else ttl_ms // 5
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self.token = ""
        self.epoch = 0
        self.valid_until = 0.0  # time.monotonic(); 0 = not held

    @property
    def held(self) -> bool:
        return time.monotonic() < self.valid_until

    async def acquire(self) -> bool:
        """Take the lease if it is free; True if we hold it now (``epoch`` is then set)."""
        token = f"{self.owner}:{secrets.token_hex(4)}"
        started = time.monotonic()
        epoch = await self._acquire(
            keys=[keys.TOURNAMENT_DIRECTOR_LEASE, keys.TOURNAMENT_DIRECTOR_EPOCH], args=[token, self.ttl_ms]
        )
        if epoch is None:
            return False
        self.token, self.epoch = token, int(epoch)
        self.valid_until = started + (self.ttl_ms - self.margin_ms) / 1000
        return True

    async def renew(self) -> bool:
        """Extend the lease; False (and no longer held) if someone else holds it now."""
        if not self.token:
            return False
        started = time.monotonic()
        ok = await self._renew(keys=[keys.TOURNAMENT_DIRECTOR_LEASE], args=[self.token, self.ttl_ms])
        if int(ok) == 1:
            self.valid_until = started + (self.ttl_ms - self.margin_ms) / 1000
            return True
        self.lose()
        return False

    def lose(self) -> None:
        self.valid_until = 0.0
        self.token = ""

    async def release(self) -> None:
        token, self.token = self.token, ""
        self.valid_until = 0.0
        if token:
            await self._release(keys=[keys.TOURNAMENT_DIRECTOR_LEASE], args=[token])

    async def holder(self) -> str | None:
        raw = await self._redis.get(keys.TOURNAMENT_DIRECTOR_LEASE)
        return as_text(raw) if raw is not None else None
