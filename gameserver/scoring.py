"""Server-side replay and scoring of one player's keystrokes.

Pure logic: no I/O, no asyncio, no imports from other project modules.  It
runs for every input message on a server holding many players, so the per-key
loop in :meth:`TypingState.apply` works on local variables and allocates
nothing per key apart from one append of the key's time for correct keys.

Replay model
------------
The player has a typed buffer.  Every character of ``keys`` is one keystroke;
``BACKSPACE`` ("\\b") deletes the last buffer character.  The buffer is never
stored: it is always "a correct prefix of the passage" followed by
``error_run`` characters typed after the first mistake, so the state is the
pair (``position``, ``error_run``):

* a char key with ``error_run == 0`` equal to ``passage[position]`` moves
  ``position`` on; it is a correct keystroke only the first time that place is
  reached (``position`` passes ``peak``, the furthest it has been).  Typing a
  character again after deleting it is a ``retyped`` keystroke, neither correct
  nor incorrect: deleting and retyping correct text earns nothing;
* any other char key is an incorrect keystroke (``error_run += 1``), even if
  it happens to equal a passage character: after a mistake the buffer is
  misaligned with the passage.  Once ``error_run`` reaches
  ``ScoringLimits.max_error_run`` further wrong keys are counted but not added
  to the buffer, so the number of backspaces needed to recover stays bounded;
* backspace removes an error (``error_run -= 1``) or, with no errors left,
  a correct character (``position -= 1``, counted in ``corrections``
  because it has to be retyped); on an empty buffer it does nothing but is
  still counted as a backspace keystroke;
* the player finishes when ``position == len(passage)`` with no errors; the
  finishing key's time is ``finish_time_ms`` and every later key is ignored
  (not counted, not logged).

Score definitions
-----------------
* elapsed time: chosen by the caller (the server): the server-judged finish
  time for a finisher, otherwise the time of the last key;
* WPM = (correctly typed characters / 5) / minutes, where correctly typed
  characters = the final ``position``;
* raw WPM = (char keystrokes / 5) / minutes, where char keystrokes
  (``typed_chars``) = correct + incorrect keystrokes: backspaces and retyped
  characters excluded, so a correction is not counted twice;
* accuracy = correct keystrokes / (correct + incorrect keystrokes) * 100,
  rounded to two decimals; 0.0 when nothing was typed.  As correct keystrokes
  are at most the passage's length, padding a race with delete-and-retype
  cannot raise it (TypeRacer's "characters / (characters + errors)" in spirit);
* consistency = 100 * (1 - stdev / mean) of the number of correct keystrokes
  per second of the race, clamped to [0, 100] (see :func:`consistency`).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BACKSPACE",
    "DEFAULT_SCORING_LIMITS",
    "Score",
    "ScoringLimits",
    "TypingState",
    "consistency",
    "score",
    "wpm",
]

BACKSPACE = "\b"

# chars per "word" in WPM and ms per minute, folded: wpm = chars * 12000 / ms
_MS_PER_WORD_MINUTE = 60_000 // 5


@dataclass(frozen=True, slots=True)
class ScoringLimits:
    """Replay limits.

    ``max_error_run``: most wrong characters kept in the buffer after the
    correct prefix; 0 means wrong keys are never added ("stop on error").
    """

    max_error_run: int = 32

    def __post_init__(self) -> None:
        if self.max_error_run < 0:
            raise ValueError("max_error_run must be >= 0")


DEFAULT_SCORING_LIMITS = ScoringLimits()


KEY_CHUNKS_JOINED = 16  # input batches kept as separate str objects before they are joined


class TypingState:
    """Incremental replay of one player's keystrokes against a passage."""

    __slots__ = (
        "_correct_times",
        "_key_chunks",
        "_length",
        "_max_error_run",
        "_passage",
        "_times",
        "backspaces",
        "correct_keystrokes",
        "corrections",
        "error_run",
        "finish_time_ms",
        "incorrect_keystrokes",
        "last_time_ms",
        "peak",
        "position",
        "retyped",
        "typed_chars",
    )

    def __init__(self, passage: str, limits: ScoringLimits = DEFAULT_SCORING_LIMITS) -> None:
        # An empty passage would be "finished" before any key, and a passage
        # containing BACKSPACE could never be typed.
        if not passage:
            raise ValueError("passage must not be empty")
        if BACKSPACE in passage:
            raise ValueError("passage must not contain BACKSPACE")
        self._passage = passage
        self._length = len(passage)
        self._max_error_run = limits.max_error_run
        self.position = 0
        self.peak = 0  # the furthest position ever reached: a correct key beyond it is new
        self.error_run = 0
        self.finish_time_ms: int | None = None
        self.typed_chars = 0
        self.correct_keystrokes = 0
        self.incorrect_keystrokes = 0
        self.backspaces = 0
        self.corrections = 0
        self.retyped = 0  # correct characters typed again after being deleted
        self.last_time_ms = 0
        # Keystroke log: times as 4-byte unsigned ints instead of int objects; batches as the
        # str objects received, joined every KEY_CHUNKS_JOINED of them so that a race does not
        # keep one small str per input batch until it ends (they filled pymalloc's arenas at a
        # load's peak and kept them resident after it: docs/PERFORMANCE.md, "Back to idle").
        self._key_chunks: list[str] = []
        self._times = array("I")
        # Times of correct keystrokes: the source for per-second counts
        # (consistency) and sliding burst windows (fair play).
        self._correct_times = array("I")

    @property
    def passage(self) -> str:
        return self._passage

    @property
    def finished(self) -> bool:
        return self.finish_time_ms is not None

    def apply(self, keys: str, times: Sequence[int]) -> int:
        """Replay a batch of keystrokes; return ``position`` afterwards.

        ``times`` must already be in range (``arena.protocol.KeyTime``: the codec
        refuses anything else at the door); they are not re-checked here.  Keys
        after the finish are ignored.
        """
        if self.finish_time_ms is not None or not keys:
            return self.position
        if len(keys) != len(times):
            raise ValueError("keys and times must have the same length")

        # Locals: attribute access per key would dominate the loop's cost.
        passage = self._passage
        length = self._length
        cap = self._max_error_run
        backspace = BACKSPACE
        add_correct_time = self._correct_times.append
        pos = self.position
        peak = self.peak
        retyping = peak > pos  # only after a correct char was deleted can a correct key be old
        err = self.error_run
        correct = incorrect = backspaces = corrections = retyped = 0
        finish: int | None = None

        for key, t in zip(keys, times, strict=True):
            if key == backspace:
                backspaces += 1
                if err:
                    err -= 1
                elif pos:
                    # A correct char deleted: it must be typed again.
                    if not retyping:
                        peak, retyping = pos, True
                    pos -= 1
                    corrections += 1
            elif not err and key == passage[pos]:
                pos += 1
                if not retyping:
                    correct += 1
                    add_correct_time(t)
                elif pos <= peak:
                    retyped += 1
                else:  # past where it had been: new ground again
                    retyping = False
                    correct += 1
                    add_correct_time(t)
                if pos == length:
                    finish = t
                    break
            else:
                # Wrong, or typed after an uncorrected error (misaligned).
                incorrect += 1
                if err < cap:
                    err += 1

        self.position = pos
        self.peak = peak if retyping else pos
        self.error_run = err
        self.correct_keystrokes += correct
        self.incorrect_keystrokes += incorrect
        self.typed_chars += correct + incorrect
        self.backspaces += backspaces
        self.corrections += corrections
        self.retyped += retyped

        # Every processed key bumped exactly one of these four counters.
        used = correct + incorrect + backspaces + retyped
        chunks = self._key_chunks
        if used == len(keys):
            chunks.append(keys)
            self._times.extend(times)
        else:
            # Finished mid-batch: keys after the finish are not logged.
            chunks.append(keys[:used])
            self._times.extend(times[:used])
        if len(chunks) >= KEY_CHUNKS_JOINED:
            chunks[:] = ["".join(chunks)]
        self.last_time_ms = times[used - 1]
        if finish is not None:
            self.finish_time_ms = finish
        return pos

    def log_keys(self) -> str:
        """All replayed keys (up to the finish), as one string."""
        return "".join(self._key_chunks)

    def log_times(self) -> list[int]:
        """Times of all replayed keys, aligned with :meth:`log_keys`."""
        return self._times.tolist()

    def correct_times(self) -> list[int]:
        """Times of the correct keystrokes, in order."""
        return self._correct_times.tolist()

    def per_second_correct(self) -> list[int]:
        """Correct keystrokes in each second of the race (index = second).

        Derived on demand in O(correct keys) from the correct-key times
        rather than kept per key: it is needed once per result, and this
        keeps the per-key loop smaller.
        """
        times = self._correct_times
        if not times:
            return []
        counts = [0] * (times[-1] // 1000 + 1)
        for t in times:
            counts[t // 1000] += 1
        return counts


@dataclass(frozen=True, slots=True)
class Score:
    wpm: float
    raw_wpm: float
    accuracy: float  # percent, 0..100, 2 decimals
    consistency: float  # 0..100, 2 decimals
    correct_chars: int  # final position
    typed_chars: int  # char keystrokes, backspaces excluded
    errors: int  # incorrect keystrokes
    elapsed_ms: int


def wpm(correct_chars: int, elapsed_ms: int) -> float:
    """(chars / 5) / minutes, rounded to 2 decimals; 0.0 if elapsed <= 0."""
    if elapsed_ms <= 0:
        return 0.0
    return round(correct_chars * _MS_PER_WORD_MINUTE / elapsed_ms, 2)


def consistency(per_second: Sequence[int]) -> float:
    """Steadiness of speed: 100 * (1 - stdev / mean), clamped to [0, 100].

    Uses the population standard deviation of the per-second counts.  The
    last second is usually partial (the race ended inside it), so it is
    dropped when there are at least 3 seconds.  No data gives 0.0, a single
    second 100.0, all-zero counts 0.0.  Rounded to 2 decimals.
    """
    n = len(per_second)
    if n == 0:
        return 0.0
    if n == 1:
        return 100.0
    if n >= 3:
        n -= 1
    total = 0
    total_sq = 0
    for i in range(n):
        c = per_second[i]
        total += c
        total_sq += c * c
    if total <= 0:
        return 0.0
    # Integer sums keep the variance exact: stdev/mean = sqrt(nQ - S^2) / S.
    spread = n * total_sq - total * total
    cv = math.sqrt(spread) / total if spread > 0 else 0.0
    return round(min(100.0, max(0.0, 100.0 * (1.0 - cv))), 2)


def score(state: TypingState, elapsed_ms: int) -> Score:
    """Score a player's replay over ``elapsed_ms`` chosen by the server."""
    typed = state.typed_chars
    correct_keys = state.correct_keystrokes
    accuracy = round(correct_keys * 100 / typed, 2) if typed else 0.0
    return Score(
        wpm=wpm(state.position, elapsed_ms),
        raw_wpm=wpm(typed, elapsed_ms),
        accuracy=accuracy,
        consistency=consistency(state.per_second_correct()),
        correct_chars=state.position,
        typed_chars=typed,
        errors=state.incorrect_keystrokes,
        elapsed_ms=elapsed_ms,
    )
