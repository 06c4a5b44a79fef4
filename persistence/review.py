"""Held for review: which stored results wait for an operator before they are ranked.

A valid finish at or above ``ARENA_REVIEW_WPM`` (``ReadSideSettings.review_wpm``, 200 by default),
or more than ``ARENA_REVIEW_PB_RATIO`` (1.3) times the player's best stored ranked WPM once
``ARENA_REVIEW_MIN_RACES`` (10) ranked finishes are stored and it is at least
``ARENA_REVIEW_PB_MIN_WPM`` (180), is possible but rare: persistence
stores it with ``review_state`` 'held' and leaves it off the leaderboards (docs/FAIRPLAY.md,
"Held for review"). Decided at ingestion (persistence/store.py, with the players' stored history),
so a node's hot path is untouched. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from itertools import pairwise
from typing import Any

import msgpack

from arena.results import ParticipantRecord
from persistence.leaderboards import Placement, boards_for, counts_for_ranking, daily_challenge_board, score
from persistence.recent import RecentResult, shown_place
from persistence.settings import ReadSideSettings
from persistence.times import to_ms


class ReviewState(StrEnum):
    CLEAR = "clear"  # never needed a review
    PROVISIONAL = "provisional"  # a new account's result, unranked until placement (placement.py)
    HELD = "held"  # waits for an operator; not ranked
    RELEASED = "released"  # an operator accepted it; ranked
    REJECTED = "rejected"  # an operator refused it; never ranked


@dataclass(frozen=True, slots=True)
class History:
    """What is stored of a player's ranked finishes (``players.best_wpm``, ``ranked_races``)."""

    best_wpm: float = 0.0
    races: int = 0

    def plus(self, wpm: float) -> History:
        return History(max(self.best_wpm, wpm), self.races + 1)


class HoldReason(StrEnum):
    """Why a result was held (``race_participants.review_reason``, shown by ``ops.review list``)."""

    WPM = "wpm"  # at or above ARENA_REVIEW_WPM
    PB = "pb"  # far above the player's stored best (ARENA_REVIEW_PB_RATIO)
    PAIRS_HISTORY = "pairs_history"  # the pooled letter-pair evidence (persistence/pair_store.py)
    PAIRS_POPULATION = "pairs_population"  # its agreement with other players' (pair_population.py)


def hold_reason(
    p: ParticipantRecord, settings: ReadSideSettings, history: History | None = None
) -> HoldReason | None:
    """Why this result is held by the WPM rules; None: not held by them. Only a result that
    would be ranked can be held: an invalid or unfinished one is never ranked."""
    if not counts_for_ranking(p):
        return None
    if p.wpm >= settings.review_wpm:
        return HoldReason.WPM
    h = history or History()
    if (
        p.wpm >= settings.review_pb_min_wpm
        and h.races >= settings.review_min_races
        and p.wpm > h.best_wpm * settings.review_pb_ratio
    ):
        return HoldReason.PB
    return None


def review_state(
    p: ParticipantRecord, settings: ReadSideSettings, history: History | None = None
) -> ReviewState:
    return ReviewState.CLEAR if hold_reason(p, settings, history) is None else ReviewState.HELD


# ---- an operator's decision (outbox kind "review_decision") ----------------------------
# Appended by ``python -m ops.review release|reject``; persistence stores it in
# ``review_decisions``, moves the result out of 'held', offers a released one to its boards and
# publishes the decision to the race topic (key: the race id).

REVIEW_KIND = "review_decision"
REVIEW_RECORD_VERSION = 1
DECISIONS = (ReviewState.RELEASED.value, ReviewState.REJECTED.value)
MAX_REASON = 500  # characters: a note for the next operator, not an essay


def review_match_id(race_id: str, player_id: str) -> str:
    """The outbox idempotency key: one decision per result, whichever it is."""
    return f"{race_id}:{player_id}:review"


@dataclass(frozen=True, slots=True)
class ReviewDecisionRecord:
    match_id: str  # review_match_id(race_id, player_id)
    race_id: str
    player_id: str
    decision: str  # released | rejected
    reason: str  # required for a rejection; may be empty for a release
    decided_at: int  # epoch ms
    # The heat's tournament, if any: its director reads rejections from the outbox and
    # re-decides the heat if its round is still open (docs/TOURNAMENTS.md, "Review").
    tournament_id: str | None = None
    kind: str = REVIEW_KIND
    version: int = REVIEW_RECORD_VERSION

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {self.decision!r}")
        if not self.race_id or not self.player_id:
            raise ValueError("race and player ids must not be empty")
        if self.match_id != review_match_id(self.race_id, self.player_id):
            raise ValueError(
                f"match id {self.match_id!r} is not {review_match_id(self.race_id, self.player_id)!r}"
            )
        if len(self.reason) > MAX_REASON:
            raise ValueError(f"reason longer than {MAX_REASON} characters")
        if self.decision == ReviewState.REJECTED and not self.reason.strip():
            raise ValueError("a rejection needs a reason")
        if self.kind != REVIEW_KIND:
            raise ValueError(f"kind must be {REVIEW_KIND!r}")
        if self.tournament_id is not None and not self.tournament_id:
            raise ValueError("tournament id must not be empty")

    @classmethod
    def of(
        cls,
        race_id: str,
        player_id: str,
        decision: str,
        reason: str,
        decided_at: int,
        tournament_id: str | None = None,
    ) -> ReviewDecisionRecord:
        match_id = review_match_id(race_id, player_id)
        return cls(match_id, race_id, player_id, decision, reason, decided_at, tournament_id)

    def to_bytes(self) -> bytes:
        packed: bytes = msgpack.packb(dataclasses.asdict(self), use_bin_type=True)
        return packed


def _day(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True, slots=True)
class ReleasedResult:
    """A released result as stored: what its boards need."""

    race_type: str
    race_id: str
    player_id: str
    name: str
    wpm: float
    accuracy: float
    created_at: datetime  # the race's end: which daily and weekly boards
    daily: str | None = None  # a daily challenge attempt's day (YYYY-MM-DD): that day's board too


def released_boards(r: ReleasedResult, settings: ReadSideSettings) -> tuple[tuple[str, int | None], ...]:
    """(key, expiry) of the boards a released result belongs to, the daily challenge's included."""
    boards = boards_for(r.race_type, r.created_at.date(), settings)
    daily = daily_challenge_board(r.daily, settings) if r.daily else None
    return (*boards, daily) if daily else boards


def released_placements(results: Sequence[ReleasedResult], settings: ReadSideSettings) -> list[Placement]:
    """Every board a released result belongs to: its race type's (none if unranked) and, for a
    daily challenge attempt, its day's board (``daily:{day}:board``)."""
    return [
        Placement(key, r.player_id, r.name, score(r.wpm, r.accuracy), expiry)
        for r in results
        for key, expiry in released_boards(r, settings)
    ]


@dataclass(frozen=True, slots=True)
class DecidedResult:
    """A result an operator released or rejected, as stored: what the read side updates."""

    race_id: str
    player_id: str
    name: str
    kind: str
    race_type: str
    created_at: datetime  # the race's end
    players: int
    place: int | None
    status: str
    valid: bool
    wpm: float
    accuracy: float
    review: str  # released | rejected; held when placement held a provisional result (placed)
    daily: str | None = None  # a daily challenge attempt's day (YYYY-MM-DD)
    placed: bool = False  # released by placement (persistence/placement.py), not by an operator

    @property
    def was(self) -> str:
        """Its review state before the decision (the recent-results line it replaces)."""
        return ReviewState.PROVISIONAL.value if self.placed else ReviewState.HELD.value

    @classmethod
    def of_row(cls, row: Any) -> DecidedResult:  # an asyncpg Record of store._DECIDED
        return cls(
            row["race_id"], row["player_id"], row["name"], row["kind"], row["race_type"], row["created_at"],
            row["players"], row["place"], row["status"], row["valid"], row["wpm"], row["accuracy"],
            row["review_state"], _day(row["daily"]), row["placed_by"] is not None,
        )  # fmt: skip

    def recent(self, review: str) -> RecentResult:
        """Its line in the player's recent results, in review state ``review``."""
        return RecentResult(
            race_id=self.race_id,
            kind=self.kind,
            race_type=self.race_type,
            ended_at=to_ms(self.created_at),
            players=self.players,
            place=shown_place(self.place, review),
            status=self.status,
            valid=self.valid,
            wpm=float(self.wpm),
            accuracy=float(self.accuracy),
            review=review,
        )


# ---- what the operator sees ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeystrokeStats:
    keys: int
    backspaces: int
    interval_mean_ms: float
    interval_sd_ms: float
    interval_skew: float  # human typing is right-skewed (well above 0); a metronome is near 0
    interval_min_ms: int


def keystroke_stats(keys: str, times: list[int]) -> KeystrokeStats:
    """Summary of the inter-key intervals the server stored (persistence/keylog.py)."""
    gaps = [b - a for a, b in pairwise(times)]
    if len(gaps) < 2:
        return KeystrokeStats(
            len(keys), keys.count("\b"), float(gaps[0]) if gaps else 0.0, 0.0, 0.0, min(gaps, default=0)
        )
    mean = statistics.fmean(gaps)
    sd = statistics.pstdev(gaps, mean)
    skew = sum((g - mean) ** 3 for g in gaps) / len(gaps) / sd**3 if sd > 0 else 0.0
    return KeystrokeStats(
        len(keys), keys.count("\b"), round(mean, 1), round(sd, 1), round(skew, 2), min(gaps)
    )
