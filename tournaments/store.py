"""Tournaments in Redis: creation, registration, listings, and the director's guarded writes.

Each tournament's keys share its hash tag (``arena/keys.py``), so every script below touches
one slot. Registration is one Lua script (capacity, closing time, invite code and duplicates
checked atomically). Every change the director makes is one ``GuardedWrite``: a compare-and-set
on the version of one hash (the tournament's or a heat's) that also checks the director epoch,
so a director that lost its lease, or a retry of a step already done, changes nothing.

The indexes (``{tournaments}:*``) live in another slot; they are updated after the
tournament's own keys and re-synced by the director whenever it sees them disagree.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog

from arena import keys
from arena.clock import now_ms
from arena.redisutil import as_text, text_map
from tournaments.encoding import (
    decode_heat,
    decode_tournament,
    heats_per_round,
    new_tournament_fields,
)
from tournaments.model import (
    Heat,
    Tournament,
    TournamentKind,
    TournamentSpec,
    TournamentState,
    Visibility,
)

log = structlog.get_logger(__name__)

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: easy to read aloud
CODE_LENGTH = 6
INVITE_TTL_S = 90 * 86400  # a private tournament's code resolves this long (results stay viewable)


class ListingStatus:
    UPCOMING = "upcoming"
    LIVE = "live"
    FINISHED = "finished"
    ALL = (UPCOMING, LIVE, FINISHED)


# KEYS[1] state hash. ARGV: field/value pairs. 0 if the id is taken.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS[1] state, KEYS[2] participants. ARGV[1] player id, [2] JSON entry, [3] now ms,
# [4] invite code given, [5] channel. Returns ok, ok_full (an instant one just filled),
# not_found, already_registered, closed, bad_invite_code, full.
_REGISTER = """
local s = redis.call('HMGET', KEYS[1], 'state', 'kind', 'starts_at', 'max_players', 'visibility',
  'invite_code')
if not s[1] then return 'not_found' end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 'already_registered' end
if s[1] ~= 'registering' then return 'closed' end
if s[2] == 'scheduled' and tonumber(ARGV[3]) >= tonumber(s[3]) then return 'closed' end
if s[5] == 'private' and s[6] ~= ARGV[4] then return 'bad_invite_code' end
local n = redis.call('HLEN', KEYS[2])
local max = tonumber(s[4])
if n >= max then return 'full' end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], 'players', n + 1)
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('PUBLISH', ARGV[5], cjson.encode({type = 'registration', players = n + 1, at = tonumber(ARGV[3])}))
if s[2] == 'instant' and n + 1 == max then return 'ok_full' end
return 'ok'
"""

# KEYS[1] state, KEYS[2] participants. ARGV[1] player id, [2] now ms, [3] channel.
# Returns ok, not_found, not_registered, closed.
_UNREGISTER = """
local s = redis.call('HMGET', KEYS[1], 'state', 'kind', 'starts_at')
if not s[1] then return 'not_found' end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 'not_registered' end
if s[1] ~= 'registering' then return 'closed' end
if s[2] == 'scheduled' and tonumber(ARGV[2]) >= tonumber(s[3]) then return 'closed' end
redis.call('HDEL', KEYS[2], ARGV[1])
local n = redis.call('HLEN', KEYS[2])
redis.call('HSET', KEYS[1], 'players', n)
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('PUBLISH', ARGV[3], cjson.encode({type = 'registration', players = n, at = tonumber(ARGV[2])}))
return 'ok'
"""

# KEYS[1] the tournament's state hash (holds the director epoch), KEYS[2] the hash whose
# version guards this write, KEYS[3..] other keys of the same tournament.
# ARGV[1] director epoch (0: not a director's write), ARGV[2] expected version of KEYS[2],
# ARGV[3] JSON list of operations, each [op, key index, args] or ["publish", channel, message].
# Returns ok, fenced (a newer director has acted), conflict (the version moved), not_found.
_GUARDED_WRITE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end
local epoch = tonumber(ARGV[1])
if epoch > 0 then
  local seen = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
  if epoch < seen then return 'fenced' end
  if epoch > seen then redis.call('HSET', KEYS[1], 'epoch', ARGV[1]) end
end
if (redis.call('HGET', KEYS[2], 'version') or '0') ~= ARGV[2] then return 'conflict' end
for _, op in ipairs(cjson.decode(ARGV[3])) do
  local kind = op[1]
  if kind == 'hset' then redis.call('HSET', KEYS[op[2]], unpack(op[3]))
  elseif kind == 'hdel' then redis.call('HDEL', KEYS[op[2]], unpack(op[3]))
  elseif kind == 'zadd' then redis.call('ZADD', KEYS[op[2]], unpack(op[3]))
  elseif kind == 'del' then redis.call('DEL', KEYS[op[2]])
  elseif kind == 'expire' then redis.call('EXPIRE', KEYS[op[2]], op[3])
  elseif kind == 'publish' then redis.call('PUBLISH', op[2], op[3])
  end
end
redis.call('HINCRBY', KEYS[2], 'version', 1)
return 'ok'
"""

_ZADD_CHUNK = 500  # members per ZADD: Lua's unpack has a stack limit


@dataclass
class GuardedWrite:
    """One atomic change of a tournament's keys, applied only if ``guard``'s version is still
    ``version`` and no newer director has written to the tournament."""

    tournament_id: str
    guard: str  # the key whose version guards the write
    version: int
    epoch: int = 0
    keys: list[str] = field(default_factory=list)
    ops: list[list[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = [keys.tournament_state(self.tournament_id), self.guard]

    def _index(self, key: str) -> int:
        if key not in self.keys:
            self.keys.append(key)
        return self.keys.index(key) + 1

    def hset(self, key: str, fields: Mapping[str, str | int | float]) -> GuardedWrite:
        if fields:
            flat = [str(x) for pair in fields.items() for x in pair]
            self.ops.append(["hset", self._index(key), flat])
        return self

    def hdel(self, key: str, names: Sequence[str]) -> GuardedWrite:
        if names:
            self.ops.append(["hdel", self._index(key), list(names)])
        return self

    def replace_zset(self, key: str, scores: Mapping[str, float]) -> GuardedWrite:
        self.ops.append(["del", self._index(key)])
        items = list(scores.items())
        for i in range(0, len(items), _ZADD_CHUNK):
            flat = [str(x) for member, score in items[i : i + _ZADD_CHUNK] for x in (repr(score), member)]
            self.ops.append(["zadd", self._index(key), flat])
        return self

    def expire(self, key: str, seconds: int) -> GuardedWrite:
        self.ops.append(["expire", self._index(key), str(seconds)])
        return self

    def publish(self, channel: str, event: Mapping[str, Any]) -> GuardedWrite:
        self.ops.append(["publish", channel, json.dumps(event, separators=(",", ":"))])
        return self

    def event(self, kind: str, body: Mapping[str, Any]) -> GuardedWrite:
        """Announce the change on the tournament's updates channel (sent only if it applies)."""
        message = {"type": kind, "tournament_id": self.tournament_id, "at": now_ms(), **body}
        return self.publish(keys.tournament_updates(self.tournament_id), message)


@dataclass(frozen=True, slots=True)
class Participant:
    player_id: str
    name: str
    registered_at: int


def new_tournament_id() -> str:
    return "t" + secrets.token_hex(6)


def new_invite_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str) -> str | None:
    code = raw.strip().upper()
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return code


class TournamentStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._create = redis.register_script(_CREATE)
        self._register = redis.register_script(_REGISTER)
        self._unregister = redis.register_script(_UNREGISTER)
        self._write = redis.register_script(_GUARDED_WRITE)

    # ---- creating and reading ------------------------------------------------------

    async def create(self, spec: TournamentSpec, created_by: str, now: int) -> Tournament:
        code = await self._reserve_code() if spec.visibility is Visibility.PRIVATE else None
        for _ in range(5):  # 48 random bits: a collision is a bug, not bad luck
            t = Tournament(
                id=new_tournament_id(),
                spec=spec,
                state=TournamentState.REGISTERING,
                version=0,
                created_at=now,
                created_by=created_by,
                players=0,
                invite_code=code,
            )
            fields = new_tournament_fields(t)
            args = [x for pair in fields.items() for x in pair]
            if int(await self._create(keys=[keys.tournament_state(t.id)], args=args)):
                break
        else:
            raise RuntimeError("could not find a free tournament id")
        if code is not None:
            await self._redis.set(keys.tournament_invite(code), t.id, ex=INVITE_TTL_S)
        await self.sync_indexes(t)
        log.info("tournament_created", tournament_id=t.id, kind=spec.kind.value, max_players=spec.max_players)
        return t

    async def _reserve_code(self) -> str:
        for _ in range(5):
            code = new_invite_code()
            if await self._redis.set(keys.tournament_invite(code), "", nx=True, ex=INVITE_TTL_S):
                return code
        raise RuntimeError("could not find a free invite code")

    async def get(self, tournament_id: str) -> Tournament | None:
        raw = await self._redis.hgetall(keys.tournament_state(tournament_id))
        return decode_tournament(text_map(raw)) if raw else None

    async def get_many(self, ids: Sequence[str]) -> list[Tournament | None]:
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for tid in ids:
                pipe.hgetall(keys.tournament_state(tid))
            raws = await pipe.execute()
        return [decode_tournament(text_map(r)) if r else None for r in raws]

    async def heats_per_round(self, tournament_id: str) -> list[int]:
        raw = await self._redis.hget(keys.tournament_state(tournament_id), "heats")
        return heats_per_round({"heats": as_text(raw)} if raw is not None else {})

    async def by_invite(self, code: str) -> str | None:
        raw = await self._redis.get(keys.tournament_invite(code))
        if raw is None:
            return None
        return as_text(raw) or None  # "" while the code is reserved but its tournament not yet made

    async def listed(self, status: str, offset: int, limit: int) -> tuple[list[Tournament], int | None]:
        """Public tournaments of one listing status, a page at a time; upcoming soonest first,
        live and finished newest first. Returns the page and the next offset (None at the end)."""
        key = keys.tournaments_listed(status)
        desc = status != ListingStatus.UPCOMING
        ids = [as_text(i) for i in await self._redis.zrange(key, offset, offset + limit, desc=desc)]
        page = ids[:limit]
        found = await self.get_many(page)
        missing = [tid for tid, t in zip(page, found, strict=True) if t is None]
        if missing:  # expired after the end: tidy the index as we go
            await self._redis.zrem(key, *missing)
        more = offset + limit if len(ids) > limit else None
        return [t for t in found if t is not None], more

    # ---- registration --------------------------------------------------------------

    async def register(
        self, tournament_id: str, player_id: str, name: str, invite_code: str, now: int
    ) -> str:
        entry = json.dumps({"name": name, "at": now})
        outcome = as_text(
            await self._register(
                keys=[keys.tournament_state(tournament_id), keys.tournament_participants(tournament_id)],
                args=[player_id, entry, now, invite_code, keys.tournament_updates(tournament_id)],
            )
        )
        if outcome == "ok_full":  # the director starts it at its next look, not at the sweep
            await self._redis.zadd(keys.TOURNAMENTS_REGISTERING, {tournament_id: now}, xx=True)
        return outcome

    async def unregister(self, tournament_id: str, player_id: str, now: int) -> str:
        return as_text(
            await self._unregister(
                keys=[keys.tournament_state(tournament_id), keys.tournament_participants(tournament_id)],
                args=[player_id, now, keys.tournament_updates(tournament_id)],
            )
        )

    async def participants(self, tournament_id: str) -> list[Participant]:
        raw = text_map(await self._redis.hgetall(keys.tournament_participants(tournament_id)))
        out = []
        for pid, value in raw.items():
            d = json.loads(value)
            out.append(Participant(pid, str(d["name"]), int(d["at"])))
        return sorted(out, key=lambda p: (p.registered_at, p.player_id))

    async def is_registered(self, tournament_id: str, player_id: str) -> bool:
        return bool(await self._redis.hexists(keys.tournament_participants(tournament_id), player_id))

    # ---- what the director works on ------------------------------------------------

    async def due(self, now: int) -> list[str]:
        """Registering tournaments whose start is due (scheduled ones at their time, full instant ones)."""
        ids = await self._redis.zrangebyscore(keys.TOURNAMENTS_REGISTERING, "-inf", now)
        return [as_text(i) for i in ids]

    async def waiting_instant(self) -> list[str]:
        """Instant tournaments not yet seen full (the sweep that catches a lost 'full' notice)."""
        ids = await self._redis.zrangebyscore(keys.TOURNAMENTS_REGISTERING, "+inf", "+inf")
        return [as_text(i) for i in ids]

    async def running_ids(self) -> list[str]:
        return [as_text(i) for i in await self._redis.zrange(keys.TOURNAMENTS_RUNNING, 0, -1)]

    async def heats(self, tournament_id: str, round_no: int, count: int) -> list[Heat | None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for h in range(1, count + 1):
                pipe.hgetall(keys.tournament_heat(tournament_id, round_no, h))
            raws = await pipe.execute()
        return [
            decode_heat(tournament_id, round_no, h, text_map(raw)) if raw else None
            for h, raw in enumerate(raws, start=1)
        ]

    async def heat(self, tournament_id: str, round_no: int, heat_no: int) -> Heat | None:
        raw = await self._redis.hgetall(keys.tournament_heat(tournament_id, round_no, heat_no))
        return decode_heat(tournament_id, round_no, heat_no, text_map(raw)) if raw else None

    async def all_heats(self, tournament_id: str) -> list[list[Heat]]:
        """Every round's heats so far, in order (a heat that cannot be read is left out)."""
        counts = await self.heats_per_round(tournament_id)
        rounds = []
        for r, n in enumerate(counts, start=1):
            rounds.append([h for h in await self.heats(tournament_id, r, n) if h is not None])
        return rounds

    async def race_location(self, tournament_id: str, race_id: str) -> tuple[int, int, int] | None:
        """(round, heat, race_no) of a race placed for this tournament; None for any other race."""
        raw = await self._redis.hget(keys.tournament_races(tournament_id), race_id)
        if raw is None:
            return None
        r, h, g = as_text(raw).split(":")
        return int(r), int(h), int(g)

    async def assignment(self, tournament_id: str, player_id: str) -> tuple[int, int] | None:
        raw = await self._redis.hget(keys.tournament_assignments(tournament_id), player_id)
        if raw is None:
            return None
        r, h = as_text(raw).split(":")
        return int(r), int(h)

    async def rankings(self, tournament_id: str, limit: int = -1) -> list[str]:
        stop = -1 if limit < 0 else limit - 1
        return [
            as_text(p) for p in await self._redis.zrevrange(keys.tournament_rankings(tournament_id), 0, stop)
        ]

    async def prizes(self, tournament_id: str) -> dict[str, str]:
        return text_map(await self._redis.hgetall(keys.tournament_prizes(tournament_id)))

    async def commit(self, write: GuardedWrite) -> str:
        """Apply a guarded write: ok, fenced, conflict or not_found."""
        return as_text(
            await self._write(
                keys=write.keys,
                args=[write.epoch, write.version, json.dumps(write.ops, separators=(",", ":"))],
            )
        )

    async def sync_indexes(self, t: Tournament) -> None:
        """Put the tournament in the indexes its state says (idempotent)."""
        registering: dict[str, float] = {}
        if t.state is TournamentState.REGISTERING:
            due = t.spec.starts_at if t.spec.kind is TournamentKind.SCHEDULED else math.inf
            if t.spec.kind is TournamentKind.INSTANT and t.players >= t.spec.max_players:
                due = t.created_at
            registering = {t.id: float(due if due is not None else math.inf)}
        listing = {
            TournamentState.REGISTERING: (ListingStatus.UPCOMING, t.spec.starts_at or t.created_at),
            TournamentState.RUNNING: (ListingStatus.LIVE, t.started_at or 0),
            TournamentState.FINISHED: (ListingStatus.FINISHED, t.finished_at or 0),
            TournamentState.CANCELLED: (ListingStatus.FINISHED, t.finished_at or 0),
        }[t.state]
        async with self._redis.pipeline(transaction=False) as pipe:
            if registering:
                pipe.zadd(keys.TOURNAMENTS_REGISTERING, registering)
            else:
                pipe.zrem(keys.TOURNAMENTS_REGISTERING, t.id)
            if t.state is TournamentState.RUNNING:
                pipe.zadd(keys.TOURNAMENTS_RUNNING, {t.id: float(t.started_at or 0)})
            else:
                pipe.zrem(keys.TOURNAMENTS_RUNNING, t.id)
            for status in ListingStatus.ALL:
                key = keys.tournaments_listed(status)
                if status == listing[0] and t.spec.visibility is Visibility.PUBLIC:
                    pipe.zadd(key, {t.id: float(listing[1])})
                else:
                    pipe.zrem(key, t.id)
            await pipe.execute()

    async def forget(self, tournament_id: str) -> None:
        """Drop an id whose tournament no longer exists from the director's indexes."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(keys.TOURNAMENTS_REGISTERING, tournament_id)
            pipe.zrem(keys.TOURNAMENTS_RUNNING, tournament_id)
            await pipe.execute()
