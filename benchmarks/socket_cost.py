"""What one open WebSocket costs a node, in-process (issue 21): memory held while it is open, and
the CPU of its upgrade.

One node in this process (its own Redis, started here) takes ``--sockets`` WebSocket upgrades
from raw loopback clients (a fixed upgrade request, the 101 read, nothing more: the client side
costs little), ``--concurrency`` at a time, and holds them open. Printed per round:

- upgrades a second, and this process's CPU per upgrade (client included, so compare rounds);
- per open socket: pymalloc blocks (``sys.getallocatedblocks``), objects the collector tracks,
  and resident bytes, each the difference between the node idle and holding every socket;
- whether every socket closed and left the node once the clients hung up.

Runs against whichever tree is on PYTHONPATH, so an A/B of two commits is two trees in turns:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/socket_cost.py --repeat 3
    git archive OLD | tar -x -C /tmp/old && PYTHONPATH=/tmp/old .venv/bin/python benchmarks/socket_cost.py

Bounded: ``--sockets`` connections per round, each step with a deadline. Everything on
127.0.0.1; the Redis server is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from typing import Any

import uvloop
from aiohttp import web

from arena.ids import NodeId
from arena.settings import RedisSettings, SecretSettings
from gameserver.app import NODE_KEY, build_app
from gameserver.listener import NodeSite
from gameserver.memory import resident_bytes
from gameserver.settings import LimitSettings, NodeSettings
from ops.services import RedisServer, free_port

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"User-Agent: socket-cost\r\nOrigin: http://127.0.0.1\r\n\r\n"
)
STEP_S = 60.0  # each step's deadline


async def _open(port: int) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(UPGRADE)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"upgrade refused: {head[:80]!r}")
    return writer


async def _until(check: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _heap() -> tuple[int, int, int]:
    gc.collect()
    return sys.getallocatedblocks(), len(gc.get_objects()), resident_bytes()


async def one_round(redis_url: str, sockets: int, concurrency: int) -> dict[str, Any]:
    settings = NodeSettings(
        node_id=NodeId("node-sockets"),
        port=free_port(),
        admin_port=0,
        redis=RedisSettings(url=redis_url),
        secrets=SecretSettings(token_secret=b"bench-secret-0123456789", admin_token="bench-admin-0123456789"),
        limits=LimitSettings(hello_timeout_s=300.0, keepalive_s=300.0),  # held open, silent
    )
    runner = web.AppRunner(build_app(settings), handle_signals=False)
    await runner.setup()
    await NodeSite(runner, "127.0.0.1", settings.port).start()
    node = runner.app[NODE_KEY]
    writers: list[asyncio.StreamWriter] = []
    try:
        await asyncio.sleep(0.2)
        blocks0, objects0, rss0 = _heap()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        async with asyncio.timeout(STEP_S):
            for start in range(0, sockets, concurrency):
                batch = min(concurrency, sockets - start)
                writers += await asyncio.gather(*(_open(settings.port) for _ in range(batch)))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        held = await _until(lambda: len(node.sockets) == sockets, STEP_S)
        await asyncio.sleep(0.2)  # the upgrade requests end
        blocks1, objects1, rss1 = _heap()
        for writer in writers:
            writer.close()
        gone = await _until(lambda: not node.sockets, STEP_S)
    finally:
        for writer in writers:
            writer.close()
        await runner.cleanup()
    return {
        "sockets": sockets,
        "held": held,
        "upgrades_per_s": round(sockets / wall),
        "cpu_us_per_upgrade": round(cpu / sockets * 1e6, 1),
        "blocks_per_socket": round((blocks1 - blocks0) / sockets, 1),
        "objects_per_socket": round((objects1 - objects0) / sockets, 1),
        "resident_kb_per_socket": round((rss1 - rss0) / sockets / 1024, 1),
        "all_gone_after_close": gone,
    }


async def main(args: argparse.Namespace) -> None:
    server = RedisServer()
    server.start()
    try:
        for _ in range(args.repeat):
            print(json.dumps(await one_round(server.url, args.sockets, args.concurrency)), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sockets", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=1)
    uvloop.run(main(ap.parse_args()))
