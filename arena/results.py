"""The record of a finished (or aborted) match: what the outbox carries to persistence.

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

    def to_bytes(self) -> bytes:
        return msgpack.packb(dataclasses.asdict(self), use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def from_bytes(cls, raw: bytes) -> MatchRecord:
        data: dict[str, Any] = msgpack.unpackb(raw, raw=False)
        participants = [ParticipantRecord(**p) for p in data.pop("participants")]
        return cls(participants=participants, **data)
