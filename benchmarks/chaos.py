"""Chaos: kill a random gameserver node every N seconds under a swarm; count what happened to the races.

    .venv/bin/python benchmarks/chaos.py                  # small.toml, 3 nodes, a kill every 20 s
    .venv/bin/python benchmarks/chaos.py --every-s 15 --down-s 8 --nodes 3 --out /tmp/chaos
    .venv/bin/python benchmarks/chaos.py --kills 0        # the same run without kills: the baseline

Starts what ``benchmarks/end_to_end.py`` starts (``ops/cluster.py``: Redis, PostgreSQL, the broker,
``--nodes`` nodes, the matchmaker, the lobby, persistence, the director), runs the scenario through
the lobby (``simulators.swarm``), and meanwhile, from ``--warmup-s`` on, every ``--every-s``
seconds SIGKILLs one node chosen at random among those running (never the last one) and starts it
again (same id) ``--down-s`` later. A node that dies mid-race leaves its races to the others
(checkpoints, the reaper; adoption where it is built: docs/ARCHITECTURE.md).

Printed, for the races the swarm's players started (their ids from the players' records) and
their rows in PostgreSQL after the swarm:

- **started**; **finished** on their first node; **adopted** (finished, written by another node
  than the one the player was sent to); **aborted** (with the reason: ``node lost`` is a race the
  reaper ended from its checkpoint); **lost** (no row at all: what issue 15 says must be 0);
- the players: on a killed node mid-race or not, how many got their results, and the time from
  the race's start to the player's results (p50/p95) for each group: the difference is what a
  node's death added for its players (the reconnect, the adoption, the grace windows).

Exit 1 when a race was lost or nothing finished. Bounded by the scenario's limit and
``--persist-wait``; stops everything it started on exit, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.end_to_end import (  # noqa: E402
    DEFAULT_SCENARIO,
    prepare_run,
    stop_cluster,
    wait_cluster,
    watched_pids,
)
from ops.cluster import Cluster, Supervised  # noqa: E402
from ops.services import PostgresServer, ServiceError, free_port  # noqa: E402
from simulators.swarm.report import Report, render_text  # noqa: E402
from simulators.swarm.run import STARTUP_S, SwarmError, SwarmSettings, run_swarm  # noqa: E402

NODE_LOST = "node lost"


@dataclass(frozen=True, slots=True)
class Kill:
    node_id: str
    at: float  # seconds since the swarm's start
    back_at: float | None  # when it was started again


@dataclass
class Killer:
    """Kills a node every ``every_s`` from ``warmup_s`` on, in its own thread; starts it again later."""

    nodes: list[Supervised]
    every_s: float
    down_s: float
    warmup_s: float
    max_kills: int
    rng: random.Random
    t0: float = 0.0
    kills: list[Kill] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="chaos-killer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.down_s + 10)

    def _run(self) -> None:
        if self._stop.wait(self.warmup_s):
            return
        while len(self.kills) < self.max_kills and not self._stop.is_set():
            running = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
            if len(running) > 1:
                self._kill_and_restart(self.rng.choice(running))
            if self._stop.wait(max(0.0, self.every_s - self.down_s)):
                return

    def _kill_and_restart(self, victim: Supervised) -> None:
        assert victim.proc is not None
        at = time.monotonic() - self.t0
        victim.restart = False  # nobody else restarts it meanwhile
        victim.proc.kill()  # SIGKILL: no drain, no result written, no goodbye
        victim.proc.wait()
        print(f"  [chaos] {at:6.1f}s SIGKILL {victim.name}", flush=True)
        back: float | None = None
        if not self._stop.wait(self.down_s):
            victim.start()
            victim.restart = True
            back = time.monotonic() - self.t0
            print(f"  [chaos] {back:6.1f}s started {victim.name} again", flush=True)
        self.kills.append(Kill(victim.name, at, back))


@dataclass(frozen=True, slots=True)
class Tally:
    started: int
    finished_first_node: int
    adopted: int
    aborted: dict[str, int]  # reason -> races
    lost: list[str]


def tally(started: dict[str, str], rows: dict[str, tuple[str, str, str]]) -> Tally:
    """``started``: race id -> the node its players were sent to; ``rows``: race id -> (state,
    reason, node that wrote it) from PostgreSQL."""
    first = adopted = 0
    aborted: dict[str, int] = {}
    lost = []
    for race_id, node in started.items():
        row = rows.get(race_id)
        if row is None:
            lost.append(race_id)
            continue
        state, reason, writer = row
        if state == "aborted":
            aborted[reason] = aborted.get(reason, 0) + 1
        elif writer == node:
            first += 1
        else:
            adopted += 1
    return Tally(len(started), first, adopted, aborted, sorted(lost))


def _records(out: Path) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    for path in out.glob("result-*.json"):
        records.extend(json.loads(path.read_text())["records"])
    return records


def hit_by_kill(record: dict[str, object], kills: list[Kill], swarm_t0_offset: float) -> bool:
    """Was this player's node killed while its race ran (from its start to the player's results)?"""
    started, ended, node = (
        record.get("started"),
        record.get("results") or record.get("closed"),
        record.get("node_id"),
    )
    if not isinstance(started, float | int) or node is None:
        return False
    end = float(ended) if isinstance(ended, float | int) else float("inf")
    return any(k.node_id == node and started <= k.at + swarm_t0_offset <= end for k in kills)


def _percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return f"p50 {statistics.median(values):6.1f}s  p95 {p95:6.1f}s  (n={len(values)})"


def render(t: Tally, kills: list[Kill], records: list[dict[str, object]], offset: float) -> str:
    lines = [
        f"kills: {len(kills)} ({', '.join(f'{k.node_id}@{k.at:.0f}s' for k in kills) or 'none'})",
        f"races started {t.started}: finished on their first node {t.finished_first_node}, "
        f"adopted and finished elsewhere {t.adopted}, aborted {sum(t.aborted.values())} "
        f"({', '.join(f'{r}: {n}' for r, n in sorted(t.aborted.items())) or '-'}), lost {len(t.lost)}",
    ]
    if t.lost:
        lines.append(f"  lost race ids (first 10): {', '.join(t.lost[:10])}")
    hit = [r for r in records if r.get("started") is not None and hit_by_kill(r, kills, offset)]
    calm = [r for r in records if r.get("started") is not None and not hit_by_kill(r, kills, offset)]
    for name, group in (("players on a killed node", hit), ("other players", calm)):
        durations = [
            float(r["results"]) - float(r["started"])  # type: ignore[arg-type]
            for r in group
            if r.get("results") is not None
        ]
        got = sum(1 for r in group if r.get("results") is not None)
        lines.append(
            f"{name:<26} {len(group):5d}, got results {got:5d}; start to results {_percentiles(durations)}"
        )
    return "\n".join(lines)


async def races_in_postgres(dsn: str, race_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT race_id, state, reason, node_id FROM races WHERE race_id = ANY($1::text[])", race_ids
        )
    finally:
        await conn.close()
    return {r["race_id"]: (r["state"], r["reason"], r["node_id"]) for r in rows}


def wait_rows(dsn: str, race_ids: list[str], timeout_s: float) -> dict[str, tuple[str, str, str]]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = uvloop.run(races_in_postgres(dsn, race_ids)) if race_ids else {}
        if len(rows) >= len(race_ids) or time.monotonic() > deadline:
            return rows
        time.sleep(1.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    parser.add_argument("--nodes", type=int, default=3, help="gameserver nodes (2 to 6)")
    parser.add_argument("--every-s", type=float, default=20.0, help="seconds between kills")
    parser.add_argument("--down-s", type=float, default=6.0, help="seconds a killed node stays down")
    parser.add_argument("--warmup-s", type=float, default=15.0, help="seconds of swarm before the first kill")
    parser.add_argument("--kills", type=int, default=1000, help="at most this many kills (0: a baseline run)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--persist-wait", type=float, default=60.0, help="seconds to wait for PostgreSQL rows"
    )
    parser.add_argument("--out", type=Path, help="report directory (default: a temporary one, kept)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="a setting for every process"
    )
    args = parser.parse_args(argv)
    if not 2 <= args.nodes <= 6:
        parser.error("--nodes must be between 2 and 6")
    if args.every_s <= args.down_s:
        parser.error("--every-s must be longer than --down-s")
    for item in args.env:
        key, sep, _ = item.partition("=")
        if not sep or not key.startswith("ARENA_"):
            parser.error(f"--env {item!r}: expected ARENA_SETTING=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prepared = prepare_run(args, "typogram-chaos-")
    if prepared is None:
        return 2
    scenario, run_dir, out = prepared
    cluster = Cluster(
        run_dir=run_dir,
        bots=0,
        house_per_queue=0,
        node_ports=[free_port() for _ in range(args.nodes)],
        node_admin_ports=[free_port() for _ in range(args.nodes)],
    )
    killer: Killer | None = None
    started_at = time.monotonic()
    try:
        print(f"starting the cluster ({args.nodes} nodes) in {run_dir} ...", flush=True)
        cluster.start()
        lobby, redis_url = wait_cluster(cluster)
        nodes = [p for p in cluster.processes if p.name.startswith("node-")]
        killer = Killer(nodes, args.every_s, args.down_s, args.warmup_s, args.kills, random.Random(args.seed))
        print(
            f"swarm '{scenario.name}' for at most {scenario.limit_s:.0f}s; a kill every "
            f"{args.every_s:.0f}s from {args.warmup_s:.0f}s (down {args.down_s:.0f}s) ...",
            flush=True,
        )
        # The swarm's own pids change as nodes restart: watch only the non-node processes.
        pids = {k: v for k, v in watched_pids(cluster).items() if not k.startswith("node-")}
        settings = SwarmSettings(lobby_url=lobby, out_dir=out, redis_url=redis_url, watch_pids=pids)
        swarm_start = time.monotonic()
        killer.start()
        report: Report = uvloop.run(run_swarm(scenario, settings))
        killer.stop()
        # The players' records count from the swarm's t0 (its start + STARTUP_S).
        offset = killer.t0 - (swarm_start + STARTUP_S)
        records = _records(out)
        started = {
            str(r["race_id"]): str(r["node_id"])
            for r in records
            if r.get("started") is not None and r.get("race_id") and r.get("node_id")
        }
        postgres = next(s for s in cluster.services if isinstance(s, PostgresServer))
        rows = wait_rows(postgres.dsn, sorted(started), args.persist_wait)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130
    except (ServiceError, SwarmError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if killer is not None:
            killer.stop()
        stop_cluster(cluster, run_dir)
    t = tally(started, rows)
    print()
    print(render_text(report))
    print()
    print(render(t, killer.kills, records, offset))
    print(f"report: {out}/report.json; cluster logs: {run_dir}/logs/")
    print(f"wall time: {time.monotonic() - started_at:.0f}s")
    return 1 if t.lost or t.started == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
