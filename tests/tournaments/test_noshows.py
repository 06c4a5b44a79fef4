"""No-shows: a player who never joins is DNF and never advances; a heat nobody joins advances nobody."""

import asyncio

import redis.asyncio as aioredis

from tests.conftest import NodeFactory
from tests.tournaments.checks import check_bracket, heat_records, outbox
from tests.tournaments.conftest import Client, DirectorFactory, play

# Equal ratings: seeds follow player ids, and the snake deals three heats of four:
HEAT_1 = ["p00", "p05", "p06", "p11"]
HEAT_2 = ["p01", "p04", "p07", "p10"]
HEAT_3 = ["p02", "p03", "p08", "p09"]
ABSENT = {"p00", *HEAT_3}  # the top seed, and a whole heat


async def test_no_shows_are_dnf_and_do_not_advance(
    client: Client, node_factory: NodeFactory, director_factory: DirectorFactory, redis: aioredis.Redis
) -> None:
    """1. twelve players, heats of four, top two; five never come; 2. their heats start after
    the node's wait with whoever came; the empty heat is aborted by its node; 3. the final has
    the four who advanced, none of them a no-show."""
    await node_factory("node-a")
    await director_factory()
    t = await client.create(client.token("host"), max_players=12, heat_size=4)
    tid = t["id"]
    players = sorted(HEAT_1 + HEAT_2 + HEAT_3)
    for pid in players:
        (await client.register(tid, client.token(pid))).ok(201)
    wpm = {pid: 190.0 - 5 * i for i, pid in enumerate(players)}
    await asyncio.gather(*(play(client, tid, pid, wpm[pid]) for pid in players if pid not in ABSENT))
    final = await client.wait_state(tid, {"finished"}, timeout_s=10)

    round_1 = final["bracket"][0]["heats"]
    assert [[p["player_id"] for p in h["players"]] for h in round_1] == [HEAT_1, HEAT_2, HEAT_3]
    no_shows = [{s["player_id"] for s in h["standings"] if s["no_show"]} for h in round_1]
    assert no_shows == [{"p00"}, set(), set(HEAT_3)]
    assert [s["player_id"] for s in round_1[0]["standings"] if s["advanced"]] == ["p05", "p06"]
    assert not any(s["advanced"] for s in round_1[2]["standings"])
    assert [len(r["heats"]) for r in final["bracket"]] == [3, 1]
    finalists = {p["player_id"] for p in final["bracket"][1]["heats"][0]["players"]}
    assert len(finalists) == 4 and not finalists & ABSENT

    matches, _ = await outbox(redis)
    records = heat_records(matches, tid)
    heat_1 = records[(1, 1)][0]
    assert heat_1.state == "finished" and {p.player_id for p in heat_1.participants} == {"p05", "p06", "p11"}
    heat_3 = records[(1, 3)][0]
    assert (heat_3.state, heat_3.reason, heat_3.participants) == ("aborted", "nobody joined", [])
    check_bracket(final, records)
