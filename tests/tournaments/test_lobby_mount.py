"""The routes mounted on the real lobby app: its tokens work, its rate limits apply, our codes survive."""

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from arena.settings import RedisSettings, SecretSettings
from lobby.app import build_app
from lobby.settings import LobbySettings
from ops.services import free_port
from tests.conftest import ADMIN
from tests.tournaments.conftest import SECRET, TEXT
from tournaments.settings import ApiSettings


@pytest.fixture
async def lobby_url(redis_url: str) -> AsyncIterator[str]:
    settings = LobbySettings(
        port=free_port(),
        scrypt_n=2**8,
        rate_per_player=5,
        redis=RedisSettings(redis_url),
        secrets=SecretSettings(token_secret=SECRET, admin_token=ADMIN),
        tournaments=ApiSettings(
            redis=RedisSettings(redis_url), secrets=SecretSettings(token_secret=SECRET, admin_token=ADMIN)
        ),
    )
    app = build_app(settings)  # the lobby mounts the tournament routes itself
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    yield f"http://127.0.0.1:{settings.port}"
    await runner.cleanup()


async def test_mounted_on_the_lobby(lobby_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        guest = await (await http.post(f"{lobby_url}/v1/guests", json={"name": "ada"})).json()
        auth = {"Authorization": f"Bearer {guest['token']}"}
        body = {
            "name": "cup",
            "type": "instant",
            "race_type": "custom",
            "custom_text": TEXT,
            "max_players": 4,
        }
        created = await http.post(f"{lobby_url}/v1/tournaments", json=body, headers=auth)
        assert created.status == 201, await created.text()
        tid = (await created.json())["id"]
        joined = await http.post(f"{lobby_url}/v1/tournaments/{tid}/registration", headers=auth)
        assert joined.status == 201
        again = await http.post(f"{lobby_url}/v1/tournaments/{tid}/registration", headers=auth)
        assert (again.status, (await again.json())["error"]) == (409, "already_registered")
        missing = await http.get(f"{lobby_url}/v1/tournaments/tnope", headers=auth)
        assert (missing.status, (await missing.json())["error"]) == (404, "tournament_not_found")
        # the lobby's per-player limit (5 a window here) counts these routes like its own
        statuses = [
            (await http.get(f"{lobby_url}/v1/tournaments/{tid}", headers=auth)).status for _ in range(3)
        ]
        assert statuses[-1] == 429
        limited = await http.get(f"{lobby_url}/v1/tournaments/{tid}", headers=auth)
        assert (await limited.json())["error"] == "rate_limited"
