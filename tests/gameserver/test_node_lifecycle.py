"""A node starts, drains, and stops cleanly: no task left, no race lost."""

import asyncio

import aiohttp
import redis.asyncio as aioredis

from arena.protocol import CloseCode, Hello, Join, Joined, Leave, Results, Start, Welcome
from arena.registry import NodeRegistry
from tests.conftest import ADMIN, NodeFactory, RunningNode, read_outbox
from tests.gameserver.wsclient import RawClient

TEXT = "a short passage for lifecycle tests that nobody finishes"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


async def seated(node: RunningNode, seat: dict[str, str]) -> RawClient:
    client = await RawClient.connect(node.ws_url)
    await client.send(Hello(token=seat["player_token"]))
    await client.recv_until(Welcome)
    await client.send(Join(ticket=seat["ticket"]))
    await client.recv_until(Joined)
    return client


async def test_stop_leaves_no_task_and_unregisters(node: RunningNode, redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    registry = NodeRegistry(redis)
    assert [n.node_id for n in await registry.live_nodes()] == ["node-a"]
    inner = node.node
    alive = sorted(t.get_name() for t in inner.tasks_alive())
    assert alive == ["node-flusher", "node-heartbeat", "node-reaper", "node-results", "node-ticker"]
    await node.runner.cleanup()
    assert inner.tasks_alive() == []
    assert await registry.live_nodes() == []
    await redis.aclose()


async def test_shutdown_aborts_running_races_into_the_outbox(node: RunningNode, redis_url: str) -> None:
    race = await node.create_race(["ada", "bob"], race_type="custom", custom_text=TEXT)
    clients = [await seated(node, s) for s in race["seats"]]
    for c in clients:
        await c.recv_until(Start, timeout=5)
    await node.runner.cleanup()
    for c in clients:
        results = await c.recv_until(Results)
        assert isinstance(results, Results) and results.state == "aborted"
        assert results.reason == "the server is shutting down"
        assert await c.wait_closed() == CloseCode.GOING_AWAY
        await c.close()
    records = await read_outbox(redis_url)
    assert [(r.match_id, r.state) for r in records] == [(race["race_id"], "aborted")]
    assert {p.status for p in records[0].participants} == {"dnf"}


async def test_drain_refuses_new_races_and_reports_drained(node_factory: NodeFactory) -> None:
    node = await node_factory()
    race = await node.create_race(["ada"], race_type="custom", custom_text=TEXT)
    client = await seated(node, race["seats"][0])
    async with aiohttp.ClientSession(headers=AUTH) as http:
        resp = await http.post(f"{node.admin_url}/admin/drain")
        assert resp.status == 202 and (await resp.json())["state"] == "draining"
        resp = await http.post(f"{node.admin_url}/admin/races", json={"players": [{"name": "late"}]})
        assert resp.status == 503 and (await resp.json())["error"] == "draining"
        assert (await http.get(f"{node.http_url}/readyz")).status == 503
        await client.recv_until(Start, timeout=5)
        await client.send(Leave())
        for _ in range(50):
            status = await (await http.get(f"{node.admin_url}/admin/status")).json()
            if status["state"] == "drained":
                break
            await asyncio.sleep(0.1)
        assert status["state"] == "drained" and status["races"] == 0
    await client.close()


async def test_admin_endpoints_need_the_token_and_valid_bodies(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{node.admin_url}/admin/drain")
        assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
        bad_bodies = [
            ("not json", "bad_json"),
            ({"race_type": "sprint", "players": [{"name": "x"}]}, "bad_race_type"),
            ({"players": "everyone"}, "bad_players"),
            ({"players": [{"name": ""}]}, "bad_name"),
            ({"players": [{"name": "a"}] * 9}, "bad_request"),
            ({"race_type": "custom", "players": [{"name": "a"}], "custom_text": "tiny"}, "bad_passage"),
        ]
        for body, code in bad_bodies:
            kwargs = {"data": body} if isinstance(body, str) else {"json": body}
            resp = await http.post(f"{node.admin_url}/admin/races", headers=AUTH, **kwargs)  # type: ignore[arg-type]
            assert resp.status == 400 and (await resp.json())["error"] == code, (body, code)


async def test_metrics_and_health(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        assert (await http.get(f"{node.http_url}/healthz")).status == 200
        assert (await (await http.get(f"{node.http_url}/readyz")).json())["ready"] is True
        text = await (await http.get(f"{node.admin_url}/metrics")).text()
    for name in (
        "arena_gameserver_connections",
        "arena_gameserver_races",
        "arena_gameserver_tick_duration_seconds",
        "arena_gameserver_input_to_broadcast_seconds",
        "arena_gameserver_messages_in_total",
    ):
        assert name in text
