"""Operator commands against real nodes: cluster status, drain with its report, undrain."""

import asyncio
import io

import aiohttp
import pytest
import redis.asyncio as aioredis

from arena.protocol import Hello, Join, Leave, Results, Start, Welcome
from arena.registry import NodeRegistry
from gameserver.stopping import until_exit
from ops.admin import EXIT_ABORTED, EXIT_TIMEOUT, AdminError, drain, main, status, undrain
from tests.conftest import ADMIN, NodeFactory, RunningNode, with_race
from tests.gameserver.wsclient import RawClient

SHORT = with_race(quick_limit_s=2.0, countdown_s=0.5)  # a quick race ends on its own after 2 s
LONG = with_race(quick_limit_s=60.0, countdown_s=0.5)


class Output(io.StringIO):
    """The command's output; ``printed`` is set once it has printed its first line."""

    def __init__(self) -> None:
        super().__init__()
        self.printed = asyncio.Event()

    def write(self, s: str) -> int:
        self.printed.set()
        return super().write(s)


async def racing(node: RunningNode, **race: object) -> RawClient:
    """One player seated in a running race on ``node``."""
    seat = (await node.create_race(["ada"], **race))["seats"][0]
    client = await RawClient.connect(node.ws_url)
    await client.send(Hello(token=seat["player_token"]))
    await client.recv_until(Welcome)
    await client.send(Join(ticket=seat["ticket"]))
    await client.recv_until(Start, timeout=5)
    return client


async def test_status_lists_live_nodes(node_factory: NodeFactory, redis_url: str) -> None:
    await node_factory("node-a", region="eu")
    await node_factory("node-b", region="us")
    out = io.StringIO()
    assert await status(redis_url, out) == 0
    text = out.getvalue()
    assert "node-a" in text and "node-b" in text and "2 nodes" in text and "ready" in text


async def test_drain_waits_for_running_races(node_factory: NodeFactory, redis_url: str) -> None:
    node = await node_factory("node-a")
    client = await racing(node, race_type="custom", custom_text="x" * 30)
    out = Output()
    draining = asyncio.ensure_future(
        drain(redis_url, ADMIN, "node-a", exit_after=False, timeout_s=20, out=out, poll_s=0.1)
    )
    await asyncio.wait_for(out.printed.wait(), 5)
    assert not draining.done()  # the race still runs
    await client.send(Leave())
    assert await draining == 0
    text = out.getvalue()
    assert "draining node-a: 1 races" in text
    assert "node-a drained: 0 running, 1 finished, 0 aborted, 0 unplayed" in text
    await client.close()


async def test_drain_move_hands_the_races_over_and_returns_at_once(
    node_factory: NodeFactory, redis_url: str
) -> None:
    b = await node_factory("node-b", race=LONG)  # the adopter
    node = await node_factory("node-a", race=LONG)
    client = await racing(node, race_type="custom", custom_text="x" * 30)
    out = Output()
    code = await drain(
        redis_url, ADMIN, "node-a", exit_after=False, timeout_s=10, out=out, poll_s=0.1, move=True
    )
    assert code == 0
    text = out.getvalue()
    assert "draining node-a: 1 races, 1 players; handing them to other nodes" in text
    assert "node-a drained: 0 running, 0 finished, 0 aborted, 0 unplayed (nobody came), 1 moved" in text
    assert await client.wait_closed() == 4012  # race moved: rejoin, the ticket is redirected
    assert not node.node.rooms and len(b.node.rooms) == 1
    # The adopter replays the race's instants and its tick moves it on: running within a tick or
    # two (on a busy machine the check can come before that tick: it read 'countdown' once).
    adopted = next(iter(b.node.rooms.values())).race
    for _ in range(100):
        if adopted.state.value != "countdown":
            break
        await asyncio.sleep(0.05)
    assert adopted.state.value == "running"
    await client.close()


async def test_drain_exit_reports_once_the_node_has_exited(node_factory: NodeFactory, redis_url: str) -> None:
    node = await node_factory("node-a", race=SHORT)
    client = await racing(node)
    out = Output()
    draining = asyncio.ensure_future(
        drain(redis_url, ADMIN, "node-a", exit_after=True, timeout_s=20, out=out, poll_s=0.1)
    )
    # What the node's __main__ does: wait until drained (no grace for an admin exit), then stop.
    assert await asyncio.wait_for(until_exit(node.node, asyncio.Event(), grace_s=0.1), 10) is True
    assert not draining.done()  # the command waits for the exit itself
    results = await client.recv_until(Results)
    assert isinstance(results, Results) and results.state == "finished"
    await node.runner.cleanup()
    assert await asyncio.wait_for(draining, 10) == 0
    assert "node-a drained and exited: 0 running, 1 finished, 0 aborted" in out.getvalue()
    await client.close()


async def test_drain_exits_non_zero_when_races_were_aborted(
    node_factory: NodeFactory, redis_url: str
) -> None:
    node = await node_factory("node-a", race=LONG)
    client = await racing(node)
    out = Output()
    draining = asyncio.ensure_future(
        drain(redis_url, ADMIN, "node-a", exit_after=False, timeout_s=20, out=out, poll_s=0.1)
    )
    await asyncio.wait_for(out.printed.wait(), 5)
    reading = asyncio.ensure_future(client.recv_until(Results))
    await node.runner.cleanup()  # a SIGTERM whose grace ran out: the node aborts and stops
    assert await asyncio.wait_for(draining, 10) == EXIT_ABORTED
    text = out.getvalue()
    assert "node-a drained and exited: 0 running, 0 finished, 1 aborted" in text
    assert "1 races were aborted" in text
    assert (await reading).state == "aborted"  # type: ignore[attr-defined]
    await client.close()


async def test_drain_gives_up_at_its_own_timeout(node_factory: NodeFactory, redis_url: str) -> None:
    node = await node_factory("node-a", race=LONG)
    client = await racing(node)
    out = io.StringIO()
    assert await drain(redis_url, ADMIN, "node-a", exit_after=False, timeout_s=0.3, out=out, poll_s=0.1) == (
        EXIT_TIMEOUT
    )
    assert "timeout: node-a still has 1 races running after 0.3s" in out.getvalue()
    assert "it keeps draining" in out.getvalue()
    assert node.node.draining and node.node.live_races() == 1
    await client.close()


async def test_undrain_returns_a_node_to_service(node_factory: NodeFactory, redis_url: str) -> None:
    await node_factory("node-a")
    out = io.StringIO()
    assert await drain(redis_url, ADMIN, "node-a", exit_after=False, timeout_s=5, out=out, poll_s=0.1) == 0
    assert "node-a drained: 0 running" in out.getvalue()
    assert await undrain(redis_url, ADMIN, "node-a", out=out) == 0
    assert "node-a is back in service (ready)" in out.getvalue()
    redis = aioredis.Redis.from_url(redis_url)
    info = await NodeRegistry(redis).get("node-a")
    await redis.aclose()
    assert info is not None and info.state == "ready"


async def test_undrain_of_an_exiting_node_is_an_error(
    node_factory: NodeFactory, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    node = await node_factory("node-a")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        resp = await http.post(f"{node.admin_url}/admin/drain", json={"exit": True})
        assert resp.status == 202
    with pytest.raises(AdminError, match="node is exiting .* cannot return to service"):
        await undrain(redis_url, ADMIN, "node-a", out=io.StringIO())
    argv = ["--redis", redis_url, "--admin-token", ADMIN, "undrain", "node-a"]
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, main, argv) == 1  # main runs its own event loop
    assert "error: " in capsys.readouterr().err


async def test_drain_of_an_unknown_node_is_an_error(redis_url: str) -> None:
    with pytest.raises(AdminError, match="not in the registry"):
        await drain(redis_url, ADMIN, "ghost", exit_after=False, timeout_s=1, out=io.StringIO())
