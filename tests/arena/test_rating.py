"""Glicko-2 (pure) and the Redis rating store: idempotent, concurrent-safe race updates."""

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.rating import (
    DEFAULT,
    Placing,
    Rating,
    RatingStore,
    glicko2_update,
    pairwise_scores,
    ranking_from_record,
    rate_race,
)
from arena.results import MatchRecord, ParticipantRecord
from tests.conftest import redis_client

# Run against one Redis and against a Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.redis_cluster

# ---- pure ------------------------------------------------------------------------


def test_glickman_paper_example() -> None:
    """The worked example of glicko2.pdf: 1500/200/0.06 against three opponents."""
    player = Rating(1500.0, 200.0, 0.06)
    games = [
        (Rating(1400.0, 30.0, 0.06), 1.0),
        (Rating(1550.0, 100.0, 0.06), 0.0),
        (Rating(1700.0, 300.0, 0.06), 0.0),
    ]
    after = glicko2_update(player, games)
    assert after.rating == pytest.approx(1464.06, abs=0.01)
    assert after.rd == pytest.approx(151.52, abs=0.01)
    assert after.volatility == pytest.approx(0.05999, abs=1e-5)


def test_no_games_changes_nothing() -> None:
    assert glicko2_update(DEFAULT, []) == DEFAULT


def test_pairwise_scores_places_dnf_and_flagged() -> None:
    ranking = [
        Placing("a", 1),
        Placing("b", 2),
        Placing("cheat", 1, valid=False),
        Placing("c", None),
        Placing("d", None),
    ]
    games = pairwise_scores(ranking)
    assert "cheat" not in games  # not rated, and nobody's opponent
    assert dict(games["a"]) == {"b": 1.0, "c": 1.0, "d": 1.0}
    assert dict(games["b"]) == {"a": 0.0, "c": 1.0, "d": 1.0}
    assert dict(games["c"]) == {"a": 0.0, "b": 0.0}  # two DNFs are not compared
    assert dict(games["d"]) == {"a": 0.0, "b": 0.0}


def test_equal_places_draw() -> None:
    assert dict(pairwise_scores([Placing("a", 1), Placing("b", 1)])["a"]) == {"b": 0.5}


def test_rate_race_winner_up_loser_down_and_uncertainty_shrinks() -> None:
    ranking = [Placing(p, i) for i, p in enumerate(["p1", "p2", "p3", "p4"], start=1)]
    after = rate_race({}, ranking)
    assert after["p1"].rating > after["p2"].rating > 1500 > after["p3"].rating > after["p4"].rating
    assert all(r.rd < DEFAULT.rd for r in after.values())
    # Symmetric field: the ratings move symmetrically around the start.
    assert after["p1"].rating - 1500 == pytest.approx(1500 - after["p4"].rating, abs=1e-6)


def test_upset_moves_more_than_expected_result() -> None:
    strong, weak = Rating(1900.0, 60.0, 0.06), Rating(1400.0, 60.0, 0.06)
    expected = rate_race({"s": strong, "w": weak}, [Placing("s", 1), Placing("w", 2)])
    upset = rate_race({"s": strong, "w": weak}, [Placing("w", 1), Placing("s", 2)])
    assert abs(upset["w"].rating - weak.rating) > 10 * abs(expected["w"].rating - weak.rating)


def test_flagged_and_lonely_races_are_not_rated() -> None:
    assert rate_race({}, [Placing("a", 1), Placing("b", None, valid=False)]) == {}
    assert rate_race({}, [Placing("solo", 1)]) == {}
    assert rate_race({}, [Placing("a", None), Placing("b", None)]) == {}


def _record(state: str = "finished") -> MatchRecord:
    def p(pid: str, place: int | None, status: str, valid: bool = True) -> ParticipantRecord:
        return ParticipantRecord(
            player_id=pid,
            name=pid,
            place=place,
            status=status,
            valid=valid,
            flags=[] if valid else ["too_fast"],
            wpm=60.0,
            raw_wpm=60.0,
            accuracy=1.0,
            consistency=1.0,
            correct_chars=10,
            typed_chars=10,
            errors=0,
            elapsed_ms=1000,
            joined_at=1,
            finished_at=2,
            keys="",
            key_times=[],
        )

    return MatchRecord(
        match_id="r1",
        kind="race",
        node_id="n",
        race_type="quick",
        passage_id="q001",
        passage_chars=10,
        state=state,
        reason="",
        created_at=0,
        started_at=1,
        ended_at=3,
        participants=[
            p("a", 1, "finished"),
            p("x", None, "finished", valid=False),
            p("b", None, "dnf"),
        ],
    )


def test_ranking_from_record() -> None:
    assert ranking_from_record(_record()) == [
        Placing("a", 1),
        Placing("x", None, valid=False),
        Placing("b", None),
    ]
    assert ranking_from_record(_record("aborted")) is None


# ---- the store -------------------------------------------------------------------


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


async def test_new_players_get_the_default(redis: aioredis.Redis) -> None:
    store = RatingStore(redis)
    assert await store.get_many(["p1", "p2"]) == {"p1": DEFAULT, "p2": DEFAULT}


async def test_apply_race_once_and_stream_entry(redis: aioredis.Redis) -> None:
    store = RatingStore(redis)
    ranking = [Placing("p1", 1), Placing("p2", 2), Placing("p3", None)]
    changes = await store.apply_race("r1", ranking)
    assert changes is not None and {c.player_id for c in changes} == {"p1", "p2", "p3"}
    stored = await store.get_many(["p1", "p2", "p3"])
    assert stored == {c.player_id: c.after for c in changes}
    assert await store.apply_race("r1", ranking) is None  # a redelivered result
    assert await store.get_many(["p1", "p2", "p3"]) == stored
    entries = await redis.xrange(keys.RATING_CHANGES_STREAM)
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"match_id"] == b"r1"
    assert {c["player_id"] for c in json.loads(fields[b"changes"])} == {"p1", "p2", "p3"}
    assert await redis.hget(keys.player_rating("p1"), "races") == b"1"


async def test_apply_record_skips_aborted_and_flagged(redis: aioredis.Redis) -> None:
    store = RatingStore(redis)
    assert await store.apply_record(_record("aborted")) == []
    changes = await store.apply_record(_record())
    assert changes is not None and {c.player_id for c in changes} == {"a", "b"}
    assert await store.get("x") == DEFAULT


async def test_concurrent_races_of_one_player_both_count(redis: aioredis.Redis) -> None:
    """Two results touching the same player at once: neither update is lost (version check)."""
    store_a, store_b = RatingStore(redis), RatingStore(redis)
    await asyncio.gather(
        store_a.apply_race("m1", [Placing("hub", 1), Placing("x", 2)]),
        store_b.apply_race("m2", [Placing("hub", 1), Placing("y", 2)]),
    )
    assert await redis.hget(keys.player_rating("hub"), "races") == b"2"
    assert await redis.xlen(keys.RATING_CHANGES_STREAM) == 2
