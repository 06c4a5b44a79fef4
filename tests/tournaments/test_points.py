"""The points rule: every heat plays N races; standings and advancement go by points."""

import asyncio

import redis.asyncio as aioredis

from tests.conftest import NodeFactory
from tests.tournaments.checks import check_bracket, heat_records, outbox
from tests.tournaments.conftest import Client, DirectorFactory, play

SHORT = "Two short races decide it."


async def test_points_over_two_races(
    client: Client, node_factory: NodeFactory, director_factory: DirectorFactory, redis: aioredis.Redis
) -> None:
    await node_factory("node-a")
    await director_factory()
    t = await client.create(
        client.token("host"),
        max_players=3,
        heat_size=3,
        custom_text=SHORT,
        advancement={"rule": "points", "advance": 1, "races_per_round": 2},
    )
    tid = t["id"]
    for pid in ("ann", "bob", "cy"):
        (await client.register(tid, client.token(pid))).ok(201)
    runs = await asyncio.gather(
        *(play(client, tid, pid, wpm) for pid, wpm in (("ann", 180), ("bob", 150), ("cy", 120)))
    )
    assert [len(run.races) for run in runs] == [2, 2, 2]  # one seat per race of the heat
    final = await client.wait_state(tid, {"finished"}, timeout_s=10)
    heat = final["bracket"][0]["heats"][0]
    assert heat["state"] == "finished" and len(heat["races"]) == 2
    assert [(s["player_id"], s["points"]) for s in heat["standings"]] == [("ann", 6), ("bob", 4), ("cy", 2)]
    matches, _ = await outbox(redis)
    check_bracket(final, heat_records(matches, tid))
