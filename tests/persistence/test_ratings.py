"""Ratings a node missed are applied from the outbox; those it applied are left alone."""

import dataclasses
import random

import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.rating import DEFAULT, RatingStore
from persistence import synthetic
from persistence.ratings import RatingCatchUp

# Run against one Redis and against a Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.redis_cluster


async def test_only_unrated_finished_matches_are_rated_once(redis: aioredis.Redis) -> None:
    rng = random.Random(1)
    missed = synthetic.match(rng, ended_at=1_790_000_000_000, players=["ada", "bob"])
    by_node = synthetic.match(rng, ended_at=1_790_000_001_000, players=["cy", "dee"])
    aborted = dataclasses.replace(
        synthetic.match(rng, ended_at=1_790_000_002_000, players=["eve", "fay"]), state="aborted"
    )
    store = RatingStore(redis)
    await store.apply_record(by_node)  # what the node did when the race ended
    cy_before = await store.get("cy")

    catch_up = RatingCatchUp(redis)
    assert await catch_up.apply([missed, by_node, aborted]) == 1
    assert await redis.exists(keys.rating_applied(missed.match_id))
    assert (await store.get("ada")).rating > DEFAULT.rating > (await store.get("bob")).rating
    assert await store.get("cy") == cy_before
    assert await store.get("eve") == DEFAULT
    assert await catch_up.apply([missed, by_node, aborted]) == 0  # a re-delivery changes nothing
