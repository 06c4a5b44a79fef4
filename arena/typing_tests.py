"""Typing tests: their modes, and the result a node appends to the outbox (kind ``test``).

A typing test is a solo race the node judges like any other (same scoring, same fair play),
with one of these modes (issue 16, seed 002):

- ``time-15``, ``time-30``, ``time-60``, ``time-120``: a long stream of words; the test ends at
  the time and the WPM is over the whole time;
- ``words-10``, ``words-25``, ``words-50``, ``words-100``: that many words; it ends when typed;
- ``quote``: a passage of the library.

Pure: no I/O. Names avoid a ``Test`` prefix so pytest never mistakes them for test classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgpack

TEST_KIND = "test"  # the outbox entry's kind
TEST_RECORD_VERSION = 1
TIME_MODES_S = (15, 30, 60, 120)
WORD_MODES = (10, 25, 50, 100)


class ModeType(StrEnum):
    TIME = "time"
    WORDS = "words"
    QUOTE = "quote"


@dataclass(frozen=True, slots=True)
class TypingMode:
    type: ModeType
    amount: int = 0  # seconds (time), words (words), 0 (quote)

    def __post_init__(self) -> None:
        allowed = {ModeType.TIME: TIME_MODES_S, ModeType.WORDS: WORD_MODES, ModeType.QUOTE: (0,)}[self.type]
        if self.amount not in allowed:
            raise ValueError(f"{self.type.value} takes one of {list(allowed)}, not {self.amount}")

    @property
    def name(self) -> str:
        """What the API, the keys and the ``mode`` column say: ``time-15``, ``words-25``, ``quote``."""
        return self.type.value if self.type is ModeType.QUOTE else f"{self.type.value}-{self.amount}"

    @property
    def seconds(self) -> int | None:
        """A time mode's length; None for the others (they end when the text is typed)."""
        return self.amount if self.type is ModeType.TIME else None

    @classmethod
    def parse(cls, name: object) -> TypingMode:
        """``time-15`` ... ``quote``; ``ValueError`` naming the modes for anything else."""
        if isinstance(name, str) and name in _BY_NAME:
            return _BY_NAME[name]
        raise ValueError(f"mode must be one of {list(MODE_NAMES)}")


ALL_MODES = (
    *(TypingMode(ModeType.TIME, s) for s in TIME_MODES_S),
    *(TypingMode(ModeType.WORDS, w) for w in WORD_MODES),
    TypingMode(ModeType.QUOTE),
)
_BY_NAME = {m.name: m for m in ALL_MODES}
MODE_NAMES = tuple(_BY_NAME)


@dataclass(frozen=True, slots=True)
class TypingTestRecord:
    """One finished (or aborted) typing test, as the node judged it."""

    match_id: str  # the test id (the node's race id): the idempotency key downstream
    node_id: str
    mode: str  # TypingMode.name
    content_id: str  # what was typed: the quote's passage id, or the test id for generated words
    passage_chars: int
    state: str  # finished | aborted (the race's)
    reason: str
    player_id: str
    name: str
    status: str  # finished | dnf (the player's)
    valid: bool  # False when fair-play flags were raised
    flags: list[str]
    wpm: float
    raw_wpm: float
    accuracy: float
    consistency: float
    correct_chars: int
    typed_chars: int
    errors: int
    elapsed_ms: int  # what the WPM is over: a time mode's whole time, else the judged finish
    created_at: int
    started_at: int | None
    ended_at: int
    keys: str
    key_times: list[int]
    kind: str = TEST_KIND
    version: int = TEST_RECORD_VERSION

    @property
    def participants(self) -> list[TypingTestRecord]:
        """The node reads a record's players the same way for races and tests: here, one."""
        return [self]

    @property
    def counts(self) -> bool:
        """Bests, percentiles and recent results take finished, unflagged tests only."""
        return self.state == "finished" and self.status == "finished" and self.valid

    def to_bytes(self) -> bytes:
        data = {name: getattr(self, name) for name in _FIELDS}
        return msgpack.packb(data, use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def from_bytes(cls, raw: bytes) -> TypingTestRecord:
        data: dict[str, Any] = msgpack.unpackb(raw, raw=False)
        return cls(**data)


_FIELDS = tuple(f.name for f in dataclasses.fields(TypingTestRecord))
