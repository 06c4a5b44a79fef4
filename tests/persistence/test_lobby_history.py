"""The lobby's read side over HTTP: leaderboards, own rank, recent races, a race's full result."""

import random
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from arena.settings import RedisSettings
from lobby.app import build_app
from lobby.settings import LobbySettings
from ops.services import free_port
from persistence import synthetic
from persistence.consumer import ReadSide
from persistence.leaderboards import LeaderboardWriter
from persistence.ratings import RatingCatchUp
from persistence.recent import RecentCache
from persistence.settings import PostgresSettings, ReadSideSettings
from persistence.store import PostgresStore
from tests.persistence.test_queries import NOON, SETTINGS, persist, with_scores


@pytest.fixture
async def lobby(redis_url: str, pg_dsn: str) -> AsyncIterator[str]:
    settings = LobbySettings(
        port=free_port(), scrypt_n=2**8, redis=RedisSettings(redis_url), postgres=PostgresSettings(dsn=pg_dsn)
    )
    runner = web.AppRunner(build_app(settings), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    yield f"http://127.0.0.1:{settings.port}"
    await runner.cleanup()


async def test_history_endpoints(lobby: str, pool: asyncpg.Pool, redis: aioredis.Redis) -> None:
    rng = random.Random(3)
    race = with_scores(
        synthetic.match(rng, ended_at=NOON, players=["ada", "bob"], race_type="quick"),
        {"ada": (101.0, 97.0), "bob": (88.0, 99.0)},
    )
    await persist(pool, redis, [race])
    async with aiohttp.ClientSession() as http:
        board = await (await http.get(f"{lobby}/v1/leaderboards/quick/alltime?limit=5")).json()
        assert [(e["player_id"], e["rank"], e["wpm"]) for e in board["entries"]] == [
            ("ada", 1, 101.0),
            ("bob", 2, 88.0),
        ]
        rank = await (await http.get(f"{lobby}/v1/leaderboards/quick/alltime/players/bob")).json()
        assert rank["rank"] == 2
        races = await (await http.get(f"{lobby}/v1/players/ada/races")).json()
        assert [r["race_id"] for r in races["races"]] == [race.match_id]
        full = await (await http.get(f"{lobby}/v1/races/{race.match_id}")).json()
        assert [p["player_id"] for p in full["participants"]] == ["ada", "bob"]
        assert full["participants"][0]["keys"] == race.participants[0].keys
        for url, status, code in [
            ("/v1/races/rnope", 404, "race_not_found"),
            ("/v1/leaderboards/quick/hourly", 404, "board_not_found"),
            ("/v1/leaderboards/custom/daily", 404, "board_not_found"),
            ("/v1/leaderboards/quick/alltime/players/zed", 404, "not_ranked"),
            ("/v1/leaderboards/quick/alltime?limit=0", 400, "bad_limit"),
            ("/v1/players/ada/races?limit=x", 400, "bad_limit"),
        ]:
            resp = await http.get(f"{lobby}{url}")
            assert (resp.status, (await resp.json())["error"]) == (status, code), url


async def test_a_provisional_result_is_shown_as_such_and_not_ranked(
    lobby: str, pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    """Placement: ada is a new account whose letter-pair evidence is still short."""
    rng = random.Random(4)
    race = with_scores(
        synthetic.match(rng, ended_at=NOON, players=["ada", "bob"], race_type="quick"),
        {"ada": (101.0, 97.0), "bob": (88.0, 99.0)},
    )
    store = PostgresStore(pool, review=ReadSideSettings())
    written = await store.write([race], short={(race.match_id, "ada")})
    assert written.unranked == {(race.match_id, "ada"): "provisional"} and written.provisional == 1
    readside = ReadSide(
        LeaderboardWriter(redis, SETTINGS), RecentCache(redis, SETTINGS), RatingCatchUp(redis), redis
    )
    await readside.apply([race], unranked=written.unranked)
    async with aiohttp.ClientSession() as http:
        board = await (await http.get(f"{lobby}/v1/leaderboards/quick/alltime?limit=5")).json()
        assert [e["player_id"] for e in board["entries"]] == ["bob"]
        races = await (await http.get(f"{lobby}/v1/players/ada/races")).json()
        assert [(r["race_id"], r["review"]) for r in races["races"]] == [(race.match_id, "provisional")]
        full = await (await http.get(f"{lobby}/v1/races/{race.match_id}")).json()
        reviews = {p["player_id"]: p["review"] for p in full["participants"]}
        assert reviews == {"ada": "provisional", "bob": "clear"}
        async with http.get(f"{lobby}/v1/races/{race.match_id}/replay") as resp:
            assert resp.status == 200 and "no-cache" in resp.headers["Cache-Control"]  # it will change
