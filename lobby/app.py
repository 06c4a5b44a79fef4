"""Wiring of the lobby: parts created in dependency order, torn down in reverse.

Redis -> ticket store -> node registry view -> HTTP client -> pub/sub notices -> presence
batcher -> rate limiter's sync (their final writes still have Redis) -> the loop-lag probe
(started last, stopped first). The parts that hold nothing to close (accounts, ratings, placer,
private races) are built on these.

One middleware (``lobby.middlewares``) does, in order: metrics (sees every final status), JSON
errors, auth (reads the bearer token), rate limits (counts against the IP, and the player when
known).

Modules: the parts (stores, watchers, batchers) import nothing of ``lobby.context``, whose
``Lobby`` holds them; the handler modules (``*_routes``, ``middlewares`` and the endpoint
modules) read that ``Lobby`` through ``lobby_of``. So the imports run one way, without a cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import asyncpg
import structlog
from aiohttp import web

from arena.events import ChannelEvents
from arena.placement import NodePlacer
from arena.promhttp import metrics_response
from arena.rating import RatingStore
from arena.redisutil import connect
from arena.registry import NodeRegistry
from arena.tickets import TicketStore
from arena.tokens import PlayerTokenCache, TokenSigner
from lobby import (
    auth_routes,
    daily,
    ghosts,
    history,
    presence_routes,
    private_ghosts,
    private_race_routes,
    region_routes,
    replay,
    static,
    tickets,
    typing_tests,
)
from lobby.auth import AccountStore
from lobby.boardcache import BOARD_CACHE_KEY, BoardCache
from lobby.context import LOBBY_KEY, Lobby
from lobby.looplag import LoopLagProbe
from lobby.metrics import LobbyMetrics
from lobby.middlewares import lobby_middleware
from lobby.nodes import NodeWatch
from lobby.presence import PresenceBatcher
from lobby.private_races import PrivateRaceStore
from lobby.ratelimit import RateLimiter
from lobby.settings import LobbySettings
from tournaments import api as tournament_api

log = structlog.get_logger(__name__)

SETTINGS_KEY = web.AppKey("settings", LobbySettings)
METRICS_KEY = web.AppKey("metrics", LobbyMetrics)

MAX_BODY_BYTES = 16 * 1024  # the largest body is a custom race text (2,000 characters)
CLOSE_STEP_S = 5.0  # longest wait for one teardown step


def build_app(settings: LobbySettings, metrics: LobbyMetrics | None = None) -> web.Application:
    metrics = metrics or LobbyMetrics()
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[lobby_middleware(metrics)])
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = metrics
    app.cleanup_ctx.append(_lobby_context)
    tournament_api.setup(app, settings.tournaments)
    router = app.router
    router.add_get("/healthz", _healthz)
    router.add_get("/readyz", _readyz)
    router.add_get("/metrics", _metrics)
    auth_routes.add_routes(router)
    tickets.add_routes(router)
    private_race_routes.add_routes(router)
    private_ghosts.add_routes(router)
    presence_routes.add_routes(router)
    app[BOARD_CACHE_KEY] = BoardCache(settings.board_cache_ms / 1000, app[METRICS_KEY].registry)
    history.add_routes(router)
    typing_tests.add_routes(router)
    replay.setup(app, settings.replay_cache_bytes, app[METRICS_KEY].registry)
    ghosts.setup(app, app[METRICS_KEY].registry)
    daily.setup(app, app[METRICS_KEY].registry)
    static.setup(app)
    region_routes.add_routes(router)
    return app


async def _lobby_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    metrics = app[METRICS_KEY]
    async with AsyncExitStack() as stack:
        redis = connect(settings.redis)
        stack.push_async_callback(redis.aclose)
        ticket_store = TicketStore(redis)
        stack.push_async_callback(_bounded, "tickets", ticket_store.aclose)
        registry = NodeRegistry(redis, stale_after_ms=settings.node_stale_ms)
        node_watch = NodeWatch(registry, redis, refresh_s=settings.node_refresh_s)
        http = aiohttp.ClientSession()
        stack.push_async_callback(http.close)
        # min_size 0: no connection at start, so the lobby serves races while PostgreSQL is down.
        pool = await asyncpg.create_pool(
            settings.postgres.dsn, min_size=0, max_size=settings.postgres.pool_size
        )
        stack.push_async_callback(_bounded, "postgres", pool.close)
        events = ChannelEvents(redis)
        stack.push_async_callback(_bounded, "events", events.aclose)
        batcher = PresenceBatcher(
            redis,
            metrics,
            regions=settings.regions,
            ttl_s=settings.presence_ttl_s,
            flush_s=settings.presence_flush_s,
            max_buffer=settings.presence_max_buffer,
        )
        await batcher.start()
        stack.push_async_callback(_bounded, "presence", batcher.stop)
        limiter = RateLimiter(
            redis,
            per_player=settings.rate_per_player,
            per_ip=settings.rate_per_ip,
            window_s=settings.rate_window_s,
            sync_s=settings.rate_sync_ms / 1000,
        )
        await limiter.start()
        stack.push_async_callback(_bounded, "ratelimit", limiter.stop)
        lag_probe = LoopLagProbe(metrics.loop_lag_seconds)
        await lag_probe.start()
        stack.push_async_callback(_bounded, "looplag", lag_probe.stop)
        signer = TokenSigner(settings.secrets.token_secret)
        player_tokens = PlayerTokenCache(
            signer, max_size=settings.token_cache, idle_s=settings.token_cache_idle_s
        )
        metrics.watch_token_cache(player_tokens.stats)
        app[LOBBY_KEY] = Lobby(
            settings=settings,
            metrics=metrics,
            signer=signer,
            player_tokens=player_tokens,
            redis=redis,
            accounts=AccountStore(redis, scrypt_n=settings.scrypt_n),
            limiter=limiter,
            tickets=ticket_store,
            ratings=RatingStore(redis),
            nodes=node_watch,
            placer=NodePlacer(
                registry,
                http,
                settings.secrets.admin_token,
                timeout_s=settings.node_timeout_s,
                attempts=settings.node_attempts,
            ),
            events=events,
            private_races=PrivateRaceStore(
                redis, events, ttl_s=settings.invite_ttl_s, max_players=settings.private_max_players
            ),
            presence=batcher,
            pool=pool,
        )
        yield


async def _bounded(step: str, close: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run one teardown step with a deadline, so a stuck step cannot hang the whole shutdown.

    Pub/sub readers are stopped by cancel(), and redis-py can swallow a cancel that lands
    mid-read (redis/redis-py#2028); the step is then left behind, logged.
    """
    task = asyncio.create_task(close(), name=f"close-{step}")
    done, _ = await asyncio.wait({task}, timeout=CLOSE_STEP_S)
    if not done:
        log.warning("close_step_timed_out", step=step, timeout_s=CLOSE_STEP_S)
    elif task.exception() is not None:
        log.warning("close_step_failed", step=step, error=repr(task.exception()))


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    lobby = request.app.get(LOBBY_KEY)
    if lobby is None:
        return web.json_response({"ready": False, "reason": "starting"}, status=503)
    if not lobby.presence.running:
        return web.json_response({"ready": False, "reason": "presence batcher stopped"}, status=503)
    try:
        await lobby.redis.ping()
    except Exception as exc:
        return web.json_response({"ready": False, "reason": f"redis: {exc}"}, status=503)
    return web.json_response({"ready": True})


async def _metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[METRICS_KEY].registry)
