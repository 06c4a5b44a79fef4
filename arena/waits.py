"""Waiting with a deadline without losing a cancellation.

On Python 3.10 and 3.11 ``asyncio.wait_for`` swallows a cancellation delivered in the same loop
turn in which its inner awaitable completes (cpython gh-86296; 3.12 rewrote ``wait_for`` on
``asyncio.timeout``): the cancelled task returns normally, a long-lived loop goes round again,
and whoever cancelled it waits forever. ``asyncio.timeout`` (3.11) counts cancellations, so one
from outside always gets through. Every wait with a deadline in the project goes through here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], timeout_s: float | None) -> T:
    """``await awaitable``, raising ``TimeoutError`` (after cancelling it) past ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        return await awaitable


async def wait_event(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until ``event`` is set, at most ``timeout_s`` (None: no limit): True if it was set,
    False on timeout."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True
