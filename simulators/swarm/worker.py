"""One bot process of the swarm: ``python -m simulators.swarm.worker PLAN.json RESULT.json``.

Starts each planned arrival at its time as an asyncio task (one shared aiohttp session),
measures its own event-loop lag and CPU, and writes everything to RESULT.json for the
parent to merge. Stops by itself at the plan's ``stop_at``, whatever is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from arena.backoff import BackoffSettings
from arena.logs import configure_logging
from arena.redisutil import connect
from arena.settings import LogSettings, RedisSettings
from simulators.procstat import self_cpu
from simulators.swarm.plan import WorkerPlan
from simulators.swarm.player import RETRY, PlayerRecord, Tally, run_player

__all__ = ["LAG_PERIOD_S", "WorkerResult", "main", "run_worker"]

LAG_PERIOD_S = 0.05  # the loop-lag probe wakes this often; lag = how late it woke


@dataclass
class WorkerResult:
    worker: int
    pid: int
    records: list[PlayerRecord]
    tally: Tally
    lags_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "pid": self.pid,
            "records": [r.to_dict() for r in self.records],
            "inputs_per_s": self.tally.inputs_per_s,
            "frames_per_s": self.tally.frames_per_s,
            "sends": self.tally.sends,
            "observations": self.tally.observations,
            "lags_ms": [round(x, 3) for x in self.lags_ms],
            "cpu_s": round(self.cpu_s, 3),
            "wall_s": round(self.wall_s, 3),
        }


async def _probe_lag(lags_ms: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        expected = time.monotonic() + LAG_PERIOD_S
        await asyncio.sleep(LAG_PERIOD_S)
        lags_ms.append(max(0.0, (time.monotonic() - expected) * 1000.0))


async def run_worker(plan: WorkerPlan, retry: BackoffSettings = RETRY) -> WorkerResult:
    """Play every planned arrival; a player's failure is its record's error (``run_player``
    never raises), so the worker always returns a result for the parent to merge."""
    tally = Tally(t0=plan.t0)
    cpu0, wall0 = self_cpu(), time.monotonic()
    lags: list[float] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(_probe_lag(lags, stop))
    # A cluster URL (redis+cluster://) gets the cluster client, as every process does.
    redis = connect(RedisSettings(url=plan.redis_url)) if plan.redis_url else None
    # No pool limit: every bot holds a WebSocket for its whole race.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

            async def arrive(index: int) -> PlayerRecord:
                arrival = plan.arrivals[index]
                await asyncio.sleep(max(0.0, plan.t0 + arrival.at_s - time.monotonic()))
                return await run_player(
                    arrival,
                    worker=plan.worker,
                    lobby_url=plan.lobby_url,
                    http=http,
                    typing=plan.typing,
                    tally=tally,
                    stop_at=plan.stop_at,
                    redis=redis,
                    retry=retry,
                )

            records = list(await asyncio.gather(*(arrive(i) for i in range(len(plan.arrivals)))))
    finally:
        stop.set()
        await prober
        if redis is not None:
            await redis.aclose()
    cpu1 = self_cpu()
    return WorkerResult(
        worker=plan.worker,
        pid=os.getpid(),
        records=records,
        tally=tally,
        lags_ms=lags,
        cpu_s=cpu1.total_s - cpu0.total_s,
        wall_s=time.monotonic() - wall0,
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m simulators.swarm.worker PLAN.json RESULT.json", file=sys.stderr)
        return 2
    plan = WorkerPlan.from_dict(json.loads(Path(args[0]).read_text()))
    # Warnings (a bot's failure, a server error) land in the worker's log file next to its result.
    configure_logging(LogSettings(level=os.environ.get("ARENA_SWARM_LOG_LEVEL", "warning")))
    result: WorkerResult = uvloop.run(run_worker(plan))
    tmp = Path(args[1]).with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_dict(), separators=(",", ":")))
    tmp.replace(args[1])  # the parent never reads half a file
    return 0


if __name__ == "__main__":
    sys.exit(main())
