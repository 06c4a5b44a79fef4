"""What the outbox carries to persistence: finished matches and tournaments' final results.

One ``MatchRecord`` per race or tournament heat, serialised with msgpack into the outbox
stream entry's ``data`` field. The keystroke log stays compact: the keys as one string
(``\\b`` is backspace) and the times as a list of ints, msgpack packs small ints tightly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import msgpack

RECORD_VERSION = 1
FINAL_KIND = "tournament_final"
FINAL_RECORD_VERSION = 1


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    player_id: str
    name: str
    place: int | None  # None: DNF or flagged (never ranked)
    status: str  # finished | dnf
    valid: bool  # False when fair-play flags were raised
    flags: list[str]
    wpm: float
    raw_wpm: float
    accuracy: float
    consistency: float
    correct_chars: int
    typed_chars: int
    errors: int
    elapsed_ms: int
    joined_at: int | None
    finished_at: int | None
    keys: str
    key_times: list[int]


@dataclass(frozen=True, slots=True)
class MatchRecord:
    match_id: str  # the race id: the idempotency key everywhere downstream
    kind: str  # race | heat
    node_id: str
    race_type: str
    passage_id: str
    passage_chars: int
    state: str  # finished | aborted
    reason: str
    created_at: int
    started_at: int | None
    ended_at: int
    participants: list[ParticipantRecord] = field(default_factory=list)
    tournament_id: str | None = None
    round_no: int | None = None
    heat_no: int | None = None
    version: int = RECORD_VERSION
    # An attempt at this day's daily challenge (YYYY-MM-DD): persistence puts its valid finishes
    # on the day's board. Not packed when None, so other records are the bytes they always were.
    daily: str | None = None

    def to_bytes(self) -> bytes:
        """The same bytes as packing ``dataclasses.asdict(self)``, without its deep copy of every
        keystroke list (≈ 1.8 ms a race of 5 with 40 keys each: most of a stopping node's CPU
        for its results). Field order is the declaration order either way."""
        data = {name: getattr(self, name) for name in _MATCH_FIELDS}
        data["participants"] = [
            {name: getattr(p, name) for name in _PARTICIPANT_FIELDS} for p in self.participants
        ]
        if self.daily is None:
            del data["daily"]
        return msgpack.packb(data, use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def from_bytes(cls, raw: bytes) -> MatchRecord:
        data: dict[str, Any] = msgpack.unpackb(raw, raw=False)
        participants = [ParticipantRecord(**p) for p in data.pop("participants")]
        return cls(participants=participants, **data)


_MATCH_FIELDS = tuple(f.name for f in dataclasses.fields(MatchRecord))
_PARTICIPANT_FIELDS = tuple(f.name for f in dataclasses.fields(ParticipantRecord))


# ---- a tournament's final result (kind "tournament_final") ---------------------------
# Appended once by the tournament director, ``id`` = "{tournament_id}:final". It is not a
# ``MatchRecord``: a consumer branches on the entry's ``kind`` before decoding ``data``.


@dataclass(frozen=True, slots=True)
class FinalStanding:
    rank: int  # 1 = winner
    player_id: str
    name: str
    seed: int  # 1 = best rated at the start
    rating: float  # the rating the seeding used
    last_round: int  # the last round the player was dealt into
    prize: str | None  # the prize for this rank, if any


@dataclass(frozen=True, slots=True)
class HeatRace:
    """A race that counted for a heat (its record is in the outbox under ``race_id``)."""

    round_no: int
    heat_no: int
    race_no: int
    race_id: str


@dataclass(frozen=True, slots=True)
class SettledHeat:
    """A heat decided without a complete result, and why (bye, node lost, timed out...)."""

    round_no: int
    heat_no: int
    reason: str


@dataclass(frozen=True, slots=True)
class TournamentFinalRecord:
    match_id: str  # "{tournament_id}:final": the idempotency key downstream
    tournament_id: str
    name: str
    race_type: str
    tournament_type: str  # scheduled | instant
    visibility: str  # public | private
    rule: str  # top_k | points
    heat_size: int
    advance: int
    races_per_round: int
    rounds: int  # rounds played
    created_at: int  # ms
    started_at: int  # ms
    ended_at: int  # ms
    standings: list[FinalStanding] = field(default_factory=list)  # every entrant, rank order
    heat_races: list[HeatRace] = field(default_factory=list)
    settled_heats: list[SettledHeat] = field(default_factory=list)
    kind: str = FINAL_KIND
    state: str = "finished"
    version: int = FINAL_RECORD_VERSION

    def to_bytes(self) -> bytes:
        return msgpack.packb(dataclasses.asdict(self), use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def from_bytes(cls, raw: bytes) -> TournamentFinalRecord:
        data: dict[str, Any] = msgpack.unpackb(raw, raw=False)
        standings = [FinalStanding(**s) for s in data.pop("standings")]
        heat_races = [HeatRace(**h) for h in data.pop("heat_races")]
        settled = [SettledHeat(**s) for s in data.pop("settled_heats")]
        return cls(standings=standings, heat_races=heat_races, settled_heats=settled, **data)


def final_match_id(tournament_id: str) -> str:
    return f"{tournament_id}:final"
