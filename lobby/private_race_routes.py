"""Private races over HTTP: create, join, read (long-poll) and start (``lobby.private_races``).

- ``POST /v1/private-races {race_type, region?, custom_text?}``: the caller hosts a new race.
- ``GET /v1/private-races/{code}?wait=&since=``: the race; waits for a change past ``since``.
- ``POST /v1/private-races/{code}/join``: join while it is open.
- ``POST /v1/private-races/{code}/start``: the host places it on a node (seats for every member).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from aiohttp import web

from arena.clock import now_ms
from arena.placement import SeatRequest
from arena.protocol import RaceType
from gameserver.passages import PassageError, validate_custom_text
from lobby.auth import require_player
from lobby.bodies import opt_str, query_int, query_wait, read_object, req_str
from lobby.context import Lobby, lobby_of
from lobby.errors import ApiError, bad_request
from lobby.ghosts import load_ghost
from lobby.nodes import NODE_LOST_REASON, AssignmentView
from lobby.private_races import GhostRef, PrivateRace, PrivateState, normalise_code

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PrivateRaceRequest:
    race_type: str
    region: str
    custom_text: str | None

    @classmethod
    def parse(cls, data: dict[str, Any], lobby: Lobby) -> PrivateRaceRequest:
        s = lobby.settings
        race_type = req_str(data, "race_type", max_len=32)
        if race_type not in {t.value for t in RaceType}:
            raise bad_request("bad_race_type", f"race_type must be one of {[t.value for t in RaceType]}")
        region = opt_str(data, "region", max_len=32) or s.regions[0]
        if region not in s.regions:
            raise bad_request("unknown_region", f"region must be one of {list(s.regions)}")
        custom_text = opt_str(data, "custom_text", max_len=s.custom_max_chars * 4)
        if (race_type == RaceType.CUSTOM.value) != (custom_text is not None):
            raise bad_request(
                "bad_custom_text", "custom_text is required for, and only for, race_type custom"
            )
        if custom_text is not None:
            try:
                custom_text = validate_custom_text(
                    custom_text, min_chars=s.custom_min_chars, max_chars=s.custom_max_chars
                )
            except PassageError as exc:
                raise bad_request("bad_custom_text", str(exc)) from None
        return cls(race_type=race_type, region=region, custom_text=custom_text)


@dataclass(frozen=True, slots=True)
class MemberView:
    player_id: str
    name: str
    host: bool


@dataclass(frozen=True, slots=True)
class PrivateRaceView:
    code: str
    state: str  # open | starting | started | node_lost
    version: int  # pass as ?since= to wait for the next change
    race_type: str
    region: str
    custom_text: str | None
    host: MemberView
    members: list[MemberView]
    max_players: int
    created_at: int  # ms
    expires_at: int  # ms: the code stops working then
    assignment: AssignmentView | None  # the caller's seat, once started
    reason: str | None = None  # why, for node_lost
    ghosts: list[GhostRef] = field(default_factory=list)  # who the racers race besides each other


async def race_view(lobby: Lobby, race: PrivateRace, caller: str) -> PrivateRaceView:
    members = [MemberView(m.player_id, m.name, m.player_id == race.host_id) for m in race.members]
    host = next((m for m in members if m.host), members[0])
    state = race.state.value
    reason = None
    assignment = None
    seat = (race.seats or {}).get(caller)
    if race.state is PrivateState.STARTED and race.race_id and race.node_id and race.url:
        where = await lobby.nodes.follow(race.node_id, race.race_id)
        moved = where.moved_to
        node_id, url = (moved.node_id, moved.url) if moved else (race.node_id, race.url)
        if seat is not None:  # moved: the same tokens, at the adopter
            assignment = AssignmentView(race.race_id, node_id, url, seat[0], seat[1], race.region)
        if where.moved_to is not None:
            lobby.metrics.assignments_moved.labels("private").inc()
        if where.lost:
            state, reason = "node_lost", NODE_LOST_REASON + " (the host can start it again)"
            lobby.metrics.node_lost.labels("private").inc()
    return PrivateRaceView(
        code=race.code,
        state=state,
        version=race.version,
        race_type=race.race_type,
        region=race.region,
        custom_text=race.custom_text,
        host=host,
        members=members,
        max_players=lobby.private_races.max_players,
        created_at=race.created_at,
        expires_at=race.expires_at,
        assignment=assignment,
        reason=reason,
        ghosts=race.ghosts,
    )


def _not_found() -> ApiError:
    return ApiError(404, "private_race_not_found", "no private race with this code (codes expire)")


async def _race(lobby: Lobby, raw_code: str) -> PrivateRace:
    code = normalise_code(raw_code)
    race = await lobby.private_races.get(code) if code else None
    if race is None:
        raise _not_found()
    return race


async def _respond(lobby: Lobby, race: PrivateRace, caller: str, status: int = 200) -> web.Response:
    return web.json_response(asdict(await race_view(lobby, race, caller)), status=status)


async def create_private_race(request: web.Request) -> web.Response:
    lobby = lobby_of(request)
    player = require_player(request)
    body = PrivateRaceRequest.parse(await read_object(request), lobby)
    code = await lobby.private_races.create(player, body.race_type, body.region, body.custom_text)
    lobby.metrics.private_races.labels("created").inc()
    log.info("private_race_created", code=code, host_id=player.player_id, race_type=body.race_type)
    race = await _race(lobby, code)
    return await _respond(lobby, race, player.player_id, status=201)


async def join_private_race(request: web.Request) -> web.Response:
    lobby = lobby_of(request)
    player = require_player(request)
    code = normalise_code(request.match_info["code"])
    outcome = await lobby.private_races.join(code, player) if code else "not_found"
    if outcome == "not_found" or code is None:
        raise _not_found()
    if outcome == "not_open":
        raise ApiError(409, "race_started", "this race has already started")
    if outcome == "full":
        raise ApiError(409, "race_full", f"this race is full ({lobby.private_races.max_players} players)")
    lobby.metrics.private_races.labels("joined").inc()
    return await _respond(lobby, await _race(lobby, code), player.player_id)


async def get_private_race(request: web.Request) -> web.Response:
    """Any signed-in player with the code may look; only members see their seat."""
    lobby = lobby_of(request)
    player = require_player(request)
    wait_s = query_wait(request, lobby.settings.long_poll_max_s)
    since = query_int(request, "since")
    race = await _race(lobby, request.match_info["code"])
    already_there = since is None and race.state is PrivateState.STARTED
    if wait_s > 0 and not already_there and (since is None or since == race.version):
        race = await lobby.private_races.wait_change(race.code, race.version, wait_s) or race
    return await _respond(lobby, race, player.player_id)


async def start_private_race(request: web.Request) -> web.Response:
    lobby = lobby_of(request)
    player = require_player(request)
    race = await _race(lobby, request.match_info["code"])
    lost_race_id = ""
    if race.state is PrivateState.STARTED and race.race_id and race.node_id:  # restart only if lost
        lost = await lobby.nodes.assignment_lost(race.node_id, race.race_id)
        lost_race_id = race.race_id if lost else ""
    s = lobby.settings
    deadline = now_ms() + int((s.node_timeout_s * s.node_attempts + 5.0) * 1000)
    outcome = await lobby.private_races.begin_start(
        race.code, player.player_id, deadline_ms=deadline, lost_race_id=lost_race_id
    )
    if outcome == "not_found":
        raise _not_found()
    if outcome == "not_host":
        raise ApiError(403, "not_host", "only the host can start the race")
    if outcome != "ok":
        raise ApiError(409, f"already_{outcome}", f"the race is already {outcome}")
    try:
        race = await _race(lobby, race.code)  # members (and ghosts) are frozen from here on
        # Ghosts are read again: a log held for review since it was added is refused now.
        ghosts = [await load_ghost(lobby.pool, g.race_id, g.player_id) for g in race.ghosts]
        placed = await lobby.placer.place(
            race.race_type,
            [race.region],
            [SeatRequest(m.player_id, m.name) for m in race.members],
            custom_text=race.custom_text,
            passage_id=ghosts[0].passage_id if ghosts else None,
            ghosts=[g.definition() for g in ghosts],
        )
    except Exception:
        await lobby.private_races.abort_start(race.code)  # let the host retry now, not at the deadline
        raise
    if placed is None:
        await lobby.private_races.abort_start(race.code)
        lobby.metrics.private_races.labels("start_failed").inc()
        raise ApiError(
            503,
            "no_node",
            f"no node in {race.region} can take the race now; retry",
            headers={"Retry-After": "2"},
        )
    if not await lobby.private_races.finish_start(race.code, placed):
        raise _not_found()  # the code expired while we placed; the node's seats just lapse
    lobby.metrics.private_races.labels("started").inc()
    log.info("private_race_started", code=race.code, race_id=placed.race_id, node_id=placed.node_id)
    return await _respond(lobby, await _race(lobby, race.code), player.player_id)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/private-races", create_private_race)
    router.add_get("/v1/private-races/{code}", get_private_race)
    router.add_post("/v1/private-races/{code}/join", join_private_race)
    router.add_post("/v1/private-races/{code}/start", start_private_race)
