"""Run a scenario: plan arrivals, start the worker processes, sample every process, merge,
write the report. Bounded: workers stop themselves at the scenario's limit, and are
killed a little after it if they have not."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from arena.waits import within
from simulators.guard import require_loopback
from simulators.swarm.plan import WorkerPlan, plan_arrivals, split_by_worker
from simulators.swarm.processes import MachineSeries, ProcessSeries, sample_all
from simulators.swarm.report import Report, build_report, write_report
from simulators.swarm.scenario import Scenario

__all__ = ["STARTUP_S", "SwarmError", "SwarmSettings", "run_swarm"]

log = structlog.get_logger(__name__)

STARTUP_S = 2.0  # workers import and start their loop before the first arrival is due
# Workers import the same tree as this process, whatever an installed copy would say.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
KILL_AFTER_S = 15.0  # past the limit, a worker that has not written its result is killed
SAMPLE_S = 1.0


class SwarmError(RuntimeError):
    """A run that produced no usable result (a worker crashed or wrote nothing)."""


@dataclass(frozen=True)
class SwarmSettings:
    lobby_url: str  # loopback only
    out_dir: Path  # plans, worker logs and results, and the report
    redis_url: str | None = None  # seeds the scenario's ratings; None: every bot rates 1500
    watch_pids: dict[str, int] = field(default_factory=dict)  # servers to sample: name -> pid


async def run_swarm(scenario: Scenario, settings: SwarmSettings) -> Report:
    require_loopback(settings.lobby_url)
    if settings.redis_url is not None:
        require_loopback(settings.redis_url.replace("redis://", "http://", 1))
    await check_regions(settings.lobby_url, set(scenario.regions))
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic() + STARTUP_S
    stop_at = t0 + scenario.limit_s
    shares = split_by_worker(plan_arrivals(scenario), scenario.workers)
    procs: list[asyncio.subprocess.Process] = []
    series = [ProcessSeries(name, pid) for name, pid in settings.watch_pids.items()]
    machine = MachineSeries()
    try:
        for worker, arrivals in enumerate(shares):
            plan = WorkerPlan(
                worker, settings.lobby_url, t0, stop_at, scenario.typing, settings.redis_url, arrivals
            )
            procs.append(await _start_worker(plan, out))
            series.append(ProcessSeries(f"worker-{worker}", procs[-1].pid))
        log.info("swarm_started", workers=len(procs), players=sum(len(s) for s in shares))
        await _supervise(procs, series, machine, t0, stop_at + KILL_AFTER_S)
    finally:
        for proc in procs:  # Ctrl-C or an error: no worker outlives the run
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            if proc.returncode is None:
                try:
                    await within(proc.wait(), 5.0)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
    read = [_read_result(out, w, p) for w, p in enumerate(procs)]
    results = [r for r in read if r is not None]
    lost = [w for w, r in enumerate(read) if r is None]
    if not results:
        raise SwarmError(f"no worker wrote a result; see {out}/worker-*.log")
    seconds = max(1, math.ceil(time.monotonic() - t0))
    processes = [s.stats() for s in series if s.times]
    report = build_report(scenario, results, processes, seconds, machine.stats(processes), lost_workers=lost)
    write_report(report, out)
    return report


async def check_regions(lobby_url: str, wanted: set[str]) -> None:
    """Fail before any bot starts when the lobby is down or does not offer a scenario region
    (every ticket would be refused with ``unknown_region``)."""
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{lobby_url.rstrip('/')}/v1/regions") as resp:
            data = await resp.json(content_type=None)
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise SwarmError(f"the lobby at {lobby_url} does not answer /v1/regions: {exc}") from exc
    offered = {r["id"] for r in data.get("regions", [])}
    missing = wanted - offered
    if missing:
        raise SwarmError(f"the lobby does not offer region(s) {sorted(missing)}; it offers {sorted(offered)}")


async def _start_worker(plan: WorkerPlan, out: Path) -> asyncio.subprocess.Process:
    plan_path = out / f"plan-{plan.worker}.json"
    plan_path.write_text(json.dumps(plan.to_dict()))
    result_path = out / f"result-{plan.worker}.json"
    result_path.unlink(missing_ok=True)
    path = os.pathsep.join(p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    with (out / f"worker-{plan.worker}.log").open("wb") as logfile:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "simulators.swarm.worker",
            str(plan_path),
            str(result_path),
            stdout=logfile,
            stderr=asyncio.subprocess.STDOUT,
            env=os.environ | {"PYTHONPATH": path},
        )


async def _supervise(
    procs: list[asyncio.subprocess.Process],
    series: list[ProcessSeries],
    machine: MachineSeries,
    t0: float,
    kill_at: float,
) -> None:
    """Sample every process once a second until the workers are done (or overdue)."""
    waiting = asyncio.gather(*(p.wait() for p in procs))
    try:
        while not waiting.done():
            sample_all(series, machine, t0)
            if time.monotonic() > kill_at:
                log.warning("swarm_workers_overdue")
                for proc in procs:
                    if proc.returncode is None:
                        proc.kill()
            await asyncio.wait([waiting], timeout=SAMPLE_S)
    finally:
        if not waiting.done():
            waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)


def _read_result(out: Path, worker: int, proc: asyncio.subprocess.Process) -> dict[str, Any] | None:
    """A worker's result, or None (logged) when it died without writing one: the report then
    counts it as an error and covers the other workers' bots."""
    path = out / f"result-{worker}.json"
    if not path.exists():
        log.error(
            "swarm_worker_lost",
            worker=worker,
            exit_code=proc.returncode,
            log=str(out / f"worker-{worker}.log"),
        )
        return None
    result: dict[str, Any] = json.loads(path.read_text())
    return result
