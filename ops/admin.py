"""Operator commands: see the cluster, drain a node and return it to service.

    python -m ops.admin status                  # nodes, region, state, load, races
    python -m ops.admin drain NODE_ID [--exit] [--move] [--timeout S]
                                                # drain, wait for the races to end, report
                                                # (--move: hand them to other nodes instead)
    python -m ops.admin undrain NODE_ID         # back in service (refused if it is exiting)

``drain`` prints the races finished, aborted and still running; it exits 0 if every race ended
on its own, 1 if any was aborted (or the node vanished mid-drain, or a command failed), 2 if
races still run at its deadline (``--timeout``; by default when the node says its races end at
the latest, plus a minute). With ``--exit`` it also waits until the node has exited.

Reads ``ARENA_REDIS_URL`` and ``ARENA_ADMIN_TOKEN`` (or ``--redis`` / ``--admin-token``); outside
``ARENA_ENV=development``, ``drain`` and ``undrain`` refuse a missing, default or short admin token
with one error line and exit 2, as the nodes would refuse it (``status`` needs no token).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from arena import keys
from arena.clock import now_ms
from arena.redisutil import connect
from arena.registry import NodeInfo, NodeRegistry
from arena.settings import RedisSettings, SecretSettings, SettingsError, environ
from arena.startup import EXIT_BAD_SETTINGS


class AdminError(Exception):
    """A command that cannot be carried out; the message says why."""


def format_status(nodes: Sequence[NodeInfo], now: int) -> str:
    if not nodes:
        return "no live nodes"
    header = f"{'node':<16} {'region':<8} {'state':<9} {'players':>13} {'races':>6} {'beat':>6}  url"
    lines = [header]
    for n in sorted(nodes, key=lambda n: (n.region, n.node_id)):
        load = f"{n.players}/{n.capacity}"
        age = f"{(now - n.heartbeat_at) / 1000:.1f}s"
        lines.append(f"{n.node_id:<16} {n.region:<8} {n.state:<9} {load:>13} {n.races:>6} {age:>6}  {n.url}")
    total_players = sum(n.players for n in nodes)
    total_races = sum(n.races for n in nodes)
    lines.append(f"{len(nodes)} nodes, {total_players} players, {total_races} races")
    return "\n".join(lines)


async def status(redis_url: str, out: TextIO) -> int:
    redis = connect(RedisSettings(url=redis_url))
    try:
        nodes = await NodeRegistry(redis).live_nodes()
    finally:
        await redis.aclose()
    print(format_status(nodes, now_ms()), file=out)
    return 0


EXIT_ABORTED = 1  # races were aborted, the node vanished mid-drain, or a command failed
EXIT_TIMEOUT = 2  # the command's own deadline passed with races still running (the node drains on)
EXIT_MARGIN_S = 60.0  # the default deadline: the node's own bound for its races, plus this


async def drain(
    redis_url: str,
    admin_token: str,
    node_id: str,
    *,
    exit_after: bool,
    timeout_s: float | None,
    move: bool = False,
    out: TextIO,
    poll_s: float = 0.5,
) -> int:
    """Drain a node, wait until its races have ended (and it exited, with ``exit_after``), report.

    Returns 0 if every race ended on its own, ``EXIT_ABORTED`` if any was aborted (the node
    stopped first: a SIGTERM's grace ran out) or the node vanished without a report,
    ``EXIT_TIMEOUT`` if races still run at the deadline: ``timeout_s``, or by default the
    instant the node says its races end at the latest, plus ``EXIT_MARGIN_S``.
    """
    redis = connect(RedisSettings(url=redis_url))
    try:
        registry = NodeRegistry(redis)
        node = await registry.get(node_id)
        if node is None:
            raise AdminError(f"node {node_id} is not in the registry (dead or never started)")
        headers = {"Authorization": f"Bearer {admin_token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            ask = {"exit": exit_after} | ({"move": True} if move else {})
            body = await _call(http, "POST", f"{node.admin_url}/admin/drain", ask)
            report: dict[str, Any] = body["drain"]
            started_at = report["started_at"]
            ends_in_s = _ends_in_s(body)
            plan = "handing them to other nodes" if move else f"they end on their own within {ends_in_s:.0f}s"
            print(
                f"draining {node_id}: {report['running']} races, {body['players']} players; {plan}",
                file=out,
            )
            loop = asyncio.get_running_loop()
            wait_s = timeout_s if timeout_s is not None else ends_in_s + EXIT_MARGIN_S
            deadline = loop.time() + wait_s
            last = _counts(report)
            exited = False
            while report["running"] or (exit_after and not exited):
                if loop.time() > deadline:
                    if report["running"]:
                        print(
                            f"timeout: {node_id} still has {report['running']} races running after "
                            f"{wait_s:.1f}s ({_counts(report)}); it keeps draining",
                            file=out,
                        )
                    else:
                        print(f"timeout: {node_id} drained but did not exit within {wait_s:.1f}s", file=out)
                    return EXIT_TIMEOUT
                await asyncio.sleep(poll_s)
                try:
                    body = await _call(http, "GET", f"{node.admin_url}/admin/status")
                except AdminError:  # gone? it exited (asked to, or signalled) or died; else retry
                    final = await _final_report(registry, redis, node_id, started_at)
                    if final is not None:
                        report, exited = final, True
                    continue
                if body["drain"] is None or body["drain"]["started_at"] != started_at:
                    raise AdminError(f"{node_id} was returned to service (undrain) during the drain")
                report = body["drain"]
                if _counts(report) != last:
                    last = _counts(report)
                    print(f"  {last}", file=out)
    finally:
        await redis.aclose()
    verdict = "drained and exited" if exited else "drained"
    print(f"{node_id} {verdict}: {_counts(report)}", file=out)
    if report["aborted"]:
        print(f"{report['aborted']} races were aborted (the node stopped before they ended)", file=out)
        return EXIT_ABORTED
    return 0


def _ends_in_s(body: dict[str, Any]) -> float:
    ends_by = body["drain"]["ends_by"]
    return 0.0 if ends_by is None else max(0.0, (ends_by - body["server_time"]) / 1000)


def _counts(report: dict[str, Any]) -> str:
    return (
        f"{report['running']} running, {report['finished']} finished, "
        f"{report['aborted']} aborted, {report['unplayed']} unplayed (nobody came), "
        f"{report.get('moved', 0)} moved to other nodes"
    )


async def _final_report(
    registry: NodeRegistry, redis: aioredis.Redis, node_id: str, started_at: int
) -> dict[str, Any] | None:
    """The report the node wrote as it stopped (this drain's), or None if it may still be up.

    The node writes it, then leaves the registry: gone from the registry without one, it died.
    """
    raw = await redis.get(keys.node_drain_report(node_id))
    report = json.loads(raw) if raw is not None else None
    if isinstance(report, dict) and report.get("started_at", 0) >= started_at:
        if report["running"]:
            raise AdminError(f"{node_id} stopped with {report['running']} race results unwritten")
        return report
    if await registry.get(node_id) is None:
        raise AdminError(f"{node_id} stopped answering and left no drain report (killed?)")
    return None


async def undrain(redis_url: str, admin_token: str, node_id: str, *, out: TextIO) -> int:
    """Return a draining node to service; refused (``AdminError``) if the node is exiting."""
    redis = connect(RedisSettings(url=redis_url))
    try:
        node = await NodeRegistry(redis).get(node_id)
    finally:
        await redis.aclose()
    if node is None:
        raise AdminError(f"node {node_id} is not in the registry (dead or never started)")
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        body = await _call(http, "POST", f"{node.admin_url}/admin/undrain")
    print(f"{node_id} is back in service ({body['state']}): {body['races']} races", file=out)
    return 0


async def _call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> dict[str, Any]:
    try:
        async with http.request(method, url, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                if isinstance(data, dict) and "reason" in data:
                    raise AdminError(f"{method} {url}: {data['reason']} ({resp.status} {data.get('error')})")
                raise AdminError(f"{method} {url}: {resp.status} {data}")
            return data  # type: ignore[no-any-return]
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise AdminError(f"{method} {url}: {exc}") from None


def admin_token(flag: str | None, env: Mapping[str, str]) -> str:
    """``--admin-token``, else ``ARENA_ADMIN_TOKEN``, checked as the nodes check theirs: outside
    ``ARENA_ENV=development`` a missing, default or short one is refused (``SettingsError``)."""
    if flag is not None:
        env = {**env, "ARENA_ADMIN_TOKEN": flag}
    return SecretSettings.from_env(env, token_secret=False).admin_token


def main(argv: Sequence[str] | None = None) -> int:
    env = environ()
    parser = argparse.ArgumentParser(description="Typogram Arena operator commands")
    parser.add_argument("--redis", default=RedisSettings.from_env(env).url)
    parser.add_argument(
        "--admin-token",
        default=None,
        help="the nodes' admin bearer token (default: $ARENA_ADMIN_TOKEN); drain and undrain need it",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="show nodes, load, state, races")
    drain_cmd = sub.add_parser("drain", help="drain a node, wait for its races to end, report")
    drain_cmd.add_argument("node_id")
    drain_cmd.add_argument("--exit", action="store_true", help="the node exits once its races have ended")
    drain_cmd.add_argument(
        "--move",
        action="store_true",
        help="hand the running races to live nodes of the region (they adopt them) instead of waiting",
    )
    drain_cmd.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="give up waiting after this many seconds (exit 2; the node keeps draining); default: "
        "when the node says its races end at the latest, plus a minute",
    )
    undrain_cmd = sub.add_parser("undrain", help="return a draining node to service")
    undrain_cmd.add_argument("node_id")
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            return asyncio.run(status(args.redis, sys.stdout))
        token = admin_token(args.admin_token, env)
        if args.command == "undrain":
            return asyncio.run(undrain(args.redis, token, args.node_id, out=sys.stdout))
        return asyncio.run(
            drain(args.redis, token, args.node_id, exit_after=args.exit, timeout_s=args.timeout,
                  move=args.move, out=sys.stdout)
        )  # fmt: skip
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ABORTED
    except RedisError as exc:
        print(f"error: redis ({args.redis}): {exc}", file=sys.stderr)
        return EXIT_ABORTED


if __name__ == "__main__":
    sys.exit(main())
