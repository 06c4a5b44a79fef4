"""Drain keeps its promise: races end on their own time, undrain returns a node to service,
and only a signal's grace cuts races short (aborted, counted)."""

import asyncio
import json
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from arena import keys
from arena.protocol import Results, Start
from arena.registry import NodeRegistry
from gameserver.stopping import until_exit
from tests.conftest import ADMIN, NodeFactory, RunningNode, read_outbox, with_race
from tests.gameserver.test_node_lifecycle import seated

AUTH = {"Authorization": f"Bearer {ADMIN}"}
# Races short enough for tests: a quick race lasts 2 s; a seat nobody takes is given up after 1.5 s.
SHORT = with_race(quick_limit_s=2.0, countdown_s=0.5, wait_timeout_s=1.5)
LONG = with_race(quick_limit_s=60.0, countdown_s=0.5)


async def admin(http: aiohttp.ClientSession, node: RunningNode, path: str, **kw: Any) -> tuple[int, Any]:
    method = "GET" if path == "/admin/status" else "POST"
    async with http.request(method, f"{node.admin_url}{path}", headers=AUTH, **kw) as resp:
        return resp.status, await resp.json()


async def test_drain_waits_for_every_race_to_end_on_its_own_time(
    node_factory: NodeFactory, redis_url: str
) -> None:
    node = await node_factory(race=SHORT)
    running = await node.create_race(["ada"])
    late = await node.create_race(["cy", "di"])  # cy comes during the drain, di never
    empty = await node.create_race(["eve"])  # nobody comes
    ada = await seated(node, running["seats"][0])
    start = await ada.recv_until(Start)
    assert isinstance(start, Start)
    async with aiohttp.ClientSession() as http:
        status, body = await admin(http, node, "/admin/drain")
        assert status == 202 and body["state"] == "draining" and body["exiting"] is False
        drain = body["drain"]
        assert (drain["running"], drain["finished"], drain["aborted"], drain["unplayed"]) == (3, 0, 0, 0)
        # The latest end: races still waiting (created before ada joined) may start at their wait
        # timeout, 1.5 s after their creation, then run their 2 s limit; ada's started 0.5 s after she joined.
        assert start.ends_at + 1000 < drain["ends_by"] <= start.ends_at + 1500
        cy = await seated(node, late["seats"][0])  # seats reserved before the drain still count
        await asyncio.wait_for(node.node.wait_drained(), 10)
        status, body = await admin(http, node, "/admin/status")
    assert body["state"] == "drained" and body["races"] == 0
    drain = body["drain"]
    assert (drain["running"], drain["finished"], drain["aborted"], drain["unplayed"]) == (0, 2, 0, 1)
    for client in (ada, cy):
        results = await client.recv_until(Results)
        assert isinstance(results, Results)
        assert (results.state, results.reason) == ("finished", "time limit reached")
        await client.close()
    records = {r.match_id: r for r in await read_outbox(redis_url)}
    assert {rid: records[rid].state for rid in records} == {
        running["race_id"]: "finished",
        late["race_id"]: "finished",
        empty["race_id"]: "aborted",
    }
    assert records[empty["race_id"]].reason == "nobody joined"
    ran = records[running["race_id"]]
    assert ran.started_at is not None and ran.ended_at - ran.started_at >= 2000  # its full time limit


async def test_undrain_returns_the_node_to_service(node_factory: NodeFactory, redis_url: str) -> None:
    node = await node_factory()
    redis = aioredis.Redis.from_url(redis_url)
    registry = NodeRegistry(redis)
    async with aiohttp.ClientSession() as http:
        assert (await admin(http, node, "/admin/drain"))[0] == 202
        assert (await http.get(f"{node.http_url}/readyz")).status == 503
        info = await registry.get("node-a")
        assert info is not None and info.state == "draining"
        status, body = await admin(http, node, "/admin/races", json={"players": [{"name": "x"}]})
        assert (status, body["error"]) == (503, "draining")
        status, body = await admin(http, node, "/admin/undrain")
        assert status == 200 and body["state"] == "ready" and body["drain"] is None
        info = await registry.get("node-a")  # told at once, not at the next heartbeat
        assert info is not None and info.state == "ready" and info.accepting
        assert (await http.get(f"{node.http_url}/readyz")).status == 200
        assert (await admin(http, node, "/admin/races", json={"players": [{"name": "x"}]}))[0] == 201
        assert (await admin(http, node, "/admin/undrain"))[0] == 200  # not draining: nothing to undo
        metrics = await (await http.get(f"{node.admin_url}/metrics")).text()
    assert "arena_gameserver_draining 0.0" in metrics
    await redis.aclose()


async def test_undrain_of_an_exiting_node_is_refused(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        for data, code in (("nope", "bad_json"), ("[1]", "bad_request"), ('{"exit": "yes"}', "bad_exit")):
            status, body = await admin(http, node, "/admin/drain", data=data)
            assert (status, body["error"]) == (400, code), data
        assert not node.node.draining  # a bad request changes nothing
        async with http.post(f"{node.admin_url}/admin/undrain") as resp:
            assert resp.status == 401
        status, body = await admin(http, node, "/admin/drain", json={"exit": True})
        assert status == 202 and body["exiting"] is True
        status, body = await admin(http, node, "/admin/undrain")
        assert status == 409 and body["error"] == "exiting" and "cannot return to service" in body["reason"]
        status, body = await admin(http, node, "/admin/status")
        assert body["state"] == "drained" and body["exiting"] is True
    assert node.node.exit_requested.is_set()


async def test_admin_exit_waits_for_races_past_the_shutdown_grace(node_factory: NodeFactory) -> None:
    node = await node_factory(race=SHORT)
    race = await node.create_race(["ada"])
    ada = await seated(node, race["seats"][0])
    await ada.recv_until(Start)
    leaving = asyncio.ensure_future(until_exit(node.node, asyncio.Event(), grace_s=0.1))
    async with aiohttp.ClientSession() as http:
        assert (await admin(http, node, "/admin/drain", json={"exit": True}))[0] == 202
    assert await asyncio.wait_for(leaving, 10) is True  # every race ended on its own
    results = await ada.recv_until(Results)
    assert isinstance(results, Results) and results.state == "finished"
    report = node.node.drain_report
    assert report is not None and (report.finished, report.aborted) == (1, 0)
    await ada.close()


async def test_a_signal_bounds_the_drain_and_aborted_races_are_counted(
    node_factory: NodeFactory, redis_url: str
) -> None:
    node = await node_factory(race=LONG)
    race = await node.create_race(["ada"])
    ada = await seated(node, race["seats"][0])
    await ada.recv_until(Start)
    signals = asyncio.Event()
    leaving = asyncio.ensure_future(until_exit(node.node, signals, grace_s=0.5))
    async with aiohttp.ClientSession() as http:
        assert (await admin(http, node, "/admin/drain", json={"exit": True}))[0] == 202
        await asyncio.sleep(0.8)  # longer than the grace: an admin exit is not bounded by it
        assert not leaving.done()
        loop = asyncio.get_running_loop()
        signalled_at = loop.time()
        signals.set()  # SIGTERM during the admin drain: the grace runs from now
        assert await asyncio.wait_for(leaving, 5) is False
        assert 0.4 <= loop.time() - signalled_at < 2.0
        status, body = await admin(http, node, "/admin/undrain")
        assert (status, body["error"]) == (409, "exiting")
    reading = asyncio.ensure_future(ada.recv_until(Results))
    await node.runner.cleanup()  # what __main__ does next: the shutdown aborts what still runs
    results = await reading
    assert isinstance(results, Results) and (results.state, results.reason) == (
        "aborted",
        "the server is shutting down",
    )
    await ada.close()
    assert [(r.match_id, r.state) for r in await read_outbox(redis_url)] == [(race["race_id"], "aborted")]
    redis = aioredis.Redis.from_url(redis_url)
    raw = await redis.get(keys.node_drain_report("node-a"))
    await redis.aclose()
    assert raw is not None
    report = json.loads(raw)
    assert (report["running"], report["finished"], report["aborted"], report["exiting"]) == (0, 0, 1, True)


async def test_a_second_signal_ends_the_grace_at_once(node_factory: NodeFactory) -> None:
    node = await node_factory(race=LONG)
    race = await node.create_race(["ada"])
    ada = await seated(node, race["seats"][0])
    await ada.recv_until(Start)
    signals = asyncio.Event()
    signals.set()
    leaving = asyncio.ensure_future(until_exit(node.node, signals, grace_s=30.0))
    await asyncio.wait_for(node.node.exit_requested.wait(), 5)  # the first signal was taken
    assert node.node.exiting and not leaving.done()
    signals.set()
    assert await asyncio.wait_for(leaving, 2) is False
    await ada.close()
