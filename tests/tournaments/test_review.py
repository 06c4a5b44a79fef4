"""A heat result rejected on review: the bracket sees it while the heat's round is open.

The races here are on paper: the placer records a race id on a live node without creating it,
and the test appends the heat records to the outbox as a node would, so the order of results and
decisions is the test's to choose (a few seconds, no typing).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from arena.clock import now_ms
from arena.ids import new_race_id
from arena.keys import OUTBOX_STREAM
from arena.placement import NodePlacer, Placed, ReservedSeat, SeatRequest
from arena.results import MatchRecord
from persistence import synthetic
from persistence.review import ReviewDecisionRecord
from tests.conftest import NodeFactory
from tests.tournaments.conftest import Client, DirectorFactory
from tournaments.director import Director
from tournaments.model import Heat, HeatState


class PaperPlacer(NodePlacer):
    """Places every heat on the live node "node-a" without asking it: no race is played."""

    async def place(
        self, race_type: str, regions: Sequence[str], players: Sequence[SeatRequest], **extra: Any
    ) -> Placed | None:
        seats = {p.player_id: ReservedSeat("token", "ticket") for p in players}
        return Placed(new_race_id(), "node-a", "ws://127.0.0.1:1/ws", "local", seats)


async def heats(director: Director, tid: str, round_no: int) -> list[Heat]:
    counts = await director.store.heats_per_round(tid)
    if len(counts) < round_no:
        return []
    return [h for h in await director.store.heats(tid, round_no, counts[round_no - 1]) if h is not None]


async def until(check: Any, what: str, timeout_s: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (value := await check()):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


async def report(redis: aioredis.Redis, tid: str, heat: Heat, order: list[str]) -> MatchRecord:
    """The heat's race finished in this order (the first at 250 WPM: held for review)."""
    assert heat.race_id is not None
    r = synthetic.match(
        random.Random(heat.heat_no), ended_at=now_ms(), players=order, keys=40, match_id=heat.race_id,
        tournament_id=tid, round_no=heat.round_no, heat_no=heat.heat_no,
    )  # fmt: skip
    people = [dataclasses.replace(p, wpm=250.0 - 50 * i, valid=True) for i, p in enumerate(r.participants)]
    record = dataclasses.replace(r, participants=people)
    await redis.xadd(OUTBOX_STREAM, {"id": record.match_id, "kind": record.kind, "data": record.to_bytes()})
    return record


async def reject(redis: aioredis.Redis, tid: str, race_id: str, player_id: str) -> None:
    """What ``python -m ops.review reject`` appends."""
    d = ReviewDecisionRecord.of(race_id, player_id, "rejected", "pasted", now_ms(), tid)
    await redis.xadd(OUTBOX_STREAM, {"id": d.match_id, "kind": d.kind, "data": d.to_bytes()})


async def test_a_rejection_before_the_next_round_changes_who_advances(
    client: Client, node_factory: NodeFactory, director_factory: DirectorFactory, redis: aioredis.Redis
) -> None:
    """1. four players, heats of two, the winner advances; 2. heat 1's winner is rejected while
    heat 2 still runs: the runner-up advances instead; 3. heat 2's winner is rejected after the
    final was dealt: too late, the bracket stands."""
    await node_factory("node-a")
    director = await director_factory(placer_class=PaperPlacer)
    t = await client.create(
        client.token("host"), max_players=4, heat_size=2, advancement={"rule": "top_k", "advance": 1}
    )
    tid = t["id"]
    for pid in ("p0", "p1", "p2", "p3"):
        (await client.register(tid, client.token(pid))).ok(201)

    async def placed() -> list[Heat]:
        hs = await heats(director, tid, 1)
        return hs if len(hs) == 2 and all(h.state is HeatState.PLACED for h in hs) else []

    one, two = await until(placed, "round 1 placed")
    cheat, honest = sorted(m.player_id for m in one.members)
    first = await report(redis, tid, one, [cheat, honest])

    async def advancers(heat_no: int) -> tuple[str, ...]:
        return (await heats(director, tid, 1))[heat_no - 1].advancers

    assert await until(lambda: advancers(1), "heat 1 decided") == (cheat,)
    await reject(redis, tid, first.match_id, cheat)

    async def replaced() -> bool:
        return await advancers(1) == (honest,)

    await until(replaced, "the rejection applied")
    standings = {s.player_id: s for s in (await heats(director, tid, 1))[0].standings}
    assert standings[cheat].points == 0  # scores like a flagged result: a DNF

    winner, loser = sorted(m.player_id for m in two.members)
    second = await report(redis, tid, two, [winner, loser])

    async def final() -> list[Heat]:
        return await heats(director, tid, 2)

    [the_final] = await until(final, "the final dealt")
    assert {m.player_id for m in the_final.members} == {honest, winner}
    await reject(redis, tid, second.match_id, winner)

    def results(outcome: str) -> float | None:
        name = "arena_tournament_results_total"
        return director.metrics.registry.get_sample_value(name, {"outcome": outcome})

    async def seen_late() -> bool:
        return results("rejection_late") == 1

    await until(seen_late, "the late rejection seen")
    assert (await heats(director, tid, 1))[1].advancers == (winner,)
    assert results("rejected") == 1
