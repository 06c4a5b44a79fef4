"""Typing tests over HTTP (issue 16): create one, read its content and result, a player's history
and bests.

- ``POST /v1/tests {"mode", "region"?}``: no matchmaking: the test is placed at once on the node
  with the most free seats of the region (``NodePlacer``, as private races), and the answer holds
  the join assignment and the text. The content is cached for 24 h (``test:{id}:content``).
- ``GET /v1/tests/{test_id}``: the content (from the cache) and, once persistence stored it, the
  result with its percentile among the mode's counted results of the last 7 days.
- ``GET /v1/tests/{test_id}/replay``: a stored test's keystroke log and its speed chart (WPM per
  second, ``lobby.speed_chart``), so a test opened from history shows what its result screen showed.
- ``GET /v1/players/{player_id}/tests?limit=&mode=&before_ms=&before_id=``: newest first; the
  first page of 10 or fewer from the recent-results cache when it is full, the rest from PostgreSQL.
- ``GET /v1/players/{player_id}/tests/bests``: the best counted result of each mode.

Results are public, like race results; creating a test needs a player token.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import structlog
from aiohttp import web

from arena import keys
from arena.clock import now_ms
from arena.placement import SeatRequest
from arena.redisutil import as_text
from arena.typing_tests import MODE_NAMES, ModeType, TypingMode
from gameserver.typing_test import TestContent
from lobby.auth import require_player
from lobby.bodies import opt_str, read_object
from lobby.context import Lobby, lobby_of
from lobby.daily import corpus
from lobby.errors import ApiError, bad_request
from lobby.history import MAX_INSTANT_MS, MAX_PAGE, POSTGRES_DOWN, _int_param, _unavailable
from lobby.nodes import AssignmentView
from lobby.replay import RACE_ID, passage_text
from lobby.replay_text import BACKSPACE_KEY
from lobby.speed_chart import STORED_BACKSPACE, speed_series
from persistence import test_results
from persistence.keylog import KeylogError
from persistence.test_results import StoredKeylog, TestSummary

log = structlog.get_logger(__name__)

CONTENT_TTL_S = 24 * 3600  # seed 002: test content is cached for 24 h
MAX_ID_CHARS = 64  # test ids are a few dozen characters; anything longer is nobody's
REPLAY_FORMAT = 1  # of GET /v1/tests/{id}/replay; a change of shape gets a new one
# A stored test never changes (tests are never held for review): like a race's replay.
REPLAY_CACHE_CONTROL = "public, max-age=86400, immutable"


def _summary(s: TestSummary) -> dict[str, Any]:
    return dataclasses.asdict(s)


def _test_id(request: web.Request) -> str:
    """Test ids are race ids (1-64 of ``A-Z a-z 0-9 _ -``); anything else is nobody's test."""
    test_id = request.match_info["test_id"]
    if not RACE_ID.fullmatch(test_id):
        raise ApiError(404, "test_not_found", "no typing test with this id")
    return test_id


@functools.cache
def _generator() -> TestContent:
    return TestContent(corpus(), max_wpm=0.0)  # max_wpm only sizes new time streams: unused here


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


async def _typed_text(lobby: Lobby, stored: StoredKeylog) -> str | None:
    """What was typed: a quote from the corpus by its passage id; generated words from the
    content cache (24 h), else rebuilt from the test id. None when none of those can say."""
    summary = stored.test.summary
    try:
        mode = TypingMode.parse(summary.mode)
    except ValueError:
        return None
    if mode.type is ModeType.QUOTE:
        return passage_text(summary.content_id)
    raw = await lobby.redis.get(keys.test_content(summary.test_id))
    if raw is not None:
        text = json.loads(as_text(raw)).get("text")
        if isinstance(text, str):
            return text
    return _generator().rebuilt(mode, summary.test_id, stored.passage_chars)


async def get_test_replay(request: web.Request) -> web.Response:
    """``GET /v1/tests/{test_id}/replay``: a stored test's keys and its speed over time."""
    lobby = lobby_of(request)
    test_id = _test_id(request)
    try:
        stored = await test_results.with_keylog(lobby.pool, test_id)
    except POSTGRES_DOWN as exc:
        raise _unavailable(exc) from None
    except KeylogError as exc:
        # Stored by our own persistence: a bug or corruption, not the client's doing.
        log.error("test_keylog_corrupt", test_id=test_id, error=str(exc))
        raise ApiError(500, "replay_corrupt", "this test's keystroke log cannot be read") from None
    if stored is None:
        raise ApiError(404, "test_not_found", "no stored typing test with this id")
    text = await _typed_text(lobby, stored)
    s = stored.test.summary
    body = {
        "format": REPLAY_FORMAT,
        "test_id": s.test_id,
        "mode": s.mode,
        "player_id": stored.test.player_id,
        "name": stored.test.name,
        "state": stored.test.state,
        "status": s.status,
        "valid": s.valid,
        "flags": stored.test.flags,
        "wpm": s.wpm,
        "raw_wpm": s.raw_wpm,
        "accuracy": s.accuracy,
        "errors": s.errors,
        "elapsed_ms": s.elapsed_ms,
        "started_at": stored.started_at,
        "ended_at": s.ended_at,
        "duration_ms": stored.key_times[-1] if stored.key_times else 0,
        "passage": {"id": s.content_id, "text": text, "chars": stored.passage_chars},
        "keys": [
            {"t_ms": t, "key": BACKSPACE_KEY if k == STORED_BACKSPACE else k}
            for k, t in zip(stored.keys, stored.key_times, strict=True)
        ],
        "speed": speed_series(stored.keys, stored.key_times, text),
    }
    return web.json_response(body, headers={"Cache-Control": REPLAY_CACHE_CONTROL})


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
    router.add_get("/v1/tests/{test_id}/replay", get_test_replay)
    router.add_get("/v1/players/{player_id}/tests", player_tests)
    router.add_get("/v1/players/{player_id}/tests/bests", player_bests)
