"""A real gameserver process killed with SIGKILL: while no node can adopt its races, its players
hear ``node_lost`` within seconds and placement stops using it; a player queues again; once a
node is back, it adopts the private race and the lobby sends its players there."""

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.ids import RaceId
from arena.registry import NodeRegistry
from arena.tickets import Assignment, QueueRef, TicketStore
from ops.services import free_port
from tests.conftest import ADMIN, NodeFactory
from tests.lobby.conftest import SECRET, Api, LobbyFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def node_process(redis_url: str, tmp_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    env = os.environ | {
        "ARENA_NODE_ID": "killme",
        "ARENA_NODE_HOST": "127.0.0.1",
        "ARENA_NODE_PORT": str(free_port()),
        "ARENA_NODE_ADMIN_PORT": "0",  # any free port: the registry carries it
        "ARENA_NODE_HEARTBEAT_S": "0.2",
        "ARENA_REDIS_URL": redis_url,
        "ARENA_TOKEN_SECRET": SECRET.decode(),
        "ARENA_ADMIN_TOKEN": ADMIN,
    }
    with (tmp_path / "node.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gameserver", env=env, cwd=ROOT, stdout=log, stderr=log
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def until(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Poll ``check`` until it holds; returns the seconds it took."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_sigkill_node(
    lobby_factory: LobbyFactory,
    node_factory: NodeFactory,
    node_process: asyncio.subprocess.Process,
    redis: aioredis.Redis,
) -> None:
    lobby = await lobby_factory(node_stale_ms=1000, node_refresh_s=0.1)
    api: Api = lobby.api
    registry = NodeRegistry(redis, stale_after_ms=1000)

    async def registered() -> bool:
        return any(n.node_id == "killme" for n in await registry.live_nodes())

    await until(registered, timeout=15.0)

    # A private race placed on it, and a matched ticket assigned to it.
    host = (await api.guest("host"))["token"]
    code = (await api.call("POST", "/v1/private-races", token=host, body={"race_type": "quick"})).ok(201)[
        "code"
    ]
    started = (await api.call("POST", f"/v1/private-races/{code}/start", token=host)).ok()
    assert started["assignment"]["node_id"] == "killme"
    player = (await api.guest("player"))["token"]
    ticket = (
        await api.call("POST", "/v1/tickets", token=player, body={"race_type": "quick", "region": "local"})
    ).ok(201)
    store = TicketStore(redis)
    queue = QueueRef("quick", "local")
    claim = await store.claim(queue, [[ticket["ticket_id"]]], owner="test-mm", ttl_ms=5000)
    a = Assignment("r-gone", "killme", "ws://x", "pt", "jt", "local")
    assert await store.assign(queue, claim.claim_id, [(ticket["ticket_id"], a)]) == [True]
    await store.aclose()

    async def checkpointed() -> bool:  # the private race's checkpoint: what a node adopts it from
        listed = await redis.sismember(keys.node_checkpoints("killme"), started["assignment"]["race_id"])
        return bool(listed)

    await until(checkpointed, timeout=5.0)
    node_process.kill()  # SIGKILL: no goodbye, no registry removal, no race state written
    await node_process.wait()

    async def both_lost() -> bool:
        t = (await api.call("GET", f"/v1/tickets/{ticket['ticket_id']}", token=player)).ok()
        p = (await api.call("GET", f"/v1/private-races/{code}", token=host)).ok()
        return bool(t["state"] == "node_lost" and p["state"] == "node_lost")

    took = await until(both_lost, timeout=5.0)
    assert took < 3.0, took
    assert not await registered()  # placement no longer sees it

    # The player queues again; a surviving node adopts the private race from its checkpoint
    # (gameserver/adoption.py), and the lobby sends its players there with the same tokens.
    (await api.call("POST", "/v1/tickets", token=player, body={"race_type": "quick", "region": "local"})).ok(
        201
    )
    await node_factory(node_id="survivor")
    lobby.lobby.nodes.forget()

    async def moved() -> bool:
        await asyncio.sleep(0.4)  # a few reads a second: the host's reads above used up much of its rate
        p = (await api.call("GET", f"/v1/private-races/{code}", token=host)).ok()
        a = p["assignment"]
        there = a["node_id"] == "survivor" and a["url"] != started["assignment"]["url"]
        return bool(p["state"] == "started" and there)

    await until(moved, timeout=8.0)
    assert await redis.get(keys.race_owner(RaceId(started["assignment"]["race_id"]))) == b"survivor"
    # The matched ticket's race had no checkpoint (nothing to adopt): still lost.
    t = (await api.call("GET", f"/v1/tickets/{ticket['ticket_id']}", token=player)).ok()
    assert t["state"] == "node_lost"
