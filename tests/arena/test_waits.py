"""``arena.waits``: deadlines that never swallow a cancellation (cpython gh-86296 on 3.10/3.11)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from arena.waits import wait_event, within


async def _cancel_as_it_is_set(wait: Callable[[asyncio.Event], Awaitable[object]]) -> str:
    """Cancel a waiting task in the same loop turn as its event is set: what did the task see?"""

    async def waiter(event: asyncio.Event) -> str:
        try:
            await wait(event)
        except asyncio.CancelledError:
            return "cancelled"
        return "returned"

    event = asyncio.Event()
    task = asyncio.create_task(waiter(event))
    for _ in range(3):
        await asyncio.sleep(0)  # the task is waiting now
    event.set()
    task.cancel()
    return await task


async def test_a_cancellation_with_the_event_set_in_the_same_turn_gets_through() -> None:
    assert await _cancel_as_it_is_set(lambda e: wait_event(e, 10.0)) == "cancelled"
    assert await _cancel_as_it_is_set(lambda e: within(e.wait(), 10.0)) == "cancelled"


async def test_asyncio_wait_for_on_this_python_swallows_it() -> None:
    """Why the module exists (the project runs on 3.11): if this fails, the Python in use has fixed
    ``wait_for`` (3.12 did) and ``arena.waits`` could go."""
    assert await _cancel_as_it_is_set(lambda e: asyncio.wait_for(e.wait(), 10.0)) == "returned"


async def test_deadlines_and_results() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.0) is True  # already set: no wait at all
    assert await within(asyncio.sleep(0, result=7), 1.0) == 7
    with pytest.raises(TimeoutError):
        await within(asyncio.sleep(1.0), 0.01)
    later = asyncio.get_running_loop().call_later(0.01, event.clear)
    assert await wait_event(event, None) is True
    later.cancel()
