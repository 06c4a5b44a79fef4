"""Many small Redis writes in a few round trips, at a third of a redis-py pipeline's CPU.

The presence flush and the rate-limit sync write one to two commands per player every flush:
a few thousand a second, none of whose replies needs more than its raw value. A redis-py
pipeline spent ~30 µs of the lobby's CPU per ``SET`` (command objects, per-command encoding,
response callbacks) against ~11 µs here: the commands are packed by hiredis (``redis[hiredis]``
is a dependency already) and written on one connection of the client's own pool, and the raw
replies are read back in order (measured on the project's machine, issue 19).

The lobby's ticket requests use it too (``run_script`` for the ticket scripts, ``run_batch`` for
a ticket read and the player's keys): there the cost is the round trips and redis-py's
per-command work, not the volume (issue 19, session 3).

A failure midway leaves replies unread on the connection, so it is disconnected (the pool
reconnects it on its next use) before the error goes up; a reply that is a Redis error is
raised as ``redis.exceptions.ResponseError`` the same way.

On a Redis Cluster (``arena.redisutil.is_cluster``) there is no one connection: the commands go
through redis-py's cluster pipeline instead, a chunk at a time, which splits them by node and
retries them on MOVED or a failover. Replies then come through redis-py's response callbacks
(``SET`` gives True, not ``b"OK"``); the callers read only integer replies, which are the same.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from arena.redisutil import is_cluster

Command = tuple[str | bytes | int | float, ...]


CHUNK = 256  # commands per write: ~3 ms of CPU, then the loop serves requests before the next
CHUNK_TIMEOUT_S = 5.0  # one chunk's replies, when the client has no socket_timeout of its own


async def run_batch(redis: aioredis.Redis, commands: Sequence[Command], chunk: int = CHUNK) -> list[Any]:
    """Send ``commands`` on one connection, ``chunk`` at a time, and return their raw replies, in
    order. Between chunks the event loop runs: a flush of 5,000 commands in one go held the
    loop ~55 ms, which every request waiting behind it paid in latency."""
    if not commands:
        return []
    if is_cluster(redis):
        return await _run_on_cluster(redis, commands, chunk)
    pool = redis.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]  # untyped in redis-py
    replies: list[Any] = []
    try:
        for first in range(0, len(commands), chunk):
            part = commands[first : first + chunk]
            # hiredis' stub types the argument as a 1-tuple; pack_command takes any number of parts.
            payload = b"".join(hiredis.pack_command(c) for c in part)  # type: ignore[arg-type]
            await conn.send_packed_command(payload, check_health=False)
            # One deadline for the chunk's replies: redis-py arms a timer per reply otherwise
            # (~8 % of a heartbeat's CPU, issue 19); math.inf is its public "no timeout per read".
            try:
                async with asyncio.timeout(conn.socket_timeout or CHUNK_TIMEOUT_S):
                    for _ in part:
                        replies.append(await conn.read_response(disable_decoding=True, timeout=math.inf))
            except TimeoutError:
                raise RedisTimeoutError(f"no reply to {len(part)} commands in time") from None
            if first + chunk < len(commands):
                await asyncio.sleep(0)
        return replies
    except BaseException:
        await conn.disconnect()  # replies may be left unread: never hand this connection out as is
        raise
    finally:
        await pool.release(conn)


async def run_script(
    redis: aioredis.Redis, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int | float]
) -> Any:
    """``script`` by its SHA in one packed command, its raw reply; loaded first if Redis lost it
    (a restart or ``SCRIPT FLUSH``), as redis-py's own script call does."""
    command: Command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    try:
        (reply,) = await run_batch(redis, [command])
    except NoScriptError:
        await redis.script_load(script.script)
        (reply,) = await run_batch(redis, [command])
    return reply


async def _run_on_cluster(redis: aioredis.Redis, commands: Sequence[Command], chunk: int) -> list[Any]:
    replies: list[Any] = []
    for first in range(0, len(commands), chunk):
        async with redis.pipeline(transaction=False) as pipe:
            for command in commands[first : first + chunk]:
                pipe.execute_command(*command)
            replies += await pipe.execute()
    return replies
