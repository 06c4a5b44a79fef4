"""``arena-gameserver``: run one node. Signals are handled here only.

SIGTERM or SIGINT drains: the node takes no new races and waits for its races to end, up to
``ARENA_NODE_SHUTDOWN_GRACE_S``; races still running then are aborted (their players get
aborted results, the partial results go to the outbox, the drain report counts them), the node
writes the results it still owes, for at most ``ARENA_NODE_RESULTS_WRITE_S``, and exits. A node
loop that dies does the same, and the process then exits with 1; so does a stop that could not
write every result (the races are named in ``results_unwritten_at_stop``). A second signal
skips the wait for the races, not the write. ``POST /admin/drain {"exit": true}`` drains and
exits once every race has ended on its own, however long that takes (a signal during that
wait bounds it by the grace from then). See ``gameserver.drain``.
"""

from __future__ import annotations

import asyncio
import gc
import signal

import structlog
import uvloop
from aiohttp import web

from arena.logs import configure_logging
from arena.startup import load_settings
from gameserver.admin import ListenError
from gameserver.app import NODE_KEY, build_app
from gameserver.listener import NodeSite
from gameserver.settings import NodeSettings
from gameserver.stopping import until_exit

log = structlog.get_logger(__name__)


async def serve(settings: NodeSettings) -> None:
    runner = web.AppRunner(build_app(settings), handle_signals=False)
    await runner.setup()
    site = NodeSite(runner, settings.host, settings.port, backlog=4096, reuse_address=True)
    await site.start()
    # Everything allocated at start-up lives as long as the process: keep the collector off it,
    # and collect the young generation less often (the notes measured 100+ ms pauses otherwise).
    # With these thresholds the oldest generation is in practice never collected on its own: the
    # node collects it every ARENA_NODE_GC_FULL_S, and nothing per socket or race may form a
    # reference cycle (gameserver.memory). What start-up left free is collected and its pages
    # handed back first, so the size the node serves at is what a load returns to.
    node = runner.app[NODE_KEY]
    node.memory.collect("startup")
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    node.metrics.watch_gc()
    admin_url = node.settings.admin_url  # the admin listener's (gameserver.admin)
    log.info("gameserver_listening", node_id=settings.node_id, url=settings.ws_url, admin_url=admin_url)
    signals = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signals.set)
    # A loop that died leaves a node that cannot go on (/readyz already fails): stop as on a signal.
    failed = asyncio.ensure_future(node.failed.wait())
    failed.add_done_callback(lambda _: signals.set())
    await until_exit(node, signals, settings.shutdown_grace_s)
    failed.cancel()
    # Aborts what still runs, writes the results owed (ARENA_NODE_RESULTS_WRITE_S at most),
    # closes the sockets, stops the tasks, writes the drain report.
    await runner.cleanup()
    if node.failure is not None:
        log.error("gameserver_failed", node_id=settings.node_id, failure=node.failure)
        raise SystemExit(1)
    log.info("gameserver_stopped")


def main() -> None:
    settings = load_settings(NodeSettings.from_env)
    configure_logging(settings.log)
    try:
        uvloop.run(serve(settings))
    except ListenError as exc:  # the admin listener's address is taken or not ours
        log.error("listen_failed", error=str(exc))
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
