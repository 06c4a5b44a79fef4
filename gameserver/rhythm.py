"""Is this rhythm a person's?  Keystroke-dynamics statistics over sliding windows (docs/FAIRPLAY.md).

One whole-race figure (the coefficient of variation) is easy to pass: add ±20 % jitter, two long
pauses, or alternate between two intervals.  People differ from such scripts in ways that are
well established in keystroke dynamics, and each is checked per window of ``window`` intervals
so a pause or a human-looking stretch elsewhere cannot hide a machine-regular one:

* **spread** — the robust standard deviation of log intervals (the log-normal fit's sigma, from
  the interquartile range).  People type with sigma around 0.3-0.6; a jittered metronome lower.
* **shape** — human inter-key intervals are right-skewed (quick rolls, the odd slow reach);
  symmetric jitter (uniform, Gaussian, two alternating values) is not.
* **periodicity** — the autocorrelation of intervals at lags 1-4: alternating or repeating
  patterns correlate near ±1, people's intervals weakly.
* **digraph consistency** — a person types the same letter pair at a steady speed that differs
  between pairs ("th" fast, "qz" slow), so letter pairs explain much of the variance (one-way
  ANOVA F of log intervals by digraph well above 1).  Jitter drawn independently of the text,
  or a human timing recorded on another text and replayed, has F near 1.

A passage shorter than one window is judged as one window once it has ``min_intervals``; the
skewness rule needs ``skew_min_intervals`` (a sample of a dozen says too little about shape),
and the digraph rule ``digraph_min_intervals`` of repeated letter pairs.

Pure logic, no project imports; O(n) once per result, never per key.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from operator import mul, sub

__all__ = ["DEFAULT_RHYTHM_LIMITS", "Rhythm", "RhythmLimits", "judge", "rhythm"]

_BACKSPACE = "\b"


@dataclass(frozen=True, slots=True)
class RhythmLimits:
    window: int = 32  # intervals per window
    min_intervals: int = 12  # fewer than this (pauses left out): nothing is judged
    pause_ms: int = 1500  # longer intervals are pauses: left out of every statistic
    min_log_sd: float = 0.2  # a window's robust SD of log intervals below this is machine-regular
    min_skew: float = 0.3  # a window's skewness below this is (near) symmetric jitter
    skew_min_intervals: int = 80  # the shape rule needs this many intervals (three windows)
    # The shape rule judges a window only if its median interval is at most this (24 WPM): a
    # slower typist's right tail is cut off by ``pause_ms``, which leaves honest windows
    # symmetric. Measured: simulated typists at 8 / 12 / 15 WPM failed it in 99 / 30 / 3 % of
    # races, and a recorded 10-15 WPM typist too (benchmarks/human_keystrokes.py, FAIRPLAY.md).
    shape_max_median_ms: int = 500
    max_autocorr: float = 0.7  # a window's largest |autocorrelation| at lags 1-4 above this (humans < 0.6)
    # A rule counts when more than this share of windows fail it: one odd stretch is not a robot.
    failing_share: float = 0.5
    # Letter pairs explain too little of the rhythm below this. Measured (benchmarks/
    # rhythm_sweep.py, docs/FAIRPLAY.md): honest models with a flat keyboard (pair speeds with
    # sigma 0.2) and a jittery hand reach F 1.28-1.35 on 700-1,100 characters, letter-blind
    # log-normal gaps stay below 1.3 in about 97 % of runs; 1.5 flagged 0.2-2 % of honest runs.
    min_digraph_f: float = 1.25
    digraph_min_repeats: int = 2  # a letter pair counts once typed this many times
    # Intervals of repeated letter pairs the rule needs (about a 700-character passage): with
    # fewer, chance alone spreads F too widely to tell a person from jitter (at 400, about 500
    # characters, honest models were flagged even at F < 1.2).
    digraph_min_intervals: int = 600

    def __post_init__(self) -> None:
        if self.window < 8 or not 4 <= self.min_intervals <= self.window:
            raise ValueError("rhythm: window >= 8 and 4 <= min_intervals <= window")
        if not 0.0 < self.failing_share <= 1.0:
            raise ValueError("rhythm: failing_share in (0, 1]")


DEFAULT_RHYTHM_LIMITS = RhythmLimits()


@dataclass(frozen=True, slots=True)
class Rhythm:
    """The statistics of one keystroke log, and which rules it failed (empty = human)."""

    windows: int
    log_sd: float  # median over windows
    skew: float | None  # median over windows; None with fewer than ``skew_min_intervals``
    autocorr: float  # median over windows of the largest |r_k|, k = 1..4
    digraph_f: float | None  # None with too few repeated letter pairs
    failed: tuple[str, ...]


def _median(values: list[float]) -> float:
    values = sorted(values)
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


def _window_stats(gaps: Sequence[int]) -> tuple[float, float, float, int]:
    """(robust SD of log gaps, skewness of gaps, largest |autocorrelation| at lags 1-4, median gap)."""
    n = len(gaps)
    ordered = sorted(gaps)
    median = ordered[n // 2]
    # The interquartile range of log gaps over 1.349 (a normal's IQR in SDs): the log-normal
    # fit's sigma, which a pause or two inside the window cannot inflate.
    log_sd = math.log(ordered[(3 * n) // 4] / ordered[n // 4]) / 1.349
    mean = sum(gaps) / n
    dev = [g - mean for g in gaps]
    sq = list(map(mul, dev, dev))  # map/mul: the sums run in C, this is the costly part
    m2 = sum(sq) / n
    if m2 <= 0:
        return log_sd, 0.0, 1.0, median  # every gap the same: as regular as it gets
    skew = sum(map(mul, sq, dev)) / n / m2**1.5
    denom = m2 * n
    auto = (
        max(
            abs(sum(map(mul, dev, dev[1:]))),
            abs(sum(map(mul, dev, dev[2:]))),
            abs(sum(map(mul, dev, dev[3:]))),
            abs(sum(map(mul, dev, dev[4:]))),
        )
        / denom
    )
    return log_sd, skew, auto, median


def _digraph_f(keys: str, times: Sequence[int], limits: RhythmLimits) -> float | None:
    """One-way ANOVA F of log intervals grouped by the letter pair that ends at each key."""
    # defaultdict: groups in order of their first pair, as before (the sums below add in that order).
    groups: defaultdict[str, list[int]] = defaultdict(list)
    pause = limits.pause_ms
    for a, b, gap in zip(keys, keys[1:], map(sub, times[1:], times), strict=False):
        if 0 < gap <= pause and a != _BACKSPACE and b != _BACKSPACE:
            groups[a + b].append(gap)
    kept = [list(map(math.log, g)) for g in groups.values() if len(g) >= limits.digraph_min_repeats]
    k = len(kept)
    n = sum(map(len, kept))
    if n < limits.digraph_min_intervals or k < 2:
        return None
    sums = [sum(g) for g in kept]  # each group's sum once (it was summed twice)
    grand = sum(sums) / n
    between = within = 0.0
    for g, total in zip(kept, sums, strict=True):
        m = total / len(g)
        between += len(g) * (m - grand) ** 2
        within += sum((x - m) ** 2 for x in g)
    if within <= 0:
        return math.inf if between > 0 else 0.0
    return (between / (k - 1)) / (within / (n - k))


def rhythm(keys: str, times: Sequence[int], limits: RhythmLimits = DEFAULT_RHYTHM_LIMITS) -> Rhythm | None:
    """The statistics of a keystroke log (keys aligned with times); None if too short to judge."""
    # Zero gaps (two keys in one millisecond) count as 1 ms: log needs > 0, and they are fast.
    # (``g if g > 0 else 1`` is ``max(1, g)`` without a call per key: this runs for every result,
    # thousands of keys each at a stop, docs/PERFORMANCE.md.)
    pause = limits.pause_ms
    kept = [g if g > 0 else 1 for g in map(sub, islice(times, 1, None), times) if g <= pause]
    n = len(kept)
    if n < limits.min_intervals:
        return None
    w = limits.window
    if n < w:
        chunks = [kept]
    else:
        chunks = [kept[i : i + w] for i in range(0, n - w + 1, w)]
        if n % w:
            chunks.append(kept[-w:])  # the tail, overlapping the last full window
    stats = [_window_stats(c) for c in chunks]
    full = n >= limits.skew_min_intervals
    share = limits.failing_share
    failed: list[str] = []
    if sum(s[0] < limits.min_log_sd for s in stats) > share * len(stats):
        failed.append("spread")
    slow = limits.shape_max_median_ms
    if full and sum(s[1] < limits.min_skew and s[3] <= slow for s in stats) > share * len(stats):
        failed.append("shape")
    if sum(s[2] > limits.max_autocorr for s in stats) > share * len(stats):
        failed.append("periodic")
    # A text shorter than the digraph rule's minimum cannot reach it: skip the grouping.
    digraph_f = _digraph_f(keys, times, limits) if len(keys) > limits.digraph_min_intervals else None
    if digraph_f is not None and digraph_f < limits.min_digraph_f:
        failed.append("digraphs")
    return Rhythm(
        windows=len(stats),
        log_sd=_median([s[0] for s in stats]),
        skew=_median([s[1] for s in stats]) if full else None,
        autocorr=_median([s[2] for s in stats]),
        digraph_f=digraph_f,
        failed=tuple(failed),
    )


def judge(keys: str, times: Sequence[int], limits: RhythmLimits = DEFAULT_RHYTHM_LIMITS) -> bool:
    """True if the rhythm fails any rule (machine-made)."""
    found = rhythm(keys, times, limits)
    return found is not None and bool(found.failed)
