"""Anti-cheat checks on keystroke timing.  A flagged result is kept but
marked invalid.

Pure logic: no I/O, no asyncio, no imports from other project modules but
``gameserver.rhythm`` (the windowed rhythm rules, equally pure).  The
player state and score are taken through small Protocols (satisfied by
``gameserver.scoring.TypingState`` and ``Score``) so this module does not
depend on scoring's import path.

* :func:`check_batch` runs on every input message: one pass over the batch.
* :func:`assess` runs once per result: O(n) in keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import islice
from operator import mul, sub
from typing import Protocol

from gameserver.rhythm import RhythmLimits, judge

__all__ = [
    "DEFAULT_FAIRPLAY_LIMITS",
    "FairPlayLimits",
    "Flag",
    "KeystrokeRecord",
    "SpeedResult",
    "assess",
    "best_window_wpm",
    "check_batch",
    "interval_cv",
    "longest_fast_run",
]

# chars per "word" in WPM and ms per minute, folded: wpm = chars * 12000 / ms
_MS_PER_WORD_MINUTE = 60_000 // 5


class Flag(StrEnum):
    TOO_FAST = "too_fast"
    ROBOTIC = "robotic"
    BAD_TIMING = "bad_timing"
    PASTE = "paste"
    HELD_BACK = "held_back"  # keys claimed long before their batch arrived (gameserver.arrivals)
    ARRIVED_TOO_FAST = "arrived_too_fast"  # text reached the server faster than anyone types


@dataclass(frozen=True, slots=True)
class FairPlayLimits:
    # Sustained (whole-race) ceiling; only judged from min_chars_for_wpm
    # correct chars on, since a few chars over a short time say little.
    max_wpm: float = 250.0
    min_chars_for_wpm: int = 20
    # Best window of correct chars: catches a short scripted burst hidden
    # inside an otherwise normal race.
    burst_window_ms: int = 5000
    max_burst_wpm: float = 330.0
    # Coefficient of variation of inter-key intervals below this, over at
    # least this many intervals = robot-regular (humans are around 0.3-0.6).
    min_keys_for_rhythm: int = 40
    min_interval_cv: float = 0.10
    # >= paste_run consecutive keys each <= paste_interval_ms apart = pasted.
    paste_run: int = 8
    paste_interval_ms: int = 4
    # Key times may exceed the server's elapsed race time by at most this
    # (clock sync error and network delay), else the key is "from the future".
    future_tolerance_ms: int = 1500
    # ARENA_FAIRPLAY_ARRIVAL_TOLERANCE_MS: a key may claim to be at most (the send interval +
    # the measured round trip + this) older than its batch's arrival (gameserver.arrivals):
    # event-loop stalls and network jitter of honest clients.
    arrival_tolerance_ms: int = 1000
    # The longest a typing client may wait between inputs (docs/PROTOCOL.md: 100-500 ms, or
    # the input cadence if longer).
    max_send_interval_ms: int = 500
    # ARENA_FAIRPLAY_HELD_BACK_BATCHES: batches with held-back keys that raise ``held_back``.
    held_back_batches: int = 2
    # Most batches' last key older than (send interval + round trip) at arrival, over at least
    # this many batches: every key claimed earlier than it was typed (gameserver.arrivals).
    shift_min_batches: int = 10
    # (window ms, WPM ceiling) on the server's arrival clock: correct characters that arrived
    # inside any such window.  Above the claimed-time burst limit, since batching and network
    # jitter bunch honest arrivals (a 500 ms send interval puts 2.5 s of typing into 2 s).
    arrival_windows: tuple[tuple[int, float], ...] = ((2000, 600.0), (5000, 420.0), (10_000, 360.0))
    # Windowed keystroke-dynamics rules (gameserver.rhythm): spread, shape, periodicity, digraphs.
    rhythm: RhythmLimits = field(default_factory=RhythmLimits)

    def __post_init__(self) -> None:
        if not 0 <= self.arrival_tolerance_ms <= 10_000:
            raise ValueError("ARENA_FAIRPLAY_ARRIVAL_TOLERANCE_MS must be between 0 and 10000")
        if self.held_back_batches < 1:
            raise ValueError("ARENA_FAIRPLAY_HELD_BACK_BATCHES must be >= 1")
        if any(span <= 0 or wpm <= 0 for span, wpm in self.arrival_windows):
            raise ValueError("arrival windows need a positive span and WPM")
        if self.burst_window_ms <= 0:
            raise ValueError("burst_window_ms must be > 0")
        if self.paste_run < 2:
            raise ValueError("paste_run must be >= 2")
        if self.min_keys_for_rhythm < 2:
            raise ValueError("min_keys_for_rhythm must be >= 2")


DEFAULT_FAIRPLAY_LIMITS = FairPlayLimits()


class KeystrokeRecord(Protocol):
    """What :func:`assess` reads from a player's state (``TypingState``)."""

    def log_keys(self) -> str: ...

    def log_times(self) -> list[int]: ...

    def correct_times(self) -> list[int]: ...


class SpeedResult(Protocol):
    """What :func:`assess` reads from a player's score (``Score``)."""

    @property
    def wpm(self) -> float: ...

    @property
    def correct_chars(self) -> int: ...


def check_batch(
    times: Sequence[int],
    prev_time_ms: int,
    server_elapsed_ms: int,
    limits: FairPlayLimits = DEFAULT_FAIRPLAY_LIMITS,
) -> Flag | None:
    """Validate one batch's key times before it is replayed.

    BAD_TIMING for a negative time, a time earlier than the previous key's
    (``prev_time_ms`` is the last key of the previous batch; equal times are
    allowed), or a time later than ``server_elapsed_ms +
    future_tolerance_ms``.  None if the batch is fine.
    """
    # Starting from max(prev, 0) lets one comparison cover both "negative"
    # and "goes backwards".
    prev = max(0, prev_time_ms)
    latest = server_elapsed_ms + limits.future_tolerance_ms
    for t in times:
        if t < prev or t > latest:
            return Flag.BAD_TIMING
        prev = t
    return None


def interval_cv(times: Sequence[int]) -> float | None:
    """Coefficient of variation (pstdev / mean) of the gaps between
    consecutive times; None with fewer than 2 times.  All-zero gaps give 0.0
    (perfectly regular)."""
    n = len(times) - 1
    if n < 1:
        return None
    gaps = list(map(sub, islice(times, 1, None), times))  # integers: the sums are exact either way
    total = sum(gaps)
    total_sq = sum(map(mul, gaps, gaps))
    if total <= 0:
        return 0.0
    # Integer sums keep the variance exact: stdev/mean = sqrt(nQ - S^2) / S.
    spread = n * total_sq - total * total
    return math.sqrt(spread) / total if spread > 0 else 0.0


def longest_fast_run(times: Sequence[int], max_interval_ms: int) -> int:
    """Length (in keys) of the longest run of consecutive keys each at most
    ``max_interval_ms`` after the previous one."""
    if not times:
        return 0
    best = run = 1
    prev = times[0]
    for i in range(1, len(times)):
        t = times[i]
        if t - prev <= max_interval_ms:
            run += 1
            if run > best:
                best = run
        else:
            run = 1
        prev = t
    return best


def best_window_wpm(times: Sequence[int], window_ms: int) -> float:
    """Highest WPM over any window of ``window_ms`` (sorted key times).

    Counts the keys in a half-open window [t, t + window_ms) and always
    divides by the full window, so a race shorter than the window is not
    extrapolated.  Two pointers: O(n).
    """
    if window_ms <= 0:
        raise ValueError("window_ms must be > 0")
    best = 0
    lo = 0
    for hi in range(len(times)):
        t = times[hi]
        while t - times[lo] >= window_ms:
            lo += 1
        if hi - lo + 1 > best:  # not max(): a call per key, for every result
            best = hi - lo + 1
    return best * _MS_PER_WORD_MINUTE / window_ms


def assess(
    state: KeystrokeRecord,
    score: SpeedResult,
    limits: FairPlayLimits = DEFAULT_FAIRPLAY_LIMITS,
) -> frozenset[Flag]:
    """Whole-result checks; returns the flags raised (empty = clean).

    TOO_FAST: sustained WPM above ``max_wpm`` (with at least
    ``min_chars_for_wpm`` correct chars), or the best ``burst_window_ms`` of
    correct keystrokes above ``max_burst_wpm``.  ROBOTIC: at least
    ``min_keys_for_rhythm`` inter-key intervals with a coefficient of
    variation below ``min_interval_cv``, or a rhythm that fails a windowed rule of
    :mod:`gameserver.rhythm`.  PASTE: ``paste_run`` consecutive
    keys each at most ``paste_interval_ms`` apart.
    """
    flags: set[Flag] = set()
    sustained = score.correct_chars >= limits.min_chars_for_wpm and score.wpm > limits.max_wpm
    # Short-circuit: the window scan is skipped once already too fast.
    if sustained or (best_window_wpm(state.correct_times(), limits.burst_window_ms) > limits.max_burst_wpm):
        flags.add(Flag.TOO_FAST)

    times = state.log_times()
    if len(times) - 1 >= limits.min_keys_for_rhythm:
        cv = interval_cv(times)
        if cv is not None and cv < limits.min_interval_cv:
            flags.add(Flag.ROBOTIC)
    if Flag.ROBOTIC not in flags and judge(state.log_keys(), times, limits.rhythm):
        flags.add(Flag.ROBOTIC)
    if longest_fast_run(times, limits.paste_interval_ms) >= limits.paste_run:
        flags.add(Flag.PASTE)
    return frozenset(flags)
