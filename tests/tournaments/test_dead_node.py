"""A heat whose node is killed mid-race moves to the node that adopts its race, and its players
finish it there; without adoption it is re-run on another node once, then settled by seed."""

import asyncio
import signal
from typing import Any

import redis.asyncio as aioredis

from tests.conftest import NodeFactory, with_race
from tests.tournaments.checks import check_bracket, heat_records, outbox
from tests.tournaments.conftest import (
    Client,
    DirectorFactory,
    NodeProcess,
    PlayerRun,
    play,
    start_node_process,
)


async def running_heats_on(client: Client, tid: str, node_id: str, timeout_s: float) -> list[dict[str, Any]]:
    """The heats whose race on ``node_id`` is running (typing has begun)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        t = await client.get(tid)
        heats = [h for r in t["bracket"] for h in r["heats"] if h["node_id"] == node_id]
        if heats and all(h["race_state"] == "running" for h in heats):
            return heats
        await asyncio.sleep(0.05)
    raise AssertionError(f"no running heat on {node_id}")


async def kill(node: NodeProcess) -> None:
    node.proc.send_signal(signal.SIGKILL)
    await asyncio.wait_for(node.proc.wait(), 10)


async def test_heat_on_a_killed_node_moves_to_the_adopter(
    client: Client,
    node_factory: NodeFactory,
    director_factory: DirectorFactory,
    redis: aioredis.Redis,
    redis_url: str,
    spawned: list[asyncio.subprocess.Process],
) -> None:
    """1. two nodes, the doomed one with the most room takes the first heat; 2. SIGKILL it
    while the heat races; 3. the other node adopts the race (gameserver/adoption.py), the
    director points the heat at it, its players rejoin and finish there; 4. the tournament ends,
    with the adopted race counted once and no re-run."""
    doomed = await start_node_process(spawned, redis_url, "doomed", capacity=10000)
    await node_factory("safe", capacity=9998)
    director = await director_factory(node_stale_ms=2000)
    t = await client.create(client.token("host"), max_players=8, heat_size=4)
    tid = t["id"]
    players = [f"p{i}" for i in range(8)]
    for pid in players:
        (await client.register(tid, client.token(pid))).ok(201)
    runs = [asyncio.create_task(play(client, tid, pid, 120.0 + 5 * i)) for i, pid in enumerate(players)]
    lost = await running_heats_on(client, tid, "doomed", timeout_s=10)
    lost_races = {h["race_id"] for h in lost}
    await kill(doomed)

    done: list[PlayerRun] = await asyncio.gather(*runs)
    final = await client.wait_state(tid, {"finished"}, timeout_s=10)
    heats = {(r["round"], h["heat"]): h for r in final["bracket"] for h in r["heats"]}
    for h in lost:
        moved = heats[(1, h["heat"])]
        assert moved["state"] == "finished" and moved["reruns"] == 0
        assert [r["race_id"] for r in moved["races"]] == [h["race_id"]]
    assert director.metrics.registry.get_sample_value("arena_tournament_heats_moved_total") == len(lost)
    # the players of a moved heat raced it once, on two nodes
    moved_players = {p["player_id"] for h in lost for p in h["players"]}
    for run in done:
        if run.player_id in moved_players:
            assert run.races[0] in lost_races and run.reports[0].reconnects == 1, run
    matches, _ = await outbox(redis)
    adopted = [r for _, r in matches if r.match_id in lost_races]
    assert sorted(r.match_id for r in adopted) == sorted(lost_races)  # once each
    assert all((r.state, r.node_id) == ("finished", "safe") for r in adopted)
    check_bracket(final, heat_records(matches, tid))


async def test_heat_is_settled_by_seed_when_no_rerun_is_left(
    client: Client,
    node_factory: NodeFactory,
    director_factory: DirectorFactory,
    redis_url: str,
    spawned: list[asyncio.subprocess.Process],
) -> None:
    """With re-runs used up (here: none allowed), a heat whose node dies is settled by seed."""
    doomed = await start_node_process(spawned, redis_url, "doomed", capacity=10000)
    await node_factory("small", capacity=100, race=with_race(adopt=False))  # its reaper aborts
    director = await director_factory(node_stale_ms=2000, max_reruns=0, adoption_wait_s=0.0)
    t = await client.create(client.token("host"), max_players=4, heat_size=4)
    tid = t["id"]
    players = ["p0", "p1", "p2", "p3"]
    for pid in players:
        (await client.register(tid, client.token(pid))).ok(201)
    runs = [asyncio.create_task(play(client, tid, pid, 60.0)) for pid in reversed(players)]
    await running_heats_on(client, tid, "doomed", timeout_s=10)
    await kill(doomed)
    final = await client.wait_state(tid, {"finished"}, timeout_s=10)
    await asyncio.gather(*runs)
    heat = final["bracket"][0]["heats"][0]
    assert (heat["state"], heat["reason"], heat["races"]) == ("settled", "node_lost", [])
    assert [s["player_id"] for s in final["standings"]] == players  # by seed: equal ratings, by id
    assert (
        director.metrics.registry.get_sample_value("arena_tournament_heats_total", {"outcome": "node_lost"})
        == 1
    )
