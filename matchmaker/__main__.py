"""``python -m matchmaker``: run one matchmaker process. Signals are handled here only.

Wiring, in dependency order: Redis, ticket store, node registry and HTTP client, placer,
matchmaker, then the small HTTP app (``/healthz``, ``/readyz``, ``/metrics``). Stopped in reverse.
"""

from __future__ import annotations

import aiohttp
import structlog
import uvloop
from aiohttp import web

from arena.logs import configure_logging
from arena.placement import node_placer
from arena.promhttp import metrics_response
from arena.redisutil import connect
from arena.signals import until_signal
from arena.startup import load_settings
from arena.tickets import TicketStore
from matchmaker.metrics import MatchmakerMetrics
from matchmaker.service import Matchmaker
from matchmaker.settings import MatchmakerSettings

log = structlog.get_logger(__name__)

MATCHMAKER_KEY = web.AppKey("matchmaker", Matchmaker)


def build_http_app(matchmaker: Matchmaker) -> web.Application:
    app = web.Application()
    app[MATCHMAKER_KEY] = matchmaker
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


async def _healthz(request: web.Request) -> web.Response:
    matchmaker = request.app[MATCHMAKER_KEY]
    if not matchmaker.running:
        return web.json_response({"status": "stopped"}, status=503)
    return web.json_response({"status": "ok", "matchmaker_id": matchmaker.owner})


async def _readyz(request: web.Request) -> web.Response:
    reason = await request.app[MATCHMAKER_KEY].readiness()
    if reason is not None:
        return web.json_response({"ready": False, "reason": reason}, status=503)
    return web.json_response({"ready": True})


async def _metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[MATCHMAKER_KEY].metrics.registry)


async def serve(settings: MatchmakerSettings) -> None:
    redis = connect(settings.redis)
    tickets = TicketStore(redis)
    metrics = MatchmakerMetrics()
    # Enough connections for every batch in flight; requests past it wait for a free one.
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    placer = node_placer(redis, http, settings, metrics.placement_failures)
    matchmaker = Matchmaker(settings, redis, tickets, placer, metrics)
    runner = web.AppRunner(build_http_app(matchmaker), handle_signals=False)
    try:
        await matchmaker.start()
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port, reuse_address=True).start()
        log.info("matchmaker_listening", host=settings.host, port=settings.port)
        await until_signal()
        log.info("matchmaker_stopping")
        await matchmaker.stop()
    finally:
        await runner.cleanup()
        await http.close()
        await tickets.aclose()
        await redis.aclose()


def main() -> None:
    settings = load_settings(MatchmakerSettings.from_env)
    configure_logging(settings.log)
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
