"""Leaderboards, a player's recent races, one race's full result, and the races live now.

Leaderboards and the first page of recent races come from Redis (kept by persistence);
older pages and full results come from PostgreSQL through ``persistence.queries``. All of it
is public: results are not secret, and the rate limits apply as everywhere.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import asyncpg
from aiohttp import web

from arena import keys
from arena.clock import now_ms
from arena.ids import RaceId
from arena.redisutil import as_text, text_map
from lobby.boardcache import BOARD_CACHE_KEY
from lobby.context import lobby_of
from lobby.errors import ApiError, bad_request
from persistence.leaderboards import Timeframe
from persistence.queries import leaderboard_top, player_rank, race_result, recent_races

MAX_PAGE = 100
LIVE_DEFAULT = 20
MAX_INSTANT_MS = 253_402_300_799_999  # 9999-12-31: the last instant PostgreSQL and datetime both hold
# An index entry whose race started longer ago than a mirror lives (at least
# gameserver.mirror.RACE_STATE_TTL_S) and whose mirror is gone is stale: its node died before
# removing it.
LIVE_STALE_MS = 3600 * 1000
LIVE_SWEEP = 100  # stale entries looked at per request
ENDED = frozenset({"finished", "aborted"})
# PostgreSQL unreachable or failing over: answer 503 and let the client retry.
POSTGRES_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError)


def _unavailable(exc: Exception) -> ApiError:
    return ApiError(503, "history_unavailable", f"race history is unavailable: {type(exc).__name__}")


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"bad_{name}", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise bad_request(f"bad_{name}", f"{name} must be between {low} and {high}")
    return value


def _board(request: web.Request) -> tuple[str, Timeframe]:
    race_type = request.match_info["race_type"]
    if race_type not in lobby_of(request).settings.read_side.race_types:
        raise ApiError(404, "board_not_found", f"no leaderboard for race type {race_type!r}")
    try:
        return race_type, Timeframe(request.match_info["timeframe"])
    except ValueError:
        raise ApiError(404, "board_not_found", "timeframe must be daily, weekly or alltime") from None


async def leaderboard(request: web.Request) -> web.Response:
    """``GET /v1/leaderboards/{race_type}/{timeframe}?limit=N``: the top N (accuracy breaks ties),
    at most ``ARENA_LOBBY_BOARD_CACHE_MS`` old (``lobby.boardcache``)."""
    race_type, timeframe = _board(request)
    limit = _int_param(request, "limit", 10, 1, MAX_PAGE)
    cache = request.app[BOARD_CACHE_KEY]
    text = cache.get(race_type, timeframe.value, limit)
    if text is None:
        read_at = cache.now()
        entries = await leaderboard_top(lobby_of(request).redis, race_type, timeframe, limit)
        body = {
            "race_type": race_type,
            "timeframe": timeframe.value,
            "entries": [dataclasses.asdict(e) for e in entries],
        }
        text = json.dumps(body)
        cache.put(race_type, timeframe.value, limit, text, read_at)
    return web.Response(text=text, content_type="application/json")


async def leaderboard_rank(request: web.Request) -> web.Response:
    """``GET /v1/leaderboards/{race_type}/{timeframe}/players/{player_id}``: a player's own rank."""
    race_type, timeframe = _board(request)
    player_id = request.match_info["player_id"]
    entry = await player_rank(lobby_of(request).redis, race_type, timeframe, player_id)
    if entry is None:
        raise ApiError(404, "not_ranked", "the player has no ranked result on this board")
    return web.json_response(dataclasses.asdict(entry))


async def player_races(request: web.Request) -> web.Response:
    """``GET /v1/players/{player_id}/races?limit=&before_ms=&before_id=``: newest first, paged."""
    lobby = lobby_of(request)
    limit = _int_param(request, "limit", 10, 1, MAX_PAGE)
    before: tuple[int, str] | None = None
    if "before_ms" in request.query:
        before_ms = _int_param(request, "before_ms", 0, 0, MAX_INSTANT_MS)
        before = (before_ms, request.query.get("before_id", "\uffff"))
    try:
        races = await recent_races(
            lobby.redis,
            lobby.pool,
            request.match_info["player_id"],
            limit,
            before=before,
            settings=lobby.settings.read_side,
        )
    except POSTGRES_DOWN as exc:
        raise _unavailable(exc) from None
    body: dict[str, Any] = {"races": [dataclasses.asdict(r) for r in races]}
    if len(races) == limit:
        body["next"] = {"before_ms": races[-1].ended_at, "before_id": races[-1].race_id}
    return web.json_response(body)


async def race(request: web.Request) -> web.Response:
    """``GET /v1/races/{race_id}``: one race's full result, keystroke logs included."""
    try:
        result = await race_result(lobby_of(request).pool, request.match_info["race_id"])
    except POSTGRES_DOWN as exc:
        raise _unavailable(exc) from None
    if result is None:
        raise ApiError(404, "race_not_found", "no finished race with this id")
    return web.json_response(dataclasses.asdict(result))


def _live_entry(race_id: str, d: dict[str, str], url: str) -> dict[str, Any]:
    # Rows: [id, name, connected, status, position, wpm, place, ghost]. The owner node rewrites them at
    # most once per ARENA_RACE_LIVE_MIRROR_MS while someone types (gameserver/mirror.py).
    roster = json.loads(d["roster"])
    return {
        "race_id": race_id,
        "race_type": d["type"],
        "node_id": d["node"],
        "url": url,
        "state": d["state"],
        "players": [
            {
                "name": row[1],
                "position": row[4],
                "wpm": row[5],
                "status": row[3],
                "place": row[6],
                "ghost": len(row) > 7 and bool(row[7]),  # a replayed log (ghost races); older nodes: none
            }
            for row in roster
        ],
        "passage_length": len(d["passage"]),
        "start_at": int(d["start_at"]),
    }


async def live_races(request: web.Request) -> web.Response:
    """``GET /v1/live/races?limit=N``: running races to watch, newest first, from ``races:live``.

    Entries whose mirror is gone or says the race ended are removed here (their owner died
    or its removal was lost); races on a node that is not alive are skipped.
    """
    lobby = lobby_of(request)
    limit = _int_param(request, "limit", LIVE_DEFAULT, 1, MAX_PAGE)
    redis = lobby.redis
    async with redis.pipeline(transaction=False) as pipe:
        # Twice the page: some entries may be skipped (dead node, gone mirror).
        pipe.zrevrange(keys.LIVE_RACES, 0, 2 * limit - 1)
        pipe.zrangebyscore(keys.LIVE_RACES, "-inf", f"({now_ms() - LIVE_STALE_MS}", start=0, num=LIVE_SWEEP)
        page_raw, old_raw = await pipe.execute()
    page = [as_text(r) for r in page_raw]
    old = [as_text(r) for r in old_raw if as_text(r) not in page]
    async with redis.pipeline(transaction=False) as pipe:
        for race_id in page:
            pipe.hgetall(keys.race_state(RaceId(race_id)))
        for race_id in old:
            pipe.exists(keys.race_state(RaceId(race_id)))
        replies = await pipe.execute()
    mirrors, old_exists = replies[: len(page)], replies[len(page) :]
    stale = [race_id for race_id, exists in zip(old, old_exists, strict=True) if not exists]
    nodes = {n.node_id: n for n in await lobby.nodes.live()}
    races: list[dict[str, Any]] = []
    for race_id, raw in zip(page, mirrors, strict=True):
        d = text_map(raw) if raw else {}
        if not d or d.get("state") in ENDED:
            stale.append(race_id)
            continue
        node = nodes.get(d.get("node", ""))
        if node is None or len(races) >= limit:
            continue
        try:
            races.append(_live_entry(race_id, d, node.url))
        except (KeyError, ValueError, TypeError, IndexError):
            continue  # a half-written mirror: it is complete at the next tick
    if stale:
        await redis.zrem(keys.LIVE_RACES, *stale)
    return web.json_response({"races": races})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/leaderboards/{race_type}/{timeframe}", leaderboard)
    router.add_get("/v1/leaderboards/{race_type}/{timeframe}/players/{player_id}", leaderboard_rank)
    router.add_get("/v1/players/{player_id}/races", player_races)
    router.add_get("/v1/races/{race_id}", race)
    router.add_get("/v1/live/races", live_races)
