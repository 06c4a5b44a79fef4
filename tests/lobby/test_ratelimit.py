"""Rate limits per IP and per player: 429 JSON with Retry-After; windows roll over."""

import asyncio
import socket
import time

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

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


@pytest.mark.redis_cluster  # a script per slice on one Redis, INCRBY each on a cluster
async def test_batched_counting_limits_at_once_and_shares_totals(redis: aioredis.Redis) -> None:
    """Counted in memory, refused without waiting for a sync; a sync writes the hits to Redis,
    and the totals another lobby wrote there count here after the next sync."""
    now = [2_000_000.0]
    here = RateLimiter(redis, per_player=5, per_ip=0, window_s=60, clock=lambda: now[0], sync_s=0.1)
    there = RateLimiter(redis, per_player=5, per_ip=0, window_s=60, clock=lambda: now[0], sync_s=0.1)
    for _ in range(3):
        assert (await here.check("1.1.1.1", "p1")).allowed
    key = f"ratelimit:player:p1:{int(now[0] // 60)}"
    assert await redis.get(key) is None  # nothing written before a sync
    assert await here.sync() == 1
    assert int(await redis.get(key)) == 3
    assert 60 <= await redis.ttl(key) <= 61
    for _ in range(2):
        assert (await there.check("1.1.1.1", "p1")).allowed
    await there.sync()  # Redis: 5
    assert (await here.check("1.1.1.1", "p1")).allowed  # here knows 3 + 1: allowed, 6 in all
    await here.sync()
    refused = await here.check("1.1.1.1", "p1")  # here now knows Redis' 6
    assert not refused.allowed and refused.scope == "player" and refused.retry_after_s >= 1
    assert (await here.check("1.1.1.1", "p2")).allowed  # another player is not affected
    now[0] += 60  # a new window: the last one's counts limit nobody any more
    assert (await here.check("1.1.1.1", "p1")).allowed
    assert await here.sync() == 1 and int(await redis.get(f"ratelimit:player:p1:{int(now[0] // 60)}")) == 1


async def test_batched_counting_exact_on_one_lobby(redis: aioredis.Redis) -> None:
    fixed = 1_800_000_030.0  # a fixed clock: a minute boundary mid-test would start a new window
    limiter = RateLimiter(redis, per_player=0, per_ip=4, window_s=60, sync_s=0.05, clock=lambda: fixed)
    await limiter.start()
    try:
        verdicts = [(await limiter.check("9.9.9.9", None)).allowed for _ in range(6)]
        assert verdicts == [True] * 4 + [False] * 2
        for _ in range(100):  # the sync task writes them within a few periods
            raw = await redis.get(f"ratelimit:ip:9.9.9.9:{int(fixed // 60)}")
            if raw is not None:
                break
            await asyncio.sleep(0.02)
        assert raw is not None and int(raw) == 6
    finally:
        await limiter.stop()
    assert not limiter.running


async def test_batched_sync_failure_keeps_the_hits(redis: aioredis.Redis) -> None:
    # A port bound here but not listening: connecting is refused, and nobody else can take it.
    with socket.socket() as closed:  # closed even when an assertion fails
        closed.bind(("127.0.0.1", 0))
        broken = aioredis.Redis(host="127.0.0.1", port=closed.getsockname()[1], socket_connect_timeout=0.2)
        # A fixed clock: a minute boundary between the checks would start a new window.
        fixed = 1_800_000_030.0
        limiter = RateLimiter(broken, per_player=2, per_ip=0, window_s=60, sync_s=0.1, clock=lambda: fixed)
        try:
            for _ in range(2):
                assert (await limiter.check("1.1.1.1", "p1")).allowed
            with pytest.raises(RedisError):
                await limiter.sync()
            assert not (await limiter.check("1.1.1.1", "p1")).allowed  # the hits stayed counted here
        finally:
            await broken.aclose()


@pytest.mark.redis_cluster  # a script per slice on one Redis, INCRBY each on a cluster
async def test_batched_sync_expires_only_the_counters_it_creates(redis: aioredis.Redis) -> None:
    """The sync that creates a counter gives it its lifetime; later syncs only add to it (one
    command per subject); a counter lost from Redis (a restart) is created with a lifetime again."""
    now = time.time()  # one window throughout, even across a minute boundary
    limiter = RateLimiter(redis, per_player=100, per_ip=0, window_s=60, clock=lambda: now, sync_s=0.1)
    assert (await limiter.check("1.1.1.1", "p1")).allowed
    await limiter.sync()
    key = f"ratelimit:player:p1:{int(now // 60)}"
    first = await redis.pttl(key)
    assert 60_000 <= first <= 61_000
    await asyncio.sleep(0.3)
    assert (await limiter.check("1.1.1.1", "p1")).allowed
    await limiter.sync()
    assert int(await redis.get(key)) == 2
    assert await redis.pttl(key) <= first - 200  # not pushed back by a second EXPIRE
    await redis.delete(key)
    assert (await limiter.check("1.1.1.1", "p1")).allowed
    await limiter.sync()
    assert int(await redis.get(key)) == 1 and 60_000 <= await redis.pttl(key) <= 61_000


async def test_batched_sync_after_redis_lost_its_scripts(redis: aioredis.Redis) -> None:
    """A Redis that lost the sync's script (a restart, SCRIPT FLUSH) answers NOSCRIPT before
    counting anything; the sync loads it and adds the hits once."""
    now = time.time()
    limiter = RateLimiter(redis, per_player=100, per_ip=0, window_s=60, clock=lambda: now, sync_s=0.1)
    assert (await limiter.check("1.1.1.1", "p1")).allowed
    assert await limiter.sync() == 1
    await redis.script_flush()
    assert (await limiter.check("1.1.1.1", "p1")).allowed
    assert await limiter.sync() == 1
    key = f"ratelimit:player:p1:{int(now // 60)}"
    assert int(await redis.get(key)) == 2 and 60_000 <= await redis.pttl(key) <= 61_000


async def test_batched_check_counts_both_subjects_and_names_the_ip_first(redis: aioredis.Redis) -> None:
    fixed = 1_800_000_030.0  # a fixed clock: one window
    window = int(fixed // 60)
    limiter = RateLimiter(redis, per_player=3, per_ip=2, window_s=60, sync_s=0.1, clock=lambda: fixed)
    assert limiter.check_local("1.1.1.1", "p1").allowed
    assert limiter.check_local("1.1.1.1", "p1").allowed
    refused = limiter.check_local("1.1.1.1", "p1")  # the IP's third (limit 2), the player's third (3)
    assert not refused.allowed and refused.scope == "ip" and refused.retry_after_s == 30
    refused = limiter.check_local("2.2.2.2", "p1")  # the player's fourth: the refused one counted too
    assert not refused.allowed and refused.scope == "player"
    assert limiter.check_local("2.2.2.2", "p2").allowed
    assert limiter.check_local("3.3.3.3", None).allowed  # no player: the IP alone
    assert await limiter.sync() == 5
    assert int(await redis.get(f"ratelimit:ip:1.1.1.1:{window}")) == 3
    assert int(await redis.get(f"ratelimit:player:p1:{window}")) == 4
    assert int(await redis.get(f"ratelimit:ip:2.2.2.2:{window}")) == 2
    off = RateLimiter(redis, per_player=0, per_ip=0, window_s=60, sync_s=0.1, clock=lambda: fixed)
    assert all(off.check_local("1.1.1.1", "p1").allowed for _ in range(10))
    assert await off.sync() == 0  # nothing counted
