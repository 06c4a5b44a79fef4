"""Wiring of a gameserver node: parts created in dependency order, torn down in reverse."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from arena.clock import now_ms
from arena.codec import load_json
from arena.ids import PlayerId, new_player_id
from arena.promhttp import metrics_response
from arena.protocol import RaceType
from arena.redisutil import connect
from arena.tokens import TokenSigner
from gameserver.metrics import NodeMetrics
from gameserver.node import Node, NodeDraining, NodeExiting, SeatRequest
from gameserver.passages import Corpus, PassageError
from gameserver.race import HeatTag
from gameserver.session import websocket_handler
from gameserver.settings import NodeSettings

NODE_KEY = web.AppKey("node", Node)
SETTINGS_KEY = web.AppKey("settings", NodeSettings)


def build_app(settings: NodeSettings, corpus: Corpus | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[SETTINGS_KEY] = settings
    app.cleanup_ctx.append(_node_context(settings, corpus))
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/ws", _ws)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/admin/races", _create_race)
    app.router.add_post("/admin/drain", _drain)
    app.router.add_post("/admin/undrain", _undrain)
    app.router.add_get("/admin/status", _status)
    return app


def _node_context(settings: NodeSettings, corpus: Corpus | None) -> Any:
    async def context(app: web.Application) -> AsyncIterator[None]:
        redis = connect(settings.redis)
        node = Node(
            settings=settings,
            redis=redis,
            corpus=corpus or Corpus.load(),
            signer=TokenSigner(settings.secrets.token_secret),
            metrics=NodeMetrics(),
        )
        try:
            await node.start()
            app[NODE_KEY] = node
            yield
            await node.stop()
        finally:
            await redis.aclose()

    return context


async def _close_sockets(app: web.Application) -> None:
    """Shutdown: abort what still runs (results to the outbox), then close every socket."""
    node = app.get(NODE_KEY)
    if node is not None:
        await node.shutdown()


def _json_error(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"error": code, "reason": reason}, status=status)


def _require_admin(request: web.Request) -> None:
    expected = request.app[SETTINGS_KEY].secrets.admin_token
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise web.HTTPUnauthorized(
            text='{"error":"unauthorized","reason":"admin token required"}', content_type="application/json"
        )


async def _ws(request: web.Request) -> web.StreamResponse:
    return await websocket_handler(request, request.app[NODE_KEY])


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    if not node.loops_alive:
        return web.json_response({"ready": False, "reason": "node loops stopped"}, status=503)
    try:
        await node.redis.ping()
    except Exception as exc:
        return web.json_response({"ready": False, "reason": f"redis: {exc}"}, status=503)
    if node.draining:
        return web.json_response({"ready": False, "reason": "draining"}, status=503)
    return web.json_response({"ready": True})


async def _metrics(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    return metrics_response(node.metrics.registry)


async def _create_race(request: web.Request) -> web.Response:
    """Admin: create a race with reserved seats; returns each seat's tokens.

    Body: {"race_type": "quick", "players": [{"name": "ada", "id"?: "..."}], "custom_text"?: "...",
    "passage_id"?: "q001", "heat"?: {"tournament_id", "round", "heat"}}. The matchmaker, the
    lobby (private races) and the tournament director reserve seats through it.
    """
    _require_admin(request)
    node = request.app[NODE_KEY]
    try:
        body = load_json(await request.read())
    except ValueError:
        return _json_error(400, "bad_json", "body must be JSON")
    if not isinstance(body, dict):
        return _json_error(400, "bad_request", "body must be an object")
    try:
        race_type = RaceType(body.get("race_type", "quick"))
    except ValueError:
        return _json_error(400, "bad_race_type", f"race_type must be one of {[t.value for t in RaceType]}")
    players = body.get("players")
    if not isinstance(players, list) or not all(isinstance(p, dict) for p in players):
        return _json_error(400, "bad_players", "players must be a list of objects")
    requests = []
    for p in players:
        name = p.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            return _json_error(400, "bad_name", "each player needs a name of 1 to 32 characters")
        pid = p.get("id")
        requests.append(SeatRequest(PlayerId(pid) if isinstance(pid, str) and pid else new_player_id(), name))
    custom_text = body.get("custom_text")
    passage_id = body.get("passage_id")
    heat = body.get("heat")
    heat_tag = None
    if heat is not None:
        try:
            heat_tag = HeatTag(str(heat["tournament_id"]), int(heat["round"]), int(heat["heat"]))
        except (TypeError, KeyError, ValueError):
            return _json_error(400, "bad_heat", "heat must be {tournament_id, round, heat}")
    try:
        race, seats = node.create_race(
            race_type,
            requests,
            custom_text=custom_text if isinstance(custom_text, str) else None,
            passage_id=passage_id if isinstance(passage_id, str) else None,
            heat=heat_tag,
        )
    except NodeDraining:
        return _json_error(503, "draining", "this node takes no new races")
    except PassageError as exc:
        return _json_error(400, "bad_passage", str(exc))
    except ValueError as exc:
        return _json_error(400, "bad_request", str(exc))
    return web.json_response(
        {
            "race_id": race.id,
            "node_id": node.settings.node_id,
            "url": node.settings.ws_url,
            "race_type": race.race_type.value,
            "passage_id": race.passage.id,
            "seats": [
                {"player_id": s.player_id, "name": s.name, "player_token": s.player_token, "ticket": s.ticket}
                for s in seats
            ],
        },
        status=201,
    )


async def _drain(request: web.Request) -> web.Response:
    """Drain: no new races; the node's races end on their own time limits (``gameserver.drain``).

    Body (optional) ``{"exit": true}``: the process exits once drained, with no deadline of its
    own, and can no longer be undrained. Idempotent: a drain in progress keeps its counts.
    Answers 202 with the status (its ``drain`` holds the counts).
    """
    _require_admin(request)
    node = request.app[NODE_KEY]
    try:
        body = load_json(await request.read()) if request.can_read_body else {}
    except ValueError:
        return _json_error(400, "bad_json", "body must be JSON or empty")
    if not isinstance(body, dict):
        return _json_error(400, "bad_request", "body must be an object")
    exit_after = body.get("exit", False)
    if not isinstance(exit_after, bool):
        return _json_error(400, "bad_exit", "exit must be true or false")
    await node.drain(exit_after=exit_after)
    return web.json_response(_status_body(node), status=202)


async def _undrain(request: web.Request) -> web.Response:
    """Undo a drain: the node takes races again (ready, and READY in the registry).

    409 ``exiting`` if the node drains to exit (``{"exit": true}`` or a signal): it cannot stay.
    Undraining a node that is not draining answers its status too.
    """
    _require_admin(request)
    node = request.app[NODE_KEY]
    try:
        await node.undrain()
    except NodeExiting:
        return _json_error(
            409, "exiting", "the node is exiting (drain with exit, or a signal) and cannot return to service"
        )
    return web.json_response(_status_body(node))


async def _status(request: web.Request) -> web.Response:
    _require_admin(request)
    return web.json_response(_status_body(request.app[NODE_KEY]))


def _status_body(node: Node) -> dict[str, Any]:
    """``drain``: null, or counts since the drain began: ``finished`` (ended on their own),
    ``unplayed`` (nobody joined), ``aborted`` (cut by the shutdown), ``running`` (not ended, or
    result not yet written), ``ends_by`` (ms: when those end at the latest on their own)."""
    live = node.live_races()
    return {
        "node_id": node.settings.node_id,
        "state": ("drained" if live == 0 else "draining") if node.draining else "ready",
        "exiting": node.exiting,
        "races": live,
        "players": node.players_seated(),
        "connections": node.connection_count,
        "server_time": now_ms(),
        "shutdown_grace_s": node.settings.shutdown_grace_s,
        "longest_race_s": node.settings.race.longest_race_s,
        "drain": node.drain_view(),
    }
