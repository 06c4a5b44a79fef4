"""Typing tests over HTTP (issue 16): create one, read its content and result, a player's history
and bests.

- ``POST /v1/tests {"mode", "region"?}``: no matchmaking: the test is placed at once on the node
  with the most free seats of the region (``NodePlacer``, as private races), and the answer holds
  the join assignment and the text. The content is cached for 24 h (``test:{id}:content``).
- ``GET /v1/tests/{test_id}``: the content (from the cache) and, once persistence stored it, the
  result with its percentile among the mode's counted results of the last 7 days.
- ``GET /v1/players/{player_id}/tests?limit=&mode=&before_ms=&before_id=``: newest first; the
  first page of 10 or fewer from the recent-results cache when it is full, the rest from PostgreSQL.
- ``GET /v1/players/{player_id}/tests/bests``: the best counted result of each mode.

Results are public, like race results; creating a test needs a player token.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import structlog
from aiohttp import web

from arena import keys
from arena.clock import now_ms
from arena.placement import SeatRequest
from arena.redisutil import as_text
from arena.typing_tests import MODE_NAMES, TypingMode
from lobby.auth import require_player
from lobby.bodies import opt_str, read_object
from lobby.context import lobby_of
from lobby.errors import ApiError, bad_request
from lobby.history import MAX_INSTANT_MS, MAX_PAGE, POSTGRES_DOWN, _int_param, _unavailable
from lobby.nodes import AssignmentView
from persistence import test_results
from persistence.test_results import TestSummary

log = structlog.get_logger(__name__)

CONTENT_TTL_S = 24 * 3600  # seed 002: test content is cached for 24 h
MAX_ID_CHARS = 64  # test ids are a few dozen characters; anything longer is nobody's


def _summary(s: TestSummary) -> dict[str, Any]:
    return dataclasses.asdict(s)


def _test_id(request: web.Request) -> str:
    test_id = request.match_info["test_id"]
    if not 1 <= len(test_id) <= MAX_ID_CHARS:
        raise ApiError(404, "test_not_found", "no typing test with this id")
    return test_id


async def create_test(request: web.Request) -> web.Response:
    lobby = lobby_of(request)
    player = require_player(request)
    data = await read_object(request)
    try:
        mode = TypingMode.parse(data.get("mode"))
    except ValueError as exc:
        raise bad_request("bad_mode", str(exc)) from None
    s = lobby.settings
    region = opt_str(data, "region", max_len=32) or s.regions[0]
    if region not in s.regions:
        raise bad_request("unknown_region", f"region must be one of {list(s.regions)}")
    placed = await lobby.placer.place(
        "custom", [region], [SeatRequest(player.player_id, player.name)], test_mode=mode.name
    )
    if placed is None:
        lobby.metrics.typing_tests.labels("no_node").inc()
        raise ApiError(
            503, "no_node", f"no node in {region} can take a test now; retry", headers={"Retry-After": "2"}
        )
    seat = placed.seats[player.player_id]
    created = now_ms()
    content = {"test_id": placed.race_id, "mode": mode.name, "text": placed.text, "created_at": created}
    await lobby.redis.set(keys.test_content(placed.race_id), json.dumps(content), ex=CONTENT_TTL_S)
    lobby.metrics.typing_tests.labels("created").inc()
    log.debug("typing_test_created", test_id=placed.race_id, mode=mode.name, node_id=placed.node_id)
    assignment = AssignmentView(
        placed.race_id, placed.node_id, placed.url, seat.player_token, seat.join_ticket, placed.region
    )
    return web.json_response(content | {"assignment": dataclasses.asdict(assignment)}, status=201)


async def get_test(request: web.Request) -> web.Response:
    lobby = lobby_of(request)
    test_id = _test_id(request)
    raw = await lobby.redis.get(keys.test_content(test_id))
    content: dict[str, Any] | None = json.loads(as_text(raw)) if raw is not None else None
    try:
        stored = await test_results.result(lobby.pool, test_id)
    except POSTGRES_DOWN as exc:
        raise _unavailable(exc) from None
    if content is None and stored is None:
        raise ApiError(404, "test_not_found", "no typing test with this id (content is kept 24 h)")
    body: dict[str, Any] = {
        "test_id": test_id,
        "mode": stored.summary.mode if stored is not None else content["mode"] if content else None,
        "text": content["text"] if content is not None else None,
        "result": None,
    }
    if stored is not None:
        result = _summary(stored.summary) | {
            "player_id": stored.player_id,
            "name": stored.name,
            "state": stored.state,
            "flags": stored.flags,
            "percentile": None,
            "window_results": 0,
        }
        if stored.counted:  # a flagged or unfinished test is ranked against nobody
            pct, total = await test_results.percentile(
                lobby.redis, stored.summary.mode, stored.summary.wpm, now_ms()
            )
            result |= {"percentile": pct, "window_results": total}
        body["result"] = result
    return web.json_response(body)


async def player_tests(request: web.Request) -> web.Response:
    lobby = lobby_of(request)
    player_id = request.match_info["player_id"]
    limit = _int_param(request, "limit", 10, 1, MAX_PAGE)
    mode = request.query.get("mode")
    if mode is not None and mode not in MODE_NAMES:
        raise bad_request("bad_mode", f"mode must be one of {list(MODE_NAMES)}")
    before_id = request.query.get("before_id", "\uffff")  # none: everything at before_ms too
    if len(before_id) > MAX_ID_CHARS:
        raise bad_request("bad_before_id", f"before_id must be at most {MAX_ID_CHARS} characters")
    before: tuple[int, str] | None = None
    if "before_ms" in request.query:
        before = (_int_param(request, "before_ms", 0, 0, MAX_INSTANT_MS), before_id)
    tests: list[TestSummary] | None = None
    keep = lobby.settings.read_side.recent_keep
    if before is None and mode is None and limit <= keep:
        cached = await test_results.recent(lobby.redis, player_id, keep)
        tests = cached[:limit] if cached is not None else None
    if tests is None:
        try:
            tests = await test_results.history(lobby.pool, player_id, limit, before=before, mode=mode)
        except POSTGRES_DOWN as exc:
            raise _unavailable(exc) from None
    body: dict[str, Any] = {"tests": [_summary(t) for t in tests]}
    if len(tests) == limit:
        body["next"] = {"before_ms": tests[-1].ended_at, "before_id": tests[-1].test_id}
    return web.json_response(body)


async def player_bests(request: web.Request) -> web.Response:
    lobby = lobby_of(request)
    try:
        found = await test_results.bests(lobby.pool, request.match_info["player_id"])
    except POSTGRES_DOWN as exc:
        raise _unavailable(exc) from None
    order = {name: i for i, name in enumerate(MODE_NAMES)}
    return web.json_response(
        {"bests": [_summary(b) for b in sorted(found, key=lambda b: order.get(b.mode, 99))]}
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/tests", create_test)
    router.add_get("/v1/tests/{test_id}", get_test)
    router.add_get("/v1/players/{player_id}/tests", player_tests)
    router.add_get("/v1/players/{player_id}/tests/bests", player_bests)
