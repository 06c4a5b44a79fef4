"""The node's admin endpoints live on their own listener; the players' listener has none of them."""

import socket

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from arena.registry import NodeRegistry
from arena.settings import SettingsError
from gameserver.admin import AdminListener, ListenError
from gameserver.app import build_app
from gameserver.settings import NodeSettings
from tests.conftest import ADMIN, RunningNode

ADMIN_ROUTES = [("POST", "/admin/races"), ("POST", "/admin/drain"), ("POST", "/admin/undrain"),
                ("GET", "/admin/status")]  # fmt: skip
AUTH = {"Authorization": f"Bearer {ADMIN}"}
DEV = {"ARENA_ENV": "development"}


async def test_the_players_listener_answers_404_to_admin_routes_and_metrics(node: RunningNode) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as http:  # even with the right token
        for method, path in [*ADMIN_ROUTES, ("GET", "/admin/"), ("GET", "/admin/x/y"), ("GET", "/metrics")]:
            async with http.request(method, node.http_url + path, json={"players": [{"name": "x"}]}) as resp:
                assert resp.status == 404, (method, path)
                assert await resp.json() == {"error": "not_found", "reason": "no such endpoint"}
        for path in ("/healthz", "/readyz"):  # where probes look
            async with http.get(node.http_url + path) as resp:
                assert resp.status == 200, path
    assert node.node.live_races() == 0 and not node.node.draining  # nothing was created, nothing drained


async def test_the_admin_listener_serves_admin_metrics_and_probes(node: RunningNode, redis_url: str) -> None:
    assert node.admin_url.startswith("http://127.0.0.1:")  # internal by default
    assert node.admin_url != node.http_url
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(node.admin_url + "/admin/status") as resp:
            assert resp.status == 200 and (await resp.json())["state"] == "ready"
        for path in ("/metrics", "/healthz", "/readyz"):  # no token needed
            async with http.get(node.admin_url + path, headers={"Authorization": ""}) as resp:
                assert resp.status == 200, path
        async with http.get(node.admin_url + "/nothing") as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "not_found"
        async with http.delete(node.admin_url + "/admin/status") as resp:
            assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
    redis = aioredis.Redis.from_url(redis_url)
    try:
        entry = await NodeRegistry(redis).get("node-a")
    finally:
        await redis.aclose()
    assert entry is not None and entry.admin_url == node.admin_url and entry.http_url == node.http_url


@pytest.mark.parametrize(
    "header",
    [None, ADMIN, f"Basic {ADMIN}", f"Bearer  {ADMIN}", f"Bearer\t{ADMIN}", f"Bearer {ADMIN}x",
     f"Bearer: {ADMIN}", f"Bearer {ADMIN},x", "Bearer dev-admin-token", ""],
    ids=["missing", "raw", "basic", "two-spaces", "tab", "wrong", "colon", "garbage", "dev-default", "empty"],
)  # fmt: skip
async def test_admin_endpoints_refuse_anything_but_exactly_the_bearer_token(
    node: RunningNode, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    async with aiohttp.ClientSession() as http:
        for method, path in ADMIN_ROUTES:
            async with http.request(method, node.admin_url + path, headers=headers) as resp:
                assert resp.status == 401, (method, path)
                body = await resp.json()
                assert body["error"] == "unauthorized" and body["reason"], body
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert not node.node.draining


async def test_the_scheme_is_case_insensitive(node: RunningNode) -> None:
    headers, url = {"Authorization": f"bEARER {ADMIN}"}, node.admin_url + "/admin/status"
    async with aiohttp.ClientSession(headers=headers) as http, http.get(url) as resp:
        assert resp.status == 200


async def test_a_taken_admin_port_fails_the_start_clearly(redis_url: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        named = r"127\.0\.0\.1:\d+ \(ARENA_NODE_ADMIN_HOST, ARENA_NODE_ADMIN_PORT\)"
        with pytest.raises(ListenError, match=named):
            AdminListener(NodeSettings(port=1024, admin_port=taken)).bind()
        settings = NodeSettings(port=0, admin_port=taken)
        runner = web.AppRunner(build_app(settings), handle_signals=False)
        with pytest.raises(ListenError):
            await runner.setup()  # before the node starts: nothing registered
        await runner.cleanup()
    redis = aioredis.Redis.from_url(redis_url)
    try:
        assert await NodeRegistry(redis).live_nodes() == []
    finally:
        await redis.aclose()


def test_admin_listener_settings() -> None:
    d = NodeSettings.from_env(DEV)
    assert (d.host, d.admin_host, d.port, d.admin_listen_port) == ("127.0.0.1", "127.0.0.1", 8100, 9100)
    assert d.admin_url == "http://127.0.0.1:9100" and d.http_url == "http://127.0.0.1:8100"
    s = NodeSettings.from_env(DEV | {"ARENA_NODE_PORT": "8200", "ARENA_NODE_ADMIN_HOST": "10.0.0.5"})
    assert s.admin_url == "http://10.0.0.5:9200"
    s = NodeSettings.from_env(DEV | {"ARENA_NODE_ADMIN_PORT": "7000", "ARENA_NODE_ADMIN_URL": "http://node-a.internal:7000"})
    assert s.admin_listen_port == 7000 and s.admin_url == "http://node-a.internal:7000"
    assert NodeSettings.from_env(DEV | {"ARENA_NODE_ADMIN_PORT": "0"}).admin_listen_port == 0
    for env, message in [
        ({"ARENA_NODE_ADMIN_PORT": "8100"}, "must differ from ARENA_NODE_PORT"),
        ({"ARENA_NODE_PORT": "65000"}, "ARENA_NODE_ADMIN_PORT must be 0 to 65535"),
        ({"ARENA_NODE_ADMIN_PORT": "nine"}, "ARENA_NODE_ADMIN_PORT must be an integer"),
    ]:
        with pytest.raises(SettingsError, match=message):
            NodeSettings.from_env(DEV | env)  # refused for env, not its secrets
