"""The node's admin listener: its own aiohttp site on its own address, never the players' one.

``ARENA_NODE_ADMIN_HOST`` (loopback by default) and ``ARENA_NODE_ADMIN_PORT`` (the players' port
+ 1000 by default) serve:

- ``POST /admin/races``, ``POST /admin/drain``, ``POST /admin/undrain``, ``GET /admin/status``:
  exactly ``Authorization: Bearer <ARENA_ADMIN_TOKEN>`` (``arena.bearer``), else 401;
- ``GET /metrics`` (Prometheus), ``GET /healthz``, ``GET /readyz``: no token.

The players' listener (``gameserver.app``) serves ``/ws``, ``/healthz`` and ``/readyz`` only, and
answers 404 to ``/admin/*`` and ``/metrics``. The registry publishes this listener's URL
(``NodeInfo.admin_url``): matchmakers, the lobby, the tournament director and ``ops.admin`` use it.

``AdminListener`` binds its socket before the node is made and registers, so a taken port fails
the start at once (``ListenError``) and port 0 (any free port) is known before the registry is
told. It stops when the players' listener does (``on_shutdown``): as the node aborts what still
runs and stops, nobody is served, and ``ops.admin`` reads the node's final drain report.
"""

from __future__ import annotations

import json
import socket
from datetime import date
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from arena.bearer import CHALLENGE, admin_refusal
from arena.clock import now_ms
from arena.codec import load_json
from arena.ids import PlayerId, new_player_id
from arena.promhttp import metrics_response
from arena.protocol import RaceType
from arena.typing_tests import TypingMode
from gameserver.ghost import GhostError
from gameserver.listener import body_deadline, handler_args
from gameserver.node import MoveUnavailable, Node, NodeDraining, NodeExiting, NodeFull, SeatRequest
from gameserver.passages import PassageError
from gameserver.race import HeatTag
from gameserver.settings import NodeSettings

log = structlog.get_logger(__name__)

NODE_KEY = web.AppKey("node", Node)
# The largest body is a race with ghosts: up to 3 keystroke logs (gameserver/ghost.py), each at
# most 12,000 keys and times, ~100 kB of JSON at worst.
MAX_BODY_BYTES = 512 * 1024
STOP_TIMEOUT_S = 2.0  # admin requests in flight get this long when the node stops
BACKLOG = 128


class ListenError(OSError):
    """A listener cannot listen where its settings say; the message names the settings."""


def build_admin_app(node: Node) -> web.Application:
    limits = node.settings.limits  # request head and body deadlines: gameserver.listener
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        handler_args=handler_args(limits),
        middlewares=[_json_not_found, body_deadline(limits.request_body_timeout_s, node.metrics)],
    )
    app[NODE_KEY] = node
    app.router.add_post("/admin/races", _create_race)
    app.router.add_post("/admin/drain", _drain)
    app.router.add_post("/admin/undrain", _undrain)
    app.router.add_get("/admin/status", _status)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class AdminListener:
    """The admin site of one node: ``bind`` (the port is known from then), ``start`` serving,
    ``stop`` (idempotent)."""

    def __init__(self, settings: NodeSettings) -> None:
        self._settings = settings
        self._sock: socket.socket | None = None
        self._runner: web.AppRunner | None = None

    def bind(self) -> int:
        """Bind the socket (``ListenError`` if it cannot); returns the port bound."""
        self._sock = _bind(self._settings.admin_host, self._settings.admin_listen_port)
        port: int = self._sock.getsockname()[1]
        return port

    async def start(self, node: Node) -> None:
        assert self._sock is not None, "bind first"
        runner = web.AppRunner(build_admin_app(node), handle_signals=False, shutdown_timeout=STOP_TIMEOUT_S)
        await runner.setup()
        self._runner = runner
        await web.SockSite(runner, self._sock, backlog=BACKLOG).start()

    async def stop(self) -> None:
        """Stop serving (requests in flight get ``STOP_TIMEOUT_S``) and close the socket."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _bind(host: str, port: int) -> socket.socket:
    where = f"{host}:{port} (ARENA_NODE_ADMIN_HOST, ARENA_NODE_ADMIN_PORT)"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as exc:
        raise ListenError(f"the admin listener cannot resolve {where}: {exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp's own sites
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenError(f"the admin listener cannot listen on {where}: {exc.strerror or exc}") from None
    return sock


@web.middleware
async def _json_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths and methods answer a JSON error like everything else here."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _json_error(404, "not_found", "no such endpoint")
    except web.HTTPMethodNotAllowed as exc:
        return _json_error(405, "method_not_allowed", f"{exc.method} is not allowed here")


# ---- probes and metrics: here and (probes only) on the players' listener ---------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
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


async def metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[NODE_KEY].metrics.registry)


# ---- admin endpoints -------------------------------------------------------------------


def _json_error(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"error": code, "reason": reason}, status=status)


def _require_admin(request: web.Request) -> None:
    """Exactly ``Authorization: Bearer <ARENA_ADMIN_TOKEN>`` (``arena.bearer``), else a JSON 401."""
    expected = request.app[NODE_KEY].settings.secrets.admin_token
    reason = admin_refusal(request.headers.get("Authorization"), expected)
    if reason is not None:
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "unauthorized", "reason": reason}),
            content_type="application/json",
            headers={"WWW-Authenticate": CHALLENGE},
        )



async def _create_race(request: web.Request) -> web.Response:
    """Admin: create a race with reserved seats; returns each seat's tokens.

    Body: {"race_type": "quick", "players": [{"name": "ada", "id"?: "..."}], "custom_text"?: "...",
    "passage_id"?: "q001", "heat"?: {"tournament_id", "round", "heat"}, "ghosts"?: [{"name", "keys",
    "key_times", "race_id", "player_id"}], "daily"?: "YYYY-MM-DD", "test_mode"?: "time-15"}. The
    matchmaker, the lobby (private races, ghost races, daily attempts, typing tests) and the
    tournament director reserve seats through it. A ghost refused is 400 ``bad_ghost``. A typing
    test (``test_mode``, one player) answers its text too.
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
    daily = body.get("daily")
    if daily is not None and not (isinstance(daily, str) and _is_day(daily)):
        return _json_error(400, "bad_daily", "daily must be a day, YYYY-MM-DD")
    test: TypingMode | None = None
    if "test_mode" in body:
        try:
            test = TypingMode.parse(body["test_mode"])
        except ValueError as exc:
            return _json_error(400, "bad_test_mode", str(exc))
    try:
        race, seats = node.create_race(
            race_type,
            requests,
            custom_text=custom_text if isinstance(custom_text, str) else None,
            passage_id=passage_id if isinstance(passage_id, str) else None,
            heat=heat_tag,
            ghosts=body.get("ghosts"),
            daily=daily,
            test=test,
        )
    except NodeDraining:
        return _json_error(503, "draining", "this node takes no new races")
    except NodeFull:  # admission control: its loop lags (gameserver/admission.py); it recovers
        return _json_error(503, "node_full", "this node cannot keep up with its players: no new race")
    except PassageError as exc:
        return _json_error(400, "bad_passage", str(exc))
    except GhostError as exc:
        return _json_error(400, "bad_ghost", str(exc))
    except ValueError as exc:
        return _json_error(400, "bad_request", str(exc))
    # Durable before anyone hears of it: a node dying in the next tick leaves it to a reaper.
    await node.write_definition(race.id)
    answer: dict[str, Any] = {}
    if test is not None:  # the lobby caches a test's content (test:{id}:content)
        answer = {"test_mode": test.name, "text": race.passage.text}
    return web.json_response(
        answer
        | {
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


def _is_day(text: str) -> bool:
    try:
        return len(text) == 10 and date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


async def _drain(request: web.Request) -> web.Response:
    """Drain: no new races; the node's races end on their own time limits (``gameserver.drain``).

    Body (optional) ``{"exit": true}``: the process exits once drained, with no deadline of its
    own, and can no longer be undrained. ``{"move": true}``: the running races are handed to live
    nodes of the region instead (``gameserver.mover``); 409 ``move_unavailable`` without
    checkpoints and adoption. Idempotent: a drain in progress keeps its counts (a move may be
    added to it). Answers 202 with the status (its ``drain`` holds the counts).
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
    move = body.get("move", False)
    if not isinstance(move, bool):
        return _json_error(400, "bad_move", "move must be true or false")
    try:
        await node.drain(exit_after=exit_after, move=move)
    except MoveUnavailable as exc:
        return _json_error(409, "move_unavailable", str(exc))
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
    ``unplayed`` (nobody joined), ``aborted`` (cut by the shutdown), ``moved`` (handed to another
    node by a drain with move), ``running`` (not ended, or
    result not yet written), ``ends_by`` (ms: when those end at the latest on their own).
    ``state``: ready, full (admission control: no new races, gameserver/admission.py), draining
    or drained."""
    live = node.live_races()
    return {
        "node_id": node.settings.node_id,
        "state": ("drained" if live == 0 else "draining") if node.draining else node.info().state,
        "exiting": node.exiting,
        "races": live,
        "players": node.players_seated(),
        "connections": node.connection_count,
        "server_time": now_ms(),
        "shutdown_grace_s": node.settings.shutdown_grace_s,
        "longest_race_s": node.settings.race.longest_race_s,
        "drain": node.drain_view(),
    }
