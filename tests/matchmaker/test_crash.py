"""A matchmaker process killed (SIGKILL) mid-batch loses no ticket: its claims are reaped."""

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from arena.clock import now_ms
from arena.registry import NodeInfo, NodeRegistry
from arena.tickets import QueueRef, TicketState, TicketStore
from ops.services import free_port
from tests.matchmaker.conftest import ADMIN, MatchmakerFactory, NodeStarter

ROOT = Path(__file__).resolve().parents[2]
EU = QueueRef("quick", "eu")


@pytest.fixture
async def hanging_node(redis: aioredis.Redis) -> AsyncIterator[NodeInfo]:
    """A node that heartbeats and accepts seat requests but never answers them."""
    release = asyncio.Event()

    async def create_race(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"error": "gone"}, status=503)

    app = web.Application()
    app.router.add_post("/admin/races", create_race)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    info = NodeInfo("eu-hang", "ws://127.0.0.1:1/ws", url, url, "eu", 1000, 0, 0, "ready", 0)
    registry = NodeRegistry(redis)

    async def heartbeat() -> None:
        while True:
            await registry.heartbeat(replace(info, heartbeat_at=now_ms()))
            await asyncio.sleep(0.2)

    beating = asyncio.create_task(heartbeat())
    yield info
    beating.cancel()
    await asyncio.gather(beating, return_exceptions=True)
    await registry.remove(info.node_id)
    release.set()
    await runner.cleanup()


@pytest.fixture
async def spawned() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for proc in procs:  # only the processes this test started
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)


async def test_killed_matchmaker_loses_no_ticket(
    redis_url: str,
    redis: aioredis.Redis,
    tickets: TicketStore,
    hanging_node: NodeInfo,
    start_node: NodeStarter,
    make_matchmaker: MatchmakerFactory,
    spawned: list[asyncio.subprocess.Process],
) -> None:
    """1. four close tickets in eu, the only eu node hangs; 2. a matchmaker process claims them
    and blocks placing them; 3. SIGKILL it; 4. the hanging node goes away, a real one comes;
    5. another matchmaker reaps the dead claim at its deadline and places all four."""
    queued = [await tickets.create(f"p{i}", f"b{i}", "quick", "eu", rating=1500.0 + i) for i in range(4)]
    env = {
        **os.environ,
        "ARENA_REDIS_URL": redis_url,
        "ARENA_ADMIN_TOKEN": ADMIN,
        "ARENA_MM_ID": "mm-doomed",
        "ARENA_MM_PORT": str(free_port()),
        "ARENA_MM_RACE_TYPES": "quick",
        "ARENA_MM_REGIONS": "eu",
        "ARENA_MM_MAX_PLAYERS": "4",
        "ARENA_MM_NODE_TIMEOUT_S": "2",
        "ARENA_MM_NODE_ATTEMPTS": "1",
        "ARENA_MM_CLAIM_TTL_S": "3.5",
        "ARENA_LOG_LEVEL": "warning",
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "matchmaker", env=env, cwd=ROOT)
    spawned.append(proc)
    for _ in range(200):
        if await tickets.claimed_count(EU) == 4:
            break
        assert proc.returncode is None, "the matchmaker process exited"
        await asyncio.sleep(0.05)
    owners = {await redis.hget(EU.ticket(t.id), "claim_owner") for t in queued}
    assert owners == {b"mm-doomed"}

    proc.kill()  # mid-batch: claimed, seat request in flight, nothing assigned
    await asyncio.wait_for(proc.wait(), 10)
    await NodeRegistry(redis).remove(hanging_node.node_id)
    real = await start_node("eu-real", "eu")
    survivor = make_matchmaker("mm-survivor", regions=("eu",), neighbours={})
    await survivor.start()

    done = await asyncio.gather(*(tickets.wait(t.id, timeout_s=10) for t in queued))
    for t in done:
        assert t is not None and t.state is TicketState.MATCHED and t.assignment is not None
        assert t.assignment.node_id == real.settings.node_id
    assert len({t.assignment.race_id for t in done if t and t.assignment}) == 1
    reaped = survivor.metrics.registry.get_sample_value("arena_matchmaker_tickets_reaped_total")
    assert reaped == 4
