"""``arena-lobby`` / ``python -m lobby``: run the HTTP front door. Signals are handled here only."""

from __future__ import annotations

import structlog
import uvloop
from aiohttp import web

from arena.logs import configure_logging
from arena.signals import until_signal
from arena.startup import load_settings
from lobby import collector
from lobby.app import METRICS_KEY, build_app
from lobby.settings import LobbySettings

log = structlog.get_logger(__name__)


async def serve(settings: LobbySettings) -> None:
    # Requests in flight (long-polls above all) get shutdown_grace_s to answer on shutdown.
    runner = web.AppRunner(
        build_app(settings), handle_signals=False, shutdown_timeout=settings.shutdown_grace_s
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=4096, reuse_address=True)
        await site.start()
        # Start-up is done: its heap is frozen out of the collector's walks (lobby/collector.py).
        runner.app[METRICS_KEY].watch_gc()
        collector.tune(settings.gc_freeze, settings.gc_young)
        log.info("lobby_listening", host=settings.host, port=settings.port, regions=list(settings.regions))
        await until_signal()
        log.info("lobby_stopping")
    finally:
        await runner.cleanup()
    log.info("lobby_stopped")


def main() -> None:
    settings = load_settings(LobbySettings.from_env)
    configure_logging(settings.log)
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
