"""Tournament routes for the lobby (``/v1/tournaments``): create, list, get, register, my heat, live.

Mounted on the lobby's app with ``setup(app, settings)``, so the lobby's middlewares (metrics,
errors, rate limits per IP and player on every ``/v1/`` path) apply to these routes as to its
own. Errors have the lobby's shape, ``{"error": code, "reason": text}``; players authenticate
with ``Authorization: Bearer <player token>`` (``arena.tokens``), as everywhere.

    POST   /v1/tournaments                     create (player)
    GET    /v1/tournaments?status=&limit=&cursor=   public ones: upcoming | live | finished
    GET    /v1/tournaments/invites/{code}      a private one, by its invite code
    GET    /v1/tournaments/{id}                bracket (rounds, heats, results) and standings
    POST   /v1/tournaments/{id}/registration   register (player; {"invite_code"} if private)
    DELETE /v1/tournaments/{id}/registration   unregister (player)
    GET    /v1/tournaments/{id}/heat?wait=&since=   the player's heat and seat (long-poll)
    GET    /v1/tournaments/{id}/live           WebSocket: snapshot, then every update as JSON
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import WSCloseCode, WSMsgType, web
from redis.exceptions import RedisError

from arena import keys
from arena.bearer import CHALLENGE, BearerError, bearer_token
from arena.clock import now_ms
from arena.codec import load_json
from arena.ids import RaceId
from arena.redisutil import as_text, connect
from arena.tokens import PlayerToken, TokenError, TokenSigner
from arena.waits import wait_event
from gameserver.passages import PassageError, validate_custom_text
from tournaments.bracket import Advancement, BracketRules
from tournaments.live import LiveHub, RaceRef
from tournaments.metrics import LiveMetrics
from tournaments.model import (
    HeatState,
    SpecError,
    Tournament,
    TournamentKind,
    TournamentSpec,
    TournamentState,
    Visibility,
    rounds_needed,
)
from tournaments.settings import ApiSettings
from tournaments.store import ListingStatus, TournamentStore, normalise_code
from tournaments.views import (
    Assignment,
    PlayerStatus,
    assignment_for,
    detail_view,
    summary_view,
)

log = structlog.get_logger(__name__)

RECHECK_S = 1.0  # long-polls re-read this often even without a notice
_TERMINAL = frozenset({PlayerStatus.ELIMINATED, PlayerStatus.FINISHED, PlayerStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class TournamentApi:
    settings: ApiSettings
    redis: aioredis.Redis
    store: TournamentStore
    signer: TokenSigner
    hub: LiveHub
    metrics: LiveMetrics


SETTINGS_KEY = web.AppKey("tournament_api_settings", ApiSettings)
API_KEY = web.AppKey("tournament_api", TournamentApi)


def setup(app: web.Application, settings: ApiSettings) -> None:
    """Mount the routes and their parts (Redis client, live hub) on ``app``."""
    app[SETTINGS_KEY] = settings
    app.cleanup_ctx.append(_context)
    app.on_shutdown.append(_close_live)
    add_routes(app.router)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/tournaments", create_tournament)
    router.add_get("/v1/tournaments", list_tournaments)
    router.add_get("/v1/tournaments/invites/{code}", tournament_by_invite)
    router.add_get("/v1/tournaments/{id}", get_tournament)
    router.add_post("/v1/tournaments/{id}/registration", register)
    router.add_delete("/v1/tournaments/{id}/registration", unregister)
    router.add_get("/v1/tournaments/{id}/heat", my_heat)
    router.add_get("/v1/tournaments/{id}/live", live)


async def _context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    redis = connect(settings.redis)
    metrics = LiveMetrics()
    hub = LiveHub(
        redis,
        owner=f"tournament-api-{secrets.token_hex(4)}",
        queue_size=settings.live_queue,
        max_sockets=settings.live_max_sockets,
        metrics=metrics,
    )
    app[API_KEY] = TournamentApi(
        settings, redis, TournamentStore(redis), TokenSigner(settings.secrets.token_secret), hub, metrics
    )
    try:
        yield
    finally:
        await hub.stop()
        await redis.aclose()


async def _close_live(app: web.Application) -> None:
    api = app.get(API_KEY)
    if api is not None:
        await api.hub.stop()


# ---- errors and input ----------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, code: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {reason}")
        self.status = status
        self.code = code
        self.reason = reason
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.json_response(
            {"error": self.code, "reason": self.reason}, status=self.status, headers=self.headers
        )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_errors(handler: Handler) -> Handler:
    """Our errors as JSON here, so the codes survive whatever middleware the app has."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except RedisError as exc:
            log.warning("redis_unavailable", path=request.path, error=str(exc))
            return ApiError(
                503, "unavailable", "storage is unavailable, retry shortly", {"Retry-After": "2"}
            ).response()

    return wrapper


def _api(request: web.Request) -> TournamentApi:
    return request.app[API_KEY]


def _player(request: web.Request, *, required: bool = True) -> PlayerToken | None:
    header = request.headers.get("Authorization")
    challenge = {"WWW-Authenticate": CHALLENGE}
    if header is None:
        if required:
            raise ApiError(401, "unauthorized", "Authorization: Bearer <token> is required", challenge)
        return None
    try:
        token = bearer_token(header)  # exactly 'Bearer <token>' (arena.bearer)
    except BearerError as exc:
        raise ApiError(401, "bad_token", str(exc), challenge) from None
    try:
        return _api(request).signer.verify_player(token)
    except TokenError as exc:
        if exc.expired:
            raise ApiError(401, "token_expired", "the token expired; get a new one", challenge) from None
        raise ApiError(401, "bad_token", str(exc), challenge) from None


def _require_player(request: web.Request) -> PlayerToken:
    player = _player(request)
    assert player is not None
    return player


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = load_json(raw)
    except ValueError:
        raise ApiError(400, "bad_json", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_body", "body must be a JSON object")
    return data


def _get(data: dict[str, Any], name: str, kind: type[Any], default: Any = None) -> Any:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(400, f"bad_{name}", f"{name} must be of type {kind.__name__}")
    return value


CURSOR = re.compile(r"[0-9]{1,15}")


def _query_number(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"bad_{name}", f"{name} must be a number") from None
    if not math.isfinite(value) or value < 0:
        raise ApiError(400, f"bad_{name}", f"{name} must be a number >= 0")
    return value


def _cursor(request: web.Request) -> int:
    """``?cursor=``: the opaque ``next_cursor`` of the previous page (an offset, up to 15 digits)."""
    raw = request.query.get("cursor", "")
    if raw == "":
        return 0
    if CURSOR.fullmatch(raw) is None:
        raise ApiError(400, "bad_cursor", "cursor must be a next_cursor from an earlier page")
    return int(raw)


def _not_found() -> ApiError:
    return ApiError(404, "tournament_not_found", "no tournament with this id")


async def _tournament(api: TournamentApi, tournament_id: str) -> Tournament:
    t = await api.store.get(tournament_id) if len(tournament_id) <= 64 else None
    if t is None:
        raise _not_found()
    return t


# ---- create and list ---------------------------------------------------------------


def parse_spec(data: dict[str, Any], settings: ApiSettings) -> TournamentSpec:
    """The creation body as a spec; 400 with a field's code when it cannot be."""
    try:
        kind = TournamentKind(_get(data, "type", str, ""))
    except ValueError:
        raise ApiError(400, "bad_type", "type must be scheduled or instant") from None
    try:
        visibility = Visibility(_get(data, "visibility", str, Visibility.PUBLIC.value))
    except ValueError:
        raise ApiError(400, "bad_visibility", "visibility must be public or private") from None
    advancement = _get(data, "advancement", dict, {})
    try:
        rule = Advancement(_get(advancement, "rule", str, Advancement.TOP_K.value))
    except ValueError:
        raise ApiError(400, "bad_rule", "advancement.rule must be top_k or points") from None
    heat_size = _get(data, "heat_size", int, 5)
    advance = _get(advancement, "advance", int, 2)
    races = _get(advancement, "races_per_round", int, 1 if rule is Advancement.TOP_K else 3)
    max_players = _get(data, "max_players", int, 0)
    rounds = _get(data, "rounds", int, 0)
    if rounds == 0 and heat_size >= 2 and 1 <= advance < heat_size and max_players >= 1:
        rounds = rounds_needed(max_players, BracketRules(heat_size, advance, Advancement.TOP_K, 1, 10))
    custom_text = _get(data, "custom_text", str)
    if custom_text is not None:
        try:
            custom_text = validate_custom_text(
                custom_text, min_chars=settings.custom_min_chars, max_chars=settings.custom_max_chars
            )
        except PassageError as exc:
            raise ApiError(400, "bad_custom_text", str(exc)) from None
    prizes = _get(data, "prizes", list, [])
    if not all(isinstance(p, str) for p in prizes):
        raise ApiError(400, "bad_prizes", "prizes must be a list of strings")
    return TournamentSpec(
        name=_get(data, "name", str, "").strip(),
        kind=kind,
        visibility=visibility,
        race_type=_get(data, "race_type", str, "quick"),
        max_players=max_players,
        heat_size=heat_size,
        rule=rule,
        advance=advance,
        races_per_round=races,
        max_rounds=rounds,
        prizes=tuple(prizes),
        starts_at=_get(data, "starts_at", int),
        custom_text=custom_text,
        region=_get(data, "region", str, settings.default_region),
    )


@_json_errors
async def create_tournament(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    player = _require_player(request)
    spec = parse_spec(await _body(request), api.settings)
    try:
        spec.validate(api.settings.limits(), now_ms())
    except SpecError as exc:
        raise ApiError(400, exc.code, exc.reason) from None
    t = await api.store.create(spec, player.player_id, now_ms())
    view = summary_view(t)
    if t.invite_code is not None:
        view["invite_code"] = t.invite_code
    return web.json_response(view, status=201)


@_json_errors
async def list_tournaments(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    status = request.query.get("status", ListingStatus.UPCOMING)
    if status not in ListingStatus.ALL:
        raise ApiError(400, "bad_status", f"status must be one of {list(ListingStatus.ALL)}")
    limit = int(_query_number(request, "limit", 20))
    if not 1 <= limit <= api.settings.page_max:
        raise ApiError(400, "bad_limit", f"limit must be 1 to {api.settings.page_max}")
    cursor = _cursor(request)
    page, more = await api.store.listed(status, cursor, limit)
    return web.json_response(
        {
            "tournaments": [summary_view(t) for t in page],
            "next_cursor": str(more) if more is not None else None,
        }
    )


@_json_errors
async def tournament_by_invite(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    code = normalise_code(request.match_info["code"])
    tid = await api.store.by_invite(code) if code else None
    if tid is None:
        raise ApiError(404, "invite_not_found", "no tournament with this invite code")
    t = await _tournament(api, tid)
    return web.json_response(summary_view(t))


# ---- one tournament ----------------------------------------------------------------


async def tournament_detail(api: TournamentApi, t: Tournament, caller: str | None) -> dict[str, Any]:
    rounds = await api.store.all_heats(t.id)
    ranking = await api.store.rankings(t.id)
    placed = [h.race_id for heats in rounds for h in heats if h.state is HeatState.PLACED and h.race_id]
    race_states: dict[str, str] = {}
    if placed:
        async with api.redis.pipeline(transaction=False) as pipe:
            for race_id in placed:
                pipe.hget(keys.race_state(RaceId(race_id)), "state")
            states = await pipe.execute()
        race_states = {rid: as_text(s) for rid, s in zip(placed, states, strict=True) if s is not None}
    registered = caller is not None and await api.store.is_registered(t.id, caller)
    prizes = await api.store.prizes(t.id) if t.state is TournamentState.FINISHED else {}
    registrations = await api.store.participants(t.id) if not t.entrants else []
    return detail_view(
        t,
        rounds,
        ranking,
        race_states,
        caller=caller,
        registered=registered,
        prizes=prizes,
        registrations=registrations,
    )


@_json_errors
async def get_tournament(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    player = _player(request, required=False)
    t = await _tournament(api, request.match_info["id"])
    return web.json_response(await tournament_detail(api, t, player.player_id if player else None))


@_json_errors
async def register(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    player = _require_player(request)
    body = await _body(request)
    code = _get(body, "invite_code", str, "")
    tid = request.match_info["id"]
    outcome = await api.store.register(tid, player.player_id, player.name, code.strip().upper(), now_ms())
    _registration_error(outcome)
    t = await _tournament(api, tid)
    log.info("tournament_registered", tournament_id=tid, player_id=player.player_id, players=t.players)
    return web.json_response({"tournament_id": tid, "registered": True, "players": t.players}, status=201)


@_json_errors
async def unregister(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    player = _require_player(request)
    tid = request.match_info["id"]
    _registration_error(await api.store.unregister(tid, player.player_id, now_ms()))
    t = await _tournament(api, tid)
    return web.json_response({"tournament_id": tid, "registered": False, "players": t.players})


def _registration_error(outcome: str) -> None:
    errors = {
        "not_found": (404, "tournament_not_found", "no tournament with this id"),
        "already_registered": (409, "already_registered", "you are already registered"),
        "not_registered": (409, "not_registered", "you are not registered"),
        "closed": (409, "registration_closed", "registration is closed: the tournament has started"),
        "full": (409, "tournament_full", "the tournament is full"),
        "bad_invite_code": (403, "bad_invite_code", "this private tournament needs its invite code"),
    }
    if outcome in errors:
        raise ApiError(*errors[outcome])


# ---- a player's heat ----------------------------------------------------------------


async def player_assignment(api: TournamentApi, tid: str, player_id: str) -> Assignment:
    t = await _tournament(api, tid)
    registered = await api.store.is_registered(tid, player_id)
    where = await api.store.assignment(tid, player_id) if t.state is TournamentState.RUNNING else None
    heat = await api.store.heat(tid, where[0], where[1]) if where else None
    final = heat is not None and (await api.store.heats_per_round(tid))[heat.round_no - 1] == 1
    rank = None
    if t.state is TournamentState.FINISHED:
        ranking = await api.store.rankings(tid)
        rank = ranking.index(player_id) + 1 if player_id in ranking else None
    return assignment_for(t, heat, player_id, registered=registered, rank=rank, final=final)


@_json_errors
async def my_heat(request: web.Request) -> web.StreamResponse:
    """The caller's heat: a seat (player_token, ticket, url) once its race is ready.

    ``?wait=S&since=KEY`` waits up to S seconds for the answer to differ from the one whose
    ``key`` was KEY (long-poll), so a player learns of its next heat as soon as it is placed.
    """
    api = _api(request)
    player = _require_player(request)
    tid = request.match_info["id"]
    wait_s = min(_query_number(request, "wait", 0.0), api.settings.long_poll_max_s)
    since = request.query.get("since")
    current = await player_assignment(api, tid, player.player_id)
    if wait_s > 0 and current.key == since and current.status not in _TERMINAL:
        current = await _wait_change(api, tid, player.player_id, since, wait_s)
    return web.json_response(current.view(tid))


async def _wait_change(api: TournamentApi, tid: str, player_id: str, since: str, wait_s: float) -> Assignment:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    async with api.hub.watch(tid) as event:
        while True:
            event.clear()  # before reading: a change after the read sets it again
            current = await player_assignment(api, tid, player_id)
            remaining = deadline - loop.time()
            if current.key != since or remaining <= 0:
                return current
            await wait_event(event, min(remaining, RECHECK_S))


# ---- live ------------------------------------------------------------------------


async def live(request: web.Request) -> web.StreamResponse:
    """WebSocket: ``{"type": "snapshot", "tournament": ...}``, then every update as it happens."""
    api = _api(request)
    try:
        t = await _tournament(api, request.match_info["id"])
    except ApiError as exc:
        return exc.response()
    if api.hub.sockets >= api.hub.max_sockets:
        return ApiError(
            503, "too_many_sockets", "too many live followers here; retry", {"Retry-After": "5"}
        ).response()
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    await ws.prepare(request)
    follower = await api.hub.follow(t.id, ws)  # before the snapshot: no update falls in between
    try:
        t = await _tournament(api, t.id)
        snapshot = await tournament_detail(api, t, None)
        await ws.send_str(json.dumps({"type": "snapshot", "tournament": snapshot}, separators=(",", ":")))
        await api.hub.track(_races_in_progress(snapshot))
        api.hub.start_writer(follower)
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break  # clients have nothing to say; anything they send is ignored
    except (ApiError, RedisError) as exc:
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=str(exc)[:100].encode())
    finally:
        await api.hub.unfollow(follower)
    return ws


def _races_in_progress(snapshot: dict[str, Any]) -> list[RaceRef]:
    refs = []
    for rnd in snapshot["bracket"]:
        for heat in rnd["heats"]:
            if heat["state"] == HeatState.PLACED.value and heat["race_id"]:
                refs.append(RaceRef(snapshot["id"], rnd["round"], heat["heat"], heat["race_id"]))
    return refs
