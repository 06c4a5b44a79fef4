"""Tickets over HTTP: create, read, long-poll, cancel, ownership, and node loss.

A fake matcher completes tickets through ``TicketStore``'s matchmaker-side API (peek, claim,
assign), exactly as the matchmaker does.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.ids import RaceId
from arena.tickets import Assignment, QueueRef, TicketStore
from tests.lobby.conftest import Api, FakeNode, LobbyFactory

QUICK_LOCAL = {"race_type": "quick", "region": "local"}


@pytest.fixture
async def matcher(redis: aioredis.Redis) -> AsyncIterator[TicketStore]:
    store = TicketStore(redis)
    yield store
    await store.aclose()


async def claim(store: TicketStore, ticket_id: str) -> str:
    """Claim one queued ticket as a matchmaker would; returns the claim id."""
    queue = QueueRef("quick", "local")
    snapshot = await store.peek(queue, limit=10)
    assert ticket_id in [t.id for t in snapshot.tickets]
    result = await store.claim(queue, [[ticket_id]], owner="test-mm", ttl_ms=5000)
    assert result.claimed == [True]
    return result.claim_id


async def assign(store: TicketStore, ticket_id: str, claim_id: str, node_id: str = "fake-1") -> list[bool]:
    a = Assignment(
        race_id="r-test",
        node_id=node_id,
        url=f"ws://127.0.0.1:9/{node_id}",
        player_token="pt",
        join_ticket="jt",
        region="local",
    )
    return await store.assign(QueueRef("quick", "local"), claim_id, [(ticket_id, a)])


async def new_ticket(api: Api, token: str, body: dict[str, Any] = QUICK_LOCAL) -> dict[str, Any]:
    ticket: dict[str, Any] = (await api.call("POST", "/v1/tickets", token=token, body=body)).ok(201)
    return ticket


@pytest.mark.redis_cluster
async def test_create_read_and_match(
    api: Api, matcher: TicketStore, fake_nodes: Callable[..., Awaitable[FakeNode]]
) -> None:
    await fake_nodes("fake-1")
    token = (await api.guest("ada"))["token"]
    reply = await api.call("POST", "/v1/tickets", token=token, body={**QUICK_LOCAL, "language": "en"})
    ticket = reply.ok(201)
    assert ticket["state"] == "queued" and ticket["assignment"] is None and ticket["language"] == "en"
    assert reply.headers["Location"] == f"/v1/tickets/{ticket['ticket_id']}"
    snapshot = await matcher.peek(QueueRef("quick", "local"), limit=10)
    assert snapshot.tickets[0].rating == 1500.0  # a new player's rating from RatingStore

    claim_id = await claim(matcher, ticket["ticket_id"])
    still = (await api.call("GET", f"/v1/tickets/{ticket['ticket_id']}", token=token)).ok()
    assert still["state"] == "queued"  # claimed is still "searching" to the player
    assert await assign(matcher, ticket["ticket_id"], claim_id) == [True]
    matched = (await api.call("GET", f"/v1/tickets/{ticket['ticket_id']}", token=token)).ok()
    assert matched["state"] == "matched"
    assert matched["assignment"] == {
        "race_id": "r-test",
        "node_id": "fake-1",
        "url": "ws://127.0.0.1:9/fake-1",
        "player_token": "pt",
        "ticket": "jt",
        "region": "local",
    }


@pytest.mark.redis_cluster
async def test_long_poll_answers_when_matched(
    api: Api, matcher: TicketStore, fake_nodes: Callable[..., Awaitable[FakeNode]]
) -> None:
    await fake_nodes("fake-1")
    token = (await api.guest())["token"]
    ticket = await new_ticket(api, token)

    async def match_soon() -> None:
        await asyncio.sleep(0.3)
        claim_id = await claim(matcher, ticket["ticket_id"])
        await assign(matcher, ticket["ticket_id"], claim_id)

    started = time.monotonic()
    task = asyncio.create_task(match_soon())
    reply = await api.call("GET", f"/v1/tickets/{ticket['ticket_id']}?wait=4", token=token)
    await task
    assert reply.ok()["state"] == "matched"
    assert 0.25 < time.monotonic() - started < 2.0  # answered on the notice, not at the deadline


async def test_long_poll_is_bounded_by_settings(lobby_factory: LobbyFactory) -> None:
    api = (await lobby_factory(long_poll_max_s=0.4)).api
    token = (await api.guest())["token"]
    ticket = await new_ticket(api, token)
    started = time.monotonic()
    reply = await api.call("GET", f"/v1/tickets/{ticket['ticket_id']}?wait=600", token=token)
    assert reply.ok()["state"] == "queued"
    assert 0.35 < time.monotonic() - started < 1.5
    for bad in ("-1", "soon", "nan", "inf"):
        reply = await api.call("GET", f"/v1/tickets/{ticket['ticket_id']}?wait={bad}", token=token)
        assert reply.status == 400 and reply.body["error"] == "bad_wait", bad


async def test_cancel_and_never_matched_after(api: Api, matcher: TicketStore) -> None:
    token = (await api.guest())["token"]
    queued = await new_ticket(api, token)
    cancelled = (await api.call("DELETE", f"/v1/tickets/{queued['ticket_id']}", token=token)).ok()
    assert cancelled["state"] == "cancelled"
    assert (await matcher.peek(QueueRef("quick", "local"), limit=10)).tickets == []

    # Claimed by a matchmaker, then cancelled: the matchmaker's assignment must not take.
    claimed = await new_ticket(api, token)
    claim_id = await claim(matcher, claimed["ticket_id"])
    (await api.call("DELETE", f"/v1/tickets/{claimed['ticket_id']}", token=token)).ok()
    assert await assign(matcher, claimed["ticket_id"], claim_id) == [False]
    after = (await api.call("GET", f"/v1/tickets/{claimed['ticket_id']}?wait=0.2", token=token)).ok()
    assert after["state"] == "cancelled" and after["assignment"] is None
    again = (await api.call("DELETE", f"/v1/tickets/{claimed['ticket_id']}", token=token)).ok()
    assert again["state"] == "cancelled"  # idempotent


@pytest.mark.redis_cluster
async def test_cancel_after_match_says_so(
    api: Api, matcher: TicketStore, fake_nodes: Callable[..., Awaitable[FakeNode]]
) -> None:
    await fake_nodes("fake-1")
    token = (await api.guest())["token"]
    ticket = await new_ticket(api, token)
    await assign(matcher, ticket["ticket_id"], await claim(matcher, ticket["ticket_id"]))
    reply = await api.call("DELETE", f"/v1/tickets/{ticket['ticket_id']}", token=token)
    assert reply.status == 409 and reply.body["error"] == "already_matched"
    assert (
        reply.body["ticket"]["state"] == "matched"
        and reply.body["ticket"]["assignment"]["race_id"] == "r-test"
    )


async def test_only_the_owner_reads_or_cancels(api: Api) -> None:
    owner = (await api.guest("owner"))["token"]
    other = (await api.guest("other"))["token"]
    ticket = await new_ticket(api, owner)
    for method in ("GET", "DELETE"):
        reply = await api.call(method, f"/v1/tickets/{ticket['ticket_id']}", token=other)
        assert reply.status == 404 and reply.body["error"] == "ticket_not_found"
    assert (await api.call("GET", f"/v1/tickets/{ticket['ticket_id']}", token=owner)).ok()[
        "state"
    ] == "queued"
    for unknown in ("quick.local.0000000000000000", "nonsense", "custom.local.00"):
        reply = await api.call("GET", f"/v1/tickets/{unknown}", token=owner)
        assert reply.status == 404 and reply.body["error"] == "ticket_not_found"


async def test_one_live_ticket_per_player(api: Api) -> None:
    token = (await api.guest())["token"]
    first = await new_ticket(api, token)
    second = await api.call(
        "POST", "/v1/tickets", token=token, body={"race_type": "standard", "region": "eu"}
    )
    assert second.status == 409 and second.body["error"] == "already_queued"
    assert second.body["ticket_id"] == first["ticket_id"]
    (await api.call("DELETE", f"/v1/tickets/{first['ticket_id']}", token=token)).ok()
    await new_ticket(api, token, {"race_type": "standard", "region": "eu"})


async def test_one_live_ticket_in_the_same_queue_and_the_lock(api: Api, redis: aioredis.Redis) -> None:
    """The create script refuses a second ticket in the same queue; concurrent creations of one
    player get one ticket and one 409; a failed creation releases the lock."""
    token = (await api.guest("ada"))["token"]
    created = await asyncio.gather(
        *(api.call("POST", "/v1/tickets", token=token, body=QUICK_LOCAL) for _ in range(4))
    )
    assert sorted(r.status for r in created) == [201, 409, 409, 409]
    (first,) = (r.body for r in created if r.status == 201)
    again = await api.call("POST", "/v1/tickets", token=token, body=QUICK_LOCAL)
    assert again.status == 409 and again.body["ticket_id"] == first["ticket_id"]
    (await api.call("DELETE", f"/v1/tickets/{first['ticket_id']}", token=token)).ok()
    bad = await api.call("POST", "/v1/tickets", token=token, body={**QUICK_LOCAL, "language": "English!"})
    assert bad.status == 400
    await new_ticket(api, token)  # neither the 400 nor the cancelled ticket holds the player back


async def test_the_ticket_carries_the_stored_rating(
    api: Api, matcher: TicketStore, redis: aioredis.Redis
) -> None:
    session = await api.guest("ada")
    await redis.hset(
        keys.player_rating(session["player_id"]), mapping={"r": 1720.5, "rd": 80, "vol": 0.06, "v": 3}
    )
    ticket = await new_ticket(api, session["token"])
    queued = {t.id: t for t in (await matcher.peek(QueueRef("quick", "local"), limit=50)).tickets}
    assert queued[ticket["ticket_id"]].rating == 1720.5


async def test_a_held_creation_lock_refuses(api: Api, redis: aioredis.Redis) -> None:
    session = await api.guest("ada")
    await redis.set(keys.player_ticket_lock(session["player_id"]), "1", px=5000)
    reply = await api.call("POST", "/v1/tickets", token=session["token"], body=QUICK_LOCAL)
    assert reply.status == 409 and reply.body["error"] == "already_queued"
    assert await redis.get(keys.player_ticket_lock(session["player_id"])) == b"1"  # not ours to drop


async def test_bad_ticket_bodies(api: Api) -> None:
    token = (await api.guest())["token"]
    cases = [
        ({"region": "local"}, "bad_race_type"),
        ({"race_type": "custom", "region": "local"}, "bad_race_type"),  # custom races are private only
        ({"race_type": "quick", "region": "mars"}, "unknown_region"),
        ({"race_type": "quick"}, "bad_region"),
        ({"race_type": "quick", "region": "local", "language": 5}, "bad_language"),
        ({"race_type": "quick", "region": "local", "language": "English!"}, "bad_ticket"),
    ]
    for body, code in cases:
        reply = await api.call("POST", "/v1/tickets", token=token, body=body)
        assert reply.status == 400 and reply.body["error"] == code, (body, reply.body)


async def test_node_lost_then_queue_again(
    lobby_factory: LobbyFactory,
    matcher: TicketStore,
    redis: aioredis.Redis,
    fake_nodes: Callable[..., Awaitable[FakeNode]],
) -> None:
    """1. a ticket is matched to a live node; 2. the node stops heartbeating (SIGKILL);
    3. within the stale window the ticket reads node_lost; 4. the player queues again."""
    api = (await lobby_factory(node_stale_ms=500, node_refresh_s=0.05)).api
    node = await fake_nodes("doomed")
    token = (await api.guest())["token"]
    ticket = await new_ticket(api, token)
    await assign(matcher, ticket["ticket_id"], await claim(matcher, ticket["ticket_id"]), node_id="doomed")
    path = f"/v1/tickets/{ticket['ticket_id']}"
    assert (await api.call("GET", path, token=token)).ok()["state"] == "matched"

    await node.die()
    deadline = time.monotonic() + 3.0
    while True:
        view = (await api.call("GET", path, token=token)).ok()
        if view["state"] == "node_lost" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert view["state"] == "node_lost" and "queue again" in view["reason"]
    assert view["assignment"]["node_id"] == "doomed"  # still shown, for the client's logs
    await new_ticket(api, token)  # and the player can queue again at once

    # A race that finished before its node died is not lost: it happened.
    await redis.hset(keys.race_state(RaceId("r-test")), mapping={"state": "finished"})
    assert (await api.call("GET", path, token=token)).ok()["state"] == "matched"


async def test_a_race_adopted_after_its_node_died_is_reported_at_the_adopter(
    lobby_factory: LobbyFactory,
    matcher: TicketStore,
    redis: aioredis.Redis,
    fake_nodes: Callable[..., Awaitable[FakeNode]],
) -> None:
    """1. matched on a node that dies while its race awaits a reaper: still matched there;
    2. a live node adopts it (``race:{id}:owner``): matched at the adopter, same tokens;
    3. had it been aborted instead (off the dead node's list, no owner): node_lost."""
    lobby = await lobby_factory(node_stale_ms=500, node_refresh_s=0.05)
    api = lobby.api
    node = await fake_nodes("doomed")
    await fake_nodes("adopter")
    token = (await api.guest())["token"]
    ticket = await new_ticket(api, token)
    await assign(matcher, ticket["ticket_id"], await claim(matcher, ticket["ticket_id"]), node_id="doomed")
    path = f"/v1/tickets/{ticket['ticket_id']}"
    await redis.sadd(keys.node_checkpoints("doomed"), "r-test")  # its checkpoint, awaiting a reaper

    await node.die()
    await asyncio.sleep(0.7)  # stale for the lobby
    pending = (await api.call("GET", path, token=token)).ok()
    assert pending["state"] == "matched" and pending["assignment"]["node_id"] == "doomed"

    await redis.set(keys.race_owner(RaceId("r-test")), "adopter")
    await redis.srem(keys.node_checkpoints("doomed"), "r-test")
    moved = (await api.call("GET", path, token=token)).ok()
    assert moved["state"] == "matched"
    a = moved["assignment"]
    assert (a["node_id"], a["url"], a["player_token"], a["ticket"]) == (
        "adopter",
        "ws://127.0.0.1:9/adopter",
        "pt",
        "jt",
    )
    metrics = lobby.lobby.metrics.registry
    assert metrics.get_sample_value("arena_lobby_assignments_moved_total", {"kind": "ticket"}) == 1

    await redis.delete(keys.race_owner(RaceId("r-test")))  # aborted by a reaper instead
    assert (await api.call("GET", path, token=token)).ok()["state"] == "node_lost"
