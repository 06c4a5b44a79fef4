"""Node capacity: how many concurrent players one gameserver node process holds on one core.

One node process (``python -m gameserver``) pinned to one core, the load generator (this
process, see ``benchmarks/loadgen``) and Redis pinned to the other. Races of 5; each player
sends an ``input`` every 500 ms, at its race's instants (``joined``'s input cadence, within a
clock error; ``--ignore-cadence``: a phase of its own). At each step (2,000 to 16,000 players
by default) the node is started fresh, the players join and race, and after a warm-up the
window measures:

- latency: from a player's send of input ``seq`` until a room-mate's socket receives a
  ``progress`` frame whose row for that player has ``seq >= s`` (p50/p95/p99/max);
- inputs/s sent, progress frames/s received, errors, unexpected closes, lost inputs;
- node CPU % (user/system, /proc/PID/stat), node RSS, the node's own tick time (/metrics);
- the generator's CPU, its core's busy %, and its event-loop lag.

Then the node is stopped with its players still racing and connected (SIGTERM, a 1 s grace:
every race is aborted and its result goes to the outbox), and the step reports the stop:
races the node held, results written (entries added to the outbox stream, counted in Redis)
and how fast, players told their results, and the time from SIGTERM to the process's exit.
A result missing from the outbox, or a node that has to be killed, fails the step.

A step is "held" when p99 <= 100 ms, nothing errs, nothing is lost, and the generator is not
saturated (its CPU <= 85 %, loop-lag p99 <= 20 ms, and it sent >= 97 % of the inputs due).
A saturated generator makes the step "invalid": no figure, not a node failure.
The run stops at the first step that is not held (``--keep-going`` runs them all), then prints
"largest held: N players (p99 X ms); CPU Y% and Z MB per 1,000 players".

    .venv/bin/python benchmarks/node_capacity.py                 # full run, several minutes
    .venv/bin/python benchmarks/node_capacity.py --quick         # smoke run, under a minute
    .venv/bin/python benchmarks/node_capacity.py --steps 6000,8000 --json out.json
    .venv/bin/python benchmarks/node_capacity.py --steps 8000 --profile-dir /tmp/prof  # + py-spy

Everything runs on 127.0.0.1, every wait has a deadline, and the node and Redis are stopped
on any exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import math
import os
import platform
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena.keys import OUTBOX_STREAM  # noqa: E402
from benchmarks.loadgen import AdminClient, RaceSeats, Swarm, WindowStats, percentile  # noqa: E402
from gameserver.settings import RaceSettings  # noqa: E402
from ops.services import RedisServer, free_port  # noqa: E402
from simulators.procstat import (  # noqa: E402
    CpuSample,
    core_busy,
    cpu_model,
    process_cpu,
    process_rss_mb,
    self_cpu,
)

DEFAULT_STEPS = (2000, 4000, 6000, 8000, 10000, 12000, 14000, 16000)
QUICK_STEPS = (50, 200)
RACE_SIZE = 5
P99_LIMIT_MS = 100.0
GEN_CPU_LIMIT = 85.0  # % of one core
GEN_LAG_LIMIT_MS = 20.0
GEN_SEND_RATIO = 0.97  # sent at least this share of the inputs due, or the generator fell behind
# Strong, random ones: the benchmark's nodes run as in production (ARENA_ENV unset).
ADMIN_TOKEN = secrets.token_urlsafe(32)
TOKEN_SECRET = secrets.token_urlsafe(32)
HOST = "127.0.0.1"
NODE_READY_TIMEOUT_S = 30.0
NODE_STOP_TIMEOUT_S = 15.0
SERVER_PACKAGES = ("arena", "gameserver")  # what the node process imports from the repo


# ---- the node process ------------------------------------------------------------------


class NodeProcess:
    """``python -m gameserver`` pinned to a core with ``taskset``, its log in a file."""

    def __init__(self, src_dir: Path, env: dict[str, str], core: int | None, log_path: Path) -> None:
        self.src_dir = src_dir
        self.env = env
        self.core = core
        self.log_path = log_path
        self.port = int(env["ARENA_NODE_PORT"])
        self.admin_port = int(env["ARENA_NODE_ADMIN_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        """The players' listener (/ws, /healthz, /readyz)."""
        return f"http://{HOST}:{self.port}"

    @property
    def admin_url(self) -> str:
        """The admin listener (/admin/*, /metrics)."""
        return f"http://{HOST}:{self.admin_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        argv = [sys.executable, "-m", "gameserver"]
        if self.core is not None:
            argv = ["taskset", "-c", str(self.core), *argv]  # taskset execs: same pid
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.src_dir,  # ``-m`` puts the cwd first on sys.path: the snapshot is imported
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the node in order
            )

    async def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                if not self.alive:
                    raise RuntimeError(f"node exited during start-up; log {self.log_path}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.http_url}/readyz") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node not ready after {timeout_s:.0f}s; log {self.log_path}")
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM (drain with a 1 s grace), then SIGKILL after the deadline. Idempotent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=NODE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def snapshot_sources(dest: Path) -> str:
    """Copy the server packages so every step runs the same code while others edit the tree.

    Returns a short hash of the copied sources, printed with the results.
    """
    digest = hashlib.sha256()
    for name in SERVER_PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for path in sorted(dest.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(dest)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def git_state() -> dict[str, Any]:
    def run(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    changed = run("status", "--short", "--", *SERVER_PACKAGES).splitlines()
    return {"head": run("rev-parse", "--short", "HEAD").strip(), "server_changes": changed}


# ---- one step --------------------------------------------------------------------------


@dataclass
class StepResult:
    players: int
    status: str = "failed"  # held | failed | invalid (generator saturated)
    reasons: list[str] = field(default_factory=list)
    connected: int = 0
    started: int = 0
    ramp_s: float = 0.0
    window_s: float = 0.0
    p50_ms: float = math.nan
    p95_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    samples: int = 0
    lost: int = 0
    inputs_per_s: float = 0.0
    inputs_due_per_s: float = 0.0
    progress_frames_per_s: float = 0.0
    pongs_per_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    closes: dict[str, int] = field(default_factory=dict)
    connect_failures: dict[str, int] = field(default_factory=dict)
    protocol_errors: dict[str, int] = field(default_factory=dict)
    race_events: dict[str, int] = field(default_factory=dict)
    node_cpu_pct: float = math.nan
    node_user_pct: float = math.nan
    node_sys_pct: float = math.nan
    node_rss_mb: float = math.nan
    node_idle_rss_mb: float = math.nan
    node_tick_ms: float = math.nan  # mean duration of one node tick in the window (/metrics)
    node_ticks_per_s: float = math.nan
    node_loop_lag_p99_ms: float = math.nan  # from the node's loop-lag histogram (bucket bound)
    node_gc: dict[str, dict[str, float]] = field(default_factory=dict)  # generation -> count, ms, max
    node_inputs_per_s: float = math.nan  # inputs the node counted in (its /metrics)
    node_progress_out_per_s: float = math.nan
    node_flushes_per_s: dict[str, float] = field(default_factory=dict)  # instant / window / tick
    node_input_to_broadcast_ms: float = math.nan  # the node's own view: input arrival to its frame
    node_errors: dict[str, float] = field(default_factory=dict)
    gen_cpu_pct: float = math.nan
    gen_user_pct: float = math.nan
    gen_sys_pct: float = math.nan
    gen_core_busy_pct: float = math.nan
    gen_lag_p99_ms: float = math.nan
    gen_lag_max_ms: float = math.nan
    redis_cpu_pct: float = math.nan
    # What the node asked of Redis in the window (INFO): commands and bytes in per second, and
    # HSETs per second (race mirrors: whole writes and the racers' live figures).
    redis_cmds_per_s: float = math.nan
    redis_in_kb_per_s: float = math.nan
    redis_hset_per_s: float = math.nan
    node_core_busy_pct: float = math.nan
    warnings: list[str] = field(default_factory=list)  # e.g. other processes on our cores
    profile: str | None = None
    stop: StopResult | None = None  # what the stop (SIGTERM) did to the races the node held


@dataclass
class StopResult:
    """The node's stop, seen from outside: its outbox stream and its process."""

    # Races with no result yet when the SIGTERM left (/admin/status; a saturated node may not
    # answer in time: then the node's own count of results owed, from its log; -1: unknown).
    races_held: int = 0
    written: int = 0  # entries the outbox stream gained from the SIGTERM on
    write_s: float = math.nan  # from the poll before the first new entry to the one after the last
    players_told: int = 0  # "results" messages the players received during the stop
    exit_s: float = math.nan  # SIGTERM to the process's exit (as seen by polling, 20 ms)
    exit_code: int | None = None  # None: SIGKILLed after NODE_STOP_TIMEOUT_S
    node_per_s: float = math.nan  # the node's own figure (its results_written_at_stop line)
    node_abort_s: float = math.nan  # the node's time to abort its races before the write
    profile: str | None = None  # py-spy of the stop (--profile-stop)

    @property
    def per_s(self) -> float:
        return self.written / self.write_s if self.write_s > 0 else math.nan


def bench_node_env(
    node_id: str, redis_url: str, port: int, players: int, *, admin_token: str, token_secret: str
) -> dict[str, str]:
    """A benchmark node's environment: on loopback, with room for ``players`` and a quick stop."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("ARENA_ENV", None)  # production, as measured: the secrets given are strong
    env |= {
        "ARENA_REDIS_URL": redis_url,
        "ARENA_NODE_ID": node_id,
        "ARENA_NODE_HOST": HOST,
        "ARENA_NODE_PORT": str(port),
        "ARENA_NODE_ADMIN_PORT": str(free_port()),  # the admin listener: races, drain, /metrics
        "ARENA_ADMIN_TOKEN": admin_token,
        "ARENA_TOKEN_SECRET": token_secret,
        "ARENA_MAX_CONNECTIONS": str(players + 1000),
        "ARENA_NODE_CAPACITY": str(players + 1000),
        "ARENA_NODE_SHUTDOWN_GRACE_S": "1",
        # Admission control off: these benchmarks push a node past what it holds on purpose (a
        # full node would refuse the ramp's races); node_capacity --node-env ARENA_NODE_FULL_LAG_MS=500
        # shows it on.
        "ARENA_NODE_FULL_LAG_MS": "0",
    }
    return env


def node_env(args: argparse.Namespace, redis_url: str, port: int, players: int) -> dict[str, str]:
    env = bench_node_env(
        "bench-node", redis_url, port, players, admin_token=ADMIN_TOKEN, token_secret=TOKEN_SECRET
    )
    env |= {
        "ARENA_RACE_COUNTDOWN_S": str(args.countdown),
        # Long enough that no race starts short-handed or is aborted while the ramp goes on.
        "ARENA_RACE_WAIT_TIMEOUT_S": str(args.ramp_timeout + 60),
        "ARENA_LOG_LEVEL": args.node_log_level,
        "ARENA_LOG_JSON": "1",
    }
    if args.tick_hz is not None:
        env["ARENA_RACE_TICK_HZ"] = str(args.tick_hz)
    if args.progress_window_ms is not None:
        env["ARENA_RACE_PROGRESS_WINDOW_MS"] = str(args.progress_window_ms)
    for item in args.node_env:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format to {'name{labels}': value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[name] = float(value)
    return out


def _delta(m0: dict[str, float], m1: dict[str, float], key: str) -> float:
    return m1.get(key, 0.0) - m0.get(key, 0.0)


def apply_node_metrics(
    result: StepResult, m0: dict[str, float], m1: dict[str, float], seconds: float
) -> None:
    p = "arena_gameserver_"
    ticks = _delta(m0, m1, f"{p}tick_duration_seconds_count")
    if ticks > 0:
        result.node_tick_ms = _delta(m0, m1, f"{p}tick_duration_seconds_sum") / ticks * 1000
        result.node_ticks_per_s = ticks / seconds
    result.node_inputs_per_s = _delta(m0, m1, f'{p}messages_in_total{{type="input"}}') / seconds
    result.node_progress_out_per_s = _delta(m0, m1, f'{p}frames_out_total{{type="progress"}}') / seconds
    for reason in ("instant", "window", "tick"):
        flushes = _delta(m0, m1, f'{p}progress_flushes_total{{reason="{reason}"}}')
        result.node_flushes_per_s[reason] = flushes / seconds
    result.node_loop_lag_p99_ms = bucket_quantile(m0, m1, f"{p}loop_lag_seconds", 0.99) * 1000
    for gen in ("0", "1", "2"):
        labels = f'{{generation="{gen}"}}'
        count = _delta(m0, m1, f"{p}gc_pause_seconds_count{labels}")
        if count:
            result.node_gc[gen] = {
                "count": count,
                "ms_total": _delta(m0, m1, f"{p}gc_pause_seconds_sum{labels}") * 1000,
                "max_ms": gc_max_bucket(m0, m1, f"{p}gc_pause_seconds", gen) * 1000,
            }
    broadcasts = _delta(m0, m1, f"{p}input_to_broadcast_seconds_count")
    if broadcasts > 0:
        result.node_input_to_broadcast_ms = (
            _delta(m0, m1, f"{p}input_to_broadcast_seconds_sum") / broadcasts * 1000
        )
    for key in m1:
        if key.startswith(f"{p}errors_total{{"):
            d = _delta(m0, m1, key)
            if d:
                result.node_errors[key.split('"')[1]] = d


def bucket_quantile(m0: dict[str, float], m1: dict[str, float], name: str, q: float) -> float:
    """The upper bound of the histogram bucket holding quantile ``q`` of the window's samples."""
    prefix = f'{name}_bucket{{le="'
    bounds = sorted(
        (float(key[len(prefix) : -2]), _delta(m0, m1, key)) for key in m1 if key.startswith(prefix)
    )
    total = bounds[-1][1] if bounds else 0.0
    for bound, count in bounds:
        if total > 0 and count >= q * total:
            return bound
    return math.nan


def gc_max_bucket(m0: dict[str, float], m1: dict[str, float], name: str, generation: str) -> float:
    """The smallest bucket bound that holds every pause of ``generation`` in the window."""
    prefix = f'{name}_bucket{{generation="{generation}",le="'
    bounds = sorted(
        (float(key[len(prefix) : -2]), _delta(m0, m1, key)) for key in m1 if key.startswith(prefix)
    )
    total = bounds[-1][1] if bounds else 0.0
    return next((bound for bound, count in bounds if total and count >= total), math.nan)


def judge(result: StepResult) -> None:
    reasons: list[str] = []
    if result.connected < result.players:
        reasons.append(f"{result.players - result.connected} players could not join")
    if result.started < result.connected:
        reasons.append(f"{result.connected - result.started} players never got start")
    if result.errors or result.node_errors:
        reasons.append(f"errors {result.errors or result.node_errors}")
    if result.closes:
        reasons.append(f"closes {result.closes}")
    if result.protocol_errors:
        reasons.append(f"protocol errors {result.protocol_errors}")
    if result.lost:
        reasons.append(f"{result.lost} inputs lost")
    if result.race_events:
        reasons.append(f"races ended or players finished: {result.race_events}")
    if not result.samples:
        reasons.append("no latency samples")
    elif result.p99_ms > P99_LIMIT_MS:
        reasons.append(f"p99 {result.p99_ms:.0f} ms > {P99_LIMIT_MS:.0f} ms")
    saturated: list[str] = []
    if result.gen_cpu_pct > GEN_CPU_LIMIT:
        saturated.append(f"generator CPU {result.gen_cpu_pct:.0f}% > {GEN_CPU_LIMIT:.0f}%")
    if result.gen_lag_p99_ms > GEN_LAG_LIMIT_MS:
        saturated.append(f"generator loop lag p99 {result.gen_lag_p99_ms:.0f} ms > {GEN_LAG_LIMIT_MS:.0f} ms")
    if result.inputs_due_per_s and result.inputs_per_s < GEN_SEND_RATIO * result.inputs_due_per_s:
        saturated.append(f"generator sent {result.inputs_per_s:.0f}/s of {result.inputs_due_per_s:.0f}/s due")
    if saturated:
        result.status = "invalid"
        result.reasons = ["generator saturated: " + "; ".join(saturated), *reasons]
    else:
        result.status = "failed" if reasons else "held"
        result.reasons = reasons


def race_sizes(players: int) -> list[int]:
    full, rest = divmod(players, RACE_SIZE)
    return [RACE_SIZE] * full + ([rest] if rest else [])


async def run_step(
    players: int, args: argparse.Namespace, redis_server: RedisServer, src_dir: Path, work_dir: Path
) -> StepResult:
    result = StepResult(players=players)
    port = free_port()
    node = NodeProcess(
        src_dir,
        node_env(args, redis_server.url, port, players),
        args.node_core,
        work_dir / f"node-{players}.log",
    )
    swarm = Swarm(HOST, port, follow_cadence=not args.ignore_cadence, clock_error_ms=args.clock_error_ms)
    profiler: subprocess.Popen[bytes] | None = None
    node.start()
    try:
        await node.wait_ready(NODE_READY_TIMEOUT_S)
        result.node_idle_rss_mb = process_rss_mb(node.pid)
        sizes = race_sizes(players)
        async with AdminClient(node.admin_url, ADMIN_TOKEN, race_type=args.race_type) as admin:

            async def make_race(index: int) -> RaceSeats:
                return await admin.create_race([f"p{index}-{j}" for j in range(sizes[index])])

            ramp_start = time.monotonic()
            swarm.start_timer()  # players whose race starts during the ramp type at once
            try:
                async with asyncio.timeout(args.ramp_timeout):
                    await swarm.add_races(
                        len(sizes), make_race, concurrency=args.concurrency, join_timeout_s=60.0
                    )
            except TimeoutError:
                result.reasons.append(f"ramp not done after {args.ramp_timeout:.0f}s")
            result.ramp_s = time.monotonic() - ramp_start
            result.connect_failures = dict(swarm.connect_failures)
            result.connected = len(swarm.players) - sum(swarm.connect_failures.values())
            await swarm.wait_started(args.countdown + 30.0)
            # Nothing long-lived is allocated from here on: keep the collector off the players.
            gc.collect()
            gc.freeze()
            await asyncio.sleep(args.warmup)
            result.started = swarm.started

            m0 = parse_metrics(await admin.get_text("/metrics"))
            m0_at = time.monotonic()
            if args.profile_dir is not None and players >= args.profile_from and not args.profile_stop:
                profiler, result.profile = start_profiler(node.pid, args, players)
            marks: dict[str, Any] = {}

            def at_window_end() -> None:
                marks["node"] = process_cpu(node.pid)
                marks["gen"] = self_cpu()
                marks["cores"] = _cores(args)
                marks["redis"] = _redis_cpu(redis_server)
                marks["redis_info"] = _redis_counts(redis_server)
                marks["t"] = time.monotonic()
                marks["rss"] = process_rss_mb(node.pid)

            node0, gen0, redis0 = process_cpu(node.pid), self_cpu(), _redis_cpu(redis_server)
            redis_info0 = _redis_counts(redis_server)
            cores0 = _cores(args)
            t0 = time.monotonic()
            stats = await swarm.measure(args.duration, args.drain, at_end=at_window_end)
            m1 = parse_metrics(await admin.get_text("/metrics"))  # after the drain: rates use
            m1_at = time.monotonic()  # the time between the two scrapes
        seconds = marks["t"] - t0
        apply_window(result, stats, players)
        result.node_rss_mb = marks["rss"]
        _cpu_pcts(result, "node", node0, marks["node"], seconds)
        _cpu_pcts(result, "gen", gen0, marks["gen"], seconds)
        result.redis_cpu_pct = (marks["redis"] - redis0) / seconds * 100
        redis_info1 = marks["redis_info"]
        # Less the INFO calls themselves (one command each end).
        result.redis_cmds_per_s = (redis_info1[0] - redis_info0[0] - 1) / seconds
        result.redis_in_kb_per_s = (redis_info1[1] - redis_info0[1]) / seconds / 1000
        result.redis_hset_per_s = (redis_info1[2] - redis_info0[2]) / seconds
        result.node_core_busy_pct, result.gen_core_busy_pct = (
            (busy1 - busy0) / max(1.0, total1 - total0) * 100
            for (busy0, total0), (busy1, total1) in zip(cores0, marks["cores"], strict=True)
        )
        _note_foreign_load(result, args)
        apply_node_metrics(result, m0, m1, m1_at - m0_at)
        if not node.alive:
            result.reasons.append("node process died")
    except Exception as exc:  # a broken step is a result, not a crash of the whole run
        result.reasons.append(f"{type(exc).__name__}: {exc}")
    finally:
        if profiler is not None:
            await _finish_profiler(profiler)
        if node.alive and result.connected:
            try:
                result.stop = await measure_stop(node, redis_server, swarm, args, players)
            except Exception as exc:  # a stop we could not watch is still a result
                result.reasons.append(f"stop not measured: {type(exc).__name__}: {exc}")
        swarm.close_all()
        await asyncio.sleep(0.2)
        node.stop()
        gc.unfreeze()  # this step's players (cycles: protocol <-> transport) may go now
        gc.collect()
        _flush_redis(redis_server)
    if result.stop is not None:
        stop = result.stop
        if stop.races_held < 0:
            result.reasons.append("races held at stop unknown (/admin/status unanswered, no node stop line)")
        elif stop.written < stop.races_held:
            result.reasons.append(
                f"{stop.races_held - stop.written} of {stop.races_held} results not written at stop"
            )
        if stop.exit_code is None:
            result.reasons.append(f"node SIGKILLed: not exited {NODE_STOP_TIMEOUT_S:.0f}s after SIGTERM")
    early = list(result.reasons)
    judge(result)
    result.reasons = early + [r for r in result.reasons if r not in early]
    if early and result.status == "held":
        result.status = "failed"
    return result


async def measure_stop(
    node: NodeProcess, redis_server: RedisServer, swarm: Swarm, args: argparse.Namespace, players: int
) -> StopResult:
    """SIGTERM the node with its players connected; watch the outbox stream until it exits.
    ``--profile-stop`` (with ``--profile-dir``): py-spy the node from the SIGTERM on."""
    out = StopResult()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with (
            aiohttp.ClientSession(headers=headers, timeout=timeout) as http,
            http.get(f"{node.admin_url}/admin/status") as resp,
        ):
            out.races_held = int((await resp.json())["races"])
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
        # A saturated node's admin listener may not answer in 10 s: stop it all the same (the
        # stop is what is measured), and take the races from its results_written_at_stop line.
        why = type(exc).__name__
        print(f"note: /admin/status unanswered before the stop ({why}); stopping anyway", flush=True)
        out.races_held = -1
    told0 = swarm.race_events.get("results", 0)
    client = redis.Redis.from_url(redis_server.url)
    try:
        before = seen = int(client.xlen(OUTBOX_STREAM))
        proc = node.proc
        assert proc is not None
        if args.profile_stop and args.profile_dir is not None:
            _, out.profile = start_profiler(
                node.pid, args, players, what="-stop", duration_s=NODE_STOP_TIMEOUT_S
            )
            await asyncio.sleep(0.5)  # py-spy attaches
        signalled = polled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        first: float | None = None
        last: float | None = None
        while proc.poll() is None and time.monotonic() - signalled < NODE_STOP_TIMEOUT_S:
            await asyncio.sleep(0.02)  # the players keep answering while we wait
            now, n = time.monotonic(), int(client.xlen(OUTBOX_STREAM))
            if n > seen:
                first = polled if first is None else first
                last, seen = now, n
            polled = now
        if proc.poll() is not None:
            out.exit_s, out.exit_code = time.monotonic() - signalled, proc.returncode
        else:  # killed here, at the deadline: what is counted below is all it wrote in time
            proc.kill()
            proc.wait()
        out.written = int(client.xlen(OUTBOX_STREAM)) - before
        if first is not None and last is not None:
            out.write_s = last - first
    finally:
        client.close()
    out.players_told = swarm.race_events.get("results", 0) - told0
    out.node_per_s, out.node_abort_s, owed = _node_stop_figures(node.log_path)
    if out.races_held < 0 and owed is not None:
        out.races_held = owed
    return out


def _node_stop_figures(log_path: Path) -> tuple[float, float, int | None]:
    """The node's own results/s, abort time and results owed at stop (its
    ``results_written_at_stop`` line; None owed: no such line)."""
    rate = abort_s = math.nan
    owed = None
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            if '"results_written_at_stop"' in line:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    event = json.loads(line)
                    rate, abort_s = float(event["per_s"] or math.nan), float(event["abort_s"])
                    owed = int(event["owed"])
    return rate, abort_s, owed


def apply_window(result: StepResult, stats: WindowStats, players: int) -> None:
    s = stats.seconds
    result.window_s = s
    result.samples = len(stats.latencies_ms)
    result.p50_ms = stats.percentile(50)
    result.p95_ms = stats.percentile(95)
    result.p99_ms = stats.percentile(99)
    result.max_ms = stats.latencies_ms[-1] if stats.latencies_ms else math.nan
    result.lost = stats.lost
    result.inputs_per_s = stats.inputs_sent / s
    result.inputs_due_per_s = stats.started / 0.5
    result.progress_frames_per_s = stats.progress_frames / s
    result.pongs_per_s = stats.pongs_sent / s
    result.errors = stats.errors
    result.closes = stats.closes
    result.protocol_errors = stats.protocol_errors
    result.race_events = stats.race_events
    if stats.exhausted:
        result.race_events["passage exhausted"] = stats.exhausted
    result.gen_lag_p99_ms = percentile(stats.lag_ms, 99)
    result.gen_lag_max_ms = stats.lag_ms[-1] if stats.lag_ms else math.nan


def _cpu_pcts(result: StepResult, who: str, a: CpuSample, b: CpuSample, seconds: float) -> None:
    setattr(result, f"{who}_cpu_pct", (b.total_s - a.total_s) / seconds * 100)
    setattr(result, f"{who}_user_pct", (b.user_s - a.user_s) / seconds * 100)
    setattr(result, f"{who}_sys_pct", (b.system_s - a.system_s) / seconds * 100)


def _cores(args: argparse.Namespace) -> list[tuple[float, float]]:
    """(busy, total) jiffies of the node's core and the generator's core (zeros if not pinned)."""
    return [core_busy(c) if c is not None else (0.0, 1.0) for c in (args.node_core, args.gen_core)]


FOREIGN_LOAD_PCT = 15.0  # beyond kernel noise (IPIs, timers) that no process is charged for


def _note_foreign_load(result: StepResult, args: argparse.Namespace) -> None:
    """Other processes on our cores (this machine may be shared) make a step pessimistic."""
    if args.node_core is not None:
        other = result.node_core_busy_pct - result.node_cpu_pct
        if other > FOREIGN_LOAD_PCT:
            result.warnings.append(f"other processes used ~{other:.0f}% of the node's core")
    if args.gen_core is not None:
        other = result.gen_core_busy_pct - result.gen_cpu_pct - result.redis_cpu_pct
        if other > FOREIGN_LOAD_PCT:
            result.warnings.append(f"other processes or py-spy used ~{other:.0f}% of the generator's core")


async def wait_quiet(args: argparse.Namespace) -> None:
    """Wait (bounded) until nothing else keeps our cores busy: the machine may be shared."""
    cores = [c for c in (args.node_core, args.gen_core) if c is not None]
    if not cores or args.quiet_wait <= 0:
        return
    deadline = time.monotonic() + args.quiet_wait
    while True:
        before = [core_busy(c) for c in cores]
        await asyncio.sleep(1.0)
        after = [core_busy(c) for c in cores]
        busiest = max(
            (b1 - b0) / max(1.0, t1 - t0) * 100 for (b0, t0), (b1, t1) in zip(before, after, strict=True)
        )
        if busiest < FOREIGN_LOAD_PCT:
            return
        if time.monotonic() > deadline:
            print(f"note: cores still {busiest:.0f}% busy with other work; measuring anyway", flush=True)
            return


def _redis_cpu(server: RedisServer) -> float:
    pid = server.pid
    return process_cpu(pid).total_s if pid is not None else 0.0


def _redis_counts(server: RedisServer) -> tuple[int, int, int]:
    """(commands processed, bytes received, HSET calls) so far, from INFO."""
    client = redis.Redis.from_url(server.url)
    try:
        info = client.info("all")
    finally:
        client.close()
    hset = info.get("cmdstat_hset", {})
    calls = int(hset.get("calls", 0)) if isinstance(hset, dict) else 0
    return int(info["total_commands_processed"]), int(info["total_net_input_bytes"]), calls


def _flush_redis(server: RedisServer) -> None:
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(server.url)
        try:
            client.flushall()
        finally:
            client.close()


# ---- profiling -------------------------------------------------------------------------


def start_profiler(
    pid: int, args: argparse.Namespace, players: int, *, what: str = "", duration_s: float | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """py-spy over the window, collapsed stacks (speedscope and flamegraph tools read them).

    py-spy pauses the node for each sample (about 1 % at 100 Hz): --nonblocking would not, but
    then many stacks come out torn and the inclusive figures are wrong. py-spy runs on the
    generator's core, so a profiled step's figures are pessimistic: profile in a separate run.
    """
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(args.profile_dir) / f"node-{players}{what}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    seconds = str(int(duration_s or args.duration))
    argv = [
        py_spy, "record", "--pid", str(pid), "--duration", seconds, "--rate", "100",
        "--format", "raw", "--output", str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, str(out)


async def _finish_profiler(proc: subprocess.Popen[bytes]) -> None:
    for _ in range(100):
        if proc.poll() is not None:
            return
        await asyncio.sleep(0.1)
    proc.kill()
    proc.wait()


def summarise_profile(path: str, top: int = 15) -> str:
    """Top functions by own and by inclusive samples, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    own_lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        return f"(no profile: {exc})"
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        raw = stack.split(";")
        frames = [_frame_name(f) for f in raw]
        own[frames[-1]] += count
        own_lines[_frame_name(raw[-1], keep_line=True)] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "(empty profile)"
    out = [f"profile {path}: {total} samples (idle excluded)", "  own time:"]
    out += [f"    {n / total * 100:5.1f}%  {name}" for name, n in own.most_common(top)]
    out.append("  inclusive time:")
    out += [f"    {n / total * 100:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    out.append("  own time by line:")
    out += [f"    {n / total * 100:5.1f}%  {name}" for name, n in own_lines.most_common(top)]
    return "\n".join(out)


def _frame_name(frame: str, *, keep_line: bool = False) -> str:
    """'send (/x/gameserver/room.py:42)' -> 'send (gameserver/room.py)', or with ':42'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    if not path or not line.isdigit():
        path, line = where, ""
    for marker in ("/site-packages/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    for package in ("/arena/", "/gameserver/"):  # the snapshot's temp dir says nothing
        if package in path:
            path = path[path.rfind(package) + 1 :]
    return f"{name} ({path}:{line})" if keep_line and line else f"{name} ({path})"


# ---- output ----------------------------------------------------------------------------

_HEADER = (
    f"{'players':>7} {'ramp s':>6} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6} {'in/s':>7} {'prog/s':>7} "
    f"{'lost':>5} {'err':>4} {'node cpu':>9} {'usr/sys':>9} {'rss MB':>7} {'nlag99':>7} "
    f"{'core0':>6} {'gen cpu':>7} {'usr/sys':>9} {'core1':>6} {'lag99':>6}  verdict"
)


def format_row(r: StepResult) -> str:
    errs = sum(r.errors.values()) + sum(r.closes.values()) + sum(r.protocol_errors.values())
    errs += sum(r.connect_failures.values())
    return (
        f"{r.players:>7} {r.ramp_s:>6.1f} {r.p50_ms:>6.1f} {r.p95_ms:>6.1f} {r.p99_ms:>6.1f} "
        f"{r.max_ms:>6.0f} {r.inputs_per_s:>7.0f} {r.progress_frames_per_s:>7.0f} {r.lost:>5} {errs:>4} "
        f"{r.node_cpu_pct:>8.1f}% {r.node_user_pct:>4.0f}/{r.node_sys_pct:<4.0f} {r.node_rss_mb:>7.0f} "
        f"{r.node_loop_lag_p99_ms:>7.1f} {r.node_core_busy_pct:>5.0f}% {r.gen_cpu_pct:>6.1f}% "
        f"{r.gen_user_pct:>4.0f}/{r.gen_sys_pct:<4.0f} {r.gen_core_busy_pct:>5.0f}% "
        f"{r.gen_lag_p99_ms:>6.1f}  "
        f"{r.status}{': ' + '; '.join(r.reasons) if r.reasons else ''}"
        f"{' [' + '; '.join(r.warnings) + ']' if r.warnings else ''}"
    )


def format_flushes(r: StepResult) -> str:
    """Why the node's race frames left: on the send instant, at the window, or with the tick."""
    total = sum(r.node_flushes_per_s.values())
    if not total:
        return "        race frames: none counted"
    shares = ", ".join(f"{reason} {n / total:.0%}" for reason, n in r.node_flushes_per_s.items())
    return f"        race frames: {total:,.0f}/s ({shares})"


def format_redis(r: StepResult) -> str:
    """What the node asked of Redis: the race mirrors' share is the HSETs."""
    return (
        f"        redis: {r.redis_cmds_per_s:,.0f} commands/s (HSET {r.redis_hset_per_s:,.0f}/s), "
        f"{r.redis_in_kb_per_s:,.1f} kB/s in, {r.redis_cpu_pct:.1f}% CPU"
    )


def format_stop(r: StepResult) -> str:
    """What the stop did: results written (from the outbox stream), how fast, and the exit."""
    s = r.stop
    if s is None:
        return "        stop: not measured"
    code = "SIGKILLed" if s.exit_code is None else f"exit {s.exit_code}"
    return (
        f"        stop: results written {s.written:,} of {s.races_held:,} races held "
        f"({s.per_s:,.0f}/s over {s.write_s:.2f} s; node: {s.node_per_s:,.0f}/s after {s.node_abort_s:.2f} s "
        "aborting), "
        f"players told {s.players_told:,}, SIGTERM to exit {s.exit_s:.2f} s ({code})"
    )


def verdict(results: list[StepResult]) -> str:
    stops = [
        f"{r.stop.written} of {r.stop.races_held} at {r.players} players "
        f"({r.stop.per_s:,.0f}/s, SIGTERM to exit {r.stop.exit_s:.1f} s)"
        for r in results
        if r.stop is not None
    ]
    stop_line = f"\nresults written at stop: {'; '.join(stops)}" if stops else ""
    return _capacity_verdict(results) + stop_line


def _capacity_verdict(results: list[StepResult]) -> str:
    held = [r for r in results if r.status == "held"]
    if not held:
        first = results[0] if results else None
        why = (
            f" (first step, {first.players} players: {first.status}: {'; '.join(first.reasons)})"
            if first
            else ""
        )
        return f"largest held: none{why}"
    best = max(held, key=lambda r: r.players)
    per_k = best.players / 1000
    mem = (best.node_rss_mb - best.node_idle_rss_mb) / per_k
    line = (
        f"largest held: {best.players} players (p99 {best.p99_ms:.0f} ms); "
        f"CPU {best.node_cpu_pct / per_k:.1f}% and {mem:.1f} MB per 1,000 players"
    )
    after = [r for r in results if r.players > best.players]
    if after:
        nxt = min(after, key=lambda r: r.players)
        line += f"\nnext step {nxt.players}: {nxt.status}: {'; '.join(nxt.reasons)}"
    gen_per_k = best.gen_cpu_pct / per_k
    if gen_per_k > 0:
        line += (
            f"\ngenerator: {gen_per_k:.1f}% CPU per 1,000 players at {best.players} "
            f"({best.inputs_per_s / best.players:.1f} inputs/s and "
            f"{best.progress_frames_per_s / best.players:.1f} frames/s per player); "
            f"its {GEN_CPU_LIMIT:.0f}% limit, linearly: ~{GEN_CPU_LIMIT / gen_per_k * 1000:.0f} players"
        )
    return line


# ---- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--steps", default=None, help="comma-separated player counts (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help=f"smoke run: steps {QUICK_STEPS}, short windows")
    ap.add_argument("--duration", type=float, default=20.0, help="measurement window, seconds")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of racing before the window")
    ap.add_argument("--drain", type=float, default=2.0, help="seconds after the window for late echoes")
    ap.add_argument("--tick-hz", type=float, default=None, help="ARENA_RACE_TICK_HZ (default: the node's)")
    ap.add_argument(
        "--progress-window-ms",
        type=int,
        default=None,
        help="ARENA_RACE_PROGRESS_WINDOW_MS (default: the node's)",
    )
    ap.add_argument(
        "--ignore-cadence",
        action="store_true",
        help="players ignore the race's input cadence and keep phases of their own (the costly case)",
    )
    ap.add_argument(
        "--clock-error-ms",
        type=float,
        default=10.0,
        help="a cadence-following player sends up to this far off its race's instants",
    )
    ap.add_argument("--race-type", default="marathon", choices=("quick", "standard", "marathon"))
    ap.add_argument("--countdown", type=float, default=3.0, help="ARENA_RACE_COUNTDOWN_S")
    ap.add_argument("--concurrency", type=int, default=50, help="races joining at once during the ramp")
    ap.add_argument("--ramp-timeout", type=float, default=240.0, help="seconds to connect everyone")
    ap.add_argument("--node-core", type=int, default=0, help="core for the node (-1: no pinning)")
    ap.add_argument("--gen-core", type=int, default=1, help="core for the generator and Redis (-1: none)")
    ap.add_argument("--node-log-level", default="warning", help="ARENA_LOG_LEVEL of the node")
    ap.add_argument("--node-env", action="append", default=[], metavar="KEY=VALUE", help="extra node env")
    ap.add_argument("--keep-going", action="store_true", help="run every step even after a failure")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
    ap.add_argument("--profile-dir", default=None, help="py-spy the node during each window into this dir")
    ap.add_argument(
        "--profile-stop", action="store_true", help="py-spy the node's stop instead of the window"
    )
    ap.add_argument("--profile-from", type=int, default=0, help="profile only steps with this many players+")
    ap.add_argument("--retries", type=int, default=2, help="reruns of a failed step disturbed by others")
    ap.add_argument("--quiet-wait", type=float, default=120.0, help="seconds to wait for idle cores")
    ap.add_argument("--max-minutes", type=float, default=45.0, help="hard limit for the whole run")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps = args.steps or ",".join(map(str, QUICK_STEPS))
        args.duration, args.warmup, args.race_type = (
            min(args.duration, 5.0),
            min(args.warmup, 2.0),
            "standard",
        )
    args.steps = [int(s) for s in (args.steps or ",".join(map(str, DEFAULT_STEPS))).split(",") if s]
    args.node_core = None if args.node_core < 0 else args.node_core
    args.gen_core = None if args.gen_core < 0 else args.gen_core
    return args


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvloop": getattr(uvloop, "__version__", "?"),
        "aiohttp": aiohttp.__version__,
    }


def raise_fd_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE to the hard limit; the node inherits it. Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < needed:
        print(f"warning: RLIMIT_NOFILE hard limit {hard} < {needed} sockets needed", file=sys.stderr)
    return hard


@contextlib.contextmanager
def services(args: argparse.Namespace) -> Iterator[tuple[RedisServer, Path, Path, str]]:
    work_dir = Path(tempfile.mkdtemp(prefix="typogram-capacity-"))
    src_dir = work_dir / "src"
    fingerprint = snapshot_sources(src_dir)
    redis_server = RedisServer()  # inherits our affinity: it shares the generator's core
    try:
        redis_server.start()
        yield redis_server, src_dir, work_dir, fingerprint
    finally:
        redis_server.stop()
        shutil.rmtree(src_dir, ignore_errors=True)


async def run_all(args: argparse.Namespace) -> list[StepResult]:
    results: list[StepResult] = []
    with services(args) as (redis_server, src_dir, work_dir, fingerprint):
        git = git_state()
        print(f"machine: {json.dumps(machine_info())}")
        print(
            f"server: HEAD {git['head']}, snapshot {fingerprint}, uncommitted server changes: "
            f"{len(git['server_changes'])}; node logs in {work_dir}"
        )
        print(
            f"node on core {args.node_core}, generator + Redis on core {args.gen_core}; races of {RACE_SIZE} "
            f"({args.race_type}), input every 500 ms, tick {args.tick_hz or 'default'} Hz, "
            f"window {args.duration:.0f}s after {args.warmup:.0f}s warm-up"
        )
        window = args.progress_window_ms or RaceSettings().progress_window_ms
        print(
            f"note: a race's progress frame leaves {window} ms after the first input it carries "
            f"(ARENA_RACE_PROGRESS_WINDOW_MS), or as soon as every typist has sent; the limit is "
            f"p99 {P99_LIMIT_MS:.0f} ms"
        )
        cadence = (
            "players ignore the input cadence (a phase each)"
            if args.ignore_cadence
            else f"players follow their race's input cadence within +-{args.clock_error_ms:g} ms"
        )
        print(f"note: {cadence}")
        print(_HEADER, flush=True)
        try:
            async with asyncio.timeout(args.max_minutes * 60):
                for players in args.steps:
                    for attempt in range(args.retries + 1):
                        await wait_quiet(args)
                        result = await run_step(players, args, redis_server, src_dir, work_dir)
                        print(format_row(result), flush=True)
                        print(format_flushes(result), flush=True)
                        print(format_redis(result), flush=True)
                        print(format_stop(result), flush=True)
                        if result.status == "held" or not result.warnings or attempt == args.retries:
                            break
                        print(f"{players}: disturbed by other processes, trying again", flush=True)
                    results.append(result)
                    if result.profile:
                        print(summarise_profile(result.profile), flush=True)
                    if result.stop is not None and result.stop.profile:
                        print(summarise_profile(result.stop.profile), flush=True)
                    if result.status != "held" and not args.keep_going:
                        break
        except TimeoutError:
            print(f"stopped: the run hit --max-minutes {args.max_minutes:.0f}", flush=True)
        print(verdict(results))
        if args.json:
            payload = {
                "args": {k: v for k, v in vars(args).items()},
                "machine": machine_info(),
                "git": git,
                "server_snapshot": fingerprint,
                "limits": {
                    "p99_ms": P99_LIMIT_MS,
                    "gen_cpu_pct": GEN_CPU_LIMIT,
                    "gen_lag_ms": GEN_LAG_LIMIT_MS,
                },
                "steps": [asdict(r) for r in results],
                "verdict": verdict(results),
            }
            with open(args.json, "w") as fh:  # noqa: ASYNC230 - once, after the run
                fh.write(json.dumps(payload, indent=2, default=str) + "\n")
    return results


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit(max(args.steps) + 500)
    if args.gen_core is not None:
        os.sched_setaffinity(0, {args.gen_core})
    # The generator allocates per frame; fewer gen-0 collections keep its loop lag low.
    gc.set_threshold(50_000, 20, 100)
    # SIGTERM ends the run like Ctrl-C does: every finally block stops what it started.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        results = uvloop.run(run_all(args))
    except KeyboardInterrupt:
        print("interrupted: node and Redis stopped", file=sys.stderr)
        return 130
    return 0 if any(r.status == "held" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
