"""Rate limits per client IP and per player: fixed-window counters in Redis.

One pipelined round trip per request counts it against both keys (``INCR`` + ``EXPIRE``
each). A fixed window lets a client send up to twice the limit across a window boundary;
that is the price of one counter per subject and an exact ``Retry-After``.

Defaults come from the seeds: 100 requests a minute per player, 1,000 per IP. If Redis
cannot be reached the request is let through (logged): the limiter must not take the
lobby down with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError

from arena import keys
from lobby.auth import current_player
from lobby.context import lobby_of
from lobby.errors import json_error

log = structlog.get_logger(__name__)

LIMITED_PREFIX = "/v1/"  # health, readiness and metrics are never limited


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    scope: str | None = None  # "ip" or "player" when refused
    retry_after_s: int = 0


class RateLimiter:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        per_player: int,
        per_ip: int,
        window_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self.per_player = per_player
        self.per_ip = per_ip
        self.window_s = window_s
        self._clock = clock

    async def check(self, ip: str, player_id: str | None) -> Verdict:
        """Count one request for ``ip`` (and ``player_id``); refused if either is over its limit."""
        limits: list[tuple[str, str, int]] = []
        if self.per_ip > 0:
            limits.append(("ip", ip, self.per_ip))
        if self.per_player > 0 and player_id is not None:
            limits.append(("player", player_id, self.per_player))
        return await self.count(limits)

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


def client_ip(request: web.Request, trusted_header: str) -> str:
    """The client's address: the trusted proxy header's last entry if configured, else the peer."""
    if trusted_header:
        value = request.headers.get(trusted_header, "")
        last = value.rsplit(",", 1)[-1].strip()
        if last:
            return last[:64]
    return request.remote or "unknown"


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(LIMITED_PREFIX):
        return await handler(request)
    lobby = lobby_of(request)
    player = current_player(request)
    ip = client_ip(request, lobby.settings.trusted_proxy_header)
    verdict = await lobby.limiter.check(ip, player.player_id if player else None)
    if verdict.allowed:
        return await handler(request)
    lobby.metrics.rate_limited.labels(verdict.scope or "ip").inc()
    return lobby.limiter.refusal(verdict)
