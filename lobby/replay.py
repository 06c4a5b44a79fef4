"""``GET /v1/races/{race_id}/replay``: a finished race, ready to be played back.

The race comes from PostgreSQL (``persistence.queries.race_result``); its passage text from
the packaged corpus by the stored passage id (a custom race's text is not stored: ``text`` is
then null). Each racer's keystroke log is decoded to ``[{t_ms, key}]`` (``lobby.replay_text``
turns that into their text at any instant). A stored race never changes, so the answer is
cacheable: a weak ETag (a digest of the body) and a long ``Cache-Control``; a request whose
``If-None-Match`` names it gets 304 without a body.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from dataclasses import dataclass

import structlog
from aiohttp import web
from aiohttp.helpers import ETag

from gameserver.passages import Corpus, PassageError
from lobby.context import lobby_of
from lobby.errors import ApiError
from lobby.history import POSTGRES_DOWN
from lobby.replay_text import BACKSPACE_KEY, ReplayKey, duration_ms
from persistence.keylog import KeylogError
from persistence.queries import ParticipantResult, RaceResult, race_result

log = structlog.get_logger(__name__)

FORMAT = 1  # of the replay document; a change of shape gets a new one (and so a new ETag)
# Race ids are "r" + 16 hex digits today (arena/ids.py); this also admits other short ids
# but never text PostgreSQL would refuse (NUL) or a query-sized blob.
RACE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
CACHE_CONTROL = "public, max-age=86400, immutable"
STORED_BACKSPACE = "\b"  # persistence/keylog.py


@dataclass(frozen=True, slots=True)
class ReplayPassage:
    id: str
    text: str | None  # None: a custom race, whose text is not stored
    chars: int


@dataclass(frozen=True, slots=True)
class ReplayPlayer:
    player_id: str
    name: str
    place: int | None  # None: did not finish, or flagged
    status: str  # finished | dnf
    wpm: float
    accuracy: float
    flagged: bool  # fair play raised flags: not ranked
    flags: list[str]
    keys: list[ReplayKey]  # in time order; t_ms since the race start


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


def _passage_text(passage_id: str) -> str | None:
    try:
        return _corpus().by_id(passage_id).text
    except PassageError:
        return None  # custom text, or a passage no longer in the corpus


def _keys(p: ParticipantResult) -> list[ReplayKey]:
    return [
        ReplayKey(t, BACKSPACE_KEY if k == STORED_BACKSPACE else k)
        for k, t in zip(p.keys, p.key_times, strict=True)
    ]


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
            keys=_keys(p),
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
        duration_ms=duration_ms({p.player_id: p.keys for p in players}),
        players=players,
    )


def _not_modified(request: web.Request, etag: str) -> bool:
    wanted = request.if_none_match
    # Weak comparison (RFC 9110 13.1.2): our ETag is weak, a cache may send it either way.
    return wanted is not None and any(e.value == etag or e.value == "*" for e in wanted)


async def replay(request: web.Request) -> web.StreamResponse:
    race_id = request.match_info["race_id"]
    if not RACE_ID.fullmatch(race_id):
        raise ApiError(404, "race_not_found", "no finished race with this id")
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
    body = json.dumps(
        dataclasses.asdict(build_replay(race, _passage_text(race.passage_id))), separators=(",", ":")
    ).encode()
    etag = hashlib.sha256(body).hexdigest()[:32]
    headers = {"Cache-Control": CACHE_CONTROL}
    if _not_modified(request, etag):
        response = web.Response(status=304, headers=headers)
    else:
        response = web.Response(body=body, content_type="application/json", headers=headers)
        response.enable_compression()  # keystroke logs are repetitive JSON: gzip takes about 80 % off
    response.etag = ETag(value=etag, is_weak=True)  # weak: the same for gzip and identity
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/races/{race_id}/replay", replay)
