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
from persistence.settings import PostgresSettings
from tests.persistence.test_queries import NOON, persist, with_scores


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
