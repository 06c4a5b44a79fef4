"""How late the lobby's event loop answers: a probe that wakes every ``INTERVAL_S`` and records
how much later than asked it woke, in ``arena_lobby_loop_lag_seconds``.

A request waits behind whatever holds the loop: a garbage collection, a flush building its
commands, a batch of other requests. The lobby's p50 and p99 differed by 6x while nothing in a
heartbeat itself took long; this histogram shows such stalls directly (issue 19), in production
as in ``benchmarks/lobby_throughput.py``, which prints it for the lobby's run.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Histogram

from arena.tasks import stop_tasks

INTERVAL_S = 0.01  # 100 wake-ups a second: cheap, and fine enough for stalls of a few ms


class LoopLagProbe:
    """Owns one task; ``start()`` / ``stop()``."""

    def __init__(self, lag_seconds: Histogram, interval_s: float = INTERVAL_S) -> None:
        self._lag_seconds = lag_seconds
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="loop-lag-probe")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        await stop_tasks([self._task], self._stopping, timeout_s=1.0)
        self._task = None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            asked = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self._lag_seconds.observe(max(0.0, loop.time() - asked))
