"""Operator commands: see the cluster, drain a node.

    python -m ops.admin status                 # nodes, region, state, load, races
    python -m ops.admin drain NODE_ID [--exit] # drain and wait, showing progress

Reads ``ARENA_REDIS_URL`` and ``ARENA_ADMIN_TOKEN`` (or ``--redis`` / ``--admin-token``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import aiohttp
import redis.asyncio as aioredis

from arena.clock import now_ms
from arena.registry import NodeInfo, NodeRegistry
from arena.settings import RedisSettings, SecretSettings, environ


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
    redis = aioredis.Redis.from_url(redis_url)
    try:
        nodes = await NodeRegistry(redis).live_nodes()
    finally:
        await redis.aclose()
    print(format_status(nodes, now_ms()), file=out)
    return 0


async def drain(
    redis_url: str,
    admin_token: str,
    node_id: str,
    *,
    exit_after: bool,
    timeout_s: float,
    out: TextIO,
    poll_s: float = 0.5,
) -> int:
    """Drain a node and wait until it reports drained (or the timeout passes)."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        node = await NodeRegistry(redis).get(node_id)
    finally:
        await redis.aclose()
    if node is None:
        raise AdminError(f"node {node_id} is not in the registry (dead or never started)")
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        body = await _call(http, "POST", f"{node.http_url}/admin/drain", {"exit": exit_after})
        print(f"draining {node_id}: {body['races']} races, {body['players']} players", file=out)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last = None
        while body["state"] != "drained":
            if loop.time() > deadline:
                print(f"{node_id} still has {body['races']} races after {timeout_s:.0f}s", file=out)
                return 1
            await asyncio.sleep(poll_s)
            try:
                body = await _call(http, "GET", f"{node.http_url}/admin/status")
            except AdminError:
                if exit_after:  # the node exited once drained
                    break
                raise
            if body["races"] != last:
                last = body["races"]
                print(f"  {last} races left, {body['players']} players", file=out)
    print(f"{node_id} drained" + (" and exited" if exit_after else ""), file=out)
    return 0


async def _call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> dict[str, Any]:
    try:
        async with http.request(method, url, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise AdminError(f"{method} {url}: {resp.status} {data}")
            return data  # type: ignore[no-any-return]
    except (aiohttp.ClientError, OSError) as exc:
        raise AdminError(f"{method} {url}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    env = environ()
    parser = argparse.ArgumentParser(description="Typogram Arena operator commands")
    parser.add_argument("--redis", default=RedisSettings.from_env(env).url)
    parser.add_argument("--admin-token", default=SecretSettings.from_env(env).admin_token)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="show nodes, load, state, races")
    drain_cmd = sub.add_parser("drain", help="drain a node and wait until it is drained")
    drain_cmd.add_argument("node_id")
    drain_cmd.add_argument("--exit", action="store_true", help="the node exits once drained")
    drain_cmd.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            return asyncio.run(status(args.redis, sys.stdout))
        return asyncio.run(
            drain(args.redis, args.admin_token, args.node_id, exit_after=args.exit, timeout_s=args.timeout,
                  out=sys.stdout)
        )  # fmt: skip
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
