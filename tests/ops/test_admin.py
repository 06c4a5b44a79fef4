"""Operator commands against real nodes: cluster status, drain with progress."""

import asyncio
import io

import pytest

from arena.protocol import Hello, Join, Leave, Start, Welcome
from ops.admin import AdminError, drain, status
from tests.conftest import ADMIN, NodeFactory
from tests.gameserver.wsclient import RawClient


async def test_status_lists_live_nodes(node_factory: NodeFactory, redis_url: str) -> None:
    await node_factory("node-a", region="eu")
    await node_factory("node-b", region="us")
    out = io.StringIO()
    assert await status(redis_url, out) == 0
    text = out.getvalue()
    assert "node-a" in text and "node-b" in text and "2 nodes" in text and "ready" in text


async def test_drain_waits_for_running_races(node_factory: NodeFactory, redis_url: str) -> None:
    node = await node_factory("node-a")
    race = await node.create_race(["ada"], race_type="custom", custom_text="x" * 30)
    client = await RawClient.connect(node.ws_url)
    await client.send(Hello(token=race["seats"][0]["player_token"]))
    await client.recv_until(Welcome)
    await client.send(Join(ticket=race["seats"][0]["ticket"]))
    await client.recv_until(Start, timeout=5)
    out = io.StringIO()
    draining = asyncio.ensure_future(
        drain(redis_url, ADMIN, "node-a", exit_after=False, timeout_s=20, out=out, poll_s=0.1)
    )
    await asyncio.sleep(0.5)
    assert not draining.done()  # the race still runs
    await client.send(Leave())
    assert await draining == 0
    assert "draining node-a: 1 races" in out.getvalue() and "node-a drained" in out.getvalue()
    await client.close()


async def test_drain_of_an_unknown_node_is_an_error(redis_url: str) -> None:
    with pytest.raises(AdminError, match="not in the registry"):
        await drain(redis_url, ADMIN, "ghost", exit_after=False, timeout_s=1, out=io.StringIO())
