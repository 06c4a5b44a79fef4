"""The watched-races set against a real Redis: marks expire, one question covers every race."""

import redis.asyncio as aioredis

from arena import keys, watched


async def test_marks_answer_and_expire(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        now = 1_000_000
        await watched.mark(redis, ["r1", "r2"], now)
        await watched.mark(redis, [], now)  # nothing to mark: no command
        ids = ["r1", "r2", "r3"]
        async with redis.pipeline(transaction=False) as pipe:
            watched.ask(pipe, ids, now + 1000)
            replies = await pipe.execute()
        assert watched.answer(replies, ids, now + 1000) == [True, True, False]
        later = now + watched.WATCHED_TTL_S * 1000 + 1
        async with redis.pipeline(transaction=False) as pipe:
            watched.ask(pipe, ids, later)
            replies = await pipe.execute()
        assert watched.answer(replies, ids, later) == [False, False, False]
        assert await redis.zcard(keys.WATCHED_RACES) == 0  # expired marks were dropped
        async with redis.pipeline(transaction=False) as pipe:
            watched.ask(pipe, [], later)
            assert watched.answer(await pipe.execute(), [], later) == []
    finally:
        await redis.aclose()
