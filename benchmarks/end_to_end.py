"""End to end: the whole local cluster under a swarm scenario, against the seeds' targets.

    .venv/bin/python benchmarks/end_to_end.py                                  # small.toml
    .venv/bin/python benchmarks/end_to_end.py --scenario simulators/scenarios/smoke.toml --out /tmp/e2e
    .venv/bin/python benchmarks/end_to_end.py --env ARENA_RACE_TICK_HZ=20    # any setting, every process

Starts what ``make run`` starts (``ops/cluster.py``: Redis with AOF, PostgreSQL, the noida-db
Kafka-protocol broker, migrations, two nodes, the matchmaker, the lobby, persistence and the
tournament director; no background bots) on free loopback ports in a temporary directory, runs
the scenario through the lobby (``simulators.swarm``), prints the swarm's report and the
seeds' targets beside the measured figures, and checks that the finished races reached
PostgreSQL. Bounded by the scenario's limit; stops everything it started on exit, Ctrl-C and
SIGTERM included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena.logs import configure_logging  # noqa: E402
from arena.settings import LogSettings  # noqa: E402
from ops.cluster import Cluster, wait_healthy  # noqa: E402
from ops.services import PostgresServer, RedisServer, ServiceError  # noqa: E402
from simulators.swarm.report import Report, render_text  # noqa: E402
from simulators.swarm.run import SwarmError, SwarmSettings, run_swarm  # noqa: E402
from simulators.swarm.scenario import Scenario, ScenarioError, load_scenario  # noqa: E402

DEFAULT_SCENARIO = ROOT / "simulators" / "scenarios" / "small.toml"
SEEDS_FILE = "../shared/seeds/000_f84d8794b7b2412d.txt"  # "Scaling Strategy: Typing Races System"
# The lobby counts every request per client IP; every bot here comes from 127.0.0.1.
CLUSTER_ENV = {"ARENA_LOBBY_RATE_PER_IP": "0", "ARENA_LOG_LEVEL": "warning"}
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Target:
    figure: str
    seed: str  # as the seed says it
    limit: float
    unit: str


# The seeds' "Performance Targets" (000, lines 184-186), all p95.
TARGETS = (
    Target("time to match", "Race Matching: <5 seconds (p95)", 5.0, "s"),
    Target("join", "Race Join: <200ms (p95)", 200.0, "ms"),
    Target("progress update", "Progress Update: <100ms (p95)", 100.0, "ms"),
)


def compare(report: Report) -> list[tuple[Target, float | None, bool | None]]:
    measured = (
        report.time_to_match_s.p95,
        report.join_latency_ms.p95,
        report.input_to_broadcast_ms.p95,
    )
    return [(t, m, None if m is None else m < t.limit) for t, m in zip(TARGETS, measured, strict=True)]


def format_comparison(report: Report) -> str:
    seed_header = f"seed target ({SEEDS_FILE.rsplit('/', 1)[-1]})"
    lines = [f"{'figure':<16} {seed_header:<44} {'measured p95':>12}  verdict"]
    for target, measured, met in compare(report):
        value = (
            "-"
            if measured is None
            else f"{measured:.2f} {target.unit}"
            if target.unit == "s"
            else f"{measured:.0f} ms"
        )
        verdict = "not measured" if met is None else "met" if met else "NOT MET"
        lines.append(f"{target.figure:<16} {target.seed:<44} {value:>12}  {verdict}")
    if report.verdict.saturated:
        lines.append("!! the generator was saturated: these figures are not the cluster's")
    return "\n".join(lines)


def wait_nodes(lobby_url: str, want: int, timeout_s: float) -> None:
    """Until the lobby sees ``want`` live nodes (they heartbeat into the registry)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{lobby_url}/v1/regions", timeout=1.0) as resp:
                regions = json.load(resp)["regions"]
                if sum(r["nodes"] for r in regions) >= want:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise ServiceError(f"the lobby did not see {want} nodes within {timeout_s:.0f}s")


def watched_pids(cluster: Cluster) -> dict[str, int]:
    pids = {p.name: p.proc.pid for p in cluster.processes if p.proc is not None}
    for service in cluster.services:
        if service.pid is not None:
            pids[service.name] = service.pid
    return pids


async def races_in_postgres(dsn: str, race_ids: set[str]) -> int:
    """How many of the swarm's finished races persistence wrote to PostgreSQL."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT race_id FROM races WHERE race_id = ANY($1::text[])", list(race_ids))
    finally:
        await conn.close()
    return len(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    parser.add_argument("--out", type=Path, help="report directory (default: a temporary one, kept)")
    parser.add_argument(
        "--persist-wait", type=float, default=15.0, help="seconds to wait for PostgreSQL rows"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for every cluster process, e.g. ARENA_RACE_TICK_HZ=20 (repeatable)",
    )
    args = parser.parse_args(argv)
    for item in args.env:
        key, sep, _ = item.partition("=")
        if not sep or not key.startswith("ARENA_"):
            parser.error(f"--env {item!r}: expected ARENA_SETTING=VALUE")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops like Ctrl-C: every finally runs


def prepare_run(args: argparse.Namespace, prefix: str) -> tuple[Scenario, Path, Path] | None:
    """A swarm benchmark's start: the scenario (None, said on stderr, when it is bad), SIGTERM
    stopping like Ctrl-C, a run directory PostgreSQL can reach and the report directory, and
    ``CLUSTER_ENV`` and ``--env`` in this process's environment (the cluster inherits it)."""
    configure_logging(LogSettings(level="warning"))
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    signal.signal(signal.SIGTERM, _interrupt)
    run_dir = Path(tempfile.mkdtemp(prefix=prefix))
    run_dir.chmod(0o755)  # PostgreSQL runs as the postgres user when we are root
    os.environ.update(CLUSTER_ENV)
    os.environ.update(dict(item.split("=", 1) for item in args.env))
    return scenario, run_dir, args.out or run_dir / "report"


def wait_cluster(cluster: Cluster) -> tuple[str, str]:
    """Until every node and the matchmaker answer and the lobby sees every node: (lobby URL,
    Redis URL)."""
    lobby = f"http://127.0.0.1:{cluster.ports['lobby']}"
    for port in (*cluster.node_ports, cluster.ports["matchmaker"]):
        wait_healthy(f"http://127.0.0.1:{port}/healthz", READY_TIMEOUT_S)
    wait_nodes(lobby, len(cluster.node_ports), READY_TIMEOUT_S)
    return lobby, next(s for s in cluster.services if isinstance(s, RedisServer)).url


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prepared = prepare_run(args, "typogram-e2e-")
    if prepared is None:
        return 2
    scenario, run_dir, out = prepared
    cluster = Cluster(run_dir=run_dir, bots=0, house_per_queue=0)  # only the scenario's players
    started = time.monotonic()
    try:
        print(f"starting the cluster in {run_dir} ...", flush=True)
        cluster.start()
        lobby, redis_url = wait_cluster(cluster)
        print(f"cluster up in {time.monotonic() - started:.1f}s; swarm '{scenario.name}' for at most "
              f"{scenario.limit_s:.0f}s ...", flush=True)  # fmt: skip
        settings = SwarmSettings(
            lobby_url=lobby, out_dir=out, redis_url=redis_url, watch_pids=watched_pids(cluster)
        )
        report: Report = uvloop.run(run_swarm(scenario, settings))
        postgres = next(s for s in cluster.services if isinstance(s, PostgresServer))
        finished = finished_races(out)
        stored = wait_persisted(postgres.dsn, finished, args.persist_wait)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130
    except (ServiceError, SwarmError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_cluster(cluster, run_dir)
    print()
    print(render_text(report))
    print()
    print(format_comparison(report))
    print(f"\nraces in PostgreSQL: {stored} of {len(finished)} finished races")
    print(f"report: {out}/report.json, report.png, report.txt; cluster logs: {run_dir}/logs/")
    print(f"wall time: {time.monotonic() - started:.0f}s")
    return 1 if report.verdict.saturated or report.players["finished"] == 0 else 0


def stop_cluster(cluster: Cluster, run_dir: Path) -> None:
    """Stop the benchmark's cluster and drop its services' data; the logs stay for reading."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
    cluster.stop()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in ("redis", "postgres", "kafka"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def finished_races(out: Path) -> set[str]:
    races: set[str] = set()
    for path in out.glob("result-*.json"):
        for record in json.loads(path.read_text())["records"]:
            if record["finished"] and record["race_id"]:
                races.add(record["race_id"])
    return races


def wait_persisted(dsn: str, race_ids: set[str], timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    stored = 0
    while True:
        stored = uvloop.run(races_in_postgres(dsn, race_ids)) if race_ids else 0
        if stored >= len(race_ids) or time.monotonic() > deadline:
            return stored
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
