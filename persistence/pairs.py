"""Letter-pair evidence pooled over a player's recent races (docs/FAIRPLAY.md, "Letter pairs across races").

People type the same letter pair at a steady speed that differs between pairs ("th" a quick roll,
"qz" a slow reach), and that holds from one session to the next: the basis of keystroke-dynamics
authentication. One short race has too few repeated pairs to show it (gameserver/rhythm.py needs
600 intervals, about 700 characters), but a player's races together do. Gaps drawn whatever the
letters (a log-normal bot), or a person's timing recorded on another text and replayed, have no
such structure in any race, so their pooled one-way ANOVA F of log intervals by letter pair stays
near 1.

Only the 160 most frequent letter pairs of the race passages are kept (``PAIRS``, lower case,
space included: 88 % of their letter pairs), so the summary has a fixed size. Per race, each
interval's log is taken relative to that race's own mean log interval, so a faster or slower day
does not count as noise within a pair, and clipped to ±``clip`` (1.0: a third to 2.7 times the
race's typical interval), so a hesitation or a reach after a typo does not swamp the pair's own
spread (winsorising; letter-blind gaps of sigma 0.4 are barely touched). Per player, a bounded
summary is kept (``PairHistory``): per pair the count, sum and sum of squares of those values
(float32), in two generations of at most ``races`` races each (so the evidence covers the last
``races`` to ``2 * races - 1`` races), plus the ids of the races counted (a re-delivered result
counts once): about 4 KB. Pure: no I/O (persistence/pair_store.py keeps it in Redis).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import add, sub
from typing import Any

import msgpack

__all__ = ["PAIRS", "PairHistory", "PairLimits", "pair_f", "race_pairs"]

# The 160 most frequent letter pairs (lower case, "_" for a space) of gameserver/data's passages.
# Changing this list changes the stored format: bump _FORMAT (old summaries then start over).
_PAIR_TEXT = (
    "e_ _t th he _a s_ d_ _s in t_ er an _w n_ nd _o re ng r_ y_ _c _b _f _i ar ed st at on es"
    " en ou or ea te it _h g_ a_ le ha to ve ne _m _p _l o_ al ro _r as _e ll me rs se f_ wa _d"
    " nt h_ of lo ch de ti ee _n ri li ow ho is et l_ la hi il om ur fo co ra be un oo ca ac ut"
    " pe wi _g ly el ta we gh ad no ke si ts ir ma sh mo wh ay ce ig m_ tr ev us ns ai ge ld so"
    " pa bo ck fi ol id ni ot ie ic pl ry ht rn di os ul w_ em wo rt k_ op ds _y im ss ec am bu"
    " _u cl ap ey rd mi fr ei sa od"
)
PAIRS: tuple[str, ...] = tuple(p.replace("_", " ") for p in _PAIR_TEXT.split())
_INDEX = {p: i for i, p in enumerate(PAIRS)}
_P = len(PAIRS)
_FORMAT = 2


@dataclass(frozen=True, slots=True)
class PairLimits:
    # Below this pooled F the rhythm has no letter-pair structure: hold (0 turns the rule off).
    # Chosen by benchmarks/rhythm_sweep.py --careers (docs/FAIRPLAY.md): from 1,000 intervals,
    # honest flat-keyboard jittery careers stayed above 1.4, letter-blind ones mostly below 1.2.
    min_f: float = 1.3
    # Pooled intervals of repeated pairs the rule needs. Not rhythm.py's 600: pooled from 600,
    # one honest flat-keyboard career in 800 went down to F 1.23, inside the bots' range; from
    # 1,000 none went below 1.43 (a bot then needs about 4-6 short races instead of 3-4).
    min_intervals: int = 1000
    min_repeats: int = 2  # a pair counts once seen this many times
    races: int = 10  # races per generation: the evidence covers the last 10-19 races
    pause_ms: int = 1500  # longer intervals are pauses, left out (as in rhythm.py)
    # Normalised log intervals are clipped to ± this. Measured (benchmarks/rhythm_sweep.py
    # --careers): unclipped, honest flat-keyboard jittery careers went down to F 1.18, into the
    # bots' range; clipped at 1.0 their lowest was about 1.36, bots' F unchanged.
    clip: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_f <= 10:
            raise ValueError("pairs: min_f in [0, 10]")
        if self.min_intervals < 50 or self.min_repeats < 2 or self.races < 1 or not self.clip > 0:
            raise ValueError("pairs: min_intervals >= 50, min_repeats >= 2, races >= 1, clip > 0")


DEFAULT_PAIR_LIMITS = PairLimits()


def _zeros() -> array[float]:
    return array("f", bytes(4 * 3 * _P))


@dataclass(frozen=True, slots=True)
class Sums:
    """Per pair of ``PAIRS``: count, sum and sum of squares (one float32 array, 3 x 160)."""

    values: array[float] = field(default_factory=_zeros)

    def count(self, pair: str) -> int:
        return round(self.values[_INDEX[pair]])

    def total(self) -> int:
        return round(sum(self.values[:_P]))

    def plus(self, other: Sums) -> Sums:
        return Sums(array("f", map(add, self.values, other.values)))


def race_pairs(keys: str, times: Sequence[int], pause_ms: int = 1500, clip: float = 1.0) -> Sums:
    """One race's intervals by letter pair: log interval minus the race's mean log, clipped to ±clip.

    O(keys), the per-key steps in C (map); backspaces and pairs outside ``PAIRS`` do not count."""
    low = keys.lower()
    index = map(_INDEX.get, map(add, low, low[1:]))
    gaps = map(sub, times[1:], times)
    kept = [(i, g) for i, g in zip(index, gaps, strict=False) if i is not None and 0 < g <= pause_ms]
    if not kept:
        return Sums()
    at, kept_gaps = zip(*kept, strict=True)
    logs = list(map(math.log, kept_gaps))
    mean = sum(logs) / len(logs)
    v = [0.0] * (3 * _P)  # a list while adding: cheaper per item than the array
    for i, x in zip(at, logs, strict=True):
        d = x - mean
        if d > clip:
            d = clip
        elif d < -clip:
            d = -clip
        v[i] += 1.0
        v[_P + i] += d
        v[2 * _P + i] += d * d
    return Sums(array("f", v))


def pair_f(pooled: Sums, limits: PairLimits = DEFAULT_PAIR_LIMITS) -> tuple[float | None, int]:
    """(one-way ANOVA F by letter pair, intervals it rests on); F is None below ``min_intervals``."""
    v = pooled.values
    counts, sums, squares = v[:_P], v[_P : 2 * _P], v[2 * _P :]
    keep = [c >= limits.min_repeats - 0.5 for c in counts]
    kept_n = list(compress(counts, keep))
    kept_s = list(compress(sums, keep))
    n = round(sum(kept_n))
    k = len(kept_n)
    if n < limits.min_intervals or k < 2 or n <= k:
        return None, n
    explained = sum(s * s / c for s, c in zip(kept_s, kept_n, strict=True))
    total = sum(kept_s)
    between = explained - total * total / n
    within = sum(compress(squares, keep)) - explained
    if within <= 0:
        return (math.inf if between > 0 else 0.0), n
    return max(0.0, between / (k - 1)) / (within / (n - k)), n


@dataclass(frozen=True, slots=True)
class PairHistory:
    """One player's pooled letter-pair evidence (bounded), and whether it already holds them."""

    current: Sums = field(default_factory=Sums)
    current_races: int = 0
    previous: Sums = field(default_factory=Sums)
    race_ids: tuple[str, ...] = ()  # races counted, newest last (at most 2 * races)
    held: bool = False  # the evidence said "no letter-pair structure": hold until released

    def pooled(self) -> Sums:
        return self.previous.plus(self.current)

    def plus(self, race_id: str, pairs: Sums, limits: PairLimits = DEFAULT_PAIR_LIMITS) -> PairHistory:
        """This history with one more race (unchanged if that race is already counted)."""
        if race_id in self.race_ids:
            return self
        current, previous, races = self.current, self.previous, self.current_races
        if races >= limits.races:  # a new generation: the oldest races drop out
            current, previous, races = Sums(), current, 0
        ids = (*self.race_ids, race_id)[-2 * limits.races :]
        return PairHistory(current.plus(pairs), races + 1, previous, ids, self.held)

    def judged(self, limits: PairLimits = DEFAULT_PAIR_LIMITS) -> PairHistory:
        """Held from now on if the pooled evidence is enough and shows no letter-pair structure."""
        if self.held or not limits.min_f:
            return self
        f, _ = pair_f(self.pooled(), limits)
        if f is not None and f < limits.min_f:
            return PairHistory(self.current, self.current_races, self.previous, self.race_ids, True)
        return self

    def to_bytes(self) -> bytes:
        cur, prev = self.current.values.tobytes(), self.previous.values.tobytes()
        raw = [_FORMAT, cur, self.current_races, prev, list(self.race_ids), self.held]
        packed: bytes = msgpack.packb(raw, use_bin_type=True)
        return packed

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> PairHistory:
        """A stored history; an empty one for None or bytes this code does not understand."""
        if not raw:
            return cls()
        try:
            value: Any = msgpack.unpackb(raw, raw=False)
            fmt, cur, races, prev, ids, held = value
            if fmt != _FORMAT:
                return cls()
            current, previous = array("f"), array("f")
            current.frombytes(cur)
            previous.frombytes(prev)
            if len(current) != 3 * _P or len(previous) != 3 * _P:
                return cls()
            return cls(Sums(current), int(races), Sums(previous), tuple(str(i) for i in ids), bool(held))
        except (ValueError, TypeError, msgpack.ExtraData):
            return cls()
