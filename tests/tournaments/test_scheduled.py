"""A scheduled tournament starts at its time; registration closes then; anyone can follow it live."""

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from arena.clock import now_ms
from tests.conftest import NodeFactory
from tests.tournaments.conftest import Client, DirectorFactory, play
from tournaments.director import Director


async def follow(client: Client, tid: str, into: list[dict[str, Any]], done: asyncio.Event) -> None:
    async with client.http.ws_connect(f"{client.base}/v1/tournaments/{tid}/live") as ws:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            into.append(json.loads(msg.data))
            if into[-1]["type"] == "tournament_finished":
                done.set()
                return


async def test_starts_on_time_and_streams_live(
    client: Client, node_factory: NodeFactory, director_factory: DirectorFactory
) -> None:
    """1. a tournament scheduled 2 s ahead, three players register, a spectator follows;
    2. it starts within a second of its time, a late registration is refused;
    3. the players race the final; the spectator saw every step, progress included."""
    await node_factory("node-a")
    director = await director_factory()
    starts_at = now_ms() + 2000
    t = await client.create(client.token("host"), type="scheduled", starts_at=starts_at, max_players=8)
    tid = t["id"]
    for pid in ("ann", "bob", "cy"):
        (await client.register(tid, client.token(pid))).ok(201)
    seen: list[dict[str, Any]] = []
    finished = asyncio.Event()
    spectator = asyncio.create_task(follow(client, tid, seen, finished))
    players = [
        asyncio.create_task(play(client, tid, pid, wpm))
        for pid, wpm in (("ann", 170), ("bob", 150), ("cy", 130))
    ]

    running = await client.wait_state(tid, {"running", "finished"}, timeout_s=5)
    assert 0 <= running["started_at"] - starts_at < 1000, running["started_at"] - starts_at
    late = await client.register(tid, client.token("dan"))
    assert (late.status, late.body["error"]) == (409, "registration_closed")

    runs = await asyncio.gather(*players)
    await asyncio.wait_for(finished.wait(), 10)
    await spectator
    final = await client.get(tid)
    assert final["state"] == "finished" and final["rounds_planned"] == 1
    assert [s["player_id"] for s in final["standings"]] == ["ann", "bob", "cy"]  # speed order
    assert [run.final["rank"] for run in runs if run.final] == [1, 2, 3]
    kinds = [m["type"] for m in seen]
    assert kinds[0] == "snapshot" and seen[0]["tournament"]["state"] == "registering"
    for expected in ("tournament_started", "round_started", "heat_placed", "heat_finished", "standings"):
        assert expected in kinds, (expected, kinds)
    assert kinds.index("tournament_started") < kinds.index("heat_placed") < kinds.index("heat_finished")
    progress = [m for m in seen if m["type"] == "heat_progress"]
    assert progress and {p["player_id"] for m in progress for p in m["players"]} == {"ann", "bob", "cy"}
    assert progress[-1]["passage_chars"] == len(t["custom_text"])
    assert seen[-1]["ranking"][0] == {"rank": 1, "player_id": "ann", "name": "ann", "prize": None}
    late_ms = director.metrics.registry.get_sample_value("arena_tournament_start_lateness_seconds_sum")
    assert late_ms is not None and late_ms < 1.0


async def test_too_few_players_cancels(client: Client, director_factory: DirectorFactory) -> None:
    await director_factory()
    t = await client.create(client.token("host"), type="scheduled", starts_at=now_ms() + 300, max_players=8)
    (await client.register(t["id"], client.token("alone"))).ok(201)
    cancelled = await client.wait_state(t["id"], {"cancelled"}, timeout_s=10)
    assert "1 players registered" in cancelled["reason"]
    assert (await client.heat(t["id"], client.token("alone")))["status"] == "cancelled"
    finished = (await client.call("GET", "/v1/tournaments?status=finished")).ok()
    assert [x["id"] for x in finished["tournaments"]] == [t["id"]]


async def test_a_tournament_the_director_fails_on_does_not_hold_up_the_others(
    client: Client, director_factory: DirectorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    director = await director_factory()
    host = client.token("host")
    doomed = await client.create(host, type="scheduled", starts_at=now_ms() + 300, max_players=8)
    other = await client.create(host, type="scheduled", starts_at=now_ms() + 300, max_players=8)
    original = Director._start

    async def broken_for_one(self: Director, tid: str) -> None:
        if tid == doomed["id"]:
            raise KeyError("a bug in this tournament's start")
        await original(self, tid)

    monkeypatch.setattr(Director, "_start", broken_for_one)
    (await client.register(other["id"], client.token("alone"))).ok(201)
    cancelled = await client.wait_state(other["id"], {"cancelled"}, timeout_s=10)  # started, then too few
    assert "1 players registered" in cancelled["reason"]
    assert director.metrics.faults.labels("start")._value.get() >= 1
    assert director.loops_alive
