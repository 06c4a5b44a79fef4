"""``python -m tournaments``: run one tournament director. Signals are handled here only.

Wiring, in dependency order: Redis, HTTP client, node registry and heat placer, director,
then the small HTTP app (``/healthz``, ``/readyz``, ``/metrics``). Stopped in reverse. Run
two or more for fail-over: one leads, the others wait for its lease.
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
from tournaments.director import Director
from tournaments.metrics import DirectorMetrics
from tournaments.settings import DirectorSettings

log = structlog.get_logger(__name__)

DIRECTOR_KEY = web.AppKey("director", Director)


def build_http_app(director: Director) -> web.Application:
    app = web.Application()
    app[DIRECTOR_KEY] = director
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


async def _healthz(request: web.Request) -> web.Response:
    director = request.app[DIRECTOR_KEY]
    if not director.running:
        return web.json_response({"status": "stopped"}, status=503)
    return web.json_response(
        {"status": "ok", "director_id": director.settings.director_id, "leading": director.leading}
    )


async def _readyz(request: web.Request) -> web.Response:
    director = request.app[DIRECTOR_KEY]
    if not director.loops_alive:
        return web.json_response({"ready": False, "reason": "stopped"}, status=503)
    try:
        holder = await director.lease.holder()
    except Exception as exc:
        return web.json_response({"ready": False, "reason": f"redis: {exc}"}, status=503)
    return web.json_response({"ready": True, "leading": director.leading, "leader": holder})


async def _metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[DIRECTOR_KEY].metrics.registry)


async def serve(settings: DirectorSettings) -> None:
    redis = connect(settings.redis)
    http = aiohttp.ClientSession()
    metrics = DirectorMetrics()
    placer = node_placer(redis, http, settings, metrics.placement_failures)
    director = Director(settings, redis, placer, metrics)
    runner = web.AppRunner(build_http_app(director), handle_signals=False)
    try:
        await director.start()
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port, reuse_address=True).start()
        log.info("director_listening", host=settings.host, port=settings.port)
        await until_signal()
        log.info("director_stopping")
        await director.stop()
    finally:
        await runner.cleanup()
        await http.close()
        await redis.aclose()


def main() -> None:
    settings = load_settings(DirectorSettings.from_env)
    configure_logging(settings.log)
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
