"""``python -m persistence``: drain the outbox into PostgreSQL and Kafka. Signals are handled here only.

SIGTERM or SIGINT: stop reading, finish the batch in hand (``ARENA_PERSIST_SHUTDOWN_GRACE_S``),
close. A second signal exits at once; unacknowledged entries are claimed by another consumer.
"""

from __future__ import annotations

import asyncio
import signal

import structlog
import uvloop
from aiohttp import web

from arena.logs import configure_logging
from arena.signals import force_exit
from arena.startup import load_settings
from persistence.app import build_app
from persistence.settings import PersistenceSettings

log = structlog.get_logger(__name__)


async def serve(settings: PersistenceSettings) -> None:
    runner = web.AppRunner(build_app(settings), handle_signals=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
    await site.start()
    log.info("persistence_listening", host=settings.host, port=settings.port)
    await stop.wait()
    log.info("persistence_stopping")
    for sig in (signal.SIGINT, signal.SIGTERM):
        # A second signal while stopping forces the exit.
        loop.add_signal_handler(sig, force_exit)
    await runner.cleanup()


def main() -> None:
    settings = load_settings(PersistenceSettings.from_env)
    configure_logging(settings.log)
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
