"""A saturated node's stop, in-process (issue 20): how fast it writes every result when its
checkpoints are far behind and its loop has no time to spare.

One node in this process (its own Redis, started here, 8 connections at most) holds ``--races``
running races of 2 players; each race is given ``--backlog-kb`` of journal its checkpoint has not
appended yet (what a saturated node accumulates), and a task blocks the loop ``--hog-ms`` on every
turn (the players' inputs of a saturated node). Then the node is stopped as on SIGTERM after its
grace (``runner.cleanup()``: abort, write phase, sockets, tasks) and the run prints the node's
own ``results_written_at_stop`` figures, the results in the outbox, the journal entries appended
to checkpoints during the stop, and the stop's wall time.

Runs against whichever tree is on PYTHONPATH, so an A/B of two commits is two trees in turns:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/saturated_stop.py --repeat 2
    git archive OLD | tar -x -C /tmp/old && PYTHONPATH=/tmp/old .venv/bin/python benchmarks/saturated_stop.py

Everything on 127.0.0.1; the Redis server is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from structlog.testing import capture_logs

from arena import keys
from arena.clock import now_ms
from arena.ids import NodeId, PlayerId
from arena.outbox import OutboxSettings
from arena.protocol import RaceState, RaceType
from arena.settings import RedisSettings, SecretSettings
from gameserver.app import NODE_KEY, build_app
from gameserver.checkpoint import encode_entries
from gameserver.listener import NodeSite
from gameserver.node import SeatRequest
from gameserver.settings import NodeSettings, RaceSettings
from ops.services import RedisServer, free_port

ENTRIES_PER_ITEM = 1600  # one backlog item: ≈ 16 KB of msgpack


async def one_stop(redis_url: str, races: int, backlog_kb: int, hog_ms: float) -> dict[str, Any]:
    settings = NodeSettings(
        node_id=NodeId("node-saturated"),
        port=free_port(),
        admin_port=0,
        redis=RedisSettings(url=redis_url, max_connections=8),
        secrets=SecretSettings(token_secret=b"bench-secret-0123456789", admin_token="bench-admin-0123456789"),
        race=RaceSettings(countdown_s=0.3, wait_timeout_s=5.0, quick_limit_s=120.0, tick_hz=20.0),
        results_write_s=60.0,
        outbox=OutboxSettings(retry_cap_s=0.2),
    )
    runner = web.AppRunner(build_app(settings), handle_signals=False)
    await runner.setup()
    await NodeSite(runner, "127.0.0.1", settings.port).start()
    node = runner.app[NODE_KEY]
    now = now_ms()
    for i in range(races):
        players = [SeatRequest(PlayerId(f"p{i}-{j}"), f"p{i}-{j}") for j in range(2)]
        race, _ = node.create_race(RaceType.QUICK, players)
        for p in players:
            race.join(p.player_id, p.name, now)
    for _ in range(200):
        if all(r.race.state is RaceState.RUNNING for r in node.rooms.values()):
            break
        await asyncio.sleep(0.05)
    item = encode_entries([("l", "p0-0", t) for t in range(ENTRIES_PER_ITEM)])
    items = max(1, backlog_kb * 1024 // len(item))
    for room in node.rooms.values():
        room.checkpoint_backlog = [(item, ENTRIES_PER_ITEM)] * items
    stopped = asyncio.Event()

    async def hog() -> None:
        while not stopped.is_set():
            time.sleep(hog_ms / 1000)  # noqa: ASYNC251 (a saturated loop is the point)
            await asyncio.sleep(0)

    hogging = asyncio.create_task(hog())
    await asyncio.sleep(0.3)  # a few ticks under load
    client = aioredis.Redis.from_url(redis_url)
    outbox_before = await client.xlen(keys.OUTBOX_STREAM)
    metric = node.metrics.registry.get_sample_value
    appended_before = metric("arena_gameserver_checkpoint_entries_total") or 0.0  # no await from here
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        with capture_logs() as logs:
            await runner.cleanup()
    finally:
        stopped.set()
        await hogging
    took = loop.time() - began
    written = await client.xlen(keys.OUTBOX_STREAM) - outbox_before
    await client.flushall()
    await client.aclose()
    line = next((e for e in logs if e["event"] == "results_written_at_stop"), {})
    appended = (metric("arena_gameserver_checkpoint_entries_total") or 0.0) - appended_before
    return {
        "races": races,
        "written": written,
        "stop_s": round(took, 2),
        "node_seconds": line.get("seconds"),
        "node_per_s": line.get("per_s"),
        "abort_s": line.get("abort_s"),
        "entries_appended_during_stop": int(appended),  # one tick's, if one was on its way, is expected
    }


async def main(args: argparse.Namespace) -> None:
    server = RedisServer()
    server.start()
    try:
        for _ in range(args.repeat):
            result = await one_stop(server.url, args.races, args.backlog_kb, args.hog_ms)
            print(json.dumps(result), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--races", type=int, default=1500)
    ap.add_argument("--backlog-kb", type=int, default=32, help="unappended journal per race")
    ap.add_argument("--hog-ms", type=float, default=5.0, help="the loop loses this on every turn")
    ap.add_argument("--repeat", type=int, default=1)
    asyncio.run(main(ap.parse_args()))
