"""``arena-gameserver``: run one node. Signals are handled here only."""

from __future__ import annotations

import asyncio
import signal

import structlog
import uvloop
from aiohttp import web

from arena.logs import configure_logging
from arena.settings import environ
from gameserver.app import build_app
from gameserver.settings import NodeSettings

log = structlog.get_logger(__name__)


async def serve(settings: NodeSettings) -> None:
    runner = web.AppRunner(build_app(settings), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=4096, reuse_address=True)
    await site.start()
    log.info("gameserver_listening", node_id=settings.node_id, url=settings.ws_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("gameserver_stopping")
    # A second signal while stopping forces the exit.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: (_ for _ in ()).throw(SystemExit(1)))
    await runner.cleanup()


def main() -> None:
    settings = NodeSettings.from_env(environ())
    configure_logging(settings.log)
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
