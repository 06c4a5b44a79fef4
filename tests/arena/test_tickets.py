"""The ticket store against a real Redis: atomic claims, cancel races, reaping, long-polls."""

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from arena.tickets import (
    Assignment,
    QueueFull,
    QueueRef,
    QueueStats,
    Ticket,
    TicketLive,
    TicketRequest,
    TicketState,
    TicketStore,
    expected_wait_ms,
    queue_of,
)
from tests.conftest import redis_client

# Run against one Redis and against a Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.redis_cluster

Q = QueueRef("quick", "eu")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis: aioredis.Redis) -> AsyncIterator[TicketStore]:
    s = TicketStore(redis, recheck_s=0.5)
    yield s
    await s.aclose()


async def make(store: TicketStore, n: int, region: str = "eu", rating: float = 1500.0) -> list[Ticket]:
    """Tickets in queue order: by creation instant (ms), ties by id."""
    made = [
        await store.create(f"p{region}{i}", f"bot{i}", "quick", region, rating=rating + i) for i in range(n)
    ]
    return sorted(made, key=lambda t: (t.created_at, t.id))


def seat(race_id: str = "r1") -> Assignment:
    return Assignment(race_id, "node-a", "ws://127.0.0.1:1/ws", "ptok", "jtok", "eu")


async def test_create_get_and_queue_from_id(store: TicketStore) -> None:
    ticket = await store.create("p1", "ada", "quick", "eu", rating=1612.5, language="en")
    assert queue_of(ticket.id) == Q and ticket.state is TicketState.QUEUED
    assert ticket.expected_wait_s is None  # no matchmaker has published figures yet
    got = await store.get(ticket.id)
    assert got is not None
    assert (got.player_id, got.name, got.rating, got.language, got.created_at) == (
        "p1",
        "ada",
        1612.5,
        "en",
        ticket.created_at,
    )
    assert await store.get("quick.eu.nope") is None
    assert await store.get("not-a-ticket") is None


@pytest.mark.parametrize(
    ("race_type", "region", "name", "language"),
    [
        ("custom", "eu", "a", None),
        ("quick", "EU!", "a", None),
        ("quick", "eu", "", None),
        ("quick", "eu", "a", "English"),
    ],
)
async def test_create_rejects_bad_input(
    store: TicketStore, race_type: str, region: str, name: str, language: str | None
) -> None:
    with pytest.raises(ValueError):
        await store.create("p1", name, race_type, region, rating=1500.0, language=language)


async def test_queue_is_bounded(redis: aioredis.Redis) -> None:
    store = TicketStore(redis, max_queued=2)
    await make(store, 2)
    with pytest.raises(QueueFull):
        await store.create("p9", "late", "quick", "eu", rating=1500.0)
    await store.aclose()


async def test_expected_wait_follows_the_published_figures(store: TicketStore) -> None:
    stats = QueueStats(wait_ms=2000, fallback_ms=3000, neighbour_ms=6000, max_wait_ms=15000)
    assert [expected_wait_ms(stats, w) for w in (0, 1500, 2500, 4000, 9000, 20000)] == [
        2000,
        500,
        500,
        2000,
        6000,
        0,
    ]
    await store.set_stats(Q, stats)
    ticket = await store.create("p1", "ada", "quick", "eu", rating=1500.0)
    assert ticket.expected_wait_s == 2.0
    got = await store.get(ticket.id)
    assert got is not None and got.expected_wait_s is not None and 1.9 <= got.expected_wait_s <= 2.0


async def test_peek_oldest_first_and_by_age(store: TicketStore) -> None:
    tickets = await make(store, 3)
    snapshot = await store.peek(Q, limit=2)
    assert [t.id for t in snapshot.tickets] == [t.id for t in tickets[:2]] and snapshot.depth == 3
    first = snapshot.tickets[0]
    assert (first.player_id, first.name, first.rating, first.region) == (
        tickets[0].player_id,
        tickets[0].name,
        tickets[0].rating,
        "eu",
    )
    older = await store.peek(Q, limit=10, enqueued_before=tickets[0].created_at - 1)
    assert older.tickets == []


async def test_claim_is_all_or_nothing_per_group(store: TicketStore) -> None:
    a, b, c = (t.id for t in await make(store, 3))
    first = await store.claim(Q, [[a, b]], owner="mm1", ttl_ms=5000)
    second = await store.claim(Q, [[b, c], [c]], owner="mm2", ttl_ms=5000)
    assert first.claimed == [True] and second.claimed == [False, True]
    assert [t.id for t in (await store.peek(Q, limit=10)).tickets] == []
    states = [await store.get(x) for x in (a, b, c)]
    assert all(s is not None and s.state is TicketState.CLAIMED for s in states)


async def test_concurrent_claimers_never_share_a_ticket(redis: aioredis.Redis) -> None:
    stores = [TicketStore(redis) for _ in range(2)]
    ids = [t.id for t in await make(stores[0], 60)]
    rng = random.Random(3)
    owned: dict[str, list[str]] = {}

    async def claimer(n: int) -> None:
        store = stores[n % 2]
        for _ in range(30):
            group = rng.sample(ids, 3)
            claim = await store.claim(Q, [group], owner=f"mm{n}", ttl_ms=5000)
            if claim.claimed[0]:
                for tid in group:
                    owned.setdefault(tid, []).append(claim.claim_id)

    await asyncio.gather(*(claimer(n) for n in range(8)))
    assert owned and all(len(claims) == 1 for claims in owned.values())


async def test_assign_publishes_and_completes(store: TicketStore) -> None:
    a, b = (t.id for t in await make(store, 2))
    claim = await store.claim(Q, [[a, b]], owner="mm1", ttl_ms=5000)
    assert await store.assign(Q, claim.claim_id, [(a, seat()), (b, seat())]) == [True, True]
    got = await store.get(a)
    assert got is not None and got.state is TicketState.MATCHED and got.assignment == seat()
    assert got.matched_at is not None and got.expected_wait_s == 0.0
    assert await store.claimed_count(Q) == 0


async def test_cancel_queued_is_never_claimed(store: TicketStore) -> None:
    a, b = (t.id for t in await make(store, 2))
    cancelled = await store.cancel(a)
    assert cancelled is not None and cancelled.state is TicketState.CANCELLED
    assert (await store.claim(Q, [[a, b]], owner="mm1", ttl_ms=5000)).claimed == [False]
    assert [t.id for t in (await store.peek(Q, limit=10)).tickets] == [b]
    again = await store.cancel(a)
    assert again is not None and again.state is TicketState.CANCELLED


async def test_cancel_while_claimed_wins_over_assign_and_release(store: TicketStore) -> None:
    a, b = (t.id for t in await make(store, 2))
    claim = await store.claim(Q, [[a, b]], owner="mm1", ttl_ms=5000)
    cancelled = await store.cancel(a)
    assert cancelled is not None and cancelled.state is TicketState.CANCELLED
    assert await store.assign(Q, claim.claim_id, [(a, seat()), (b, seat())]) == [False, True]
    assert await store.release(Q, claim.claim_id, [a]) == 0  # never back in the queue
    got = await store.get(a)
    assert got is not None and got.state is TicketState.CANCELLED and got.assignment is None


async def test_cancel_after_match_fails_and_returns_the_assignment(store: TicketStore) -> None:
    (a,) = (t.id for t in await make(store, 1))
    claim = await store.claim(Q, [[a]], owner="mm1", ttl_ms=5000)
    await store.assign(Q, claim.claim_id, [(a, seat("r42"))])
    result = await store.cancel(a)
    assert result is not None and result.state is TicketState.MATCHED
    assert result.assignment is not None and result.assignment.race_id == "r42"
    assert await store.cancel("quick.eu.unknown") is None


async def test_create_unless_live_checks_the_previous_ticket_in_either_queue(store: TicketStore) -> None:
    """Same queue: the create script refuses; another queue: read first. A matched or cancelled
    previous ticket does not stop a new one."""
    first = await store.create_unless_live(TicketRequest("p1", "ada", "quick", "eu", 1500.0), None)
    for race_type, region in (("quick", "eu"), ("standard", "us")):
        with pytest.raises(TicketLive) as refused:
            await store.create_unless_live(TicketRequest("p1", "ada", race_type, region, 1500.0), first.id)
        assert refused.value.ticket_id == first.id
    assert [t.id for t in (await store.peek(Q, limit=10)).tickets] == [first.id]  # nothing written
    claim = await store.claim(Q, [[first.id]], owner="mm1", ttl_ms=5000)
    with pytest.raises(TicketLive):  # claimed is still live
        await store.create_unless_live(TicketRequest("p1", "ada", "quick", "eu", 1500.0), first.id)
    await store.assign(Q, claim.claim_id, [(first.id, seat())])
    again = await store.create_unless_live(TicketRequest("p1", "ada", "quick", "eu", 1612.0), first.id)
    other = await store.create_unless_live(
        TicketRequest("p2", "bob", "standard", "us", 1500.0), "quick.eu.0000000000000000"
    )  # a previous ticket that expired: gone, not live
    assert (await store.peek(Q, limit=10)).tickets[0].rating == 1612.0
    assert queue_of(other.id) == QueueRef("standard", "us")
    cancelled = await store.cancel(again.id)
    assert cancelled is not None and cancelled.state is TicketState.CANCELLED
    await store.create_unless_live(TicketRequest("p1", "ada", "quick", "eu", 1500.0), again.id)


async def test_create_unless_live_honours_the_queue_bound(redis: aioredis.Redis) -> None:
    store = TicketStore(redis, max_queued=1)
    try:
        await store.create_unless_live(TicketRequest("p1", "ada", "quick", "eu", 1500.0), None)
        with pytest.raises(QueueFull):
            await store.create_unless_live(TicketRequest("p2", "bob", "quick", "eu", 1500.0), None)
    finally:
        await store.aclose()


async def test_cancel_by_another_owner_changes_nothing(store: TicketStore) -> None:
    (a,) = (t.id for t in await make(store, 1))
    assert await store.cancel(a, owner="someone-else") is None
    assert [t.id for t in (await store.peek(Q, limit=10)).tickets] == [a]
    mine = await store.cancel(a, owner="peu0")  # make() names its players p{region}{i}
    assert mine is not None and mine.state is TicketState.CANCELLED


async def test_release_requeues_at_the_original_position(store: TicketStore) -> None:
    tickets = await make(store, 3)
    claim = await store.claim(Q, [[tickets[0].id]], owner="mm1", ttl_ms=5000)
    assert await store.release(Q, "someone-else", [tickets[0].id]) == 0
    assert await store.release(Q, claim.claim_id, [tickets[0].id]) == 1
    snapshot = await store.peek(Q, limit=10)
    assert [t.id for t in snapshot.tickets] == [t.id for t in tickets]
    assert snapshot.tickets[0].enqueued_at == tickets[0].created_at


async def test_reaper_returns_a_dead_claim(store: TicketStore) -> None:
    a, b = (t.id for t in await make(store, 2))
    dead = await store.claim(Q, [[a, b]], owner="dead-mm", ttl_ms=150)
    assert await store.reap(Q) == 0  # not due yet
    await asyncio.sleep(0.2)
    assert await store.reap(Q) == 2
    assert {t.id for t in (await store.peek(Q, limit=10)).tickets} == {a, b}
    alive = await store.claim(Q, [[a, b]], owner="mm2", ttl_ms=5000)
    assert alive.claimed == [True]
    # The dead matchmaker wakes up late: its assignment no longer counts.
    assert await store.assign(Q, dead.claim_id, [(a, seat())]) == [False]
    assert await store.assign(Q, alive.claim_id, [(a, seat()), (b, seat())]) == [True, True]


async def test_wait_is_woken_by_the_assignment(store: TicketStore) -> None:
    (a,) = (t.id for t in await make(store, 1))
    waiter = asyncio.create_task(store.wait(a, timeout_s=10))
    await asyncio.sleep(0.1)
    claim = await store.claim(Q, [[a]], owner="mm1", ttl_ms=5000)
    started = time.monotonic()
    await store.assign(Q, claim.claim_id, [(a, seat())])
    got = await waiter
    assert got is not None and got.state is TicketState.MATCHED
    assert time.monotonic() - started < 0.4  # pushed, not found by the 0.5 s recheck


async def test_wait_times_out_and_handles_unknown_and_cancel(store: TicketStore) -> None:
    a, b = (t.id for t in await make(store, 2))
    started = time.monotonic()
    got = await store.wait(a, timeout_s=0.3)
    assert got is not None and got.state is TicketState.QUEUED
    assert 0.25 <= time.monotonic() - started < 1.0
    assert await store.wait("quick.eu.unknown", timeout_s=5) is None
    waiter = asyncio.create_task(store.wait(b, timeout_s=10))
    await asyncio.sleep(0.05)
    await store.cancel(b)
    cancelled = await asyncio.wait_for(waiter, 1.0)
    assert cancelled is not None and cancelled.state is TicketState.CANCELLED


async def test_many_waiters_share_one_connection(store: TicketStore, redis: aioredis.Redis) -> None:
    tickets = [t.id for t in await make(store, 200)]
    waiters = [asyncio.create_task(store.wait(tid, timeout_s=10)) for tid in tickets]
    await asyncio.sleep(0.2)
    claim = await store.claim(Q, [tickets], owner="mm1", ttl_ms=5000)
    await store.assign(Q, claim.claim_id, [(tid, seat()) for tid in tickets])
    results = await asyncio.wait_for(asyncio.gather(*waiters), 2.0)
    assert all(r is not None and r.state is TicketState.MATCHED for r in results)
    clients = await redis.client_list(_type="pubsub")
    assert len(clients) <= 1
