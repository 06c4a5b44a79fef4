"""The intake ends on its stop flag alone: a cancel that redis-py swallows cannot keep it (or the
director's demotion, which waits for it) running."""

import asyncio

import redis.asyncio as aioredis

from tournaments.intake import ResultIntake


async def _ignore(*_: object) -> None:
    return None


async def test_the_intake_stops_on_its_flag_without_a_cancel(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        intake = ResultIntake(redis, "d1", _ignore, block_ms=100, claim_idle_ms=1000)
        stopping = asyncio.Event()
        task = asyncio.create_task(intake.run(stopping))
        await asyncio.sleep(0.3)  # reading, blocked on the stream
        assert not task.done()
        stopping.set()
        await asyncio.wait_for(task, timeout=2)  # no cancel: the flag alone ends it
    finally:
        await redis.aclose()
