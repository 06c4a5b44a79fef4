"""Private races: a host creates one and shares its invite code, friends join, the host starts it.

One Redis hash per race (``private:{CODE}``, expiring with the code) holds the settings, the
members (a JSON list, in join order), the state and, once started, every member's seat.
Each step is one Lua script; a join and a start also bump ``version`` and publish on the
race's channel, so long-polls (``GET ...?wait=&since=``) answer as soon as one happens.

    open --start--> starting --placed--> started
      ^                |                    |
      +---no node------+                    +--node lost--> (host may start again)

``starting`` keeps two starts from placing two races; if the lobby dies mid-start it lapses
after a deadline and the host can start again. Members can only join while ``open``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import web

from arena import keys
from arena.clock import now_ms
from arena.events import ChannelEvents
from arena.placement import Placed, SeatRequest
from arena.protocol import RaceType
from arena.redisutil import as_text, text_map
from arena.tokens import PlayerToken
from gameserver.passages import PassageError, validate_custom_text
from lobby.auth import require_player
from lobby.bodies import opt_str, query_int, query_wait, read_object, req_str
from lobby.context import Lobby, lobby_of
from lobby.errors import ApiError, bad_request
from lobby.ghosts import GhostRef, load_ghost
from lobby.nodes import NODE_LOST_REASON, AssignmentView

log = structlog.get_logger(__name__)

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: easy to read aloud and type
CODE_LENGTH = 6  # 31^6: about 890 million codes
RECHECK_S = 2.0  # long-polls re-read this often even without a notice


class PrivateState(StrEnum):
    OPEN = "open"
    STARTING = "starting"
    STARTED = "started"


# KEYS[1] race. ARGV[1] ttl s, [2..] field/value pairs. Returns 0 if the code is taken.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1] race. ARGV[1] player id, [2] name, [3] max players, [4] channel.
_JOIN = """
local d = redis.call('HMGET', KEYS[1], 'state', 'members')
if not d[1] then return 'not_found' end
local members = cjson.decode(d[2])
for _, m in ipairs(members) do
  if m[1] == ARGV[1] then return 'ok' end
end
if d[1] ~= 'open' then return 'not_open' end
if #members >= tonumber(ARGV[3]) then return 'full' end
members[#members + 1] = {ARGV[1], ARGV[2]}
redis.call('HSET', KEYS[1], 'members', cjson.encode(members))
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('PUBLISH', ARGV[4], 'joined')
return 'ok'
"""

# KEYS[1] race. ARGV[1] host id, [2] now ms, [3] starting deadline ms, [4] race id whose node was
# lost ('' if none). Returns 'ok', or why not: not_found, not_host, starting, started.
# Starting (and aborting back to open) is not a version change: waiters sleep on until started.
_BEGIN = """
local d = redis.call('HMGET', KEYS[1], 'state', 'host_id', 'starting_until', 'race_id')
if not d[1] then return 'not_found' end
if d[2] ~= ARGV[1] then return 'not_host' end
local ok = d[1] == 'open'
  or (d[1] == 'starting' and tonumber(d[3]) < tonumber(ARGV[2]))
  or (d[1] == 'started' and ARGV[4] ~= '' and d[4] == ARGV[4])
if not ok then return d[1] end
redis.call('HSET', KEYS[1], 'state', 'starting', 'starting_until', ARGV[3])
return 'ok'
"""

# KEYS[1] race. ARGV[1] now ms, [2] ttl s, [3] channel, [4] expires_at ms, [5..] field/value pairs
# (race and seats). Returns 0 if the race is no longer starting (expired meanwhile).
_FINISH = """
if redis.call('HGET', KEYS[1], 'state') ~= 'starting' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'started', 'started_at', ARGV[1], 'expires_at', ARGV[4], unpack(ARGV, 5))
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'started')
return 1
"""

# KEYS[1] race. Back to open after a failed placement.
_ABORT = """
if redis.call('HGET', KEYS[1], 'state') ~= 'starting' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'open')
return 1
"""


@dataclass(frozen=True, slots=True)
class Member:
    player_id: str
    name: str


@dataclass(frozen=True, slots=True)
class PrivateRace:
    code: str
    host_id: str
    race_type: str
    region: str
    custom_text: str | None
    state: PrivateState
    version: int
    created_at: int  # ms
    expires_at: int  # ms
    members: list[Member]  # in join order; the host first
    race_id: str | None = None
    node_id: str | None = None
    url: str | None = None
    seats: dict[str, tuple[str, str]] | None = None  # player id -> (player token, join ticket)
    ghosts: list[GhostRef] = field(default_factory=list)  # added by the host (lobby/private_ghosts.py)


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str) -> str | None:
    code = raw.strip().upper()
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return code


class PrivateRaceStore:
    def __init__(self, redis: aioredis.Redis, events: ChannelEvents, *, ttl_s: int, max_players: int) -> None:
        self._redis = redis
        self._events = events
        self.ttl_s = ttl_s
        self.max_players = max_players
        self._create = redis.register_script(_CREATE)
        self._join = redis.register_script(_JOIN)
        self._begin = redis.register_script(_BEGIN)
        self._finish = redis.register_script(_FINISH)
        self._abort = redis.register_script(_ABORT)

    async def create(self, host: PlayerToken, race_type: str, region: str, custom_text: str | None) -> str:
        now = now_ms()
        fields: dict[str, str | int] = {
            "host_id": host.player_id,
            "race_type": race_type,
            "region": region,
            "custom_text": custom_text or "",
            "state": PrivateState.OPEN.value,
            "version": 1,
            "created_at": now,
            "expires_at": now + self.ttl_s * 1000,
            "members": json.dumps([[host.player_id, host.name]]),
        }
        args: list[str | int] = [self.ttl_s, *(item for pair in fields.items() for item in pair)]
        for _ in range(5):  # a collision in 890 million codes is rare; five in a row is a bug
            code = new_code()
            if int(await self._create(keys=[keys.private_race(code)], args=args)):
                return code
        raise RuntimeError("could not find a free invite code")

    async def get(self, code: str) -> PrivateRace | None:
        raw = await self._redis.hgetall(keys.private_race(code))
        return _decode(code, text_map(raw)) if raw else None

    async def join(self, code: str, player: PlayerToken) -> str:
        """'ok' (also when already a member), 'not_found', 'not_open' or 'full'."""
        args: list[str | int] = [
            player.player_id,
            player.name,
            self.max_players,
            keys.private_race_events(code),
        ]
        return as_text(await self._join(keys=[keys.private_race(code)], args=args))

    async def begin_start(self, code: str, host_id: str, *, deadline_ms: int, lost_race_id: str) -> str:
        args: list[str | int] = [host_id, now_ms(), deadline_ms, lost_race_id]
        return as_text(await self._begin(keys=[keys.private_race(code)], args=args))

    async def finish_start(self, code: str, placed: Placed) -> bool:
        now = now_ms()
        fields: list[str] = ["race_id", placed.race_id, "node_id", placed.node_id, "url", placed.url]
        for player_id, seat in placed.seats.items():
            fields += [f"seat:{player_id}", json.dumps([seat.player_token, seat.join_ticket])]
        args: list[str | int] = [now, self.ttl_s, keys.private_race_events(code), now + self.ttl_s * 1000]
        return bool(int(await self._finish(keys=[keys.private_race(code)], args=[*args, *fields])))

    async def abort_start(self, code: str) -> None:
        await self._abort(keys=[keys.private_race(code)])

    async def wait_change(self, code: str, since: int, timeout_s: float) -> PrivateRace | None:
        """The race once its version differs from ``since``, or as it is after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with self._events.watch(keys.private_race_events(code)) as event:
            while True:
                event.clear()  # before reading: a change after the read sets it again
                race = await self.get(code)
                remaining = deadline - loop.time()
                if race is None or race.version != since or remaining <= 0:
                    return race
                try:
                    await asyncio.wait_for(event.wait(), min(remaining, RECHECK_S))
                except TimeoutError:
                    pass


def _decode(code: str, d: dict[str, str]) -> PrivateRace | None:
    try:
        seats = {k.removeprefix("seat:"): json.loads(v) for k, v in d.items() if k.startswith("seat:")}
        return PrivateRace(
            code=code,
            host_id=d["host_id"],
            race_type=d["race_type"],
            region=d["region"],
            custom_text=d["custom_text"] or None,
            state=PrivateState(d["state"]),
            version=int(d["version"]),
            created_at=int(d["created_at"]),
            expires_at=int(d["expires_at"]),
            members=[Member(str(m[0]), str(m[1])) for m in json.loads(d["members"])],
            race_id=d.get("race_id"),
            node_id=d.get("node_id"),
            url=d.get("url"),
            seats={pid: (str(s[0]), str(s[1])) for pid, s in seats.items()} or None,
            ghosts=[GhostRef.from_json(g) for g in json.loads(d.get("ghosts", "[]"))],
        )
    except (KeyError, ValueError, IndexError, TypeError):
        log.warning("private_race_unreadable", code=code)
        return None  # a half-expired or foreign entry: treat as absent


# ---- HTTP --------------------------------------------------------------------------


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
