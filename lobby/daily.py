"""The daily challenge: one passage per UTC day, the same for everyone, and that day's board.

The day's passage is computed, not stored: the SHA-256 of the day picks one of the corpus's
quick passages (``daily_passage``), so every lobby agrees without a round trip, and it
changes only with the day or the corpus. An attempt (``POST /v1/daily/attempts``) is a solo
quick race on that passage whose outbox record names the day (``MatchRecord.daily``);
persistence offers its valid finish to ``daily:{day}:board`` like a leaderboard (best attempt per
player, WPM then accuracy, ``ZADD GT``; flagged results and results held for review never
count). The board is kept as long as a daily leaderboard (``ARENA_LEADERBOARD_DAILY_KEEP_DAYS``),
so yesterday's stays readable (``GET /v1/daily/{YYYY-MM-DD}``). "Race the daily leader" is a
ghost race (``POST /v1/ghost-races {"daily": day}``, lobby/ghosts.py).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from arena import keys
from arena.clock import now_ms
from arena.placement import SeatRequest
from arena.protocol import RaceType
from gameserver.passages import Corpus, Passage, PassageKind
from lobby.auth import current_player, require_player
from lobby.bodies import opt_str, query_int, read_object
from lobby.context import lobby_of
from lobby.errors import ApiError, bad_request
from lobby.nodes import AssignmentView
from persistence.leaderboards import unscore

log = structlog.get_logger(__name__)

# An attempt is a quick race: a passage of 30 s or so, short enough to try again and again.
RACE_TYPE = RaceType.QUICK
BOARD_TOP = 10  # entries GET /v1/daily returns by default
BOARD_TOP_MAX = 100


@functools.cache
def corpus() -> Corpus:
    return Corpus.load()


def daily_passage(day: date, corpus: Corpus) -> Passage:
    """The day's passage: the same for every lobby, from the day and the corpus alone."""
    choices = sorted((p for p in corpus if p.kind == PassageKind.QUICK), key=lambda p: p.id)
    digest = hashlib.sha256(f"typogram-daily:{day.isoformat()}".encode()).digest()
    return choices[int.from_bytes(digest[:8], "big") % len(choices)]


def today(at_ms: int) -> date:
    return datetime.fromtimestamp(at_ms / 1000, UTC).date()


def day_end_ms(day: date) -> int:
    """When the next day's challenge begins (ms since the epoch)."""
    nxt = day + timedelta(days=1)
    return int(datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC).timestamp() * 1000)


def parse_day(text: str, now: int) -> date:
    """A day of the path, YYYY-MM-DD, not after today; 404 otherwise (there is no such challenge)."""
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None or day.isoformat() != text or day > today(now):
        raise ApiError(404, "daily_not_found", "no daily challenge for this day (YYYY-MM-DD, up to today)")
    return day


@dataclass(frozen=True, slots=True)
class BoardEntry:
    rank: int
    player_id: str
    name: str
    wpm: float
    accuracy: float


@dataclass(frozen=True, slots=True)
class DailyView:
    day: str  # YYYY-MM-DD (UTC)
    passage_id: str
    passage: str
    race_type: str
    ends_at: int  # ms: the next challenge begins then
    seconds_left: int  # until ends_at (0 for a past day)
    players: int  # on the board
    board: list[BoardEntry]  # the best, rank 1 first
    you: BoardEntry | None  # the caller's own entry (with a token), None if not on the board


async def read_board(
    redis: aioredis.Redis, day: date, limit: int, player_id: str | None
) -> tuple[int, list[BoardEntry], BoardEntry | None]:
    """(players on the board, its top ``limit``, the player's entry) in one round trip, then names."""
    key = keys.daily_board(day.isoformat())
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(key)
        pipe.zrevrange(key, 0, limit - 1, withscores=True)
        if player_id is not None:
            pipe.zrevrank(key, player_id)
            pipe.zscore(key, player_id)
        replies = await pipe.execute()
    count = int(replies[0])
    rows = cast(list[tuple[bytes, float]], replies[1])
    ids = [pid.decode() for pid, _ in rows]
    mine: tuple[int, float] | None = None
    if player_id is not None and replies[2] is not None and replies[3] is not None:
        mine = (int(replies[2]) + 1, float(replies[3]))
        ids.append(player_id)
    names = cast(list[bytes | None], await redis.hmget(keys.PLAYER_NAMES, ids)) if ids else []
    board = []
    for rank, ((_, value), pid, name) in enumerate(zip(rows, ids, names, strict=False), start=1):
        wpm, accuracy = unscore(value)
        board.append(BoardEntry(rank, pid, name.decode() if name else pid, wpm, accuracy))
    you = None
    if mine is not None and player_id is not None:
        wpm, accuracy = unscore(mine[1])
        name = names[-1]
        you = BoardEntry(mine[0], player_id, name.decode() if name else player_id, wpm, accuracy)
    return count, board, you


class DailyMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.attempts = Counter(
            "arena_lobby_daily_attempts_total",
            "Daily challenge attempts asked for, by outcome (placed, no_node)",
            ["outcome"],
            registry=registry,
        )


DAILY_METRICS_KEY = web.AppKey("daily_metrics", DailyMetrics)


async def _view(request: web.Request, day: date) -> web.Response:
    limit = query_int(request, "limit")
    limit = BOARD_TOP if limit is None else limit
    if not 1 <= limit <= BOARD_TOP_MAX:
        raise bad_request("bad_limit", f"limit must be 1 to {BOARD_TOP_MAX}")
    player = current_player(request)
    now = now_ms()
    count, board, you = await read_board(
        lobby_of(request).redis, day, limit, player.player_id if player else None
    )
    passage = daily_passage(day, corpus())
    ends_at = day_end_ms(day)
    view = DailyView(
        day=day.isoformat(),
        passage_id=passage.id,
        passage=passage.text,
        race_type=RACE_TYPE.value,
        ends_at=ends_at,
        seconds_left=max(0, (ends_at - now + 999) // 1000),
        players=count,
        board=board,
        you=you,
    )
    return web.json_response(asdict(view))


async def get_today(request: web.Request) -> web.Response:
    """``GET /v1/daily``: today's challenge, its countdown and board (and the caller's rank)."""
    return await _view(request, today(now_ms()))


async def get_day(request: web.Request) -> web.Response:
    """``GET /v1/daily/{YYYY-MM-DD}``: that day's challenge and board (kept a week or so)."""
    return await _view(request, parse_day(request.match_info["day"], now_ms()))


@dataclass(frozen=True, slots=True)
class AttemptView:
    day: str
    passage_id: str
    race_type: str
    ends_at: int
    assignment: AssignmentView


async def create_attempt(request: web.Request) -> web.Response:
    """``POST /v1/daily/attempts`` (body optional: ``{region}``): a solo race on today's passage."""
    lobby = lobby_of(request)
    player = require_player(request)
    data = await read_object(request) if request.can_read_body else {}
    region = opt_str(data, "region", max_len=32) or lobby.settings.regions[0]
    if region not in lobby.settings.regions:
        raise bad_request("unknown_region", f"region must be one of {list(lobby.settings.regions)}")
    day = today(now_ms())
    passage = daily_passage(day, corpus())
    metrics = request.app[DAILY_METRICS_KEY]
    placed = await lobby.placer.place(
        RACE_TYPE.value,
        [region],
        [SeatRequest(player.player_id, player.name)],
        passage_id=passage.id,
        daily=day.isoformat(),
    )
    if placed is None:
        metrics.attempts.labels("no_node").inc()
        reason = f"no node in {region} can take the race now; retry"
        raise ApiError(503, "no_node", reason, headers={"Retry-After": "2"})
    metrics.attempts.labels("placed").inc()
    seat = placed.seats[player.player_id]
    log.debug("daily_attempt_placed", race_id=placed.race_id, player_id=player.player_id, day=day.isoformat())
    view = AttemptView(
        day=day.isoformat(),
        passage_id=passage.id,
        race_type=RACE_TYPE.value,
        ends_at=day_end_ms(day),
        assignment=AssignmentView(
            placed.race_id, placed.node_id, placed.url, seat.player_token, seat.join_ticket, region
        ),
    )
    return web.json_response(asdict(view), status=201)


def setup(app: web.Application, registry: CollectorRegistry | None = None) -> None:
    app[DAILY_METRICS_KEY] = DailyMetrics(registry)
    app.router.add_get("/v1/daily", get_today)
    app.router.add_get("/v1/daily/{day}", get_day)
    app.router.add_post("/v1/daily/attempts", create_attempt)
