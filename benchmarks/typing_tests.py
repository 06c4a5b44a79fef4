"""Concurrent typing tests on one node core: how many tests one gameserver node process holds.

The node-capacity harness (``benchmarks/node_capacity.py``: a fresh ``python -m gameserver``
pinned to one core, Redis and the load generator on the other, ``benchmarks/loadgen``), with
one-seat races made by ``POST /admin/races {"test_mode": ...}``: each player types a ``time-120``
test (an input of 1-3 correct characters every 500 ms at its race's instants, about 56 WPM),
so every test runs through the whole window. A test has no room-mates: the node sends a typist
no frame for its own typing, so there is no echo to time. What a test needs from the node is
that each input is taken at once and its time judged on arrival; the measure is therefore the
node's own event-loop lag (how late its 5 ms flusher wakes: an input waits at most about that
long before it is read), with the inputs the node counted against those sent.

A step is "held" when every test joined and started, nothing erred or closed, the node counted
>= 97 % of the inputs sent, its loop-lag p99 <= 100 ms (a histogram bucket bound) and its CPU
<= 90 % of the core, and the generator was not saturated (CPU <= 85 %, timer lag p99 <= 20 ms,
sent >= 97 % of the inputs due; else "invalid", no figure). The run stops at the first step
that is not held, then prints the largest held and its CPU per 1,000 tests.

    .venv/bin/python benchmarks/typing_tests.py                      # 2,000 4,000 8,000 tests
    .venv/bin/python benchmarks/typing_tests.py --steps 200 --duration 3   # smoke run

Everything runs on 127.0.0.1; every wait has a deadline; the node and Redis stop on any exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena.typing_tests import MODE_NAMES  # noqa: E402
from benchmarks.loadgen import AdminClient, RaceSeats, Swarm, percentile  # noqa: E402
from benchmarks.node_capacity import (  # noqa: E402
    ADMIN_TOKEN,
    HOST,
    NODE_READY_TIMEOUT_S,
    TOKEN_SECRET,
    NodeProcess,
    bench_node_env,
    bucket_quantile,
    parse_metrics,
    raise_fd_limit,
    snapshot_sources,
)
from ops.services import RedisServer, free_port  # noqa: E402
from simulators.procstat import process_cpu, process_rss_mb, self_cpu  # noqa: E402

DEFAULT_STEPS = (2000, 4000, 8000)
LAG_LIMIT_MS = 100.0
NODE_CPU_LIMIT = 90.0
GEN_CPU_LIMIT = 85.0
GEN_LAG_LIMIT_MS = 20.0
SEND_RATIO = 0.97
SEED_TESTS = 100_000  # seed 002: concurrent tests at its target scale


@dataclass
class Step:
    tests: int
    status: str = "failed"  # held | failed | invalid
    reasons: list[str] = field(default_factory=list)
    joined: int = 0
    started: int = 0
    ramp_s: float = math.nan
    inputs_per_s: float = math.nan  # sent by the generator in the window
    inputs_due_per_s: float = math.nan
    node_inputs_per_s: float = math.nan  # counted by the node (/metrics)
    node_cpu_pct: float = math.nan
    node_rss_mb: float = math.nan
    node_idle_rss_mb: float = math.nan
    node_loop_lag_p99_ms: float = math.nan
    node_tick_ms: float = math.nan
    gen_cpu_pct: float = math.nan
    gen_lag_p99_ms: float = math.nan
    load_1m: float = math.nan  # the machine's load average at the window's end (it is shared)
    errors: dict[str, int] = field(default_factory=dict)


def judge(step: Step) -> None:
    reasons = list(step.reasons)
    if step.joined < step.tests:
        reasons.append(f"{step.tests - step.joined} tests could not be joined")
    if step.started < step.joined:
        reasons.append(f"{step.joined - step.started} tests never started")
    if step.errors:
        reasons.append(f"errors {step.errors}")
    if not step.node_inputs_per_s >= SEND_RATIO * step.inputs_per_s:
        reasons.append(
            f"node counted {step.node_inputs_per_s:.0f}/s of {step.inputs_per_s:.0f} inputs/s sent"
        )
    if not step.node_loop_lag_p99_ms <= LAG_LIMIT_MS:
        reasons.append(f"node loop lag p99 {step.node_loop_lag_p99_ms} ms > {LAG_LIMIT_MS:.0f} ms")
    if not step.node_cpu_pct <= NODE_CPU_LIMIT:
        reasons.append(f"node CPU {step.node_cpu_pct:.0f}% > {NODE_CPU_LIMIT:.0f}%")
    saturated = []
    if step.gen_cpu_pct > GEN_CPU_LIMIT:
        saturated.append(f"generator CPU {step.gen_cpu_pct:.0f}%")
    if step.gen_lag_p99_ms > GEN_LAG_LIMIT_MS:
        saturated.append(f"generator lag p99 {step.gen_lag_p99_ms:.0f} ms")
    if step.inputs_due_per_s and step.inputs_per_s < SEND_RATIO * step.inputs_due_per_s:
        saturated.append(f"generator sent {step.inputs_per_s:.0f}/s of {step.inputs_due_per_s:.0f}/s due")
    if saturated:
        step.status, step.reasons = "invalid", ["generator saturated: " + "; ".join(saturated), *reasons]
    else:
        step.status, step.reasons = ("failed" if reasons else "held"), reasons


async def run_step(tests: int, args: argparse.Namespace, redis_url: str, src_dir: Path, work: Path) -> Step:
    step = Step(tests=tests)
    port = free_port()
    env = bench_node_env(
        "bench-tests", redis_url, port, tests, admin_token=ADMIN_TOKEN, token_secret=TOKEN_SECRET
    )
    env |= {
        "ARENA_RACE_COUNTDOWN_S": "1",
        "ARENA_RACE_WAIT_TIMEOUT_S": str(args.ramp_timeout + 60),
        "ARENA_LOG_LEVEL": "warning",
        "ARENA_LOG_JSON": "1",
    }
    node = NodeProcess(src_dir, env, args.node_core, work / f"node-{tests}.log")
    swarm = Swarm(HOST, port)
    node.start()
    try:
        await node.wait_ready(NODE_READY_TIMEOUT_S)
        step.node_idle_rss_mb = process_rss_mb(node.pid)
        async with AdminClient(node.admin_url, ADMIN_TOKEN, race_type="custom", test_mode=args.mode) as admin:

            async def make_test(index: int) -> RaceSeats:
                return await admin.create_race([f"t{index}"])

            ramp = time.monotonic()
            swarm.start_timer()
            try:
                async with asyncio.timeout(args.ramp_timeout):
                    await swarm.add_races(tests, make_test, concurrency=50, join_timeout_s=60.0)
            except TimeoutError:
                step.reasons.append(f"ramp not done after {args.ramp_timeout:.0f}s")
            step.ramp_s = time.monotonic() - ramp
            step.joined = len(swarm.players) - sum(swarm.connect_failures.values())
            await swarm.wait_started(30.0)
            gc.collect()
            gc.freeze()  # nothing long-lived is made from here on
            await asyncio.sleep(args.warmup)
            step.started = swarm.started
            m0, m0_at = parse_metrics(await admin.get_text("/metrics")), time.monotonic()
            node0, gen0 = process_cpu(node.pid), self_cpu()
            marks: dict[str, Any] = {}

            def at_end() -> None:
                marks["node"], marks["gen"], marks["t"] = process_cpu(node.pid), self_cpu(), time.monotonic()
                marks["rss"] = process_rss_mb(node.pid)
                step.load_1m = os.getloadavg()[0]

            t0 = time.monotonic()
            stats = await swarm.measure(args.duration, 0.5, at_end=at_end)
            m1, m1_at = parse_metrics(await admin.get_text("/metrics")), time.monotonic()
        seconds = marks["t"] - t0
        step.node_cpu_pct = (marks["node"].total_s - node0.total_s) / seconds * 100
        step.gen_cpu_pct = (marks["gen"].total_s - gen0.total_s) / seconds * 100
        step.node_rss_mb = marks["rss"]
        step.inputs_per_s = stats.inputs_sent / stats.seconds
        step.inputs_due_per_s = stats.started / 0.5
        step.gen_lag_p99_ms = percentile(stats.lag_ms, 99)
        step.errors = {**stats.errors, **stats.closes, **stats.protocol_errors, **stats.race_events}
        if stats.exhausted:
            step.errors["passage exhausted"] = stats.exhausted
        p = "arena_gameserver_"
        scraped = m1_at - m0_at
        inputs = m1.get(f'{p}messages_in_total{{type="input"}}', 0.0) - m0.get(
            f'{p}messages_in_total{{type="input"}}', 0.0
        )
        step.node_inputs_per_s = inputs / scraped
        step.node_loop_lag_p99_ms = bucket_quantile(m0, m1, f"{p}loop_lag_seconds", 0.99) * 1000
        ticks = m1.get(f"{p}tick_duration_seconds_count", 0.0) - m0.get(
            f"{p}tick_duration_seconds_count", 0.0
        )
        if ticks:
            tick_s = m1[f"{p}tick_duration_seconds_sum"] - m0.get(f"{p}tick_duration_seconds_sum", 0.0)
            step.node_tick_ms = tick_s / ticks * 1000
        if not node.alive:
            step.reasons.append("node process died")
    except Exception as exc:  # a broken step is a result, not a crash of the run
        step.reasons.append(f"{type(exc).__name__}: {exc}")
    finally:
        swarm.close_all()
        await asyncio.sleep(0.2)
        node.stop()
        gc.unfreeze()
        gc.collect()
    judge(step)
    return step


def row(s: Step) -> str:
    errs = sum(s.errors.values())
    return (
        f"{s.tests:>6} {s.ramp_s:>6.1f} {s.inputs_per_s:>8.0f} {s.node_inputs_per_s:>8.0f} {errs:>4} "
        f"{s.node_cpu_pct:>6.1f}% {s.node_loop_lag_p99_ms:>6.1f} {s.node_tick_ms:>6.2f} "
        f"{s.node_rss_mb - s.node_idle_rss_mb:>7.0f} {s.gen_cpu_pct:>6.1f}% {s.gen_lag_p99_ms:>6.1f} "
        f"{s.load_1m:>5.1f}  "
        f"{s.status}{': ' + '; '.join(s.reasons) if s.reasons else ''}"
    )


def verdict(steps: list[Step]) -> str:
    held = [s for s in steps if s.status == "held"]
    if not held:
        return "largest held: none"
    best = max(held, key=lambda s: s.tests)
    per_k = best.node_cpu_pct / (best.tests / 1000)
    mem = (best.node_rss_mb - best.node_idle_rss_mb) / (best.tests / 1000)
    at_70 = 70.0 / per_k * 1000  # a node core run at 70 %: headroom for bursts and GC
    return (
        f"largest held: {best.tests} tests (node CPU {best.node_cpu_pct:.0f}%, loop lag p99 "
        f"{best.node_loop_lag_p99_ms:.0f} ms); {per_k:.1f}% CPU and {mem:.1f} MB per 1,000 tests\n"
        f"at 70 % of a core: ~{at_70:,.0f} tests per node core; the seed's {SEED_TESTS:,} concurrent "
        f"tests: ~{math.ceil(SEED_TESTS / at_70)} node cores"
    )


async def run(args: argparse.Namespace) -> list[Step]:
    raise_fd_limit(max(args.steps) * 2 + 1000)
    work = Path(tempfile.mkdtemp(prefix="typogram-tests-"))
    src = work / "src"
    fingerprint = snapshot_sources(src)
    redis_server = RedisServer()
    steps: list[Step] = []
    deadline = time.monotonic() + args.max_minutes * 60
    try:
        redis_server.start()
        print(
            f"server snapshot {fingerprint}; node on core {args.node_core}, generator + Redis on the other; "
            f"mode {args.mode}, input every 500 ms, window {args.duration:.0f}s after {args.warmup:.0f}s"
        )
        print(
            "  tests   ramp  sent/s  node/s errs nodeCPU lagp99 tickms  rss+MB  genCPU genlag  load  verdict"
        )
        for n in args.steps:
            if time.monotonic() > deadline:
                print(f"stopped: --max-minutes {args.max_minutes} reached")
                break
            step = await run_step(n, args, redis_server.url, src, work)
            steps.append(step)
            print(row(step), flush=True)
            with contextlib.suppress(redis.RedisError):
                client = redis.Redis.from_url(redis_server.url)
                client.flushall()  # the next step starts from an empty outbox
                client.close()
            if step.status != "held":
                break
    finally:
        redis_server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(verdict(steps))
    return steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--steps", default=",".join(map(str, DEFAULT_STEPS)), help="concurrent tests per step")
    ap.add_argument("--mode", default="time-120", choices=[m for m in MODE_NAMES if m.startswith("time-")])
    ap.add_argument("--duration", type=float, default=10.0, help="measurement window, seconds")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of typing before the window")
    ap.add_argument("--ramp-timeout", type=float, default=90.0, help="seconds to create and join every test")
    ap.add_argument("--node-core", type=int, default=0, help="core for the node (-1: no pinning)")
    ap.add_argument("--max-minutes", type=float, default=10.0, help="no new step after this long")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the steps as JSON")
    args = ap.parse_args(argv)
    args.steps = [int(s) for s in args.steps.split(",") if s]
    args.node_core = None if args.node_core < 0 else args.node_core
    steps = uvloop.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(s) for s in steps], indent=2))
    return 0 if steps and steps[0].status == "held" else 1


if __name__ == "__main__":
    sys.exit(main())
