"""The app as a whole: JSON errors everywhere, health, readiness, regions, metrics, settings."""

import re
from pathlib import Path

import pytest
from aiohttp import web

from arena.settings import RedisSettings, SettingsError
from lobby.app import build_app
from lobby.settings import LobbySettings
from ops.services import free_port
from tests.conftest import NodeFactory
from tests.lobby.conftest import Api, LobbyFactory


async def test_unknown_routes_and_methods_are_json(api: Api) -> None:
    for path in ("/nope", "/v1/nope", "/v1/tickets"):
        reply = await api.call("GET", path)
        expected = 405 if path == "/v1/tickets" else 404
        assert reply.status == expected and reply.body["error"] in ("not_found", "method_not_allowed")
        assert reply.body["reason"]
    reply = await api.call("PUT", "/v1/guests", body={"name": "x"})
    assert (
        reply.status == 405
        and reply.body["error"] == "method_not_allowed"
        and "POST" in reply.headers["Allow"]
    )


async def test_body_too_large_is_json(api: Api) -> None:
    reply = await api.call("POST", "/v1/guests", raw=b'{"name": "' + b"x" * 40_000 + b'"}')
    assert reply.status == 413 and reply.body["error"] == "body_too_large"


async def test_unexpected_errors_are_json_500s(lobby_factory: LobbyFactory) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    api = (await lobby_factory(app_hook=lambda app: app.router.add_get("/v1/broken", broken))).api
    reply = await api.call("GET", "/v1/broken")
    assert reply.status == 500 and reply.body == {"error": "internal", "reason": "internal error"}


async def test_redis_down_is_a_json_503(lobby_factory: LobbyFactory) -> None:
    api = (await lobby_factory(redis=RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0"))).api
    token = (await api.guest())["token"]  # needs no Redis
    reply = await api.call("POST", "/v1/tickets", token=token, body={"race_type": "quick", "region": "local"})
    assert reply.status == 503 and reply.body["error"] == "unavailable"
    assert (await api.call("GET", "/readyz")).status == 503
    assert (await api.call("GET", "/healthz")).status == 200


async def test_health_regions_and_metrics(lobby_factory: LobbyFactory, node_factory: NodeFactory) -> None:
    running = await lobby_factory(regions=("local", "eu"))
    api = running.api
    await node_factory(node_id="node-r", region="local")
    assert (await api.call("GET", "/healthz")).ok() == {"status": "ok"}
    assert (await api.call("GET", "/readyz")).ok() == {"ready": True}
    regions = (await api.call("GET", "/v1/regions")).ok()["regions"]
    assert regions == [
        {"id": "local", "nodes": 1, "accepting": True},
        {"id": "eu", "nodes": 0, "accepting": False},
    ]
    token = (await api.guest())["token"]
    await api.call("GET", "/v1/tickets/quick.local.0123456789abcdef", token=token)
    text = (await api.call("GET", "/metrics")).body
    assert 'arena_lobby_requests_total{method="GET",route="/v1/tickets/{ticket_id}",status="404"} 1.0' in text
    assert 'arena_lobby_requests_total{method="POST",route="/v1/guests",status="201"} 1.0' in text
    assert "arena_lobby_request_duration_seconds_bucket" in text


def test_settings_from_env() -> None:
    s = LobbySettings.from_env(
        {
            "ARENA_LOBBY_PORT": "9000",
            "ARENA_LOBBY_REGIONS": "eu, us,,ap",
            "ARENA_LOBBY_RATE_PER_PLAYER": "50",
            "ARENA_LOBBY_RATE_PER_IP": "0",
            "ARENA_LOBBY_TRUSTED_PROXY_HEADER": "X-Real-IP",
            "ARENA_RACE_MAX_PLAYERS": "8",
            "ARENA_LOBBY_TOKEN_CACHE": "0",
            "ARENA_LOBBY_REPLAY_CACHE_BYTES": "0",
            "ARENA_LOBBY_BOARD_CACHE_MS": "250",
            "ARENA_LOBBY_TOKEN_CACHE_IDLE_S": "90",
            "ARENA_ENV": "development",
        }
    )
    assert s.port == 9000 and s.regions == ("eu", "us", "ap")
    assert s.rate_per_player == 50 and s.rate_per_ip == 0 and s.trusted_proxy_header == "X-Real-IP"
    assert s.private_max_players == 8 and s.token_cache == 0 and s.replay_cache_bytes == 0
    assert s.board_cache_ms == 250 and s.token_cache_idle_s == 90.0
    d = LobbySettings()
    assert d.token_cache_idle_s == 300.0
    assert d.token_cache == 100_000 and d.replay_cache_bytes == 32 * 1024 * 1024 and d.board_cache_ms == 1000
    assert (d.rate_per_player, d.rate_per_ip, d.rate_window_s, d.trusted_proxy_header) == (100, 1000, 60, "")
    for env in (
        {"ARENA_LOBBY_PORT": "eighty"},
        {"ARENA_LOBBY_REGIONS": " , "},
        {"ARENA_LOBBY_SCRYPT_N": "1000"},
        {"ARENA_LOBBY_PRESENCE_FLUSH_S": "600"},
        {"ARENA_LOBBY_RATE_PER_IP": "-1"},
        {"ARENA_LOBBY_TOKEN_CACHE": "-1"},
        {"ARENA_LOBBY_REPLAY_CACHE_BYTES": "-1"},
        {"ARENA_LOBBY_BOARD_CACHE_MS": "-1"},
        {"ARENA_LOBBY_BOARD_CACHE_MS": "60001"},
        {"ARENA_LOBBY_TOKEN_CACHE_IDLE_S": "5"},
    ):
        with pytest.raises(SettingsError):
            LobbySettings.from_env({"ARENA_ENV": "development", **env})  # refused for env, not secrets


def test_openapi_lists_every_route() -> None:
    """docs/openapi.yaml and the router agree on the paths (HEAD aside, aiohttp adds it to GETs)."""
    spec = (Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text()
    documented = set(re.findall(r"^  (/\S*):$", spec, flags=re.MULTILINE))
    app = build_app(LobbySettings())
    served = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert documented == served
