"""A replay's racers' texts at any instant: what each had typed at time t, mistakes included.

Pure logic, no I/O: the replay viewer on the page (``lobby/web/app.js``, ``replayTextAt``)
mirrors it line for line, and this module is the tested reference.

The model is the server's own (``gameserver/scoring.py``): a racer's buffer is a correct prefix
of the passage followed by the wrong characters typed since the first mistake; a backspace
deletes the buffer's last character (nothing on an empty buffer). As on the server, at most
``max_error_run`` wrong characters stay in the buffer: further wrong keys are lost, so the
viewer shows what the racer saw. Without the passage (a custom race: its text is not stored)
every character key is added and nothing is known to be right or wrong.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BACKSPACE_KEY = "Backspace"  # a backspace in a replay, as the DOM's KeyboardEvent.key names it
MAX_ERROR_RUN = 32  # gameserver.scoring.ScoringLimits.max_error_run's default


@dataclass(frozen=True, slots=True)
class ReplayKey:
    """One keystroke of a replay: when (ms since the race start) and which key."""

    t_ms: int
    key: str  # one character, or BACKSPACE_KEY


@dataclass(frozen=True, slots=True)
class RacerText:
    """A racer's text at one instant."""

    text: str  # the buffer as it stood, wrong characters included
    correct: int | None  # leading characters that match the passage (None: passage unknown)
    keys_applied: int  # keystrokes at or before the instant
    finished: bool  # the whole passage typed without an error left


def text_at(
    keys: Sequence[ReplayKey],
    t_ms: int,
    passage: str | None = None,
    *,
    max_error_run: int = MAX_ERROR_RUN,
) -> RacerText:
    """The racer's text after every key at or before ``t_ms`` (keys sorted by time)."""
    applied = bisect_right(keys, t_ms, key=lambda k: k.t_ms)
    buffer: list[str] = []
    correct = 0  # length of the buffer's correct prefix (passage known)
    for k in keys[:applied]:
        if k.key == BACKSPACE_KEY:
            if buffer:
                buffer.pop()
                correct = min(correct, len(buffer))
        elif passage is None:
            buffer.append(k.key)
        elif len(buffer) == correct and correct < len(passage) and k.key == passage[correct]:
            buffer.append(k.key)
            correct += 1
        elif len(buffer) - correct < max_error_run:
            buffer.append(k.key)
        # else: past the server's cap, a wrong key never reached the buffer
    if passage is None:
        return RacerText("".join(buffer), None, applied, False)
    finished = correct == len(passage) and len(buffer) == correct and bool(passage)
    return RacerText("".join(buffer), correct, applied, finished)


def texts_at(
    racers: Mapping[str, Sequence[ReplayKey]],
    t_ms: int,
    passage: str | None = None,
    *,
    max_error_run: int = MAX_ERROR_RUN,
) -> dict[str, RacerText]:
    """Every racer's text at ``t_ms``, by the same key as ``racers`` (e.g. the player id)."""
    return {who: text_at(keys, t_ms, passage, max_error_run=max_error_run) for who, keys in racers.items()}


def duration_ms(racers: Mapping[str, Sequence[ReplayKey]]) -> int:
    """The time of the last key of anyone: where a replay's timeline ends."""
    return max((keys[-1].t_ms for keys in racers.values() if keys), default=0)
