"""``python -m simulators.swarm`` / ``arena-swarm``: run a swarm scenario against a local lobby.

    python -m simulators.swarm --scenario simulators/scenarios/small.toml \\
        --lobby http://127.0.0.1:8000 [--redis-url redis://127.0.0.1:6379/0] [--out DIR] [--watch node-1=PID]

Exit status: 0 when the run completed and the generator was not saturated, 1 when it was
saturated or no race finished, 2 for bad arguments or a bad scenario.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import uvloop

from arena.logs import configure_logging
from arena.settings import LogSettings
from simulators.guard import is_loopback_url
from simulators.swarm.report import Report, render_text
from simulators.swarm.run import SwarmError, SwarmSettings, run_swarm
from simulators.swarm.scenario import ScenarioError, load_scenario


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulators.swarm", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", type=Path, required=True, help="a TOML scenario (docs/SWARM.md)")
    parser.add_argument("--lobby", required=True, help="the lobby's HTTP URL, loopback only")
    parser.add_argument("--redis-url", help="Redis of the cluster: seeds the scenario's rating spread")
    parser.add_argument("--out", type=Path, help="report directory (default: swarm-out/<name>-<time>)")
    parser.add_argument(
        "--watch", action="append", default=[], metavar="NAME=PID", help="also sample this server process"
    )
    args = parser.parse_args(argv)
    if not is_loopback_url(args.lobby):
        parser.error(f"--lobby {args.lobby!r}: simulated load may only go to loopback")
    return args


def _watch(pairs: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pair in pairs:
        name, _, pid = pair.partition("=")
        if not name or not pid.isdigit():
            raise ValueError(f"--watch {pair!r}: expected NAME=PID")
        out[name] = int(pid)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
        watch = _watch(args.watch)
    except (ScenarioError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(LogSettings(level="warning"))
    out = args.out or Path("swarm-out") / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    settings = SwarmSettings(lobby_url=args.lobby, out_dir=out, redis_url=args.redis_url, watch_pids=watch)
    try:
        report: Report = uvloop.run(run_swarm(scenario, settings))
    except SwarmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: workers stopped", file=sys.stderr)
        return 1
    print(render_text(report))
    print(f"\nreport: {out}/report.json, report.png, report.txt")
    return 1 if report.verdict.saturated or report.players["finished"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
