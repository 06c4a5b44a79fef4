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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

__all__ = ["HELD_F", "PAIRS", "PairHistory", "PairLimits", "pair_f", "race_pairs"]

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
HELD_F = "pairs_history"  # PairHistory.why when the pooled F rule held (HoldReason.PAIRS_HISTORY)

# Pair lookup in two steps, both arrays indexed by code: a character (lower case, code < 127) to
# its letter number (0: any other character), then first * _A + second letter number to the pair's
# index in PAIRS (-1: not a kept pair). Numbers, not strings: numpy does the per-key work in C.
_LETTERS = sorted({ch for p in PAIRS for ch in p})
_A = len(_LETTERS) + 1
_LETTER = np.zeros(128, dtype=np.intp)
_LETTER[[ord(ch) for ch in _LETTERS]] = np.arange(1, _A)
_PAIR_AT = np.full(_A * _A, -1, dtype=np.intp)
_PAIR_AT[[_LETTER[ord(p[0])] * _A + _LETTER[ord(p[1])] for p in PAIRS]] = np.arange(_P)

Values = npt.NDArray[np.float32]


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


def _zeros() -> Values:
    return np.zeros(3 * _P, dtype=np.float32)


@dataclass(frozen=True, slots=True, eq=False)
class Sums:
    """Per pair of ``PAIRS``: count, sum and sum of squares (one float32 array, 3 x 160)."""

    values: Values = field(default_factory=_zeros)

    def count(self, pair: str) -> int:
        return round(float(self.values[_INDEX[pair]]))

    def total(self) -> int:
        return round(float(self.values[:_P].sum(dtype=np.float64)))

    def plus(self, other: Sums) -> Sums:
        return Sums(self.values + other.values)  # float32 + float32: rounded as before (array "f")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sums) and bool(np.array_equal(self.values, other.values))

    __hash__ = None  # type: ignore[assignment]  # mutable values: not hashable, as a dataclass


def race_pairs(keys: str, times: Sequence[int], pause_ms: int = 1500, clip: float = 1.0) -> Sums:
    """One race's intervals by letter pair: log interval minus the race's mean log, clipped to ±clip.

    O(keys) in numpy (a table lookup per pair, then bincount); backspaces and pairs outside
    ``PAIRS`` do not count. 5-7 times cheaper than the per-key Python loop it replaced
    (benchmarks/pairs_cost.py, docs/PERFORMANCE.md)."""
    low = keys.lower()  # (may be longer than keys: "İ" lowers to two characters, as before)
    n = min(len(low), len(times))
    if n < 2:
        return Sums()
    codes = np.frombuffer(low.encode("utf-32-le"), dtype=np.uint32)[:n]
    letters = _LETTER[np.minimum(codes, 127)]  # 127 (DEL) and above: letter 0, no pair
    at = _PAIR_AT[letters[:-1] * _A + letters[1:]]
    t = np.asarray(times[:n], dtype=np.int64)
    gaps = t[1:] - t[:-1]
    kept = (at >= 0) & (gaps > 0) & (gaps <= pause_ms)
    at, logs = at[kept], np.log(gaps[kept])
    if not len(at):
        return Sums()
    # (np.minimum/maximum: a fraction of np.clip's call cost on arrays this small)
    d = np.minimum(np.maximum(logs - logs.sum() / len(logs), -clip), clip)
    v = np.empty(3 * _P, dtype=np.float32)
    v[:_P] = np.bincount(at, minlength=_P)
    v[_P : 2 * _P] = np.bincount(at, d, _P)
    v[2 * _P :] = np.bincount(at, d * d, _P)
    return Sums(v)


def pair_f(pooled: Sums, limits: PairLimits = DEFAULT_PAIR_LIMITS) -> tuple[float | None, int]:
    """(one-way ANOVA F by letter pair, intervals it rests on); F is None below ``min_intervals``."""
    v = pooled.values.astype(np.float64)
    counts, sums, squares = v[:_P], v[_P : 2 * _P], v[2 * _P :]
    keep = counts >= limits.min_repeats - 0.5
    kept_n, kept_s = counts[keep], sums[keep]
    n = round(float(kept_n.sum()))
    k = len(kept_n)
    if n < limits.min_intervals or k < 2 or n <= k:
        return None, n
    explained = float((kept_s * kept_s / kept_n).sum())
    total = float(kept_s.sum())
    between = explained - total * total / n
    within = float(squares[keep].sum()) - explained
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
    # Which rule held: HELD_F (this module) or "pairs_population" (persistence/pair_population.py).
    why: str = ""
    generation: int = 0  # generations started (a new one every ``races`` races)
    contributed: int = -1  # the generation this player last added to the population profile

    def pooled(self) -> Sums:
        return self.previous.plus(self.current)

    def plus(self, race_id: str, pairs: Sums, limits: PairLimits = DEFAULT_PAIR_LIMITS) -> PairHistory:
        """This history with one more race (unchanged if that race is already counted)."""
        if race_id in self.race_ids:
            return self
        current, previous, races = self.current, self.previous, self.current_races
        generation = self.generation
        if races >= limits.races:  # a new generation: the oldest races drop out
            current, previous, races, generation = Sums(), current, 0, generation + 1
        ids = (*self.race_ids, race_id)[-2 * limits.races :]
        return replace(
            self, current=current.plus(pairs), current_races=races + 1, previous=previous,
            race_ids=ids, generation=generation,
        )  # fmt: skip

    def holding(self, why: str) -> PairHistory:
        """Held from now on, by the rule ``why``."""
        return replace(self, held=True, why=why)

    def judged(self, limits: PairLimits = DEFAULT_PAIR_LIMITS) -> PairHistory:
        """Held from now on if the pooled evidence is enough and shows no letter-pair structure."""
        return self.assessed(limits)[0]

    def assessed(self, limits: PairLimits = DEFAULT_PAIR_LIMITS) -> tuple[PairHistory, bool]:
        """(``judged``, whether the evidence is still short of ``min_intervals``: placement,
        persistence/placement.py). Never short once held, nor with the rule off."""
        if self.held or not limits.min_f:
            return self, False
        f, _ = pair_f(self.pooled(), limits)
        if f is not None and f < limits.min_f:
            return self.holding(HELD_F), False
        return self, f is None

    def to_bytes(self) -> bytes:
        cur, prev = self.current.values.tobytes(), self.previous.values.tobytes()  # little-endian
        raw = [
            _FORMAT, cur, self.current_races, prev, list(self.race_ids), self.held,
            self.why, self.generation, self.contributed,
        ]  # fmt: skip
        packed: bytes = msgpack.packb(raw, use_bin_type=True)
        return packed

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> PairHistory:
        """A stored history; an empty one for None or bytes this code does not understand."""
        if not raw:
            return cls()
        try:
            value: Any = msgpack.unpackb(raw, raw=False)
            # Six fields before the population rule: held then meant the F rule.
            fmt, cur, races, prev, ids, held, *rest = value
            why, generation, contributed = rest if len(rest) == 3 else (HELD_F if held else "", 0, -1)
            if fmt != _FORMAT:
                return cls()
            if len(cur) != 4 * 3 * _P or len(prev) != 4 * 3 * _P:
                return cls()
            current = np.frombuffer(cur, dtype="<f4").astype(np.float32)  # a writable copy
            previous = np.frombuffer(prev, dtype="<f4").astype(np.float32)
            ids_ = tuple(str(i) for i in ids)
            return cls(
                Sums(current), int(races), Sums(previous), ids_, bool(held), str(why), int(generation),
                int(contributed),
            )  # fmt: skip
        except (ValueError, TypeError, msgpack.ExtraData):
            return cls()
