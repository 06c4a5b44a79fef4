"""Rate limits per client IP and per player: fixed-window counters in Redis.

One pipelined round trip per request counts it against both keys (``INCR`` + ``EXPIRE``
each). A fixed window lets a client send up to twice the limit across a window boundary;
that is the price of one counter per subject and an exact ``Retry-After``.

Defaults come from the seeds: 100 requests a minute per player, 1,000 per IP. If Redis
cannot be reached the request is let through (logged): the limiter must not take the
lobby down with it.

**Batched counting** (``sync_s`` > 0, ``ARENA_LOBBY_RATE_SYNC_MS``, 100 ms by default). A Redis
round trip per request was 46 % of a heartbeat's CPU (py-spy, docs/PERFORMANCE.md), so the
request path counts in memory: a subject is refused when what Redis held at the last sync plus
what this lobby counted since is over the limit. Every ``sync_s`` one pipelined round trip adds
each subject's new hits to the same Redis counters (``INCRBY``) and reads back the totals, which
bring in other lobbies' hits. Only a counter that sync created (its total is the hits just added)
gets its ``EXPIRE``: the sync's commands were half ``EXPIRE`` commands that changed nothing (issue
19). On a single Redis one script call per ``SYNC_SLICE`` counters does both (``_SYNC``: one reply
for 256 counters); on a cluster, where the counters are in many slots, one ``INCRBY`` each and the
``EXPIRE``s in a second batch. Keys carry their window, so a counter lives on past its window only by the
slack of that one ``EXPIRE``; one whose ``EXPIRE`` failed is retried at the next sync.

So one lobby alone limits exactly as before; with
several, a subject can get through up to what it sends to the other lobbies in one sync period
beyond its limit, per window. ``sync_s`` 0 counts every request in Redis at once (the old way).
Login attempts are always counted at once (``count``). The middleware that checks each request
is ``lobby.middlewares.lobby_middleware``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from redis.exceptions import NoScriptError, RedisError

from arena import keys
from arena.redisbatch import Command, run_batch
from arena.redisutil import is_cluster
from arena.waits import wait_event, within
from lobby.errors import json_error

log = structlog.get_logger(__name__)

# The sync on a single Redis: add ARGV[i + 1] hits to counter KEYS[i], give a counter this call
# created (its total is the hits just added) its lifetime ARGV[1], return the totals. One reply
# per SYNC_SLICE counters instead of one per counter, read one by one (issue 19); the EXPIRE is
# atomic with the INCRBY that created the counter.
_SYNC = """
local totals = {}
for i, key in ipairs(KEYS) do
  local hits = tonumber(ARGV[i + 1])
  local total = redis.call('INCRBY', key, hits)
  if total == hits then
    redis.call('EXPIRE', key, ARGV[1])
  end
  totals[i] = total
end
return totals
"""
SYNC_SLICE = 256  # counters per script call


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    scope: str | None = None  # "ip" or "player" when refused
    retry_after_s: int = 0


ALLOWED = Verdict(True)  # one instance: a frozen dataclass costs ~0.5 us to build, per request


class RateLimiter:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        per_player: int,
        per_ip: int,
        window_s: int,
        clock: Callable[[], float] = time.time,
        sync_s: float = 0.0,
    ) -> None:
        self._redis = redis
        self.per_player = per_player
        self.per_ip = per_ip
        self.window_s = window_s
        self.sync_s = sync_s
        self._clock = clock
        # Batched counting: per Redis key of the current window, the total Redis gave at the last
        # sync and the hits counted here since. A new window starts both afresh: the hits of a
        # window that is over no longer limit anyone.
        self._window = 0
        self._known: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._expire_due: list[str] = []  # created by a sync whose EXPIRE failed: retried next time
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._one_redis = not is_cluster(redis)
        self._sync_sha = hashlib.sha1(_SYNC.encode()).hexdigest()  # what EVALSHA names it by
        self._script_loaded = False

    @property
    def batched(self) -> bool:
        """Whether requests are counted in memory (``check_local``) rather than in Redis at once."""
        return self.sync_s > 0

    async def check(self, ip: str, player_id: str | None) -> Verdict:
        """Count one request for ``ip`` (and ``player_id``); refused if either is over its limit."""
        if self.sync_s > 0:
            return self.check_local(ip, player_id)
        return await self.count(self._limits(ip, player_id))

    def check_local(self, ip: str, player_id: str | None) -> Verdict:
        """``check`` when ``batched``: against the last synced totals plus this lobby's hits, without
        a round trip (so without an await on the request path). Each subject is counted even when
        the other one refuses; the IP's refusal is named first, as in ``count``."""
        by_ip = self.per_ip > 0
        by_player = self.per_player > 0 and player_id is not None
        if not by_ip and not by_player:
            return ALLOWED
        now = self._clock()
        window = int(now // self.window_s)
        if window != self._window:
            self._window, self._known, self._pending = window, {}, {}
        refused: str | None = None
        if by_ip and self._over(keys.rate_limit("ip", ip, window), self.per_ip):
            refused = "ip"
        if by_player and self._over(keys.rate_limit("player", str(player_id), window), self.per_player):
            refused = refused or "player"
        if refused is None:
            return ALLOWED
        return Verdict(False, refused, max(1, math.ceil((window + 1) * self.window_s - now)))

    def _over(self, key: str, limit: int) -> bool:
        """Count one hit on ``key``; whether the key is now over ``limit``."""
        hits = self._pending.get(key, 0) + 1
        self._pending[key] = hits
        return self._known.get(key, 0) + hits > limit

    def _limits(self, ip: str, player_id: str | None) -> list[tuple[str, str, int]]:
        limits: list[tuple[str, str, int]] = []
        if self.per_ip > 0:
            limits.append(("ip", ip, self.per_ip))
        if self.per_player > 0 and player_id is not None:
            limits.append(("player", player_id, self.per_player))
        return limits

    # ---- batched counting: the sync task ------------------------------------------------

    async def start(self) -> None:
        if self.sync_s > 0:
            self._stopping.clear()
            self._task = asyncio.create_task(self._loop(), name="rate-limit-sync")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop the timer, then write the last hits (a bounded wait: Redis may be gone)."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=2.0)
            self._task = None
        try:
            await within(self.sync(), 2.0)
        except Exception as exc:  # includes the timeout
            log.warning("rate_limit_final_sync_failed", error=repr(exc))

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            await wait_event(self._stopping, self.sync_s)
            if self._stopping.is_set():
                return  # stop() does the last sync
            try:
                await self.sync()
            except RedisError as exc:  # fail open: local counts still limit this lobby
                log.warning("rate_limit_sync_failed", error=str(exc))

    async def sync(self) -> int:
        """Add this lobby's hits to Redis and read back the totals; returns the keys written."""
        window, known = self._window, self._known
        live = list(self._pending.items())
        self._pending = {}
        if not live and not self._expire_due:
            return 0
        ttl = self.window_s + 1
        commands: list[Command]
        if self._one_redis:  # a script per SYNC_SLICE keys: it gives a new counter its EXPIRE
            commands = [
                ("EVALSHA", self._sync_sha, len(part), *(k for k, _ in part), ttl, *(h for _, h in part))
                for part in (live[i : i + SYNC_SLICE] for i in range(0, len(live), SYNC_SLICE))
            ]
        else:
            commands = [("INCRBY", key, hits) for key, hits in live]
            commands += [("EXPIRE", key, ttl) for key in self._expire_due]
        try:
            if self._one_redis and not self._script_loaded:
                await self._redis.script_load(_SYNC)  # once; a restart's NOSCRIPT is retried below
                self._script_loaded = True
            try:
                results = await run_batch(self._redis, commands)
            except NoScriptError:
                # Redis restarted or flushed its scripts: none of them ran (a flush between two
                # calls of one sync would count the first's hits twice: a subject limited early).
                await self._redis.script_load(_SYNC)
                results = await run_batch(self._redis, commands)
        except BaseException:
            if window == self._window:  # counted next time, under the hits since
                for key, hits in live:
                    self._pending[key] = self._pending.get(key, 0) + hits
            raise
        if self._one_redis:
            totals = [total for reply in results for total in reply]
            for (key, _), total in zip(live, totals, strict=True):
                known[key] = int(total)  # a window that ended meanwhile: a dict nobody reads
            return len(live)
        self._expire_due = []
        created: list[str] = []
        for (key, hits), total in zip(live, results, strict=False):
            known[key] = int(total)  # a window that ended meanwhile: a dict nobody reads
            if int(total) == hits:  # this INCRBY created the counter: it has no lifetime yet
                created.append(key)
        if created:
            try:
                await run_batch(self._redis, [("EXPIRE", key, ttl) for key in created])
            except BaseException:
                self._expire_due = created
                raise
        return len(live)

    async def count(self, limits: Sequence[tuple[str, str, int]]) -> Verdict:
        """Count one hit against each (scope, subject, limit) in one round trip; the first
        scope over its limit refuses."""
        if not limits:
            return Verdict(True)
        now = self._clock()
        window = int(now // self.window_s)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for scope, subject, _ in limits:
                    key = keys.rate_limit(scope, subject, window)
                    pipe.incr(key)
                    pipe.expire(key, self.window_s + 1)
                results = await pipe.execute()
        except RedisError as exc:  # fail open: availability over strictness
            log.warning("rate_limit_unavailable", error=str(exc))
            return Verdict(True)
        retry_after = max(1, math.ceil((window + 1) * self.window_s - now))
        for i, (scope, _, limit) in enumerate(limits):
            if int(results[2 * i]) > limit:
                return Verdict(False, scope, retry_after)
        return Verdict(True)

    def refusal(self, verdict: Verdict) -> web.Response:
        """The 429 answer for a refused verdict."""
        scope = verdict.scope or "ip"
        return json_error(
            429,
            "rate_limited",
            f"too many requests for this {scope}; retry in {verdict.retry_after_s} s",
            headers={"Retry-After": str(verdict.retry_after_s)},
            extra={"scope": scope, "retry_after_s": verdict.retry_after_s},
        )
