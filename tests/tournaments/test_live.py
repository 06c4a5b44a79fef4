"""Live sockets that read too slowly: progress is dropped first, then the socket is closed."""

import asyncio
from typing import Any

import redis.asyncio as aioredis

from tournaments.live import LiveHub
from tournaments.metrics import LiveMetrics


class StuckSocket:
    """A socket whose reader never reads: nothing is ever written."""

    def __init__(self) -> None:
        self.closed_with: int | None = None

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed_with = code


async def test_slow_socket_loses_progress_then_its_connection(redis: aioredis.Redis) -> None:
    metrics = LiveMetrics()
    hub = LiveHub(redis, owner="test", queue_size=4, max_sockets=10, metrics=metrics)
    ws: Any = StuckSocket()
    follower = await hub.follow("t1", ws)
    hub.offer(follower, "standings-1", droppable=False)
    hub.offer(follower, "standings-2", droppable=False)
    hub.offer(follower, "progress", droppable=True)  # half full: progress is dropped
    assert follower.queue.qsize() == 2
    hub.offer(follower, "standings-3", droppable=False)
    hub.offer(follower, "standings-4", droppable=False)
    hub.offer(follower, "standings-5", droppable=False)  # full: the socket goes, not the message
    await asyncio.sleep(0.01)
    assert ws.closed_with == 1013 and hub.sockets == 0
    sample = metrics.registry.get_sample_value
    assert sample("arena_tournament_live_dropped_total", {"what": "progress"}) == 1
    assert sample("arena_tournament_live_dropped_total", {"what": "socket"}) == 1
    await hub.stop()
