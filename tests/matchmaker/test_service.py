"""Matchmakers end to end: real nodes in two regions, real Redis, bots racing what was matched."""

import asyncio
import random
from collections import Counter

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from arena import keys
from arena.ids import RaceId
from arena.placement import Placed, SeatRequest
from arena.rating import DEFAULT, RatingStore
from arena.results import MatchRecord
from arena.tickets import QueueRef, Ticket, TicketState, TicketStore
from matchmaker.__main__ import build_http_app
from ops.services import free_port
from simulators.bot import Bot, BotReport
from simulators.typing import TypingProfile
from tests.matchmaker.conftest import FAST_MM, MatchmakerFactory, NodeStarter

FAST_TYPIST = TypingProfile(wpm=150.0, error_rate=0.02, jitter_cv=0.4, notice_delay_chars=1, pause_chance=0.0)


async def queue_bots(tickets: TicketStore, n: int, region: str, rng: random.Random) -> list[Ticket]:
    return [
        await tickets.create(f"p-{region}-{i}", f"{region}{i}", "quick", region, rating=rng.gauss(1500, 250))
        for i in range(n)
    ]


async def wait_all(tickets: TicketStore, queued: list[Ticket], timeout_s: float) -> list[Ticket]:
    done = await asyncio.gather(*(tickets.wait(t.id, timeout_s) for t in queued))
    assert all(t is not None for t in done)
    return [t for t in done if t is not None]


async def test_fifty_bots_two_regions_two_matchmakers_race_to_completion(
    start_node: NodeStarter, make_matchmaker: MatchmakerFactory, tickets: TicketStore, redis: aioredis.Redis
) -> None:
    """1. a node per region, two matchmakers; 2. 50 bots queue with spread ratings; 3. every
    ticket is matched exactly once, in its region or a neighbour's after the neighbour wait;
    4. every bot joins its race and gets results; 5. the results rate the players."""
    nodes = {"eu": await start_node("node-eu", "eu"), "us": await start_node("node-us", "us")}
    rng = random.Random(2024)
    queued = await queue_bots(tickets, 26, "eu", rng) + await queue_bots(tickets, 24, "us", rng)
    matchmakers = [make_matchmaker("mm-1"), make_matchmaker("mm-2")]
    for mm in matchmakers:
        await mm.start()

    async def player(i: int, queued_ticket: Ticket) -> tuple[Ticket, BotReport]:
        """Like a lobby client: long-poll the ticket, then join the race at once."""
        ticket = await tickets.wait(queued_ticket.id, timeout_s=15)
        assert ticket is not None and ticket.assignment is not None, ticket
        return ticket, await _bot(ticket, i).run(timeout_s=20)

    played = await asyncio.gather(*(player(i, t) for i, t in enumerate(queued)))
    matched = [t for t, _ in played]

    assert all(t.state is TicketState.MATCHED and t.assignment is not None for t in matched)
    seats = Counter(t.player_id for t in matched)
    assert set(seats.values()) == {1}
    races: dict[str, list[Ticket]] = {}
    neighbour_wait_ms = int(FAST_MM.neighbour_wait_s * 1000)
    for t in matched:
        a = t.assignment
        assert a is not None and t.matched_at is not None
        node = nodes[a.region]
        assert a.node_id == node.settings.node_id and a.url == node.settings.ws_url
        if a.region != t.region:
            assert t.matched_at - t.created_at >= neighbour_wait_ms, t
        room = node.node.room(RaceId(a.race_id))
        assert room is not None and t.player_id in room.race.seats
        races.setdefault(a.race_id, []).append(t)
    for race_id, members in races.items():
        assert 1 <= len(members) <= FAST_MM.max_players
        room = nodes[members[0].assignment.region].node.room(RaceId(race_id))  # type: ignore[union-attr]
        assert room is not None and room.race.seats == {t.player_id for t in members}  # no stray seat
    kinds = sum(
        (
            mm.metrics.registry.get_sample_value(
                "arena_matchmaker_tickets_matched_total", {"race_type": "quick", "kind": "full"}
            )
            or 0.0
        )
        for mm in matchmakers
    )
    assert kinds > 0  # close ratings made full races at once

    for t, report in played:
        assert report.failure is None, (t.id, report.failure)
        assert report.results is not None and t.assignment is not None
        assert report.results.race_id == t.assignment.race_id
        assert report.my_row is not None and report.my_row.status == "finished"

    # The finished races are in the outbox; rating them moves every multi-player racer.
    entries = await redis.xrange(keys.OUTBOX_STREAM)
    records = [MatchRecord.from_bytes(fields[b"data"]) for _, fields in entries]
    assert {r.match_id for r in records} == set(races)
    store = RatingStore(redis)
    for record in records:
        await store.apply_record(record)
    rated = await store.get_many(t.player_id for t in matched)
    for t in matched:
        together = len(races[t.assignment.race_id])  # type: ignore[union-attr]
        assert (rated[t.player_id] != DEFAULT) == (together > 1)


def _bot(ticket: Ticket, seed: int) -> Bot:
    a = ticket.assignment
    assert a is not None
    return Bot(a.url, a.player_token, a.join_ticket, FAST_TYPIST, random.Random(seed), name=ticket.name)


@pytest.mark.redis_cluster
async def test_cancelled_tickets_are_never_placed(
    start_node: NodeStarter, make_matchmaker: MatchmakerFactory, tickets: TicketStore
) -> None:
    node = await start_node("node-eu", "eu")
    rng = random.Random(5)
    queued = await queue_bots(tickets, 20, "eu", rng)
    early = queued[:5]
    for t in early:
        await tickets.cancel(t.id)
    mm = make_matchmaker("mm-1", neighbour_wait_s=2.0, max_wait_s=3.0)
    await mm.start()
    # Cancel more while matching runs: each ends either cancelled or matched, never both.
    racing = await asyncio.gather(*(tickets.cancel(t.id) for t in queued[5:10]))
    final = await wait_all(tickets, queued, timeout_s=10)
    all_seats = {p for room in node.node.rooms.values() for p in room.race.seats}
    for t in final[:5]:
        assert t.state is TicketState.CANCELLED and t.assignment is None
        assert t.player_id not in all_seats
    for got, t in zip(racing, final[5:10], strict=True):
        assert got is not None and got.state == t.state
        assert (t.state is TicketState.MATCHED) == (t.assignment is not None)
    assert all(t.state is TicketState.MATCHED for t in final[10:])


async def test_neighbour_region_only_after_the_neighbour_wait(
    start_node: NodeStarter, make_matchmaker: MatchmakerFactory, tickets: TicketStore
) -> None:
    """Lonely players in two regions: no race alone before the max wait, so after the
    neighbour wait the two share one race, hosted in one of their regions."""
    nodes = {"eu": await start_node("node-eu", "eu"), "us": await start_node("node-us", "us")}
    eu = await tickets.create("p-eu", "eve", "quick", "eu", rating=1500.0)
    us = await tickets.create("p-us", "uma", "quick", "us", rating=1520.0)
    await make_matchmaker("mm-1").start()
    a, b = await wait_all(tickets, [eu, us], timeout_s=10)
    assert a.assignment is not None and b.assignment is not None
    assert a.assignment.race_id == b.assignment.race_id
    moved = a if a.assignment.region != a.region else b
    assert moved.matched_at is not None and moved.matched_at - moved.created_at >= 2500
    assert moved.matched_at - moved.created_at < FAST_MM.max_wait_s * 1000
    assert a.assignment.node_id == nodes[a.assignment.region].settings.node_id


async def test_alone_gets_a_solo_race_after_the_max_wait(
    start_node: NodeStarter, make_matchmaker: MatchmakerFactory, tickets: TicketStore
) -> None:
    await start_node("node-eu", "eu")
    lonely = await tickets.create("p-1", "solo", "quick", "eu", rating=1500.0)
    await make_matchmaker("mm-1", max_wait_s=3.0, neighbour_wait_s=2.0).start()
    got = await tickets.wait(lonely.id, timeout_s=6)
    assert got is not None and got.state is TicketState.MATCHED and got.matched_at is not None
    assert got.matched_at - got.created_at >= 3000


class BlockingPlacer:
    """Never finishes placing: the matchmaker is stuck mid-batch."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def place(self, race_type: str, regions: list[str], players: list[SeatRequest]) -> Placed | None:
        self.entered.set()
        await asyncio.Event().wait()
        return None


async def test_stop_gives_claims_back_at_once(
    make_matchmaker: MatchmakerFactory, tickets: TicketStore
) -> None:
    queued = [await tickets.create(f"p{i}", f"b{i}", "quick", "eu", rating=1500.0) for i in range(5)]
    placer = BlockingPlacer()
    mm = make_matchmaker("mm-stuck", placer=placer)
    await mm.start()
    await asyncio.wait_for(placer.entered.wait(), 5)
    assert await tickets.claimed_count(QueueRef("quick", "eu")) == 5
    await mm.stop(deadline_s=0.1)
    assert not mm.running
    states = [await tickets.get(t.id) for t in queued]
    assert all(s is not None and s.state is TicketState.QUEUED for s in states)


async def test_expected_wait_is_published_and_health_served(
    make_matchmaker: MatchmakerFactory, tickets: TicketStore
) -> None:
    mm = make_matchmaker("mm-1")
    await mm.start()
    await asyncio.sleep(0.3)
    ticket = await tickets.create("p1", "ada", "quick", "eu", rating=1500.0)
    assert ticket.expected_wait_s is not None and 0 < ticket.expected_wait_s <= FAST_MM.max_wait_s
    runner = web.AppRunner(build_http_app(mm), handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200 and (await resp.json())["matchmaker_id"] == "mm-1"
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 200 and await resp.json() == {"ready": True}
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert "arena_matchmaker_queue_depth" in await resp.text()
            await mm.stop()
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 503
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 503 and await resp.json() == {"ready": False, "reason": "stopped"}
    finally:
        await runner.cleanup()


async def test_readiness_fails_when_the_loop_is_stuck_or_dead(make_matchmaker: MatchmakerFactory) -> None:
    mm = make_matchmaker("mm-ready")
    await mm.start()
    assert await mm.readiness() is None
    mm._round_ended_at -= 60  # as if the loop had hung in a round for a minute
    assert (await mm.readiness() or "").startswith("loop stuck: no round ended for 6")
    await asyncio.sleep(0.3)  # a live loop ends rounds again
    assert await mm.readiness() is None
    assert mm._loop_task is not None
    mm._loop_task.cancel()  # as if it had crashed
    await asyncio.gather(mm._loop_task, return_exceptions=True)
    assert await mm.readiness() == "stopped"
    await mm.stop()
