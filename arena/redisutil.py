"""Small helpers for Redis: the process's client, and values read back (bytes unless decoding is on).

``connect`` gives a single Redis's client, or redis-py's cluster client when the URL's scheme is
``redis+cluster://`` (``rediss+cluster://`` with TLS): every process takes its client here, so
one setting (ARENA_REDIS_URL) moves them all to a Redis Cluster. The cluster client has the same
command methods; what differs is handled where it is used (``is_cluster``): pub/sub, and raw pool
connections (lobby/redisbatch.py). docs/ARCHITECTURE.md "Redis Cluster" lists what needs a hash tag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
import structlog
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from arena.settings import RedisSettings

log = structlog.get_logger(__name__)

# A cluster command that meets a dead master, MOVED or CLUSTERDOWN retries with its slot map
# refreshed; 20 tries 50 ms to 0.5 s apart span ~8 s: a failover with cluster-node-timeout of a
# few seconds, which the failover test measures (tests/arena/test_redis_cluster.py).
CLUSTER_RETRIES = 20
CLUSTER_BACKOFF_BASE_S = 0.05
CLUSTER_BACKOFF_CAP_S = 0.5


def connect(settings: RedisSettings, **connection_kwargs: Any) -> aioredis.Redis:
    """The process's client: at most ``settings.max_connections`` connections; a command that
    finds them all busy waits up to ``settings.pool_timeout_s`` for one (then ConnectionError)
    instead of failing at once with "Too many connections".

    On a cluster URL, ``max_connections`` bounds each node's connections (redis-py's cluster
    client has no waiting pool: a command that finds its node's connections all busy fails at
    once with MaxConnectionsError, a ConnectionError, which callers treat as Redis unreachable)."""
    if settings.cluster:
        return connect_cluster(settings, **connection_kwargs)
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout_s,
        **connection_kwargs,
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes the pool


def connect_cluster(settings: RedisSettings, **connection_kwargs: Any) -> aioredis.Redis:
    """redis-py's cluster client, typed as the single-node one whose commands it shares."""
    client = RedisCluster.from_url(
        settings.url.replace("+cluster://", "://", 1),
        max_connections=settings.max_connections,
        retry=Retry(ExponentialBackoff(CLUSTER_BACKOFF_CAP_S, CLUSTER_BACKOFF_BASE_S), CLUSTER_RETRIES),
        **connection_kwargs,
    )
    return cast(aioredis.Redis, client)


def is_cluster(redis: object) -> bool:
    """Whether ``redis`` is redis-py's cluster client (``connect`` on a ``redis+cluster://`` URL)."""
    return isinstance(redis, RedisCluster)


ScriptCall = tuple[Sequence[str], Sequence[str | int | float | bytes]]  # keys, args


async def run_script_many(
    redis: aioredis.Redis, script: AsyncScript, calls: Sequence[ScriptCall]
) -> list[Any]:
    """Run ``script`` once per call, pipelined in one round trip; a call's reply, or the error Redis
    answered for it (not raised). A round trip that fails as a whole raises.

    A single Redis's pipeline loads a script before sending EVALSHA; redis-py's cluster pipeline
    does not, so a master that never saw the script, or a replica promoted since, answers NOSCRIPT:
    then the script is loaded (SCRIPT LOAD reaches every master) and those calls go again."""
    replies = await _pipelined(redis, script, calls)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        log.info("redis_script_loaded", calls=len(missing))  # a new master (a failover), or first use
        await redis.script_load(script.script)
        again = await _pipelined(redis, script, [calls[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return replies


async def _pipelined(redis: aioredis.Redis, script: AsyncScript, calls: Sequence[ScriptCall]) -> list[Any]:
    async with redis.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            await script(keys=keys, args=args, client=pipe)  # queues an EVALSHA (awaiting sends nothing)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    return replies


async def execute_loading(
    redis: aioredis.Redis, build: Callable[[Any], None], scripts: Sequence[AsyncScript]
) -> list[Any]:
    """``build`` queues commands (EVALSHAs of ``scripts`` among them) on a fresh pipeline, which runs
    in one round trip; the replies, or the first error raised. On NOSCRIPT from a cluster (see
    ``run_script_many``) the scripts are loaded and the whole pipeline runs again once, so its
    commands must be idempotent."""
    for attempt in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            build(pipe)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
            log.info("redis_script_loaded", scripts=len(scripts))  # a new master (a failover), or first use
            for script in scripts:
                await redis.script_load(script.script)
            continue
        break
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def text_map(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in raw.items()}
