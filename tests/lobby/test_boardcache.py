"""Leaderboard pages answered from memory for at most ARENA_LOBBY_BOARD_CACHE_MS after their read."""

import asyncio
from datetime import date

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from lobby.boardcache import BoardCache
from persistence.leaderboards import Timeframe, board_key, score
from tests.lobby.conftest import LobbyFactory


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_page_lives_ttl_from_its_read_then_misses() -> None:
    clock = Clock()
    registry = CollectorRegistry()
    cache = BoardCache(1.0, registry, clock)
    assert cache.get("quick", "daily", 10) is None
    read_at = cache.now()
    clock.now += 0.4  # the read took this long: the bound still counts from its start
    cache.put("quick", "daily", 10, '{"entries": []}', read_at)
    assert cache.get("quick", "daily", 10) == '{"entries": []}'
    assert cache.get("quick", "daily", 5) is None  # another limit is another page
    assert cache.get("quick", "weekly", 10) is None
    clock.now = read_at + 0.999
    assert cache.get("quick", "daily", 10) == '{"entries": []}'
    clock.now = read_at + 1.0
    assert cache.get("quick", "daily", 10) is None
    hits = registry.get_sample_value("arena_lobby_board_cache_lookups_total", {"result": "hit"})
    misses = registry.get_sample_value("arena_lobby_board_cache_lookups_total", {"result": "miss"})
    assert (hits, misses) == (2, 4)


def test_off_keeps_nothing() -> None:
    cache = BoardCache(0, CollectorRegistry(), Clock())
    cache.put("quick", "daily", 10, "{}", cache.now())
    assert cache.get("quick", "daily", 10) is None


async def test_the_lobby_serves_a_board_at_most_ttl_stale(
    lobby_factory: LobbyFactory, redis: aioredis.Redis
) -> None:
    running = await lobby_factory(board_cache_ms=300)
    key = board_key("quick", Timeframe.ALLTIME, date.today())
    await redis.zadd(key, {"ada": score(101.0, 97.0)})
    path = "/v1/leaderboards/quick/alltime?limit=5"
    first = (await running.api.call("GET", path)).ok()
    assert [e["player_id"] for e in first["entries"]] == ["ada"]
    await redis.zadd(key, {"bob": score(120.0, 99.0)})
    assert (await running.api.call("GET", path)).ok() == first  # within the bound: the page read before
    fresh = (await running.api.call("GET", "/v1/leaderboards/quick/alltime?limit=4")).ok()
    assert [e["player_id"] for e in fresh["entries"]] == ["bob", "ada"]  # another page: read now
    await asyncio.sleep(0.35)
    later = (await running.api.call("GET", path)).ok()
    assert [(e["player_id"], e["rank"]) for e in later["entries"]] == [("bob", 1), ("ada", 2)]
