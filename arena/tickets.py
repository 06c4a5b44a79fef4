"""Matchmaking tickets in Redis: the lobby's side (create, get, wait, cancel) and the
matchmaker's side (peek, claim, assign, release, reap).

A ticket lives in one queue, per (race type, region). Every key of a queue shares one hash
tag (see ``arena.keys``), so each step below is one Lua script, atomic on Redis Cluster too:

    queued --claim--> claimed --assign--> matched
      ^                  |
      +--release/reap----+          queued | claimed --cancel--> cancelled

- ``claim`` moves whole groups from queued to claimed, each group only if every ticket in it
  is still queued: two matchmakers can never take the same ticket.
- A claim has an owner and a deadline. ``reap`` puts claims whose deadline passed back in the
  queue, with their original enqueue instant, so a matchmaker that dies mid-match loses nothing.
- ``assign`` only completes tickets still claimed under the caller's claim id; a cancelled or
  reaped ticket is skipped. It publishes on ``ticket:{id}:events`` for waiters.
- ``cancel`` of a queued or claimed ticket makes it cancelled for good; of a matched one it
  fails and the returned ticket carries the assignment.

The ticket id embeds its queue (``quick.eu.<hex>``), so a ticket's keys follow from its id.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, NewType

import redis.asyncio as aioredis
import structlog

from arena import keys
from arena.clock import now_ms
from arena.events import ChannelEvents
from arena.protocol import RaceType
from arena.redisbatch import run_batch, run_script
from arena.redisutil import run_script_many
from arena.waits import wait_event

log = structlog.get_logger(__name__)

TicketId = NewType("TicketId", str)

# Custom races need a player's own text: they are created directly, never matched.
MATCHABLE_RACE_TYPES = frozenset(t.value for t in RaceType if t is not RaceType.CUSTOM)
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})?")


class TicketState(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"  # a matchmaker is placing it; to the player this is still "searching"
    MATCHED = "matched"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({TicketState.MATCHED, TicketState.CANCELLED})
LIVE_STATES = frozenset({TicketState.QUEUED, TicketState.CLAIMED})


class QueueFull(Exception):
    """The queue holds its maximum number of tickets; the lobby should ask the player to retry."""


class TicketLive(Exception):
    """The player's previous ticket is still queued or claimed: one live ticket per player."""

    def __init__(self, ticket_id: str) -> None:
        super().__init__(f"ticket {ticket_id} is still live")
        self.ticket_id = ticket_id


@dataclass(frozen=True, slots=True)
class QueueRef:
    """One matchmaking queue: a race type in a region."""

    race_type: str
    region: str

    @property
    def queue(self) -> str:
        return keys.mm_queue(self.race_type, self.region)

    @property
    def pool(self) -> str:
        return keys.mm_pool(self.race_type, self.region)

    @property
    def claims(self) -> str:
        return keys.mm_claims(self.race_type, self.region)

    @property
    def stats(self) -> str:
        return keys.mm_stats(self.race_type, self.region)

    def ticket(self, ticket_id: str) -> str:
        return keys.mm_ticket(self.race_type, self.region, ticket_id)

    def __str__(self) -> str:
        return f"{self.race_type}:{self.region}"


def new_ticket_id(queue: QueueRef) -> TicketId:
    return TicketId(f"{queue.race_type}.{queue.region}.{secrets.token_hex(8)}")


def queue_of(ticket_id: str) -> QueueRef | None:
    """The queue a ticket id belongs to, or None for an id that is not one of ours."""
    parts = ticket_id.split(".")
    if len(parts) != 3 or parts[0] not in MATCHABLE_RACE_TYPES or not _REGION.fullmatch(parts[1]):
        return None
    return QueueRef(parts[0], parts[1])


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a matched ticket's player races, and the tokens to get in."""

    race_id: str
    node_id: str
    url: str  # the node's WebSocket URL
    player_token: str  # for hello
    join_ticket: str  # for join (stored as the ticket's ``ticket`` field)
    region: str  # the race's region: the ticket's own, or a neighbour after the fallback wait


@dataclass(frozen=True, slots=True)
class Ticket:
    id: TicketId
    player_id: str
    name: str
    rating: float
    race_type: str
    region: str
    language: str | None
    created_at: int  # ms; the queue's order, kept across releases
    state: TicketState
    expected_wait_s: float | None  # remaining, from the queue's recent figures; None if unknown
    matched_at: int | None = None
    assignment: Assignment | None = None

    @property
    def queue(self) -> QueueRef:
        return QueueRef(self.race_type, self.region)


@dataclass(frozen=True, slots=True)
class TicketRequest:
    """What the lobby asks for: a race of a type, in a region, optionally in a language."""

    player_id: str
    name: str
    race_type: str
    region: str
    rating: float  # the player's current rating (``RatingStore.get``)
    language: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedTicket:
    """What pairing needs of a queued ticket (read from the queue's pool in one call)."""

    id: TicketId
    player_id: str
    name: str
    rating: float
    language: str | None
    race_type: str
    region: str
    enqueued_at: int  # ms


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    tickets: list[QueuedTicket]  # oldest first
    depth: int  # tickets queued in all, beyond the ones read


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A queue's recent figures, written by matchmakers; the basis of expected waits."""

    wait_ms: int  # moving average of time to match
    fallback_ms: int  # fewer players allowed from this wait on
    neighbour_ms: int  # a neighbouring region allowed from this wait on
    max_wait_ms: int  # a race alone from this wait on: nobody waits longer


def expected_wait_ms(stats: QueueStats, waited_ms: int) -> int:
    """Remaining wait: the recent average while ahead, then the next policy step still ahead."""
    if stats.wait_ms > waited_ms:
        return stats.wait_ms - waited_ms
    ahead = [s for s in (stats.fallback_ms, stats.neighbour_ms, stats.max_wait_ms) if s > waited_ms]
    return min(ahead) - waited_ms if ahead else 0


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of one ``claim`` call: which groups this caller now holds."""

    claim_id: str
    claimed: list[bool]  # per group, in the order given


# ---- scripts ---------------------------------------------------------------------
# KEYS[1] ticket, [2] queue, [3] pool, [4] stats, optional [5] the player's previous ticket in
# this queue. ARGV[1] id, [2] created_at, [3] ttl s, [4] max queued, [5] pool info, [6..] ticket
# field/value pairs. Returns 'live' when KEYS[5] is still queued or claimed, false when full,
# else the queue's stats.
_CREATE = """
if KEYS[5] then
  local state = redis.call('HGET', KEYS[5], 'state')
  if state == 'queued' or state == 'claimed' then return 'live' end
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return false end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[5])
return redis.call('HMGET', KEYS[4], 'wait_ms', 'fallback_ms', 'neighbour_ms', 'max_wait_ms')
"""

# KEYS[1] queue, [2] pool. ARGV[1] highest enqueue instant, [2] limit.
# Returns {depth, id1, enqueued1, info1, id2, ...}, oldest first.
_PEEK = """
local rows = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2], 'WITHSCORES')
local out = {redis.call('ZCARD', KEYS[1])}
if #rows == 0 then return out end
local ids = {}
for i = 1, #rows, 2 do ids[#ids + 1] = rows[i] end
local infos = redis.call('HMGET', KEYS[2], unpack(ids))
for i = 1, #ids do
  out[#out + 1] = ids[i]
  out[#out + 1] = rows[2 * i]
  out[#out + 1] = infos[i] or ''
end
return out
"""

# KEYS[1] queue, [2] pool, [3] claims, [4..] ticket hashes (all groups, in order).
# ARGV[1] claim id, [2] owner, [3] deadline ms, [4] group count, [5..] group sizes, then ids.
# Returns 1/0 per group: a group is claimed only if every ticket in it is still queued.
_CLAIM = """
local groups = tonumber(ARGV[4])
local a = 5 + groups
local k = 4
local out = {}
for g = 1, groups do
  local size = tonumber(ARGV[4 + g])
  local ok = true
  for j = 0, size - 1 do
    local id = ARGV[a + j]
    local state = redis.call('HGET', KEYS[k + j], 'state')
    if state ~= 'queued' or not redis.call('ZSCORE', KEYS[1], id) then
      ok = false
      if not state then
        redis.call('ZREM', KEYS[1], id)
        redis.call('HDEL', KEYS[2], id)
      end
    end
  end
  if ok then
    for j = 0, size - 1 do
      local id = ARGV[a + j]
      redis.call('ZREM', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
      redis.call('HSET', KEYS[k + j], 'state', 'claimed', 'claim_id', ARGV[1], 'claim_owner', ARGV[2],
        'claim_deadline', ARGV[3])
      redis.call('ZADD', KEYS[3], ARGV[3], id)
    end
  end
  out[g] = ok and 1 or 0
  a = a + size
  k = k + size
end
return out
"""

# KEYS[1] claims, [2..] ticket hashes. ARGV[1] claim id, [2] now, [3] ttl s, [4] count, then
# per ticket: id, channel, race_id, node_id, url, player_token, join ticket, race region.
# Returns 1/0 per ticket: 0 when it is no longer claimed under this claim id.
_ASSIGN = """
local out = {}
for i = 1, tonumber(ARGV[4]) do
  local b = 4 + (i - 1) * 8
  local key = KEYS[i + 1]
  local cur = redis.call('HMGET', key, 'state', 'claim_id')
  if cur[1] == 'claimed' and cur[2] == ARGV[1] then
    redis.call('HSET', key, 'state', 'matched', 'matched_at', ARGV[2], 'race_id', ARGV[b + 3],
      'node_id', ARGV[b + 4], 'url', ARGV[b + 5], 'player_token', ARGV[b + 6], 'ticket', ARGV[b + 7],
      'race_region', ARGV[b + 8])
    redis.call('HDEL', key, 'claim_id', 'claim_owner', 'claim_deadline')
    redis.call('EXPIRE', key, ARGV[3])
    redis.call('ZREM', KEYS[1], ARGV[b + 1])
    redis.call('PUBLISH', ARGV[b + 2], 'matched')
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# KEYS[1] queue, [2] pool, [3] claims, [4..] ticket hashes. ARGV[1] claim id ('' = any),
# [2] deadline cutoff ('' = none), [3..] ids. Claimed tickets that match go back to the queue
# at their original enqueue instant. Returns how many were requeued.
_REQUEUE = """
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = KEYS[i + 1]
  local t = redis.call('HMGET', key, 'state', 'claim_id', 'claim_deadline', 'created_at', 'pool')
  if t[1] == 'claimed' then
    local mine = ARGV[1] == '' or t[2] == ARGV[1]
    local due = ARGV[2] == '' or tonumber(t[3]) <= tonumber(ARGV[2])
    if mine and due then
      redis.call('HSET', key, 'state', 'queued')
      redis.call('HDEL', key, 'claim_id', 'claim_owner', 'claim_deadline')
      redis.call('ZADD', KEYS[1], t[4], id)
      redis.call('HSET', KEYS[2], id, t[5])
      redis.call('ZREM', KEYS[3], id)
      n = n + 1
    end
  else
    redis.call('ZREM', KEYS[3], id)
  end
end
return n
"""

# KEYS[1] queue, [2] pool, [3] claims, [4] ticket. ARGV[1] id, [2] now, [3] ttl s, [4] channel,
# [5] owner ('' = anyone). Returns the ticket's fields after the attempt, or false if it does not
# exist or is not the owner's.
_CANCEL = """
local state, owner = unpack(redis.call('HMGET', KEYS[4], 'state', 'player_id'))
if not state then return false end
if ARGV[5] ~= '' and owner ~= ARGV[5] then return false end
if state == 'queued' or state == 'claimed' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HSET', KEYS[4], 'state', 'cancelled', 'cancelled_at', ARGV[2])
  redis.call('HDEL', KEYS[4], 'claim_id', 'claim_owner', 'claim_deadline')
  redis.call('EXPIRE', KEYS[4], ARGV[3])
  redis.call('PUBLISH', ARGV[4], 'cancelled')
end
return redis.call('HGETALL', KEYS[4])
"""


class TicketStore:
    """Tickets and queues in Redis. Share one per process; ``aclose()`` stops the waiters' listener.

    ``ticket_ttl_s``: how long a ticket hash lives (a queued one too, as a safety net against
    leaks; matched and cancelled ones stay readable this long). ``max_queued``: per queue, past
    it ``create`` raises ``QueueFull``. ``recheck_s``: a waiter re-reads its ticket this often
    even without an event, so a lost pub/sub message delays it at most this long.
    ``max_concurrent_reads``: waiters woken together re-read their tickets at most this many at
    a time, so a burst of assignments cannot exhaust the Redis client's connection pool.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ticket_ttl_s: int = 3600,
        max_queued: int = 200_000,
        recheck_s: float = 2.0,
        max_concurrent_reads: int = 32,
    ) -> None:
        self._redis = redis
        self.ticket_ttl_s = ticket_ttl_s
        self.max_queued = max_queued
        self.recheck_s = recheck_s
        self._create = redis.register_script(_CREATE)
        self._peek = redis.register_script(_PEEK)
        self._claim = redis.register_script(_CLAIM)
        self._assign = redis.register_script(_ASSIGN)
        self._requeue = redis.register_script(_REQUEUE)
        self._cancel = redis.register_script(_CANCEL)
        self._events = ChannelEvents(redis)
        self._reads = asyncio.Semaphore(max_concurrent_reads)

    async def aclose(self) -> None:
        await self._events.aclose()

    # ---- the lobby's side --------------------------------------------------------

    async def create(
        self,
        player_id: str,
        name: str,
        race_type: str,
        region: str,
        *,
        rating: float,
        language: str | None = None,
    ) -> Ticket:
        """Queue a ticket. ``rating`` is the player's current rating (``RatingStore.get``)."""
        (ticket,) = await self.create_many(
            [TicketRequest(player_id, name, race_type, region, rating, language)]
        )
        if ticket is None:
            raise QueueFull(f"queue {race_type}:{region} holds {self.max_queued} tickets")
        return ticket

    async def create_unless_live(self, request: TicketRequest, previous: str | None) -> Ticket:
        """Queue a ticket unless the player's ``previous`` ticket is still live (``TicketLive``).

        One round trip when ``previous`` is in the same queue (the usual case: the same race type
        and region again): the create script checks it, atomically. Another queue's ticket is
        another hash slot, so it is read first; that is safe without a lock against the
        matchmaker because a ticket that is matched or cancelled never becomes live again.
        """
        ticket, script_keys, args = self._prepare(request)
        before = queue_of(previous) if previous else None
        if previous and before is not None:
            if before == ticket.queue:
                script_keys.append(before.ticket(previous))
            else:
                state = await self._redis.hget(before.ticket(previous), "state")
                if state is not None and _text(state) in LIVE_STATES:
                    raise TicketLive(previous)
        raw = await run_script(self._redis, self._create, script_keys, args)
        if isinstance(raw, bytes | str):
            raise TicketLive(previous or "")
        if raw is None:
            raise QueueFull(f"queue {ticket.queue} holds {self.max_queued} tickets")
        stats = _stats(raw)
        expected = None if stats is None else expected_wait_ms(stats, 0) / 1000
        return replace(ticket, expected_wait_s=expected)

    async def create_many(self, requests: Sequence[TicketRequest]) -> list[Ticket | None]:
        """Queue several tickets in one round trip (each still atomic on its own); None where
        the queue was full. Every request is validated before anything is written."""
        prepared = [self._prepare(r) for r in requests]
        if len(prepared) == 1:
            ticket, script_keys, args = prepared[0]
            raws = [await self._create(keys=script_keys, args=args)]
        else:
            raws = await run_script_many(self._redis, self._create, [(k, a) for _, k, a in prepared])
            for raw in raws:
                if isinstance(raw, Exception):
                    raise raw
        out: list[Ticket | None] = []
        for (ticket, _, _), raw in zip(prepared, raws, strict=True):
            if raw is None:
                out.append(None)
                continue
            stats = _stats(raw)
            expected = None if stats is None else expected_wait_ms(stats, 0) / 1000
            out.append(replace(ticket, expected_wait_s=expected))
        return out

    def _prepare(self, r: TicketRequest) -> tuple[Ticket, list[str], list[str | int]]:
        _validate(r.player_id, r.name, r.race_type, r.region, r.rating, r.language)
        queue = QueueRef(r.race_type, r.region)
        ticket_id = new_ticket_id(queue)
        created = now_ms()
        pool_info = f"{r.rating!r}|{r.language or ''}|{r.player_id}|{r.name}"
        fields: dict[str, str | int] = {
            "id": ticket_id,
            "player_id": r.player_id,
            "name": r.name,
            "rating": repr(r.rating),
            "race_type": r.race_type,
            "region": r.region,
            "language": r.language or "",
            "created_at": created,
            "state": TicketState.QUEUED.value,
            "pool": pool_info,
        }
        args: list[str | int] = [ticket_id, created, self.ticket_ttl_s, self.max_queued, pool_info]
        for field, value in fields.items():
            args += [field, value]
        script_keys = [queue.ticket(ticket_id), queue.queue, queue.pool, queue.stats]
        ticket = Ticket(
            id=ticket_id,
            player_id=r.player_id,
            name=r.name,
            rating=r.rating,
            race_type=r.race_type,
            region=r.region,
            language=r.language,
            created_at=created,
            state=TicketState.QUEUED,
            expected_wait_s=None,
        )
        return ticket, script_keys, args

    async def get(self, ticket_id: str) -> Ticket | None:
        queue = queue_of(ticket_id)
        if queue is None:
            return None
        # Packed by hiredis, raw replies (HGETALL's is a flat list): every ticket poll reads here.
        flat, stats = await run_batch(
            self._redis,
            [
                ("HGETALL", queue.ticket(ticket_id)),
                ("HMGET", queue.stats, "wait_ms", "fallback_ms", "neighbour_ms", "max_wait_ms"),
            ],
        )
        return _ticket(_pairs(flat), _stats(stats)) if flat else None

    async def wait(self, ticket_id: str, timeout_s: float) -> Ticket | None:
        """Long-poll: the ticket once matched or cancelled, or as it is after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        async with self._events.watch(keys.ticket_events(ticket_id)) as event:
            while True:
                event.clear()  # before reading: a change after the read sets it again
                async with self._reads:
                    ticket = await self.get(ticket_id)
                remaining = deadline - loop.time()
                if ticket is None or ticket.state in FINAL_STATES or remaining <= 0:
                    return ticket
                await wait_event(event, min(remaining, self.recheck_s))

    async def cancel(self, ticket_id: str, *, owner: str = "") -> Ticket | None:
        """Cancel for good. The returned ticket says what happened: ``cancelled``, or
        ``matched`` with its assignment when the match came first. None: no such ticket, or
        (``owner`` given) not that player's, checked in the same script."""
        queue = queue_of(ticket_id)
        if queue is None:
            return None
        raw = await run_script(
            self._redis,
            self._cancel,
            [queue.queue, queue.pool, queue.claims, queue.ticket(ticket_id)],
            [ticket_id, now_ms(), self.ticket_ttl_s, keys.ticket_events(ticket_id), owner],
        )
        return _ticket(_pairs(raw), None) if raw else None

    # ---- the matchmaker's side ---------------------------------------------------

    async def peek(self, queue: QueueRef, *, limit: int, enqueued_before: int | None = None) -> QueueSnapshot:
        """The oldest ``limit`` queued tickets (enqueued at or before ``enqueued_before``)."""
        upper = "+inf" if enqueued_before is None else str(enqueued_before)
        raw = await self._peek(keys=[queue.queue, queue.pool], args=[upper, limit])
        tickets = []
        for i in range(1, len(raw), 3):
            info = _text(raw[i + 2])
            if not info:
                continue  # an entry being removed: skip it
            rating, language, player_id, name = info.split("|", 3)
            tickets.append(
                QueuedTicket(
                    id=TicketId(_text(raw[i])),
                    player_id=player_id,
                    name=name,
                    rating=float(rating),
                    language=language or None,
                    race_type=queue.race_type,
                    region=queue.region,
                    enqueued_at=int(float(raw[i + 1])),
                )
            )
        return QueueSnapshot(tickets=tickets, depth=int(raw[0]))

    async def claim(
        self, queue: QueueRef, groups: Sequence[Sequence[str]], *, owner: str, ttl_ms: int
    ) -> Claim:
        """Claim groups of one queue's tickets, each group all or nothing, until now + ttl."""
        claim_id = f"{owner}:{secrets.token_hex(6)}"
        if not groups:
            return Claim(claim_id, [])
        ids = [tid for group in groups for tid in group]
        raw = await self._claim(
            keys=[queue.queue, queue.pool, queue.claims, *(queue.ticket(t) for t in ids)],
            args=[claim_id, owner, now_ms() + ttl_ms, len(groups), *(len(g) for g in groups), *ids],
        )
        return Claim(claim_id, [bool(int(v)) for v in raw])

    async def assign(
        self, queue: QueueRef, claim_id: str, assignments: Sequence[tuple[str, Assignment]]
    ) -> list[bool]:
        """Complete claimed tickets; per ticket, False if it was cancelled or reaped meanwhile."""
        if not assignments:
            return []
        args: list[str | int] = [claim_id, now_ms(), self.ticket_ttl_s, len(assignments)]
        for tid, a in assignments:
            args += [tid, keys.ticket_events(tid), a.race_id, a.node_id, a.url, a.player_token]
            args += [a.join_ticket, a.region]
        raw = await self._assign(
            keys=[queue.claims, *(queue.ticket(tid) for tid, _ in assignments)], args=args
        )
        return [bool(int(v)) for v in raw]

    async def release(self, queue: QueueRef, claim_id: str, ticket_ids: Sequence[str]) -> int:
        """Give claimed tickets back to the queue (placement failed); returns how many."""
        return await self._requeue_ids(queue, claim_id, "", ticket_ids)

    async def reap(self, queue: QueueRef, *, limit: int = 500) -> int:
        """Requeue claims whose deadline passed (their matchmaker died); returns how many."""
        now = now_ms()
        raw = await self._redis.zrangebyscore(queue.claims, "-inf", now, start=0, num=limit)
        ids = [_text(v) for v in raw]
        if not ids:
            return 0
        return await self._requeue_ids(queue, "", str(now), ids)

    async def set_stats(self, queue: QueueRef, stats: QueueStats, *, ttl_s: int = 60) -> None:
        """Publish a queue's figures; they expire when no matchmaker refreshes them."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                queue.stats,
                mapping={
                    "wait_ms": stats.wait_ms,
                    "fallback_ms": stats.fallback_ms,
                    "neighbour_ms": stats.neighbour_ms,
                    "max_wait_ms": stats.max_wait_ms,
                },
            )
            pipe.expire(queue.stats, ttl_s)
            await pipe.execute()

    async def claimed_count(self, queue: QueueRef) -> int:
        return int(await self._redis.zcard(queue.claims))

    async def _requeue_ids(self, queue: QueueRef, claim_id: str, cutoff: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        raw = await self._requeue(
            keys=[queue.queue, queue.pool, queue.claims, *(queue.ticket(t) for t in ids)],
            args=[claim_id, cutoff, *ids],
        )
        return int(raw)


# ---- decoding and validation -------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(raw: Sequence[Any] | Mapping[Any, Any]) -> dict[str, str]:
    """A hash from its raw reply: a map (RESP3), or field, value, field, value... (RESP2)."""
    if isinstance(raw, Mapping):
        return {_text(k): _text(v) for k, v in raw.items()}
    text = [_text(v) for v in raw]
    return dict(zip(text[::2], text[1::2], strict=True))


def _stats(raw: Sequence[Any]) -> QueueStats | None:
    values = [_text(v) if v is not None else None for v in raw]
    if any(v is None for v in values):
        return None
    wait, fallback, neighbour, max_wait = (int(float(v)) for v in values if v is not None)
    return QueueStats(wait, fallback, neighbour, max_wait)


def _ticket(raw: Mapping[Any, Any], stats: QueueStats | None) -> Ticket:
    d = {_text(k): _text(v) for k, v in raw.items()}
    state = TicketState(d["state"])
    created = int(d["created_at"])
    matched_at = int(d["matched_at"]) if "matched_at" in d else None
    assignment = None
    if state is TicketState.MATCHED:
        assignment = Assignment(
            race_id=d["race_id"],
            node_id=d["node_id"],
            url=d["url"],
            player_token=d["player_token"],
            join_ticket=d["ticket"],
            region=d["race_region"],
        )
    expected: float | None = 0.0
    if state not in FINAL_STATES:
        expected = None if stats is None else expected_wait_ms(stats, now_ms() - created) / 1000
    return Ticket(
        id=TicketId(d["id"]),
        player_id=d["player_id"],
        name=d["name"],
        rating=float(d["rating"]),
        race_type=d["race_type"],
        region=d["region"],
        language=d["language"] or None,
        created_at=created,
        state=state,
        expected_wait_s=expected,
        matched_at=matched_at,
        assignment=assignment,
    )


def _validate(
    player_id: str, name: str, race_type: str, region: str, rating: float, language: str | None
) -> None:
    if not player_id or len(player_id) > 64 or "|" in player_id:
        raise ValueError("player_id must be 1 to 64 characters without '|'")
    if not 1 <= len(name) <= 32:
        raise ValueError("name must be 1 to 32 characters")
    if race_type not in MATCHABLE_RACE_TYPES:
        raise ValueError(f"race_type must be one of {sorted(MATCHABLE_RACE_TYPES)}")
    if not _REGION.fullmatch(region):
        raise ValueError("region must be 1 to 32 of a-z, 0-9 and '-'")
    if not math.isfinite(rating):
        raise ValueError("rating must be a finite number")
    if language is not None and not _LANGUAGE.fullmatch(language):
        raise ValueError("language must look like 'en' or 'pt-br'")
