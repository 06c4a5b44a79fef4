"""``python -m simulators`` / ``arena-bots``: race simulated players against a local node.

    python -m simulators --node http://127.0.0.1:9100 [--node http://127.0.0.1:9101] \\
        --admin-token TOKEN --bots 10 --race-type quick --seed 1 --timeout 120 [--json]

``--node`` is a node's admin listener (``ARENA_NODE_ADMIN_HOST``/``PORT``: by default the node's
port + 1000), where races are created; the race's answer gives the players' WebSocket URL.

A node that refuses races for now (draining, 5xx, down) is asked again with a growing delay
(the next ``--node`` first) until ``--timeout``: the process keeps running meanwhile.

Exit status: 0 when every bot behaved as expected, 1 when any bot failed or got an
unexpected error (or no node created its race before the timeout, or a node refused for
good: bad token, bad request), 2 for bad arguments. SIGINT or SIGTERM ends the run early:
every bot leaves its race, and the exit status is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading

import aiohttp
import uvloop

from arena.codec import WireFormat
from arena.logs import configure_logging
from arena.protocol import RaceType
from arena.settings import LogSettings
from arena.signals import until_signal
from simulators.admin import AdminError
from simulators.guard import NotLoopbackError, is_loopback_url
from simulators.runner import MAX_SEATS, RunSummary, format_summary, run_bots


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--node",
        required=True,
        action="append",
        help="a node's admin listener URL, loopback only (http://127.0.0.1:9100 for a node on :8100); "
        "repeat for more nodes",
    )
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("ARENA_ADMIN_TOKEN"),
        help="bearer token of the node's admin endpoints (default: $ARENA_ADMIN_TOKEN)",
    )
    parser.add_argument("--bots", type=int, default=10, help="number of simulated players")
    parser.add_argument("--race-type", choices=[t.value for t in RaceType], default=RaceType.QUICK.value)
    parser.add_argument("--custom-text", help="the passage of a custom race")
    parser.add_argument("--seats", type=int, default=MAX_SEATS, help=f"players per race, 1-{MAX_SEATS}")
    parser.add_argument("--seed", type=int, default=None, help="random seed (profiles and typing)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole run")
    parser.add_argument("--mean-wpm", type=float, default=60.0)
    parser.add_argument("--sd-wpm", type=float, default=22.0)
    parser.add_argument("--send-interval-ms", type=int, default=200)
    parser.add_argument("--format", choices=[f.value for f in WireFormat], default=WireFormat.MSGPACK.value)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--log-level", default="warning", help="bot log level (default: warning)")
    args = parser.parse_args(argv)
    for node in args.node:
        if not is_loopback_url(node):
            parser.error(f"--node {node!r}: simulated load may only go to loopback (127.0.0.1 or localhost)")
    if not args.admin_token:
        parser.error("--admin-token (or ARENA_ADMIN_TOKEN) is required")
    if args.bots < 1:
        parser.error("--bots must be at least 1")
    if not 1 <= args.seats <= MAX_SEATS:
        parser.error(f"--seats must be 1 to {MAX_SEATS}")
    if (args.race_type == RaceType.CUSTOM.value) != (args.custom_text is not None):
        parser.error("--custom-text goes with --race-type custom, and only with it")
    return args


async def _run(args: argparse.Namespace) -> RunSummary:
    return await run_bots(
        args.node,
        args.admin_token,
        args.bots,
        args.race_type,
        random.Random(args.seed),
        args.timeout,
        seats_per_race=args.seats,
        custom_text=args.custom_text,
        mean_wpm=args.mean_wpm,
        sd_wpm=args.sd_wpm,
        send_interval_ms=args.send_interval_ms,
        fmt=WireFormat(args.format),
    )


async def _run_until_signal(args: argparse.Namespace) -> RunSummary | None:
    """The run's summary, or None when SIGINT or SIGTERM ended it first (the bots left their races)."""
    run = asyncio.ensure_future(_run(args))
    if threading.current_thread() is not threading.main_thread():  # embedded (tests): no signals
        return await run
    signalled = asyncio.ensure_future(until_signal())
    await asyncio.wait([run, signalled], return_when=asyncio.FIRST_COMPLETED)
    signalled.cancel()
    if run.done():
        return run.result()
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(LogSettings(level=args.log_level))
    try:
        summary = uvloop.run(_run_until_signal(args))
    except NotLoopbackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (AdminError, aiohttp.ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if summary is None:
        print("bots_stopped: a signal ended the run; every bot left its race", flush=True)
        return 0
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(format_summary(summary))
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
