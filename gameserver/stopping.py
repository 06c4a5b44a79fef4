"""When a node's process stops: an admin drain with exit, or a signal and its grace.

Apart from ``gameserver.drain`` (what became of the races) because it drives the node itself:
the drain's bookkeeping is the node's part, this is the process's (``gameserver.__main__``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import structlog

from gameserver.node import Node

log = structlog.get_logger(__name__)


async def until_exit(node: Node, signals: asyncio.Event, grace_s: float) -> bool:
    """Return when the process should stop; True if every race ended on its own first.

    Waits for an admin drain with exit (``node.exit_requested``) or a signal (``signals``, set
    by ``__main__``). After an admin exit it waits for the races with no deadline of its own.
    From a signal on (the first, or one during that wait) it drains at most ``grace_s``; a
    further signal stops the wait at once. What still runs then is aborted by the shutdown,
    which then has ``ARENA_NODE_RESULTS_WRITE_S`` to write the results (``Node.shutdown``): a
    stop takes at most the grace plus that plus a few seconds for the sockets and tasks.
    """
    waits: list[asyncio.Future[Any]] = []

    def watch(aw: Awaitable[Any]) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.ensure_future(aw)
        waits.append(fut)
        return fut

    try:
        signalled = watch(signals.wait())
        asked = watch(node.exit_requested.wait())
        await asyncio.wait([asked, signalled], return_when=asyncio.FIRST_COMPLETED)
        drained = watch(node.wait_drained())
        if not signalled.done():  # admin drain with exit: the races' own time limits, no more
            await asyncio.wait([drained, signalled], return_when=asyncio.FIRST_COMPLETED)
            if drained.done():
                return True
        signals.clear()
        again = watch(signals.wait())
        await node.drain(exit_after=True, move=node.settings.drain_move)
        node_id = node.settings.node_id
        log.info(
            "shutdown_grace_started",
            node_id=node_id,
            races=node.live_races(),
            grace_s=grace_s,
            results_write_s=node.settings.results_write_s,  # reserved after the grace (Node.shutdown)
        )
        await asyncio.wait([drained, again], timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
        if drained.done():
            return True
        log.warning(
            "shutdown_grace_ended",
            node_id=node_id,
            races_left=node.live_races(),
            second_signal=again.done(),
        )
        return False
    finally:
        for fut in waits:
            fut.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
