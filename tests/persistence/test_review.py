"""Held for review at ingestion: a rare result is stored 'held' and kept off the leaderboards."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from arena.keys import leaderboard
from arena.results import MatchRecord
from arena.settings import SettingsError
from persistence import synthetic
from persistence.leaderboards import record_placements
from persistence.review import ReviewState, review_state
from persistence.settings import ReadSideSettings
from persistence.times import to_ms
from tests.persistence.conftest import ServiceFactory
from tests.persistence.helpers import Env, db_count, drained, push, wait_until

SETTINGS = ReadSideSettings()
NOW = to_ms(datetime.now(UTC))


def race_at(wpms: dict[str, float], seed: int = 1) -> MatchRecord:
    """A quick race whose players finished at these speeds."""
    race = synthetic.match(random.Random(seed), ended_at=NOW, players=list(wpms), keys=40)
    people = [dataclasses.replace(p, wpm=wpms[p.player_id], valid=True) for p in race.participants]
    return dataclasses.replace(race, race_type="quick", participants=people)


def test_only_a_ranked_result_at_or_above_the_threshold_is_held() -> None:
    race = race_at({"ada": 250.0, "bob": 199.99, "cy": 200.0, "dee": 150.0})
    states = {p.player_id: review_state(p, 200.0) for p in race.participants}
    assert states == {
        "ada": ReviewState.HELD,
        "bob": ReviewState.CLEAR,
        "cy": ReviewState.HELD,
        "dee": ReviewState.CLEAR,
    }
    flagged = dataclasses.replace(race.participants[0], valid=False)
    assert review_state(flagged, 200.0) is ReviewState.CLEAR  # never ranked anyway: nothing to review


def test_held_results_are_not_placed_on_boards() -> None:
    race = race_at({"ada": 250.0, "dee": 150.0})
    assert {pl.player_id for pl in record_placements(race, SETTINGS)} == {"dee"}
    lenient = dataclasses.replace(SETTINGS, review_wpm=300.0)
    assert {pl.player_id for pl in record_placements(race, lenient)} == {"ada", "dee"}


def test_the_threshold_is_range_checked() -> None:
    assert ReadSideSettings.from_env({"ARENA_REVIEW_WPM": "180"}).review_wpm == 180.0
    for bad in ("99", "1001"):
        with pytest.raises(SettingsError, match="ARENA_REVIEW_WPM"):
            ReadSideSettings.from_env({"ARENA_REVIEW_WPM": bad})


async def test_a_250_wpm_result_is_held_and_a_150_wpm_one_is_ranked(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    race = race_at({"ada": 250.0, "dee": 150.0})
    await start_service(env.settings())
    await push(redis, [race])
    await wait_until(lambda: drained(redis), 15, "the race acknowledged")
    held = "SELECT count(*) FROM race_participants WHERE review_state = $1 AND player_id = $2"
    assert await db_count(env.dsn, held, "held", "ada") == 1
    assert await db_count(env.dsn, held, "clear", "dee") == 1
    board = await redis.zrange(leaderboard("quick", "alltime", ""), 0, -1)
    assert board == [b"dee"]
