"""A 25-player instant tournament played by bots across two nodes, persisted exactly once."""

import asyncio
import time
from collections import Counter

import asyncpg
import redis.asyncio as aioredis

from arena.results import final_match_id
from tests.conftest import NodeFactory
from tests.tournaments.checks import check_bracket, heat_records, outbox
from tests.tournaments.conftest import Client, DirectorFactory, play, speeds


async def test_twenty_five_players_heats_of_five_top_two(
    client: Client,
    node_factory: NodeFactory,
    director_factory: DirectorFactory,
    redis: aioredis.Redis,
    persisted: str,
) -> None:
    """1. two nodes, a director, persistence; 2. an instant tournament for 25 fills up and
    starts; 3. bots play every heat they are seated in; node-a is drained once the first
    round is placed: its heats finish there, later rounds go to node-b; 4. the bracket, the
    standings and the final ranking follow from the heat records; every heat and the final
    result are in the outbox once, and in PostgreSQL once."""
    node_a = await node_factory("node-a")
    await node_factory("node-b")
    director = await director_factory()
    host = client.token("host")
    t = await client.create(host, max_players=25, prizes=["gold", "silver", "bronze"])
    assert t["rounds"] == 3
    tid = t["id"]
    players = [f"p{i:02d}" for i in range(25)]
    for pid in players:
        (await client.register(tid, client.token(pid))).ok(201)
    started = time.monotonic()
    runs = asyncio.gather(
        *(play(client, tid, pid, wpm) for pid, wpm in zip(players, speeds(25), strict=True))
    )
    for _ in range(100):
        detail = await client.get(tid)
        placed = [h["node_id"] for r in detail["bracket"] for h in r["heats"] if h["node_id"]]
        if len(placed) == 5:
            break
        await asyncio.sleep(0.05)
    assert sorted(set(placed)) == ["node-a", "node-b"]  # the first round spread by load
    await node_a.node.drain()  # takes no new heat, finishes its own
    done = await runs
    final = await client.wait_state(tid, {"finished"}, timeout_s=10)
    elapsed = time.monotonic() - started

    # The right number of rounds, heats and players per round.
    assert [len(r["heats"]) for r in final["bracket"]] == [5, 2, 1]
    assert [sum(len(h["players"]) for h in r["heats"]) for r in final["bracket"]] == [25, 10, 4]
    heats = [h for r in final["bracket"] for h in r["heats"]]
    assert all(h["state"] == "finished" and len(h["races"]) == 1 for h in heats)
    # Every bot that raced got its results; nobody raced twice in a round.
    assert all(r.failure is None for run in done for r in run.reports), [
        (run.player_id, r.failure) for run in done for r in run.reports if r.failure
    ]
    assert sorted(len(run.races) for run in done) == [1] * 15 + [2] * 6 + [3] * 4
    assert {run.final["status"] for run in done if run.final} <= {"eliminated", "finished"}

    # The bracket follows from the heat records in the outbox, each there exactly once.
    matches, finals = await outbox(redis)
    records = heat_records(matches, tid)
    ranking = check_bracket(final, records)
    race_ids = [r.match_id for recs in records.values() for r in recs]
    assert len(race_ids) == 8 and len(set(race_ids)) == 8
    assert {r.node_id for (rnd, _), recs in records.items() if rnd > 1 for r in recs} == {"node-b"}
    assert all(r.state == "finished" for recs in records.values() for r in recs)  # drained, not cut
    assert [f.match_id for f in finals] == [final_match_id(tid)]
    record = finals[0]
    assert [s.player_id for s in record.standings] == ranking
    assert [s.prize for s in record.standings[:4]] == ["gold", "silver", "bronze", None]
    assert sorted(h.race_id for h in record.heat_races) == sorted(race_ids)
    assert [s["prize"] for s in final["standings"][:3]] == ["gold", "silver", "bronze"]

    # Standings moved within a second of each heat's result reaching the outbox.
    lags = [await redis.hget(f"tournament:{{{tid}}}:heat:{h_round}:{h_no}", "result_lag_ms")
            for h_round, h_no in records]  # fmt: skip
    assert all(lag is not None and int(lag) < 1000 for lag in lags), lags
    print(f"25-player tournament: {elapsed:.1f}s, heats per node {Counter(r.node_id for _, r in matches)}")
    assert (
        director.metrics.registry.get_sample_value("arena_tournament_heats_total", {"outcome": "finished"})
        == 8
    )

    # PostgreSQL: every heat race once, with its players, under the tournament.
    conn = await asyncpg.connect(persisted)
    try:
        for _ in range(50):
            rows = await conn.fetch(
                "SELECT race_id, count(*) AS n FROM races WHERE tournament_id = $1 GROUP BY race_id", tid
            )
            if len(rows) == 8:
                break
            await asyncio.sleep(0.1)
        assert sorted(r["race_id"] for r in rows) == sorted(race_ids) and all(r["n"] == 1 for r in rows)
        people = await conn.fetchval(
            "SELECT count(*) FROM race_participants WHERE race_id = ANY($1::text[])", race_ids
        )
        assert people == 25 + 10 + 4
        # The final result: stored once, the tournament finished, every entrant ranked.
        for _ in range(50):
            stored = await conn.fetchval(
                "SELECT count(*) FROM tournament_finals WHERE tournament_id = $1", tid
            )
            if stored:
                break
            await asyncio.sleep(0.1)
        assert stored == 1
        row = await conn.fetchrow(
            "SELECT status, rounds, heats FROM tournaments WHERE tournament_id = $1", tid
        )
        assert row is not None and (row["status"], row["rounds"], row["heats"]) == ("finished", 3, 8)
        results = await conn.fetch(
            "SELECT player_id, prize FROM tournament_results WHERE tournament_id = $1 ORDER BY rank", tid
        )
        assert [r["player_id"] for r in results] == ranking
        assert [r["prize"] for r in results[:4]] == ["gold", "silver", "bronze", None]
    finally:
        await conn.close()
