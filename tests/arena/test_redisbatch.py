"""run_batch: many commands in one write, raw replies in order; a failed batch leaves the pool usable."""

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from arena.redisbatch import run_batch, run_script


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_replies_in_order(redis: aioredis.Redis) -> None:
    assert await run_batch(redis, []) == []
    replies = await run_batch(
        redis, [("SET", "rb:a", "x", "EX", 60), ("INCRBY", "rb:n", 5), ("INCRBY", "rb:n", 2), ("GET", "rb:a")]
    )
    assert replies == [b"OK", 5, 7, b"x"]
    assert 59 <= await redis.ttl("rb:a") <= 60


async def test_an_error_reply_raises_and_the_pool_still_works(redis: aioredis.Redis) -> None:
    await redis.set("rb:text", "not a number")
    with pytest.raises(ResponseError):
        await run_batch(redis, [("INCRBY", "rb:text", 1), ("SET", "rb:after", "1"), ("GET", "rb:after")])
    # The connection with unread replies was dropped, not handed out again: replies stay in step.
    for _ in range(3):
        assert (await run_batch(redis, [("INCRBY", "rb:m", 1), ("GET", "rb:text")]))[1] == b"not a number"
    assert await redis.get("rb:m") == b"3"


async def test_chunks_keep_the_order(redis: aioredis.Redis) -> None:
    replies = await run_batch(redis, [("INCRBY", "rb:c", 1) for _ in range(10)], chunk=3)
    assert replies == list(range(1, 11))



async def test_a_silent_server_times_out_as_a_redis_error(redis: aioredis.Redis) -> None:
    """One deadline per chunk (the client's socket_timeout): a server that does not answer gives
    redis-py's TimeoutError, which the sync loops catch as a RedisError, not asyncio's."""
    kwargs = redis.connection_pool.connection_kwargs
    impatient = aioredis.Redis(host=kwargs["host"], port=kwargs["port"], socket_timeout=0.3)
    try:
        await impatient.ping()  # connected before the pause
        await redis.execute_command("CLIENT", "PAUSE", 1500, "WRITE")  # writes wait 1.5 s
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await run_batch(impatient, [("SET", "paused", "v")] * 3)
        assert time.monotonic() - started < 1.2
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
        await impatient.aclose()
    assert await run_batch(redis, [("SET", "paused", "v")]) == [b"OK"]


async def test_run_script_by_sha_and_reloaded_when_redis_lost_it(redis: aioredis.Redis) -> None:
    script = redis.register_script("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
    assert await run_script(redis, script, ["rb:s"], [7]) == [b"rb:s", b"7", 1]
    await redis.script_flush()  # as after a restart: the next EVALSHA answers NOSCRIPT
    assert await run_script(redis, script, ["rb:s"], ["x"]) == [b"rb:s", b"x", 2]
    assert await run_script(redis, script, ["rb:s"], ["y"]) == [b"rb:s", b"y", 3]
