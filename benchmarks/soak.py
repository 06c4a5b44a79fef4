"""Soak: the whole cluster under steady race churn for a long time. Does every process's memory stay flat?

    .venv/bin/python benchmarks/soak.py                        # 30 minutes of arrivals, ~45 minutes in all
    .venv/bin/python benchmarks/soak.py --minutes 8            # a shorter run, for iterations
    .venv/bin/python benchmarks/soak.py --minutes 8 --rate 5 --out /tmp/soak
    .venv/bin/python benchmarks/soak.py --env ARENA_NODE_GC_FULL_S=0   # any setting, every process
    .venv/bin/python benchmarks/soak.py --node-env 2:PYTHONMALLOC=malloc  # node-2 changed, node-1 as shipped

Starts what ``benchmarks/end_to_end.py`` starts (``ops/cluster.py``: Redis, PostgreSQL, the
broker, two nodes, the matchmaker, the lobby, persistence, the tournament director) and
samples every process's resident memory (``/proc``) and each Arena process's ``/metrics``
every ``--sample-s`` seconds through three phases: idle (the size each process settles at once
the cluster answers its health checks: a node is then past its start-up warm-up and collection,
``gameserver.__main__``, i.e. the size an operator sees when it starts serving),
load (a swarm of players arriving at ``--rate`` a second for ``--minutes``: each takes a
guest token, queues, races once and leaves, so races come and go: ~500 connected players at
10/s), and idle again. The nodes also count their heap (``ARENA_NODE_HEAP_STATS_S``) and their
per-race structures (``arena_gameserver_node_items``).

Printed per process: idle size, peak, the slope of a least-squares line over the last two
thirds of the arrivals (MB a minute and the change it makes over that window, in % of the
mean), the size after the load and how far that is above the idle size. **Flat** means the
window's change is within 5 % and the size after the load within 10 % of the idle size.
Redis, PostgreSQL and the broker are shown too, but not judged: they store what the races
produce (ratings, results, the outbox), which is meant to grow. Also printed: the nodes'
structures and heap counts at the end of the load and after it, the number of /metrics
series per process (label sets), the swarm's report, and how many finished races reached
PostgreSQL. The JSON (every sample), a PNG and the cluster's logs stay on disk (paths printed).

``--node-env N:KEY=VALUE`` changes one node only, so node-1 as shipped and node-2 changed run
the same load at the same time (a comparison that foreign load on a shared machine hits
equally): an Arena setting, or the interpreter's and C library's allocator settings
(``PYTHONMALLOC``, ``MALLOC_*``, ``GLIBC_TUNABLES``).

Bounded: the swarm stops itself at ``--minutes`` + its drain; the sampler takes at most the
number of samples the phases can hold and stops at their deadline. Everything started is
stopped on exit, Ctrl-C and SIGTERM included. Exit 1 when a judged process was not flat,
a process exited, or nothing finished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import aiohttp
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena.logs import configure_logging  # noqa: E402
from arena.settings import LogSettings  # noqa: E402
from benchmarks.end_to_end import (  # noqa: E402
    CLUSTER_ENV,
    READY_TIMEOUT_S,
    _interrupt,
    finished_races,
    stop_cluster,
    wait_nodes,
    wait_persisted,
)
from ops.cluster import Cluster, wait_healthy  # noqa: E402
from ops.services import PostgresServer, RedisServer, ServiceError  # noqa: E402
from simulators.procstat import cpu_model, process_rss_mb  # noqa: E402
from simulators.swarm.report import Report, render_text  # noqa: E402
from simulators.swarm.run import KILL_AFTER_S, STARTUP_S, SwarmError, SwarmSettings, run_swarm  # noqa: E402
from simulators.swarm.scenario import Scenario, ScenarioError, load_scenario  # noqa: E402

DEFAULT_SCENARIO = ROOT / "simulators" / "scenarios" / "medium.toml"  # race mix, typing, ratings
FLAT_PCT = 5.0  # the window's fitted change, in % of its mean
BACK_PCT = 10.0  # after the load, at most this far above the idle size
DRAIN_S = 150.0  # after the last arrival: a standard race at 60 wpm, plus matching
SERVICES = ("redis", "postgres", "kafka")  # shown, not judged: they store what races produce
NODE_FAMILIES = (
    "arena_gameserver_node_items",
    "arena_gameserver_python_objects",
    "arena_gameserver_gc_full_collections_total",  # by why: startup, idle, scheduled
)
SCRAPE_TIMEOUT_S = 3.0
NODES = 2  # ops.cluster starts two
NODE_ENV_PREFIXES = ("ARENA_", "PYTHONMALLOC", "MALLOC_", "GLIBC_TUNABLES")  # --node-env keys


def parse_node_env(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``N:KEY=VALUE`` items -> {"node-N": {KEY: VALUE}}; ValueError on anything else."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        node, colon, assign = item.partition(":")
        key, eq, value = assign.partition("=")
        if not colon or not node.isdigit() or not 1 <= int(node) <= NODES:
            raise ValueError(f"--node-env {item!r}: expected N:KEY=VALUE with N from 1 to {NODES}")
        if not eq or not key.startswith(NODE_ENV_PREFIXES):
            raise ValueError(f"--node-env {item!r}: KEY must start with {', '.join(NODE_ENV_PREFIXES)}")
        out.setdefault(f"node-{int(node)}", {})[key] = value
    return out


@dataclass(frozen=True, slots=True)
class SoakSettings:
    minutes: float = 30.0  # arrivals last this long
    rate: float = 10.0  # players arriving a second (each races once)
    sample_s: float = 30.0
    idle_before_s: float = 60.0
    idle_after_s: float = 120.0
    workers: int = 3
    heap_stats: bool = True  # the nodes count their heap at each sample (ARENA_NODE_HEAP_STATS_S)

    def __post_init__(self) -> None:
        if not 1 <= self.minutes <= 60:
            raise ValueError("--minutes must be between 1 and 60 (the swarm's longest scenario)")
        if not 0.1 <= self.rate <= 50:
            raise ValueError("--rate must be between 0.1 and 50 players a second")
        if not 5 <= self.sample_s <= 300:
            raise ValueError("--sample-s must be between 5 and 300")
        if not 0 <= self.idle_before_s <= 600 or not 0 <= self.idle_after_s <= 1800:
            raise ValueError("idle phases: 0-600 s before, 0-1800 s after")


def soak_scenario(base: Scenario, settings: SoakSettings) -> Scenario:
    """The base scenario's mix, stretched: ``rate`` arrivals a second for ``minutes``."""
    duration = settings.minutes * 60.0
    return replace(
        base,
        name=f"soak-{settings.minutes:g}min",
        players=max(1, math.ceil(settings.rate * duration)),
        arrival_rate=settings.rate,
        duration_s=duration,
        drain_s=DRAIN_S,
        workers=settings.workers,
    )


# ---- the pure parts: fit, judge, bounded sampling -------------------------------------


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, in value per minute; None under 3 points."""
    if len(points) < 3:
        return None
    xs = [t / 60.0 for t, _ in points]
    ys = [v for _, v in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


@dataclass(frozen=True, slots=True)
class Window:
    """The slope's window: the last two thirds of the arrivals (seconds since the run's start)."""

    start: float
    end: float

    @classmethod
    def last_two_thirds(cls, arrivals_from: float, arrivals_until: float) -> Window:
        return cls(arrivals_from + (arrivals_until - arrivals_from) / 3.0, arrivals_until)

    @property
    def minutes(self) -> float:
        return (self.end - self.start) / 60.0


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    judged: bool
    idle_mb: float | None  # median of the idle phase before the load
    peak_mb: float
    slope_mb_per_min: float | None  # over the window
    change_pct: float | None  # the fitted line's change over the window, in % of the window's mean
    after_mb: float | None  # median of the idle phase after the load
    back_pct: float | None  # (after - idle) / idle
    flat: bool | None  # change within FLAT_PCT and after within BACK_PCT of idle (None: not judged)


def judge(
    name: str, series: Sequence[tuple[float, str, float]], window: Window, *, judged: bool = True
) -> Verdict:
    """One process's verdict from its (t, phase, rss MB) samples."""
    idle = [v for _, phase, v in series if phase == "idle"]
    after = [v for _, phase, v in series if phase == "after"]
    inside = [(t, v) for t, _, v in series if window.start <= t <= window.end]
    slope = slope_per_minute(inside)
    change = None
    if slope is not None:
        change = 100.0 * slope * window.minutes / statistics.fmean(v for _, v in inside)
    idle_mb = statistics.median(idle) if idle else None
    after_mb = statistics.median(after) if after else None
    back = None if idle_mb is None or after_mb is None else 100.0 * (after_mb - idle_mb) / idle_mb
    flat = None
    if judged:
        flat = change is not None and abs(change) <= FLAT_PCT and (back is None or back <= BACK_PCT)
    return Verdict(
        name=name,
        judged=judged,
        idle_mb=idle_mb,
        peak_mb=max((v for _, _, v in series), default=float("nan")),
        slope_mb_per_min=slope,
        change_pct=change,
        after_mb=after_mb,
        back_pct=back,
        flat=flat,
    )


async def sample_loop(
    take: Callable[[], Awaitable[None]],
    every_s: float,
    until: float,
    stop: asyncio.Event,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Call ``take`` every ``every_s`` until ``stop`` is set or the clock passes ``until``;
    never more often than that, and never more than the window holds. Returns the count."""
    limit = max(1, math.ceil((until - clock()) / every_s) + 1)
    taken = 0
    next_at = clock()
    while taken < limit and clock() < until and not stop.is_set():
        await take()
        taken += 1
        next_at += every_s
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, min(next_at, until) - clock()))
        except TimeoutError:
            pass
    return taken


def parse_metrics(text: str, families: Sequence[str]) -> tuple[int, dict[str, dict[str, float]]]:
    """The number of series in a Prometheus exposition, and ``family -> label value -> value``
    for the wanted one-label families."""
    series = 0
    wanted: dict[str, dict[str, float]] = {f: {} for f in families}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series += 1
        name, _, rest = line.partition("{")
        if name in wanted and "}" in rest:
            labels, _, value = rest.rpartition("}")
            label = labels.split("=", 1)[-1].strip('"')
            try:
                wanted[name][label] = float(value)
            except ValueError:
                continue
    return series, wanted


# ---- the run --------------------------------------------------------------------------


@dataclass
class Sample:
    t: float  # seconds since the run's start
    phase: str  # idle, load, after
    rss_mb: dict[str, float]
    series: dict[str, int]  # /metrics series per Arena process
    node: dict[str, dict[str, dict[str, float]]]  # node -> family -> label -> value


@dataclass
class Sampler:
    pids: dict[str, int]
    metrics_urls: dict[str, str]  # Arena process -> its /metrics
    t0: float
    phase: str = "idle"
    samples: list[Sample] = field(default_factory=list)
    exited: set[str] = field(default_factory=set)

    async def take(self) -> None:
        rss: dict[str, float] = {}
        for name, pid in self.pids.items():
            try:
                rss[name] = process_rss_mb(pid)
            except OSError:
                self.exited.add(name)
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            scraped = await asyncio.gather(*(_scrape(http, url) for url in self.metrics_urls.values()))
        series: dict[str, int] = {}
        node: dict[str, dict[str, dict[str, float]]] = {}
        for name, text in zip(self.metrics_urls, scraped, strict=True):
            if text is None:
                continue
            series[name], families = parse_metrics(text, NODE_FAMILIES)
            if name.startswith("node-"):
                node[name] = families
        self.samples.append(Sample(time.monotonic() - self.t0, self.phase, rss, series, node))
        print(f"  {self.samples[-1].t / 60:5.1f} min  {self.phase:<5} " + _rss_line(rss), flush=True)


async def _scrape(http: aiohttp.ClientSession, url: str) -> str | None:
    try:
        async with http.get(url) as resp:
            return await resp.text() if resp.status == 200 else None
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


def _rss_line(rss: dict[str, float]) -> str:
    return "  ".join(f"{name} {mb:.1f}" for name, mb in rss.items() if name not in SERVICES)


@dataclass
class Timeline:
    load_at: float = 0.0  # when the swarm started (seconds since t0)
    arrivals_from: float = 0.0
    arrivals_until: float = 0.0
    load_done: float = 0.0  # the swarm returned: every race over


async def soak(
    sampler: Sampler, scenario: Scenario, swarm: SwarmSettings, settings: SoakSettings
) -> tuple[Report, Timeline]:
    stop = asyncio.Event()
    total = settings.idle_before_s + scenario.limit_s + STARTUP_S + KILL_AFTER_S + settings.idle_after_s + 60
    sampling = asyncio.create_task(
        sample_loop(sampler.take, settings.sample_s, time.monotonic() + total, stop)
    )
    timeline = Timeline()
    try:
        await asyncio.sleep(settings.idle_before_s)
        sampler.phase = "load"
        timeline.load_at = time.monotonic() - sampler.t0
        timeline.arrivals_from = timeline.load_at + STARTUP_S
        timeline.arrivals_until = timeline.arrivals_from + scenario.duration_s
        report = await run_swarm(scenario, swarm)
        timeline.load_done = time.monotonic() - sampler.t0
        sampler.phase = "after"
        await asyncio.sleep(settings.idle_after_s)
    finally:
        stop.set()
        await sampling
    return report, timeline


def verdicts(samples: Sequence[Sample], names: Sequence[str], window: Window) -> list[Verdict]:
    out = []
    for name in names:
        series = [(s.t, s.phase, s.rss_mb[name]) for s in samples if name in s.rss_mb]
        out.append(judge(name, series, window, judged=name not in SERVICES))
    return out


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def render_verdicts(rows: Sequence[Verdict], window: Window) -> str:
    lines = [
        f"RSS (MB); slope and change over the last two thirds of the arrivals "
        f"({window.start / 60:.1f}-{window.end / 60:.1f} min); flat: change within {FLAT_PCT:g} % "
        f"and after the load within {BACK_PCT:g} % of idle",
        f"  {'process':<12} {'idle':>7} {'peak':>7} {'MB/min':>8} {'change':>8} {'after':>7} "
        f"{'vs idle':>8}  verdict",
    ]
    for v in rows:
        verdict = "not judged (stores data)" if not v.judged else "flat" if v.flat else "NOT FLAT"
        lines.append(
            f"  {v.name:<12} {_num(v.idle_mb):>7} {v.peak_mb:>7.1f} "
            f"{_num(v.slope_mb_per_min, '{:+.3f}'):>8} {_num(v.change_pct, '{:+.1f}%'):>8} "
            f"{_num(v.after_mb):>7} {_num(v.back_pct, '{:+.1f}%'):>8}  {verdict}"
        )
    return "\n".join(lines)


def render_nodes(samples: Sequence[Sample], timeline: Timeline, window: Window) -> str:
    """Each node's structures and heap counts: at the end of the arrivals, and at the end."""
    end_of_load = [s for s in samples if s.phase == "load" and s.t <= timeline.arrivals_until]
    picks = [
        ("end of arrivals", end_of_load[-1] if end_of_load else None),
        ("after", samples[-1] if samples else None),
    ]
    lines = []
    for label, sample in picks:
        if sample is None:
            continue
        for node, families in sorted(sample.node.items()):
            items = families.get("arena_gameserver_node_items", {})
            heap = families.get("arena_gameserver_python_objects", {})
            gcs = families.get("arena_gameserver_gc_full_collections_total", {})
            lines.append(
                f"  {node} {label:<16} " + " ".join(f"{k}={v:.0f}" for k, v in sorted(items.items()))
                + ("  objects: " + " ".join(f"{k}={v:.0f}" for k, v in sorted(heap.items())) if heap else "")
                + ("  full collections: " + " ".join(f"{k}={v:.0f}" for k, v in sorted(gcs.items())) if gcs else "")  # noqa: E501
            )  # fmt: skip
    # Label sets: each Arena process's /metrics series at start, when the window opens, at the end.
    first = next((s for s in samples if s.series), None)
    opening = next((s for s in samples if s.t >= window.start and s.series), None)
    last = samples[-1] if samples else None
    if first is not None and opening is not None and last is not None:
        lines.append(
            "  /metrics series (start, window, end): "
            + "  ".join(
                f"{n} {first.series.get(n, 0)}/{opening.series.get(n, 0)}/{last.series.get(n, 0)}"
                for n in sorted(last.series)
            )
        )
    return "\n".join(lines)


def render_png(
    samples: Sequence[Sample], rows: Sequence[Verdict], timeline: Timeline, window: Window, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    minutes = [s.t / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(10, 11))
    ax = axes[0]
    for v in rows:
        if v.judged:
            ax.plot(minutes, [s.rss_mb.get(v.name, math.nan) for s in samples], label=v.name)
    ax.axvspan(
        timeline.arrivals_from / 60, timeline.arrivals_until / 60, color="grey", alpha=0.12, label="arrivals"
    )
    ax.axvspan(window.start / 60, window.end / 60, color="orange", alpha=0.10, label="slope window")
    flat = all(v.flat for v in rows if v.judged)
    ax.set_title(f"soak: RSS of every Arena process — {'flat' if flat else 'NOT FLAT'}")
    ax.set_ylabel("RSS (MB)")
    ax.legend(loc="upper left", fontsize="small", ncol=2)
    ax = axes[1]
    nodes = sorted({n for s in samples for n in s.node})
    for node in nodes:
        for structure in ("rooms", "sockets"):
            values = [
                s.node.get(node, {}).get(NODE_FAMILIES[0], {}).get(structure, math.nan) for s in samples
            ]
            ax.plot(minutes, values, label=f"{node} {structure}")
    ax.set_ylabel("node structures (entries)")
    if nodes:
        ax.legend(loc="upper left", fontsize="small", ncol=2)
    ax = axes[2]
    for node in nodes:
        for kind in ("all", "dict"):
            values = [s.node.get(node, {}).get(NODE_FAMILIES[1], {}).get(kind, math.nan) for s in samples]
            ax.plot(minutes, values, label=f"{node} {kind}")
    ax.set_ylabel("python objects since start-up")
    ax.set_xlabel("minutes since start")
    if nodes:
        ax.legend(loc="upper left", fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, SoakSettings]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = SoakSettings()
    parser.add_argument("--minutes", type=float, default=d.minutes, help="how long players arrive")
    parser.add_argument("--rate", type=float, default=d.rate, help="players arriving a second")
    parser.add_argument("--sample-s", type=float, default=d.sample_s)
    parser.add_argument("--idle-before-s", type=float, default=d.idle_before_s)
    parser.add_argument("--idle-after-s", type=float, default=d.idle_after_s)
    parser.add_argument("--workers", type=int, default=d.workers, help="swarm worker processes")
    parser.add_argument("--no-heap-stats", action="store_true", help="the nodes do not count their heap")
    parser.add_argument(
        "--scenario", type=Path, default=DEFAULT_SCENARIO, help="race mix, typing and ratings"
    )
    parser.add_argument("--out", type=Path, help="output directory (default: a temporary one, kept)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every cluster process (repeatable)")  # fmt: skip
    parser.add_argument("--node-env", action="append", default=[], metavar="N:KEY=VALUE",
                        help="a setting or allocator variable for node N only (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        args.node_env = parse_node_env(args.node_env)
    except ValueError as exc:
        parser.error(str(exc))
    for item in args.env:
        key, sep, _ = item.partition("=")
        if not sep or not key.startswith("ARENA_"):
            parser.error(f"--env {item!r}: expected ARENA_SETTING=VALUE")
    try:
        settings = SoakSettings(
            minutes=args.minutes,
            rate=args.rate,
            sample_s=args.sample_s,
            idle_before_s=args.idle_before_s,
            idle_after_s=args.idle_after_s,
            workers=args.workers,
            heap_stats=not args.no_heap_stats,
        )
    except ValueError as exc:
        parser.error(str(exc))
    return args, settings


def metrics_urls(cluster: Cluster) -> dict[str, str]:
    """Each Arena process's /metrics. A node serves it on its admin listener only (its players'
    listener answers 404 there, which left the first soaks without the nodes' counts)."""
    urls = {
        f"node-{i}": f"http://127.0.0.1:{port}/metrics" for i, port in enumerate(cluster.node_admin_ports, 1)
    }
    return urls | {name: f"http://127.0.0.1:{port}/metrics" for name, port in cluster.ports.items()}


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_args(argv)
    configure_logging(LogSettings(level="warning"))
    try:
        scenario = soak_scenario(load_scenario(args.scenario), settings)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    run_dir = Path(tempfile.mkdtemp(prefix="typogram-soak-"))
    run_dir.chmod(0o755)  # PostgreSQL runs as the postgres user when we are root
    out = args.out or run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update(CLUSTER_ENV)
    if settings.heap_stats:
        os.environ["ARENA_NODE_HEAP_STATS_S"] = str(max(5.0, settings.sample_s / 2))
    os.environ.update(dict(item.split("=", 1) for item in args.env))
    cluster = Cluster(run_dir=run_dir, bots=0, house_per_queue=0, node_env=args.node_env)
    started = time.monotonic()
    print(
        f"soak: {scenario.players} players at {settings.rate:g}/s over {settings.minutes:g} min "
        f"(+{settings.idle_before_s:.0f} s idle before, {settings.idle_after_s:.0f} s after); "
        f"machine: {os.cpu_count()} cores, {cpu_model()}",
        flush=True,
    )
    for node, extra in sorted(args.node_env.items()):
        print(f"{node} only: " + " ".join(f"{k}={v}" for k, v in sorted(extra.items())), flush=True)
    try:
        print(f"starting the cluster in {run_dir} ...", flush=True)
        cluster.start()
        lobby = f"http://127.0.0.1:{cluster.ports['lobby']}"
        for port in (*cluster.node_ports, cluster.ports["matchmaker"]):
            wait_healthy(f"http://127.0.0.1:{port}/healthz", READY_TIMEOUT_S)
        wait_nodes(lobby, len(cluster.node_ports), READY_TIMEOUT_S)
        redis_url = next(s for s in cluster.services if isinstance(s, RedisServer)).url
        pids = {p.name: p.proc.pid for p in cluster.processes if p.proc is not None}
        urls = metrics_urls(cluster)
        for service in cluster.services:
            if service.pid is not None:
                pids[service.name] = service.pid
        sampler = Sampler(pids, urls, t0=time.monotonic())
        swarm = SwarmSettings(lobby_url=lobby, out_dir=out / "swarm", redis_url=redis_url, watch_pids={})
        report, timeline = uvloop.run(soak(sampler, scenario, swarm, settings))
        exited = sorted(sampler.exited | {p.name for p in cluster.processes if p.exited()})
        postgres = next(s for s in cluster.services if isinstance(s, PostgresServer))
        finished = finished_races(out / "swarm")
        stored = wait_persisted(postgres.dsn, finished, 15.0)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130
    except (ServiceError, SwarmError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_cluster(cluster, run_dir)
    window = Window.last_two_thirds(timeline.arrivals_from, timeline.arrivals_until)
    rows = verdicts(sampler.samples, list(pids), window)
    render_png(sampler.samples, rows, timeline, window, out / "soak.png")
    (out / "soak.json").write_text(
        json.dumps(
            {
                "settings": asdict(settings),
                "node_env": args.node_env,
                "timeline": asdict(timeline),
                "window": asdict(window),
                "verdicts": [asdict(v) for v in rows],
                "samples": [asdict(s) for s in sampler.samples],
            },
            indent=1,
        )
    )
    print()
    print(render_text(report))
    print()
    print(render_verdicts(rows, window))
    print(render_nodes(sampler.samples, timeline, window))
    if exited:
        print(f"!! exited during the run: {', '.join(exited)}")
    print(f"\nraces in PostgreSQL: {stored} of {len(finished)} finished races")
    print(f"report: {out}/soak.json, soak.png, swarm/report.txt; cluster logs: {run_dir}/logs/")
    print(f"wall time: {time.monotonic() - started:.0f}s")
    flat = all(v.flat for v in rows if v.judged)
    return 0 if flat and not exited and report.players["finished"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
