"""The daily challenge's board: a record that names its day puts its valid finishes there; a
release from review adds one later; the rebuild from PostgreSQL makes the same boards."""

import dataclasses
import random
from datetime import timedelta

import asyncpg
import redis.asyncio as aioredis

from arena import keys
from arena.results import MatchRecord
from persistence import synthetic
from persistence.consumer import ReadSide
from persistence.leaderboards import LeaderboardWriter, daily_challenge_board, record_placements, unscore
from persistence.ratings import RatingCatchUp
from persistence.rebuild import rebuild
from persistence.recent import RecentCache
from persistence.review import ReviewDecisionRecord
from persistence.settings import ReadSideSettings
from persistence.store import PostgresStore
from persistence.times import to_datetime
from tests.persistence.test_queries import NOON

SETTINGS = ReadSideSettings()
DAY = "2026-12-06"


def attempt(seed: int, scores: dict[str, float], **changes: object) -> MatchRecord:
    race = synthetic.match(random.Random(seed), ended_at=NOON, players=list(scores), race_type="quick")
    participants = [
        dataclasses.replace(p, wpm=scores[p.player_id], status="finished", valid=True, flags=[])
        for p in race.participants
    ]
    return dataclasses.replace(race, participants=participants, **{"daily": DAY, **changes})  # type: ignore[arg-type]


def test_only_a_record_naming_a_day_goes_to_a_daily_board() -> None:
    key, expiry = daily_challenge_board(DAY, SETTINGS) or ("", None)
    assert key == keys.daily_board(DAY) == "daily:2026-12-06:board"
    assert expiry is not None
    assert daily_challenge_board("2026-13-01", SETTINGS) is None
    daily = [pl.key for pl in record_placements(attempt(1, {"ada": 80.0}), SETTINGS)]
    plain = [pl.key for pl in record_placements(attempt(1, {"ada": 80.0}, daily=None), SETTINGS)]
    assert set(daily) - set(plain) == {key}


def test_a_daily_record_packs_its_day_and_other_records_are_unchanged() -> None:
    record = attempt(2, {"ada": 80.0})
    assert MatchRecord.from_bytes(record.to_bytes()).daily == DAY
    plain = dataclasses.replace(record, daily=None)
    assert b"daily" not in plain.to_bytes()  # the bytes every consumer already reads
    assert MatchRecord.from_bytes(plain.to_bytes()) == plain


async def test_the_best_attempt_counts_and_flagged_or_held_results_never_do(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        writer = LeaderboardWriter(redis, SETTINGS)
        first = attempt(3, {"ada": 90.0, "bob": 70.0, "cy": 60.0})
        ada, bob, cy = first.participants
        first = dataclasses.replace(
            first, participants=[ada, dataclasses.replace(bob, valid=False, flags=["too_fast"]), cy]
        )
        better = attempt(4, {"ada": 85.0, "cy": 95.0})  # ada slower this time: her best stays
        held = attempt(5, {"dee": 150.0, "eve": SETTINGS.review_wpm + 1})  # dee held by review
        async with redis.pipeline(transaction=False) as pipe:
            writer.queue_records(pipe, [first, better, held], unranked={(held.match_id, "dee")})
            await pipe.execute()
        board = await redis.zrevrange(keys.daily_board(DAY), 0, -1, withscores=True)
        assert [(pid.decode(), unscore(value)[0]) for pid, value in board] == [("cy", 95.0), ("ada", 90.0)]
    finally:
        await redis.aclose()


async def test_a_released_attempt_joins_its_days_board_and_a_rebuild_makes_the_same_board(
    pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    """Stored like the consumer stores it, decided by an operator, then the board lost, damaged
    and rebuilt from PostgreSQL: released results count, flagged, held and rejected ones never."""
    day = to_datetime(NOON).date().isoformat()
    board = keys.daily_board(day)
    store = PostgresStore(pool)
    readside = ReadSide(
        LeaderboardWriter(redis, SETTINGS), RecentCache(redis, SETTINGS), RatingCatchUp(redis), redis
    )
    held = attempt(6, {"ada": 250.0, "bob": 260.0, "cy": 60.0}, daily=day)  # ada and bob held (>= 200)
    again = attempt(7, {"cy": 80.0, "dee": 70.0}, daily=day, ended_at=NOON + 1000)
    dee = dataclasses.replace(again.participants[1], valid=False, flags=["too_fast"])
    again = dataclasses.replace(again, participants=[again.participants[0], dee])
    plain = attempt(8, {"eve": 90.0}, daily=None)  # a quick race, not an attempt
    written = await store.write([held, again, plain])
    assert set(written.unranked) == {(held.match_id, "ada"), (held.match_id, "bob")}
    await readside.apply([held, again, plain], unranked=written.unranked)

    async def members() -> dict[str, float]:
        found = await redis.zrange(board, 0, -1, withscores=True)
        return {pid.decode(): unscore(value)[0] for pid, value in found}

    assert await members() == {"cy": 80.0}
    decided = await store.write(
        [
            ReviewDecisionRecord.of(held.match_id, "ada", "released", "", NOON + 5000),
            ReviewDecisionRecord.of(held.match_id, "bob", "rejected", "pasted", NOON + 5000),
        ]
    )
    assert [(r.player_id, r.daily) for r in decided.released] == [("ada", day)]
    await readside.apply([], released=decided.released)
    assert await members() == {"ada": 250.0, "cy": 80.0}
    built = await members()

    await redis.zadd(board, {"mallory": 1e12, "cy": 1.0})  # junk, and a best lost
    stale = keys.daily_board((to_datetime(NOON).date() - timedelta(days=1)).isoformat())
    await redis.zadd(stale, {"ghost": 1.0})  # a day PostgreSQL has no attempt for
    report = await rebuild(redis, pool, SETTINGS, at_ms=NOON)
    assert await members() == built
    assert await redis.exists(stale) == 0 and report.deleted == 1
    assert 0 < await redis.ttl(board) <= (SETTINGS.daily_keep_days + 2) * 86_400
