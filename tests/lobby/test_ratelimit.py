"""Rate limits per IP and per player: 429 JSON with Retry-After; windows roll over."""

import redis.asyncio as aioredis

from lobby.ratelimit import RateLimiter
from tests.lobby.conftest import LobbyFactory


async def test_per_ip_limit(lobby_factory: LobbyFactory) -> None:
    running = await lobby_factory(rate_per_ip=5, rate_per_player=0)
    api = running.api
    for _ in range(5):
        (await api.call("GET", "/v1/regions")).ok()
    reply = await api.call("GET", "/v1/regions")
    assert reply.status == 429 and reply.body["error"] == "rate_limited" and reply.body["scope"] == "ip"
    assert 1 <= int(reply.headers["Retry-After"]) <= 60
    assert reply.body["retry_after_s"] == int(reply.headers["Retry-After"])
    assert (await api.call("GET", "/healthz")).status == 200  # never limited
    assert (
        running.lobby.metrics.registry.get_sample_value("arena_lobby_rate_limited_total", {"scope": "ip"})
        == 1
    )


async def test_per_player_limit(lobby_factory: LobbyFactory) -> None:
    api = (await lobby_factory(rate_per_ip=100, rate_per_player=3)).api
    ada, bob = (await api.guest("ada"))["token"], (await api.guest("bob"))["token"]
    for _ in range(3):
        (await api.call("GET", "/v1/presence/online", token=ada)).ok()
    reply = await api.call("GET", "/v1/presence/online", token=ada)
    assert reply.status == 429 and reply.body["scope"] == "player" and "Retry-After" in reply.headers
    (await api.call("GET", "/v1/presence/online", token=bob)).ok()  # another player is not affected


async def test_forged_tokens_count_against_the_ip(lobby_factory: LobbyFactory) -> None:
    api = (await lobby_factory(rate_per_ip=3, rate_per_player=100)).api
    statuses = [(await api.call("GET", "/v1/regions", token="forged")).status for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]  # a public route ignores the bad token, the IP pays


async def test_trusted_proxy_header(lobby_factory: LobbyFactory) -> None:
    api = (await lobby_factory(rate_per_ip=2, trusted_proxy_header="X-Forwarded-For")).api
    for client in ("10.0.0.1", "10.0.0.2"):
        for _ in range(2):
            (await api.call("GET", "/v1/regions", headers={"X-Forwarded-For": f"1.2.3.4, {client}"})).ok()
    reply = await api.call("GET", "/v1/regions", headers={"X-Forwarded-For": "10.0.0.1"})
    assert reply.status == 429
    # Off by default: the header is ignored and the peer address counts.
    plain = (await lobby_factory(rate_per_ip=2)).api
    for i in range(2):
        (await plain.call("GET", "/v1/regions", headers={"X-Forwarded-For": f"10.9.9.{i}"})).ok()
    assert (await plain.call("GET", "/v1/regions", headers={"X-Forwarded-For": "10.9.9.9"})).status == 429


async def test_windows_roll_over(redis: aioredis.Redis) -> None:
    now = [1_000_000.0]
    limiter = RateLimiter(redis, per_player=2, per_ip=10, window_s=60, clock=lambda: now[0])
    assert (await limiter.check("1.1.1.1", "p1")).allowed
    assert (await limiter.check("1.1.1.1", "p1")).allowed
    refused = await limiter.check("1.1.1.1", "p1")
    assert not refused.allowed and refused.scope == "player"
    assert refused.retry_after_s == 60 - int(now[0] % 60)  # the rest of this window
    now[0] += refused.retry_after_s
    assert (await limiter.check("1.1.1.1", "p1")).allowed
    assert 60 <= await redis.ttl(f"ratelimit:player:p1:{int(now[0] // 60)}") <= 61


async def test_login_attempts_per_name(lobby_factory: LobbyFactory) -> None:
    api = (await lobby_factory(login_attempts=3)).api
    for name in ("alan", "ada"):
        (await api.call("POST", "/v1/players", body={"name": name, "password": "turing-1912"})).ok(201)
    for _ in range(3):
        reply = await api.call("POST", "/v1/sessions", body={"name": "alan", "password": "guess-guess"})
        assert reply.status == 401
    reply = await api.call("POST", "/v1/sessions", body={"name": "ALAN", "password": "turing-1912"})
    assert reply.status == 429 and reply.body["scope"] == "login" and "Retry-After" in reply.headers
    (await api.call("POST", "/v1/sessions", body={"name": "ada", "password": "turing-1912"})).ok()
