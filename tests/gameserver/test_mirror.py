"""The race mirror's live figures: written only when someone moved, at most once per interval.

The tick is driven by hand with made-up instants (no background tasks), against real Redis.
"""

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.clock import now_ms
from arena.ids import NodeId, PlayerId
from arena.protocol import RaceType
from arena.settings import RedisSettings
from arena.tokens import TokenSigner
from gameserver.metrics import NodeMetrics
from gameserver.mirror import RACE_STATE_TTL_S, live_write_due
from gameserver.node import Node, SeatRequest
from gameserver.passages import Corpus
from gameserver.race import Race
from gameserver.settings import NodeSettings, RaceSettings
from tests.gameserver.test_race_flow import CUSTOM

EVERY = 1000


def test_live_write_due_only_after_a_change_and_once_per_interval() -> None:
    assert live_write_due(True, None, 5_000, EVERY)  # never written: at once
    assert not live_write_due(False, None, 5_000, EVERY)  # nothing moved: never
    assert not live_write_due(True, 5_000, 5_999, EVERY)  # moved, but written 999 ms ago
    assert live_write_due(True, 5_000, 6_000, EVERY)
    assert not live_write_due(False, 5_000, 60_000, EVERY)  # a long time, but nothing moved
    assert not live_write_due(True, None, 5_000, 0)  # off


def test_the_interval_is_a_bounded_setting() -> None:
    assert RaceSettings.from_env({}).live_mirror_ms == 1000
    assert RaceSettings.from_env({"ARENA_RACE_LIVE_MIRROR_MS": "250"}).live_mirror_ms == 250
    assert RaceSettings.from_env({"ARENA_RACE_LIVE_MIRROR_MS": "0"}).live_mirror_ms == 0
    for bad in ("-1", "199", "60001"):
        with pytest.raises(ValueError, match="ARENA_RACE_LIVE_MIRROR_MS"):
            RaceSettings.from_env({"ARENA_RACE_LIVE_MIRROR_MS": bad})


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def hand_node(redis: aioredis.Redis, redis_url: str, live_mirror_ms: int = EVERY) -> Node:
    settings = NodeSettings(
        node_id=NodeId("node-mirror"),
        redis=RedisSettings(url=redis_url),
        race=RaceSettings(countdown_s=1.0, live_mirror_ms=live_mirror_ms),
    )
    return Node(settings, redis, Corpus([]), TokenSigner(b"test-secret-0123456789"), NodeMetrics())


async def roster(redis: aioredis.Redis, race: Race) -> Any:
    raw = await redis.hget(keys.race_state(race.id), "roster")
    assert raw is not None
    return json.loads(raw)


async def test_the_tick_writes_live_figures_when_moved_at_most_once_per_interval(
    redis: aioredis.Redis, redis_url: str
) -> None:
    node = hand_node(redis, redis_url)
    t0 = now_ms()
    race, _ = node.create_race(
        RaceType.CUSTOM,
        [SeatRequest(PlayerId("pa"), "ada"), SeatRequest(PlayerId("pb"), "bob")],
        custom_text=CUSTOM,
    )
    ada, _ = race.join(PlayerId("pa"), "ada", t0)
    race.join(PlayerId("pb"), "bob", t0)
    assert race.start_at is not None
    start = race.start_at
    await node.tick(start)  # running: the whole mirror, roster included
    key = keys.race_state(race.id)
    assert await redis.hget(key, "state") == b"running"
    assert [row[4] for row in await roster(redis, race)] == [0, 0]
    assert await redis.ttl(key) > RACE_STATE_TTL_S  # covers the race's time limit too

    def typed(seq: int, upto: int, at: int) -> None:
        before = ada.typing.position
        times = [at - start - 10 * (upto - before - i) for i in range(upto - before)]
        race.apply_input(ada, seq, CUSTOM[before:upto], times, at)

    # A key between whole writes: not before the interval has passed since the last write.
    typed(1, 5, start + 300)
    await node.tick(start + 400)
    assert [row[4] for row in await roster(redis, race)] == [0, 0]
    await node.tick(start + EVERY)
    rows = await roster(redis, race)
    assert [row[4] for row in rows] == [5, 0]
    assert rows[0][5] == pytest.approx(5 * 12_000 / EVERY, abs=0.1) and rows[1][5] == 0.0
    # The rows readers know (spectators' snapshots build PlayerInfo from them), as of the write.
    infos = race.player_infos(start + EVERY)
    assert rows == [[p.id, p.name, p.connected, p.status, p.position, p.wpm, p.place, p.ghost] for p in infos]

    # Nothing moved: no write however long it has been (a planted value stays).
    await redis.hset(key, "roster", "[]")
    await node.tick(start + 3 * EVERY)
    assert await roster(redis, race) == []

    # Moved again: written at the next tick (the last write was long ago), then not again
    # within the interval although ada kept typing.
    typed(2, 8, start + 3 * EVERY + 50)
    await node.tick(start + 3 * EVERY + 100)
    assert [row[4] for row in await roster(redis, race)] == [8, 0]
    typed(3, 12, start + 3 * EVERY + 200)
    await node.tick(start + 4 * EVERY + 99)
    assert [row[4] for row in await roster(redis, race)] == [8, 0]
    await node.tick(start + 4 * EVERY + 100)
    assert [row[4] for row in await roster(redis, race)] == [12, 0]

    # The other fields are the whole write's, untouched by live writes.
    assert int(await redis.hget(key, "version") or 0) == race.version

    # The end is a whole write with the final figures.
    race.abort(start + 5 * EVERY, "test over")
    await node.tick(start + 5 * EVERY)
    assert await redis.hget(key, "state") == b"aborted"
    assert [row[4] for row in await roster(redis, race)] == [12, 0]
    assert 0 < await redis.ttl(key) <= RACE_STATE_TTL_S


async def test_off_means_whole_writes_only(redis: aioredis.Redis, redis_url: str) -> None:
    node = hand_node(redis, redis_url, live_mirror_ms=0)
    t0 = now_ms()
    race, _ = node.create_race(RaceType.CUSTOM, [SeatRequest(PlayerId("pa"), "ada")], custom_text=CUSTOM)
    ada, _ = race.join(PlayerId("pa"), "ada", t0)
    assert race.start_at is not None
    await node.tick(race.start_at)
    race.apply_input(ada, 1, CUSTOM[:4], [10, 20, 30, 40], race.start_at + 100)
    await node.tick(race.start_at + 10 * EVERY)
    assert [row[4] for row in await roster(redis, race)] == [0]
