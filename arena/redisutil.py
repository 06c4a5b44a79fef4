"""Small helpers for Redis: the process's client, and values read back (bytes unless decoding is on)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

from arena.settings import RedisSettings


def connect(settings: RedisSettings, **connection_kwargs: Any) -> aioredis.Redis:
    """The process's client: at most ``settings.max_connections`` connections; a command that
    finds them all busy waits up to ``settings.pool_timeout_s`` for one (then ConnectionError)
    instead of failing at once with "Too many connections"."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout_s,
        **connection_kwargs,
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes the pool


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def text_map(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in raw.items()}
