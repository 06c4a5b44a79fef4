"""The outbox consumer against real Redis, PostgreSQL and Kafka: exactly once, claims, shutdown."""

from __future__ import annotations

import asyncio
import random
import time

import asyncpg
import pytest
import redis.asyncio as aioredis

from arena.keys import DEAD_STREAM, OUTBOX_STREAM, recent_races
from arena.results import TournamentFinalRecord
from ops.services import free_port
from persistence import synthetic
from persistence.consumer import State
from tests.persistence.conftest import ServiceFactory
from tests.persistence.helpers import (
    Env,
    drained,
    final,
    kafka_keys,
    kafka_messages,
    matches,
    push,
    push_raw,
    stored,
    wait_until,
)


async def test_a_thousand_matches_land_once_in_postgres_and_all_in_kafka(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    records = matches(1000)
    rows = sum(len(r.participants) for r in records)
    # Three consumers in two "processes" share the group.
    await start_service(env.settings(consumer="a", workers=2))
    await start_service(env.settings(consumer="b", workers=1))
    await push(redis, records[:500])
    await push(redis, records[500:])

    async def all_stored() -> bool:
        return await stored(env.dsn) == (1000, rows)

    await wait_until(all_stored, 60, "1000 matches in PostgreSQL")
    await wait_until(lambda: drained(redis), 10, "every entry acknowledged")
    keys = await kafka_keys(env.bootstrap, env.race_topic, 1000)
    assert set(keys) == {r.match_id for r in records}
    assert await stored(env.dsn) == (1000, rows)  # nothing twice

    async def trimmed() -> bool:
        return int(await redis.xlen(OUTBOX_STREAM)) < 200

    await wait_until(trimmed, 5, "acknowledged entries trimmed from the outbox")


@pytest.mark.redis_cluster
async def test_a_match_appended_twice_is_stored_once(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    [record] = matches(1)
    await start_service(env.settings())
    await push(redis, [record, record])
    await wait_until(lambda: drained(redis), 10, "both entries acknowledged")
    assert await stored(env.dsn) == (1, len(record.participants))
    assert (await kafka_keys(env.bootstrap, env.race_topic, 1))[record.match_id] >= 1


@pytest.mark.redis_cluster
async def test_entries_left_pending_by_a_dead_consumer_are_claimed(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    records = matches(30)
    await push(redis, records)
    # A consumer reads everything, then dies without acknowledging.
    await redis.xgroup_create(OUTBOX_STREAM, "persistence", id="0")
    await redis.xreadgroup("persistence", "ghost", {OUTBOX_STREAM: ">"}, count=100)
    service = await start_service(env.settings())
    await wait_until(lambda: drained(redis), 10, "the ghost's entries claimed and acknowledged")
    assert await stored(env.dsn) == (30, sum(len(r.participants) for r in records))
    claimed = service.metrics.entries_read.labels("claimed")._value.get()
    assert claimed == 30


async def test_stop_is_prompt_and_leaves_no_task(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    before = asyncio.all_tasks()
    service = await start_service(env.settings(workers=2))
    await push(redis, matches(20))
    await wait_until(lambda: drained(redis), 10, "drained")
    began = time.monotonic()
    await service.stop()
    assert time.monotonic() - began < 1.0
    assert all(c.state is State.STOPPED for c in service.consumers)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()


async def test_stop_during_an_outage_hands_the_batch_back_claimable_at_once(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    records = matches(10)
    dead_dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"  # nothing listens there
    # Production-like claim idle time: nothing would be claimed within this test by waiting.
    broken = await start_service(
        env.settings(dsn=dead_dsn, consumer="broken", shutdown_grace_s=0.5, claim_idle_ms=60_000)
    )
    await push(redis, records)

    async def stuck() -> bool:
        return "postgres" in (await broken.readiness() or "")

    await wait_until(stuck, 10, "the service to report postgres down")
    began = time.monotonic()
    await broken.stop()
    assert time.monotonic() - began < 2.0
    pending = await redis.xpending_range(OUTBOX_STREAM, "persistence", "-", "+", 100)
    assert len(pending) == 10
    assert all(p["times_delivered"] == 0 for p in pending)  # this delivery did not count
    # A healthy consumer takes them over without waiting for claim_idle_ms.
    await start_service(env.settings(consumer="healthy", claim_idle_ms=60_000))
    await wait_until(lambda: drained(redis), 5, "the handed-back entries processed")
    assert (await stored(env.dsn))[0] == 10


async def test_heats_go_to_the_heat_topic_and_the_tournament_tables(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    rng = random.Random(3)
    heats = [
        synthetic.match(
            rng,
            ended_at=1_790_000_000_000 + i,
            players=["ada", "bob", "cy"],
            tournament_id="t1",
            round_no=i + 1,
            heat_no=1,
        )
        for i in range(3)
    ]
    await start_service(env.settings())
    await push(redis, heats)
    await wait_until(lambda: drained(redis), 10, "heats processed")
    assert set(await kafka_keys(env.bootstrap, env.heat_topic, 3)) == {h.match_id for h in heats}
    conn = await asyncpg.connect(env.dsn)
    try:
        t = await conn.fetchrow("SELECT heats, rounds FROM tournaments WHERE tournament_id = 't1'")
        assert t is not None and (t["heats"], t["rounds"]) == (3, 3)
        rows = await conn.fetch(
            "SELECT player_id, heats, finished FROM tournament_participants ORDER BY player_id"
        )
        assert [(r["player_id"], r["heats"], r["finished"]) for r in rows] == [
            ("ada", 3, 3),
            ("bob", 3, 3),
            ("cy", 3, 3),
        ]
    finally:
        await conn.close()


async def test_a_final_lands_once_in_postgres_and_in_kafka_under_its_tournament(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    """Races, heats and a tournament's final in one batch; the final appended again, and
    re-delivered after a consumer died holding it: stored once, published under the tournament."""
    rng = random.Random(4)
    heats = [
        synthetic.match(
            rng,
            ended_at=1_790_000_000_000 + i,
            players=["ada", "bob"],
            tournament_id="t9",
            round_no=1,
            heat_no=i + 1,
        )
        for i in range(2)
    ]
    races = matches(3)
    result = final("t9", ["bob", "ada", "cy"], ended_at=1_790_000_100_000, heat_races=heats)
    await push(redis, [races[0], *heats, result, *races[1:], result])  # appended twice
    # A consumer reads everything and dies: the entries are claimed, the final comes back again.
    await redis.xgroup_create(OUTBOX_STREAM, "persistence", id="0")
    await redis.xreadgroup("persistence", "ghost", {OUTBOX_STREAM: ">"}, count=100)
    await push_raw(redis, result.match_id, result.to_bytes(), kind=result.kind)  # a replay
    service = await start_service(env.settings())
    await wait_until(lambda: drained(redis), 10, "every entry acknowledged")
    assert await redis.xlen(DEAD_STREAM) == 0
    assert service.metrics.matches_inserted._value.get() == 6  # 3 races, 2 heats, 1 final
    conn = await asyncpg.connect(env.dsn)
    try:
        t = await conn.fetchrow(
            "SELECT status, heats, name, rounds FROM tournaments WHERE tournament_id = 't9'"
        )
        assert t is not None and (t["status"], t["heats"], t["name"], t["rounds"]) == (
            "finished",
            2,
            "Cup t9",
            1,
        )
        rows = await conn.fetch("SELECT rank, player_id, prize FROM tournament_results ORDER BY rank")
        assert [tuple(r) for r in rows] == [(1, "bob", "gold"), (2, "ada", "silver"), (3, "cy", None)]
        assert await conn.fetchval("SELECT count(*) FROM tournament_finals") == 1
        assert await conn.fetchval("SELECT count(*) FROM races") == 5
        # No leaderboard, recent result or rating comes from a final (cy never raced).
        assert await redis.exists(recent_races("cy")) == 0
    finally:
        await conn.close()
    messages = await kafka_messages(env.bootstrap, env.heat_topic, 3)
    finals = [(h, v) for key, h, v in messages if key == "t9"]
    assert finals and all(h["kind"] == b"tournament_final" and v == result.to_bytes() for h, v in finals)
    assert TournamentFinalRecord.from_bytes(finals[0][1]) == result
    assert {key for key, _, _ in messages} == {"t9", *(h.match_id for h in heats)}
    assert set(await kafka_keys(env.bootstrap, env.race_topic, 3)) == {r.match_id for r in races}


async def test_a_batch_stuck_on_a_dependency_is_not_claimed_away_until_handed_back(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    dead_dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    stuck = await start_service(env.settings(dsn=dead_dsn, consumer="stuck", shutdown_grace_s=0.2))
    await push(redis, matches(5))

    async def retrying() -> bool:
        return bool(stuck.health.down)

    await wait_until(retrying, 5, "the first consumer to retry its batch")
    healthy = await start_service(env.settings(consumer="healthy"))
    await asyncio.sleep(1.5)  # several claim_idle_ms (0.4 s): its idle time keeps being reset
    assert healthy.metrics.entries_read.labels("claimed")._value.get() == 0
    assert (await stored(env.dsn))[0] == 0
    await stuck.stop()  # hands the batch back, claimable at once
    await wait_until(lambda: drained(redis), 5, "the healthy consumer to take the batch over")
    assert (await stored(env.dsn))[0] == 5


async def test_consumers_long_gone_are_forgotten(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    await redis.xgroup_create(OUTBOX_STREAM, "persistence", id="$", mkstream=True)
    await redis.xreadgroup("persistence", "gone", {OUTBOX_STREAM: ">"}, count=1)  # registers "gone"
    await start_service(env.settings(prune_idle_ms=0))

    async def forgotten() -> bool:
        names = {c["name"].decode() for c in await redis.xinfo_consumers(OUTBOX_STREAM, "persistence")}
        return "gone" not in names

    await wait_until(forgotten, 5, "the idle consumer with nothing pending to be deleted")
