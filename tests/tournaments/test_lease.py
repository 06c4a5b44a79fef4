"""The director lease: one holder, renewal, take-over after expiry with a newer epoch, fencing."""

import asyncio

import pytest
import redis.asyncio as aioredis

from arena import keys
from tournaments.bracket import Advancement
from tournaments.lease import Lease
from tournaments.model import TournamentKind, TournamentSpec, Visibility
from tournaments.store import GuardedWrite, TournamentStore

# Run against one Redis and against a Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.redis_cluster


async def test_one_holder_and_take_over_after_expiry(redis: aioredis.Redis) -> None:
    a = Lease(redis, "a", ttl_ms=300)
    b = Lease(redis, "b", ttl_ms=300)
    assert await a.acquire() and a.held
    assert not await b.acquire()
    assert await a.renew()
    assert (await a.holder() or "").startswith("a:")
    await asyncio.sleep(0.35)  # a stops renewing (it died)
    assert not a.held  # it counts itself out before anyone else can take over
    assert await b.acquire() and b.epoch == a.epoch + 1
    assert not await a.renew() and not a.held  # the old holder learns it lost
    await b.release()
    assert await a.acquire() and a.epoch == b.epoch + 1


async def test_writes_of_an_older_epoch_are_fenced(redis: aioredis.Redis) -> None:
    store = TournamentStore(redis)
    spec = TournamentSpec(
        "cup", TournamentKind.INSTANT, Visibility.PUBLIC, "quick", 4, 4, Advancement.TOP_K, 2, 1, 1
    )
    t = await store.create(spec, "host", 0)
    state = keys.tournament_state(t.id)
    newer = GuardedWrite(t.id, state, 0, epoch=5).hset(state, {"round": 1})
    assert await store.commit(newer) == "ok"
    older = GuardedWrite(t.id, state, 1, epoch=4).hset(state, {"round": 9})
    assert await store.commit(older) == "fenced"
    stale = GuardedWrite(t.id, state, 0, epoch=5).hset(state, {"round": 9})
    assert await store.commit(stale) == "conflict"
    got = await store.get(t.id)
    assert got is not None and got.round == 1 and got.version == 1
    nope = keys.tournament_state("tnope")  # a guard of the same tournament: one slot on a cluster
    assert await store.commit(GuardedWrite("tnope", nope, 0, epoch=5)) == "not_found"
