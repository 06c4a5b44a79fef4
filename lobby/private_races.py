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

The endpoints are served by ``lobby.private_race_routes``; this module imports nothing of
``lobby.context``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
import structlog

from arena import keys
from arena.clock import now_ms
from arena.events import ChannelEvents
from arena.placement import Placed
from arena.redisutil import as_text, text_map
from arena.tokens import PlayerToken
from arena.waits import wait_event

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
class GhostRef:
    """A ghost chosen for a private race, as its hash keeps it (the log is read at the start)."""

    race_id: str
    player_id: str
    name: str
    wpm: float
    passage_id: str

    def to_json(self) -> list[str | float]:
        return [self.race_id, self.player_id, self.name, self.wpm, self.passage_id]

    @classmethod
    def from_json(cls, item: list[Any]) -> GhostRef:
        race_id, player_id, name, wpm, passage_id = item
        return cls(str(race_id), str(player_id), str(name), float(wpm), str(passage_id))


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
                await wait_event(event, min(remaining, RECHECK_S))


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
