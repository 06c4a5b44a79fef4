"""Leaderboard rules (pure) and their Redis updates: best score per player, idempotent, by period."""

import dataclasses
import random
from datetime import UTC, date, datetime

import pytest

from arena import keys
from persistence import synthetic
from persistence.leaderboards import (
    LeaderboardWriter,
    Timeframe,
    board_key,
    expires_at,
    period,
    record_placements,
    score,
    unscore,
)
from persistence.settings import ReadSideSettings
from persistence.times import to_datetime, to_ms
from tests.conftest import redis_client

# Run against one Redis and against a Redis Cluster (tests/conftest.py).
pytestmark = pytest.mark.redis_cluster

SETTINGS = ReadSideSettings()
NOW = to_ms(datetime.now(UTC))


def test_score_orders_by_wpm_then_accuracy_and_round_trips() -> None:
    assert score(80.0, 90.0) > score(79.99, 100.0)
    assert score(80.0, 95.5) > score(80.0, 95.49)
    assert unscore(score(123.45, 98.76)) == (123.45, 98.76)
    assert unscore(score(0.0, 0.0)) == (0.0, 0.0)
    assert unscore(score(250.0, 100.0)) == (250.0, 100.0)


def test_periods_are_utc_days_and_iso_weeks() -> None:
    assert period(Timeframe.DAILY, date(2026, 11, 23)) == "2026-11-23"
    assert period(Timeframe.WEEKLY, date(2026, 11, 23)) == "2026-W48"
    assert period(Timeframe.WEEKLY, date(2027, 1, 1)) == "2026-W53"  # ISO week-year, not calendar year
    assert period(Timeframe.ALLTIME, date(2026, 11, 23)) == ""
    assert board_key("quick", Timeframe.DAILY, date(2026, 11, 23)) == "leaderboard:quick:daily:2026-11-23"
    assert board_key("quick", Timeframe.ALLTIME, date(2026, 11, 23)) == "leaderboard:quick:alltime"


def test_boards_expire_after_their_period_plus_retention() -> None:
    day = date(2026, 11, 23)  # a Monday
    assert expires_at(Timeframe.DAILY, day, SETTINGS) == to_ms(datetime(2026, 12, 2, tzinfo=UTC)) // 1000
    weekly = expires_at(Timeframe.WEEKLY, date(2026, 11, 26), SETTINGS)
    assert weekly == expires_at(Timeframe.WEEKLY, day, SETTINGS)  # same week, same expiry
    assert expires_at(Timeframe.ALLTIME, day, SETTINGS) is None


def test_only_valid_finishes_of_ranked_types_are_placed() -> None:
    rng = random.Random(1)
    race = synthetic.match(rng, ended_at=NOW, players=["ada", "bob", "cy"])
    ada, bob, cy = race.participants
    race = dataclasses.replace(
        race,
        participants=[
            ada,
            dataclasses.replace(bob, valid=False),
            dataclasses.replace(cy, status="dnf", place=None),
        ],
    )
    assert {p.player_id for p in record_placements(race, SETTINGS)} == {"ada"}
    assert len(record_placements(race, SETTINGS)) == 3  # daily, weekly, all-time
    assert record_placements(dataclasses.replace(race, race_type="custom"), SETTINGS) == []


async def test_updates_keep_the_best_and_are_idempotent(redis_url: str) -> None:
    redis = redis_client(redis_url)
    try:
        writer = LeaderboardWriter(redis, SETTINGS)
        rng = random.Random(2)
        race = synthetic.match(rng, ended_at=NOW, players=["ada", "bob"])
        fast = dataclasses.replace(race.participants[0], wpm=120.0, accuracy=97.0)
        slow = dataclasses.replace(race.participants[0], wpm=60.0, accuracy=99.0)
        later = dataclasses.replace(race, match_id="r2", participants=[slow])
        await writer.apply([dataclasses.replace(race, participants=[fast])])
        await writer.apply([later, later])  # worse, and twice: nothing changes
        today = to_datetime(NOW).date()  # the race's day, even if the test runs across midnight
        key = board_key("quick", Timeframe.DAILY, today)
        best = await redis.zscore(key, "ada")
        assert best is not None and unscore(best) == (120.0, 97.0)
        assert await redis.zcard(key) == 1
        assert await redis.ttl(key) > 0
        assert await redis.ttl(board_key("quick", Timeframe.ALLTIME, today)) == -1
        assert await redis.hget(keys.PLAYER_NAMES, "ada") == fast.name.encode()
    finally:
        await redis.aclose()
