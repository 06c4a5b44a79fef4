"""Ghost races: race a stored keystroke log, replayed by the node as a racer you see.

``POST /v1/ghost-races`` takes ``{race_id, player_id}`` (any racer of any finished race),
``{"best": true}`` (the caller's personal best) or ``{"daily": "YYYY-MM-DD"}`` (that day's daily
challenge leader, lobby/daily.py), reads that result and its keystroke log from
PostgreSQL, and places a solo race on the same passage with the log as its ghost
(``gameserver/ghost.py``); the answer is the caller's seat, like a ticket's assignment.

Only a clean log can be a ghost: a finished result, not flagged by fair play, not held or
rejected for review, of a race whose passage the corpus still has (a custom race's text is not
stored). Anything else is refused with a JSON error naming why. The ghost's own result is shown
to the racer by the node and never stored (the node leaves it out of the outbox record).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from arena import keys
from arena.clock import now_ms
from arena.placement import SeatRequest
from lobby import daily
from lobby.auth import require_player
from lobby.bodies import opt_str, read_object
from lobby.context import Lobby, lobby_of
from lobby.errors import ApiError, bad_request
from lobby.history import POSTGRES_DOWN, _unavailable
from lobby.nodes import AssignmentView
from lobby.replay import RACE_ID, passage_text
from persistence import keylog

log = structlog.get_logger(__name__)

# Ranked review states: 'provisional', 'held' and 'rejected' results cannot be ghosts (docs/FAIRPLAY.md).
CLEAN_REVIEW = ("clear", "released")

_ONE = """
SELECT r.race_id, r.state, r.race_type, r.passage_id, p.player_id, p.name, p.status, p.valid, p.flags,
       p.review_state, p.wpm, p.keylog
FROM races r JOIN race_participants p ON p.race_id = r.race_id AND p.created_at = r.ended_at
WHERE r.race_id = $1 AND p.player_id = $2
"""

# The caller's fastest clean finish of a corpus passage: the personal best to race.
_BEST = """
SELECT r.race_id, r.state, r.race_type, r.passage_id, p.player_id, p.name, p.status, p.valid, p.flags,
       p.review_state, p.wpm, p.keylog
FROM race_participants p JOIN races r ON r.race_id = p.race_id AND r.ended_at = p.created_at
WHERE p.player_id = $1 AND p.valid AND p.status = 'finished' AND p.review_state = ANY($2::text[])
  AND r.state = 'finished' AND r.race_type <> 'custom'
ORDER BY p.wpm DESC, p.created_at DESC
LIMIT 1
"""


# A player's fastest clean finish of a passage between two instants: the daily leader's attempt.
_ON_PASSAGE = """
SELECT r.race_id, r.state, r.race_type, r.passage_id, p.player_id, p.name, p.status, p.valid, p.flags,
       p.review_state, p.wpm, p.keylog
FROM race_participants p JOIN races r ON r.race_id = p.race_id AND r.ended_at = p.created_at
WHERE p.player_id = $1 AND r.passage_id = $2 AND p.created_at >= $3 AND p.created_at < $4
  AND p.valid AND p.status = 'finished' AND p.review_state = ANY($5::text[]) AND r.state = 'finished'
ORDER BY p.wpm DESC
LIMIT 1
"""
# An attempt started before midnight ends after it: the leader's race is looked for this long after.
DAILY_END_SLACK = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Ghost:
    """A clean stored result, ready to be raced against."""

    race_id: str
    player_id: str
    name: str
    race_type: str
    passage_id: str
    wpm: float
    keys: str
    key_times: list[int]

    def definition(self) -> dict[str, Any]:
        """The ghost as the node's ``POST /admin/races`` takes it (``gameserver.ghost.parse_ghosts``)."""
        return {
            "name": self.name,
            "keys": self.keys,
            "key_times": self.key_times,
            "race_id": self.race_id,
            "player_id": self.player_id,
        }


def ghost_of(row: asyncpg.Record | dict[str, Any]) -> Ghost:
    """The ghost a stored result makes, or the ``ApiError`` (409) saying why it cannot be one."""
    if row["state"] != "finished":
        raise ApiError(409, "ghost_unavailable", "that race was aborted: only finished races have ghosts")
    if row["status"] != "finished":
        raise ApiError(409, "ghost_not_finished", "that racer did not finish the race")
    if not row["valid"] or list(row["flags"]):
        raise ApiError(409, "ghost_flagged", "that result was flagged by fair play and cannot be a ghost")
    if row["review_state"] not in CLEAN_REVIEW:
        raise ApiError(409, "ghost_under_review", "that result is held or rejected for review")
    if row["race_type"] == "custom" or passage_text(row["passage_id"]) is None:
        raise ApiError(409, "ghost_passage_unavailable", "that race's passage is not stored")
    try:
        keys, times = keylog.decode(row["keylog"])
    except keylog.KeylogError as exc:
        log.error("ghost_keylog_corrupt", race_id=row["race_id"], player_id=row["player_id"], error=str(exc))
        raise ApiError(500, "ghost_corrupt", "that keystroke log cannot be read") from None
    if not keys:
        raise ApiError(409, "ghost_not_finished", "that racer typed nothing")
    return Ghost(
        race_id=row["race_id"],
        player_id=row["player_id"],
        name=row["name"],
        race_type=row["race_type"],
        passage_id=row["passage_id"],
        wpm=float(row["wpm"]),
        keys=keys,
        key_times=times,
    )


async def load_ghost(pool: asyncpg.Pool, race_id: str, player_id: str) -> Ghost:
    """That racer's result as a ghost (404 if there is none, 409 if it cannot be one)."""
    try:
        row = await pool.fetchrow(_ONE, race_id, player_id)
    except POSTGRES_DOWN as exc:
        raise _unavailable(exc) from None
    if row is None:
        raise ApiError(404, "ghost_not_found", "no stored result of this player in this race")
    return ghost_of(row)


async def best_ghost(pool: asyncpg.Pool, player_id: str) -> Ghost:
    """The player's personal best as a ghost (404 if they have no clean finish yet)."""
    try:
        row = await pool.fetchrow(_BEST, player_id, list(CLEAN_REVIEW))
    except POSTGRES_DOWN as exc:
        raise _unavailable(exc) from None
    if row is None:
        raise ApiError(404, "ghost_not_found", "no finished race of yours to race against yet")
    return ghost_of(row)


async def daily_leader_ghost(lobby: Lobby, day_text: str, player_id: str | None = None) -> Ghost:
    """The leader of that day's daily challenge board, or the player given, as a ghost: their
    attempt on the board (404 if the board is empty or does not have them)."""
    day = daily.parse_day(day_text, now_ms())
    board = keys.daily_board(day.isoformat())
    if player_id is not None:
        if await lobby.redis.zscore(board, player_id) is None:
            raise ApiError(404, "ghost_not_found", "that player is not on that day's daily board")
        leader = player_id
    else:
        top = cast(list[bytes], await lobby.redis.zrevrange(board, 0, 0))
        if not top:
            raise ApiError(404, "ghost_not_found", "nobody is on that day's daily board yet")
        leader = top[0].decode()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    passage = daily.daily_passage(day, daily.corpus())
    args = (leader, passage.id, start, start + timedelta(days=1) + DAILY_END_SLACK, list(CLEAN_REVIEW))
    try:
        row = await lobby.pool.fetchrow(_ON_PASSAGE, *args)
    except POSTGRES_DOWN as exc:
        raise _unavailable(exc) from None
    if row is None:  # the board has it, the store not (yet): a retry will find it
        raise ApiError(404, "ghost_not_found", "the daily leader's race is not stored yet; retry")
    return ghost_of(row)


async def chosen_ghost(lobby: Lobby, player_id: str, data: dict[str, Any]) -> Ghost:
    """The ghost a request body names: ``{race_id, player_id}``, ``{"best": true}`` (the caller's
    personal best) or ``{"daily": "YYYY-MM-DD"}`` (that day's leader, or with ``player_id`` that
    player's attempt on the day's board); exactly one of them."""
    best = data.get("best", False)
    if not isinstance(best, bool):
        raise bad_request("bad_best", "best must be true or false")
    daily_day = opt_str(data, "daily", max_len=10)
    by_race = "race_id" in data or ("player_id" in data and daily_day is None)
    if sum((best, daily_day is not None, by_race)) > 1:
        raise bad_request("bad_body", "give one of: race_id and player_id, best, daily (and player_id)")
    if best:
        return await best_ghost(lobby.pool, player_id)
    if daily_day is not None:
        on_board = opt_str(data, "player_id", max_len=64)
        if on_board is not None and not RACE_ID.fullmatch(on_board):
            raise bad_request("bad_player_id", "player_id must be a player on that day's board")
        return await daily_leader_ghost(lobby, daily_day, on_board)
    race_id = opt_str(data, "race_id", max_len=64)
    ghost_player = opt_str(data, "player_id", max_len=64)
    if not race_id or not RACE_ID.fullmatch(race_id):
        raise bad_request("bad_race_id", "race_id is required (a finished race's id)")
    if not ghost_player or not RACE_ID.fullmatch(ghost_player):
        raise bad_request("bad_player_id", "player_id is required (a racer of that race)")
    return await load_ghost(lobby.pool, race_id, ghost_player)


@dataclass(frozen=True, slots=True)
class GhostView:
    race_id: str  # the ghost's source race
    player_id: str
    name: str
    wpm: float


@dataclass(frozen=True, slots=True)
class GhostRaceView:
    assignment: AssignmentView
    race_type: str
    passage_id: str
    ghost: GhostView


class GhostMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.races = Counter(
            "arena_lobby_ghost_races_total",
            "Ghost races asked for, by outcome (placed, refused, no_node)",
            ["outcome"],
            registry=registry,
        )
        self.private = Counter(
            "arena_lobby_private_ghosts_total",
            "Ghosts a host asked to add to a private race, by outcome (added, refused) and how the"
            " ghost was named (race: a racer of a race, best, daily)",
            ["outcome", "source"],
            registry=registry,
        )


def ghost_source(data: dict[str, Any]) -> str:
    """How a body names its ghost, as a bounded metric label: ``best``, ``daily`` or ``race``."""
    if data.get("best") is True:
        return "best"
    return "daily" if "daily" in data else "race"


GHOST_METRICS_KEY = web.AppKey("ghost_metrics", GhostMetrics)


async def place_ghost_race(
    lobby: Lobby, player_id: str, name: str, region: str, ghost: Ghost
) -> AssignmentView:
    """A solo race on the ghost's passage with the ghost in it; 503 ``no_node`` if none can take it."""
    placed = await lobby.placer.place(
        ghost.race_type,
        [region],
        [SeatRequest(player_id, name)],
        passage_id=ghost.passage_id,
        ghosts=[ghost.definition()],
    )
    if placed is None:
        reason = f"no node in {region} can take the race now; retry"
        raise ApiError(503, "no_node", reason, headers={"Retry-After": "2"})
    seat = placed.seats[player_id]
    return AssignmentView(
        placed.race_id, placed.node_id, placed.url, seat.player_token, seat.join_ticket, region
    )


async def create_ghost_race(request: web.Request) -> web.Response:
    """``POST /v1/ghost-races``: ``{race_id, player_id}`` or ``{"best": true}``, optional ``region``."""
    lobby = lobby_of(request)
    metrics = request.app[GHOST_METRICS_KEY]
    player = require_player(request)
    data = await read_object(request)
    region = opt_str(data, "region", max_len=32) or lobby.settings.regions[0]
    if region not in lobby.settings.regions:
        raise bad_request("unknown_region", f"region must be one of {list(lobby.settings.regions)}")
    try:
        ghost = await chosen_ghost(lobby, player.player_id, data)
        assignment = await place_ghost_race(lobby, player.player_id, player.name, region, ghost)
    except ApiError as exc:
        metrics.races.labels("no_node" if exc.code == "no_node" else "refused").inc()
        raise
    metrics.races.labels("placed").inc()
    log.info(
        "ghost_race_placed",
        race_id=assignment.race_id,
        player_id=player.player_id,
        ghost_race_id=ghost.race_id,
        ghost_player_id=ghost.player_id,
    )
    view = GhostRaceView(
        assignment=assignment,
        race_type=ghost.race_type,
        passage_id=ghost.passage_id,
        ghost=GhostView(ghost.race_id, ghost.player_id, ghost.name, ghost.wpm),
    )
    return web.json_response(asdict(view), status=201)


def setup(app: web.Application, registry: CollectorRegistry | None = None) -> None:
    app[GHOST_METRICS_KEY] = GhostMetrics(registry)
    app.router.add_post("/v1/ghost-races", create_ghost_race)
