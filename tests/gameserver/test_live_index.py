"""The live race index: a node lists its running races in ``races:live`` and removes ended ones."""

import asyncio
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from arena import keys
from arena.protocol import Leave
from tests.conftest import NodeFactory
from tests.gameserver.test_race_flow import CUSTOM, seat, wait_start


async def _wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_a_running_race_is_indexed_and_removed_when_it_ends(
    node_factory: NodeFactory, redis_url: str
) -> None:
    node = await node_factory()
    redis = aioredis.Redis.from_url(redis_url)
    try:
        race = await node.create_race(["ada"], race_type="custom", custom_text=CUSTOM)
        race_id = race["race_id"]
        client, _ = await seat(node, race["seats"][0])
        assert await redis.zscore(keys.LIVE_RACES, race_id) is None  # not running yet
        start_at = await wait_start(client)

        async def listed() -> bool:
            return await redis.zscore(keys.LIVE_RACES, race_id) is not None

        await _wait_for(listed)
        assert await redis.zscore(keys.LIVE_RACES, race_id) == start_at
        assert await redis.hget(keys.race_state(race_id), "state") == b"running"

        await client.send(Leave())

        async def gone() -> bool:
            return await redis.zscore(keys.LIVE_RACES, race_id) is None

        await _wait_for(gone)
        assert await redis.hget(keys.race_state(race_id), "state") in (b"finished", b"aborted")
        await client.close()
    finally:
        await redis.aclose()
