"""``GET /v1/races/{race_id}/replay``: a finished race, ready to be played back.

The race comes from PostgreSQL (``persistence.queries.race_result``); its passage text from
the packaged corpus by the stored passage id (a custom race's text is not stored: ``text`` is
then null). Each racer's keystroke log is decoded to ``[{t_ms, key}]`` (``lobby.replay_text``
turns that into their text at any instant). A stored race never changes, so the answer is
cacheable: a weak ETag (a digest of the body) and a long ``Cache-Control`` (``no-cache`` while a
result in it is held for review: the decision changes it); a request whose
``If-None-Match`` names it gets 304 without a body. For the same reason the lobby keeps the
encoded replays it served last, as JSON and gzipped (``ReplayCache``, ``ARENA_LOBBY_REPLAY_CACHE_BYTES``):
a shared replay link (one with no held result) then costs neither PostgreSQL nor encoding nor
compression (a marathon's is ~15 ms and ~5 ms of CPU).
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from aiohttp.helpers import ETag
from prometheus_client import CollectorRegistry, Counter, Gauge

from gameserver.passages import Corpus, PassageError
from lobby.context import lobby_of
from lobby.errors import ApiError
from lobby.history import POSTGRES_DOWN
from lobby.replay_text import BACKSPACE_KEY
from persistence.keylog import KeylogError
from persistence.queries import RaceResult, race_result

log = structlog.get_logger(__name__)

FORMAT = 1  # of the replay document; a change of shape gets a new one (and so a new ETag)
# Race ids are "r" + 16 hex digits today (arena/ids.py); this also admits other short ids
# but never text PostgreSQL would refuse (NUL) or a query-sized blob.
RACE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
CACHE_CONTROL = "public, max-age=86400, immutable"
HELD_CACHE_CONTROL = "public, no-cache"  # a result held for review: the ETag still saves the body
STORED_BACKSPACE = "\b"  # persistence/keylog.py
# Bodies kept by ReplayCache: a marathon of 5 is about 200 kB, a quick race about 30 kB.
REPLAY_CACHE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Encoded:
    """A replay ready to send: its ETag, its JSON, and the same gzipped."""

    etag: str
    body: bytes
    gzipped: bytes
    final: bool = True  # False: a result is held for review, so the replay will still change

    @classmethod
    def of(cls, body: bytes, final: bool = True) -> Encoded:
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(digest, body, gzip.compress(body, compresslevel=6, mtime=0), final)

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped)


class ReplayCache:
    """The encoded replays served last, by race id, least recently used out first.

    A stored race changes only when a held result is decided, so held ones are not kept and an
    entry never goes stale; unknown ids are not kept (the
    race may be stored a moment later). One per lobby app, used from its event loop only.
    """

    def __init__(self, max_bytes: int, registry: CollectorRegistry | None = None) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Encoded] = OrderedDict()
        self._bytes = 0
        self.lookups = Counter(
            "arena_lobby_replay_cache_lookups_total",
            "Replay requests by whether the encoded replay was cached (hit, miss)",
            ["result"],
            registry=registry,
        )
        self.size = Gauge(
            "arena_lobby_replay_cache_bytes", "Bytes of replay bodies cached", registry=registry
        )

    def get(self, race_id: str) -> Encoded | None:
        entry = self._entries.get(race_id)
        self.lookups.labels("miss" if entry is None else "hit").inc()
        if entry is not None:
            self._entries.move_to_end(race_id)
        return entry

    def put(self, race_id: str, encoded: Encoded) -> None:
        if encoded.size > self.max_bytes or race_id in self._entries or not encoded.final:
            return
        self._entries[race_id] = encoded
        self._bytes += encoded.size
        while self._bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.size
        self.size.set(self._bytes)


REPLAY_CACHE_KEY = web.AppKey("replay_cache", ReplayCache)


@dataclass(frozen=True, slots=True)
class ReplayPassage:
    id: str
    text: str | None  # None: a custom race, whose text is not stored
    chars: int


@dataclass(frozen=True, slots=True)
class ReplayPlayer:
    player_id: str
    name: str
    place: int | None  # None: did not finish, flagged, or rejected on review
    status: str  # finished | dnf
    wpm: float
    accuracy: float
    flagged: bool  # fair play raised flags: not ranked
    flags: list[str]
    # clear | provisional (placement) | held (not ranked until reviewed) | released | rejected (no place)
    review: str
    keys: str  # the stored form ("\\b" = backspace), expanded to [{t_ms, key}] by to_json()...
    key_times: list[int]  # ...with these times, ms since the race start


@dataclass(frozen=True, slots=True)
class Replay:
    format: int
    race_id: str
    kind: str  # race | heat
    race_type: str
    state: str  # finished | aborted
    passage: ReplayPassage
    started_at: int | None  # ms since the epoch; None: aborted before the start
    ended_at: int
    duration_ms: int  # the last key's t_ms: where the timeline ends
    players: list[ReplayPlayer]


@functools.cache
def _corpus() -> Corpus:
    """The passages, read once (the lobby ships the same corpus file as the nodes)."""
    return Corpus.load()


def passage_text(passage_id: str) -> str | None:
    try:
        return _corpus().by_id(passage_id).text
    except PassageError:
        return None  # custom text, or a passage no longer in the corpus


def build_replay(race: RaceResult, passage_text: str | None) -> Replay:
    players = [
        ReplayPlayer(
            player_id=p.player_id,
            name=p.name,
            place=p.place,
            status=p.status,
            wpm=p.wpm,
            accuracy=p.accuracy,
            flagged=not p.valid,
            flags=p.flags,
            review=p.review,
            keys=p.keys,
            key_times=p.key_times,
        )
        for p in race.participants
    ]
    return Replay(
        format=FORMAT,
        race_id=race.race_id,
        kind=race.kind,
        race_type=race.race_type,
        state=race.state,
        passage=ReplayPassage(race.passage_id, passage_text, race.passage_chars),
        started_at=race.started_at,
        ended_at=race.ended_at,
        duration_ms=max((p.key_times[-1] for p in players if p.key_times), default=0),
        players=players,
    )


def to_json(replay: Replay) -> dict[str, Any]:
    """The documented shape (docs/API.md "Replays"). Written out rather than dataclasses.asdict,
    which deep-copies every key: 5x slower on a marathon's 8,000 keys."""
    return {
        "format": replay.format,
        "race_id": replay.race_id,
        "kind": replay.kind,
        "race_type": replay.race_type,
        "state": replay.state,
        "passage": {"id": replay.passage.id, "text": replay.passage.text, "chars": replay.passage.chars},
        "started_at": replay.started_at,
        "ended_at": replay.ended_at,
        "duration_ms": replay.duration_ms,
        "players": [
            {
                "player_id": p.player_id,
                "name": p.name,
                "place": p.place,
                "status": p.status,
                "wpm": p.wpm,
                "accuracy": p.accuracy,
                "flagged": p.flagged,
                "flags": p.flags,
                "review": p.review,
                "keys": [
                    {"t_ms": t, "key": BACKSPACE_KEY if k == STORED_BACKSPACE else k}
                    for k, t in zip(p.keys, p.key_times, strict=True)
                ],
            }
            for p in replay.players
        ],
    }


def _not_modified(request: web.Request, etag: str) -> bool:
    wanted = request.if_none_match
    # Weak comparison (RFC 9110 13.1.2): our ETag is weak, a cache may send it either way.
    return wanted is not None and any(e.value == etag or e.value == "*" for e in wanted)


def _encode(race: RaceResult, passage_text: str | None) -> Encoded:
    body = json.dumps(to_json(build_replay(race, passage_text)), separators=(",", ":")).encode()
    # A held or provisional result is still to be decided: the race may change.
    undecided = ("held", "provisional")
    return Encoded.of(body, final=not any(p.review in undecided for p in race.participants))


async def _encoded(request: web.Request, race_id: str) -> Encoded:
    """The replay's ETag and JSON body: from the cache, else PostgreSQL (then cached)."""
    cache = request.app[REPLAY_CACHE_KEY]
    cached = cache.get(race_id)
    if cached is not None:
        return cached
    try:
        race = await race_result(lobby_of(request).pool, race_id)
    except POSTGRES_DOWN as exc:
        reason = f"race history is unavailable: {type(exc).__name__}"
        raise ApiError(503, "history_unavailable", reason) from None
    except KeylogError as exc:
        # Stored by our own persistence: a bug or corruption, not the client's doing.
        log.error("replay_keylog_corrupt", race_id=race_id, error=str(exc))
        raise ApiError(500, "replay_corrupt", "this race's keystroke logs cannot be read") from None
    if race is None:
        raise ApiError(404, "race_not_found", "no finished race with this id")
    # A marathon's encoding and gzip take ~20 ms: in a thread, so the lobby's other requests
    # (long-polls, tickets) interleave instead of waiting behind it.
    encoded = await asyncio.to_thread(_encode, race, passage_text(race.passage_id))
    cache.put(race_id, encoded)
    return encoded


async def replay(request: web.Request) -> web.StreamResponse:
    """``GET /v1/races/{race_id}/replay``."""
    race_id = request.match_info["race_id"]
    if not RACE_ID.fullmatch(race_id):
        raise ApiError(404, "race_not_found", "no finished race with this id")
    encoded = await _encoded(request, race_id)
    # A replay with a result held for review changes when it is decided: revalidated each time.
    headers = {
        "Cache-Control": CACHE_CONTROL if encoded.final else HELD_CACHE_CONTROL,
        "Vary": "Accept-Encoding",
    }
    if _not_modified(request, encoded.etag):
        response = web.Response(status=304, headers=headers)
    elif _accepts_gzip(request):
        # Keystroke logs are repetitive JSON: gzip takes about 80 % off, compressed once.
        headers["Content-Encoding"] = "gzip"
        response = web.Response(body=encoded.gzipped, content_type="application/json", headers=headers)
    else:
        response = web.Response(body=encoded.body, content_type="application/json", headers=headers)
    response.etag = ETag(value=encoded.etag, is_weak=True)  # weak: the same for gzip and identity
    return response


def _accepts_gzip(request: web.Request) -> bool:
    """Whether Accept-Encoding lists gzip (or *) without q=0."""
    for item in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return _quality(params) > 0
    return False


def _quality(params: str) -> float:
    """The q of an Accept-Encoding item's parameters (1 when absent, 0 when unreadable)."""
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def setup(
    app: web.Application, cache_bytes: int = REPLAY_CACHE_BYTES, registry: CollectorRegistry | None = None
) -> None:
    """Mount the route, with the app's replay cache of ``cache_bytes`` (ARENA_LOBBY_REPLAY_CACHE_BYTES;
    its metrics in ``registry``)."""
    app[REPLAY_CACHE_KEY] = ReplayCache(cache_bytes, registry)
    app.router.add_get("/v1/races/{race_id}/replay", replay)
