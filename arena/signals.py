"""Signal handling for the processes' ``__main__`` modules (and only there)."""

from __future__ import annotations

import asyncio
import os
import signal

import structlog

log = structlog.get_logger(__name__)


async def until_signal() -> None:
    """Wait for SIGINT or SIGTERM; from then on a second signal exits at once (logged)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, force_exit)


def force_exit() -> None:
    """A second signal while stopping: whoever sent it wants out now, so no clean-up."""
    log.warning("stop_forced", reason="a second signal while stopping")
    os._exit(1)
