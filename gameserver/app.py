"""Wiring of a gameserver node: parts created in dependency order, torn down in reverse.

Two listeners: this app is the players' one (``ARENA_NODE_HOST``/``PORT``: ``/ws``, ``/healthz``,
``/readyz``); the node's context also runs the admin listener (``gameserver.admin``:
``/admin/*``, ``/metrics``) on its own address, bound before the node registers and stopped
with the players' listener, before the node aborts what still runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from aiohttp import web

from arena.redisutil import connect
from arena.tokens import TokenSigner
from gameserver.admin import NODE_KEY, AdminListener, healthz, readyz
from gameserver.listener import GATE_KEY, ConnectionGate, handler_args
from gameserver.metrics import NodeMetrics
from gameserver.node import Node
from gameserver.passages import Corpus
from gameserver.session import websocket_handler
from gameserver.settings import NodeSettings

__all__ = ["NODE_KEY", "SETTINGS_KEY", "build_app"]

SETTINGS_KEY = web.AppKey("settings", NodeSettings)
ADMIN_KEY = web.AppKey("admin", AdminListener)


def build_app(settings: NodeSettings, corpus: Corpus | None = None) -> web.Application:
    # The request head deadline, every open connection counted: see gameserver.listener.
    app = web.Application(client_max_size=64 * 1024, handler_args=handler_args(settings.limits))
    app[GATE_KEY] = ConnectionGate(settings.limits.max_connections)
    app[SETTINGS_KEY] = settings
    app[ADMIN_KEY] = AdminListener(settings)  # bound and started by the node's context
    app.cleanup_ctx.append(_node_context(settings, corpus))
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/ws", _ws)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    # Not here: the admin listener's. A JSON 404, as for anything unknown to a player.
    app.router.add_route("*", "/admin/{rest:.*}", _not_here)
    app.router.add_route("*", "/metrics", _not_here)
    return app


def _node_context(settings: NodeSettings, corpus: Corpus | None) -> Any:
    async def context(app: web.Application) -> AsyncIterator[None]:
        admin = app[ADMIN_KEY]
        port = admin.bind()  # a taken port fails before anything starts
        redis = connect(settings.redis)
        try:
            # Port 0 (any free one): the node, so the registry, must carry the one bound.
            bound = replace(settings, admin_port=port) if settings.admin_port == 0 else settings
            node = Node(
                settings=bound,
                redis=redis,
                corpus=corpus or Corpus.load(),
                signer=TokenSigner(settings.secrets.token_secret),
                metrics=NodeMetrics(),
            )
            app[GATE_KEY].watch(node.metrics)
            await admin.start(node)  # before the node registers its admin URL
            await node.start()
            app[NODE_KEY] = node
            yield
            await node.stop()
        finally:
            await admin.stop()
            await redis.aclose()

    return context


async def _close_sockets(app: web.Application) -> None:
    """Shutdown: the admin listener stops with the players' one, then abort what still runs
    (results to the outbox) and close every socket. Players' input is not read from the start:
    a saturated node spent the admin listener's stop answering it."""
    node = app.get(NODE_KEY)
    if node is not None:
        node.pause_reading()
    await app[ADMIN_KEY].stop()
    if node is not None:
        await node.shutdown()


async def _ws(request: web.Request) -> web.StreamResponse:
    return await websocket_handler(request, request.app[NODE_KEY])


async def _not_here(request: web.Request) -> web.Response:
    return web.json_response({"error": "not_found", "reason": "no such endpoint"}, status=404)
