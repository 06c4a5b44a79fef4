"""Leaderboards: Redis sorted sets of each player's best result per race type and timeframe.

Keys: ``leaderboard:{race_type}:daily:{YYYY-MM-DD}``, ``...:weekly:{YYYY-Www}`` (ISO week) and
``...:alltime``, all in UTC and by the race's end time (not the time it was processed), so a
late or replayed result lands on the right board. Member: player id. Score: best WPM with
accuracy as the tie break, packed into one number (``score``). Updates use ``ZADD GT``: a
result only ever raises a score, so applying one twice, or out of order, changes nothing.
Only valid finishes of ranked race types count, and none held for review (``ARENA_REVIEW_WPM``,
persistence/review.py) or provisional (persistence/placement.py): a release (an operator's, or
placement's) offers the result to its boards later.
A daily challenge attempt (a record whose ``daily`` names the day) also goes to that day's board,
``daily:{YYYY-MM-DD}:board``, by the same rules (lobby/daily.py serves it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from arena import keys
from arena.results import MatchRecord, ParticipantRecord
from persistence.settings import ReadSideSettings
from persistence.times import to_datetime

_ACCURACY_SLOTS = 100_000  # accuracy is 0..100 with 2 decimals: 0..10000 fits below this


class Timeframe(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    ALLTIME = "alltime"


def counts_for_ranking(p: ParticipantRecord) -> bool:
    """Only valid finishes are ranked (here, and in tournament standings)."""
    return p.valid and p.status == "finished"


def ranked_at_ingestion(p: ParticipantRecord, settings: ReadSideSettings) -> bool:
    """A valid finish below the review threshold; one at or above it is held (persistence/review.py)."""
    return counts_for_ranking(p) and p.wpm < settings.review_wpm


def score(wpm: float, accuracy: float) -> float:
    """WPM (2 decimals) first, accuracy (2 decimals) second, exact in a double."""
    return float(round(wpm * 100) * _ACCURACY_SLOTS + round(accuracy * 100))


def unscore(value: float) -> tuple[float, float]:
    """(wpm, accuracy) back from a score."""
    wpm_centi, acc_centi = divmod(int(value), _ACCURACY_SLOTS)
    return wpm_centi / 100, acc_centi / 100


def period(timeframe: Timeframe, day: date) -> str:
    if timeframe is Timeframe.DAILY:
        return day.isoformat()
    if timeframe is Timeframe.WEEKLY:
        iso = day.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    return ""


def board_key(race_type: str, timeframe: Timeframe, day: date) -> str:
    return keys.leaderboard(race_type, timeframe.value, period(timeframe, day))


def expires_at(timeframe: Timeframe, day: date, settings: ReadSideSettings) -> int | None:
    """Unix time a board may be dropped: its period's end plus the retention; None = never."""
    if timeframe is Timeframe.DAILY:
        end = day + timedelta(days=1 + settings.daily_keep_days)
    elif timeframe is Timeframe.WEEKLY:
        monday = day - timedelta(days=day.weekday())
        end = monday + timedelta(weeks=1 + settings.weekly_keep_weeks)
    else:
        return None
    return int(datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp())


@dataclass(frozen=True, slots=True)
class Placement:
    """One result offered to one board."""

    key: str
    player_id: str
    name: str
    score: float
    expires_at: int | None


@lru_cache(maxsize=512)
def boards_for(race_type: str, day: date, settings: ReadSideSettings) -> tuple[tuple[str, int | None], ...]:
    """(key, expiry) of every board a result of this type and day belongs to; none if unranked."""
    if race_type not in settings.race_types:
        return ()
    return tuple((board_key(race_type, tf, day), expires_at(tf, day, settings)) for tf in Timeframe)


@lru_cache(maxsize=64)
def daily_challenge_board(day: str, settings: ReadSideSettings) -> tuple[str, int | None] | None:
    """(key, expiry) of the daily challenge's board of ``day`` (a record's ``daily``); None if
    the day is not one. It is kept as long as a daily leaderboard."""
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        return None
    return keys.daily_board(parsed.isoformat()), expires_at(Timeframe.DAILY, parsed, settings)


def _boards_of(record: MatchRecord, settings: ReadSideSettings) -> tuple[tuple[str, int | None], ...]:
    boards = boards_for(record.race_type, to_datetime(record.ended_at).date(), settings)
    daily = daily_challenge_board(record.daily, settings) if record.daily else None
    return (*boards, daily) if daily else boards


def record_placements(record: MatchRecord, settings: ReadSideSettings) -> list[Placement]:
    boards = _boards_of(record, settings)
    return [
        Placement(key, p.player_id, p.name, score(p.wpm, p.accuracy), expiry)
        for p in record.participants
        if ranked_at_ingestion(p, settings)
        for key, expiry in boards
    ]


class LeaderboardWriter:
    def __init__(self, redis: aioredis.Redis, settings: ReadSideSettings) -> None:
        self._redis = redis
        self._settings = settings
        self.settings = settings

    async def apply(self, records: Sequence[MatchRecord]) -> None:
        """Offer every valid finish of these records to its boards."""
        await self.offer(pl for r in records for pl in record_placements(r, self._settings))

    async def offer(self, found: Iterable[Placement]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            self.queue(pipe, found)
            await pipe.execute()

    def queue(self, pipe: Pipeline, found: Iterable[Placement]) -> None:
        """Queue the updates on a pipeline the caller executes."""
        best: dict[str, dict[str, float]] = {}
        expiry: dict[str, int | None] = {}
        names: dict[str, str] = {}
        for pl in found:
            _keep_best(best, expiry, pl.key, pl.expires_at, pl.player_id, pl.score)
            names[pl.player_id] = pl.name
        _queue(pipe, best, expiry, names)

    def queue_records(
        self,
        pipe: Pipeline,
        records: Sequence[MatchRecord],
        unranked: Collection[tuple[str, str]] = frozenset(),
    ) -> None:
        """The consumer's hot path: the same as queuing ``record_placements``, without the objects.

        ``unranked``: (race, player) the store held for review or saw rejected; left out.
        """
        best: dict[str, dict[str, float]] = {}
        expiry: dict[str, int | None] = {}
        names: dict[str, str] = {}
        for r in records:
            boards = _boards_of(r, self._settings)
            if not boards:
                continue
            for p in r.participants:
                if ranked_at_ingestion(p, self._settings) and (r.match_id, p.player_id) not in unranked:
                    value = score(p.wpm, p.accuracy)
                    names[p.player_id] = p.name
                    for key, at in boards:
                        _keep_best(best, expiry, key, at, p.player_id, value)
        _queue(pipe, best, expiry, names)


def _keep_best(
    best: dict[str, dict[str, float]],
    expiry: dict[str, int | None],
    key: str,
    at: int | None,
    player: str,
    value: float,
) -> None:
    members = best.setdefault(key, {})
    expiry[key] = at
    if value > members.get(player, -1.0):
        members[player] = value


def _queue(
    pipe: Pipeline, best: dict[str, dict[str, float]], expiry: dict[str, int | None], names: dict[str, str]
) -> None:
    """One ZADD GT per board (a score only ever rises), its expiry, and the display names."""
    for key, members in best.items():
        pipe.zadd(key, members, gt=True)
        at = expiry[key]
        if at is not None:
            pipe.expireat(key, at)
    if names:
        pipe.hset(keys.PLAYER_NAMES, mapping=names)  # type: ignore[arg-type]
