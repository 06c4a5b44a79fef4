"""Signal handling for the processes' ``__main__`` modules (and only there)."""

from __future__ import annotations

import asyncio
import os
import signal


async def until_signal() -> None:
    """Wait for SIGINT or SIGTERM; from then on a second signal exits at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, os._exit, 1)
