"""Stopping long-lived tasks reliably.

Cancellation alone is not enough: redis-py can swallow a cancel that lands inside a command
(redis/redis-py#2028, #2551), and the loop goes on. So every loop also checks a stop flag,
and ``stop_tasks`` sets it, cancels, and waits up to a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

log = structlog.get_logger(__name__)


async def stop_tasks(
    tasks: Iterable[asyncio.Task[None] | None], stopping: asyncio.Event, timeout_s: float = 5.0
) -> list[asyncio.Task[None]]:
    """Set the flag, cancel, wait; returns the tasks that outlived the deadline (logged)."""
    stopping.set()
    live = [t for t in tasks if t is not None and not t.done()]
    for task in live:
        task.cancel()
    if not live:
        return []
    _, pending = await asyncio.wait(live, timeout=timeout_s)
    if pending:
        log.error("tasks_outlived_stop", tasks=[t.get_name() for t in pending])
    return list(pending)
