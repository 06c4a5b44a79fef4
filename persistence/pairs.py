"""Letter-pair evidence pooled over a player's recent races (docs/FAIRPLAY.md, "Letter pairs across races").

People type the same letter pair at a steady speed that differs between pairs ("th" a quick roll,
"qz" a slow reach), and that holds from one session to the next: the basis of keystroke-dynamics
authentication. One short race has too few repeated pairs to show it (gameserver/rhythm.py needs
600 intervals, about 700 characters), but a player's races together do. Gaps drawn whatever the
letters (a log-normal bot), or a person's timing recorded on another text and replayed, have no
such structure in any race, so their pooled one-way ANOVA F of log intervals by letter pair stays
near 1.

Per race, each interval's log is taken relative to that race's own mean log interval, so a faster
or slower day does not count as noise within a pair, and clipped to ±``clip`` (1.0: a third to
2.7 times the race's typical interval), so a hesitation or a reach after a typo does not swamp
the pair's own spread (winsorising; letter-blind gaps of sigma 0.4 are barely touched). Per
player, a bounded summary is kept (``PairHistory``): per letter pair (case folded) the count, sum
and sum of squares of those values, in two generations of at most ``races`` races each (so the
evidence covers the last ``races`` to ``2 * races - 1`` races) and at most ``max_pairs`` pairs
each, plus the ids of the races counted (a re-delivered result counts once). Pure: no I/O
(persistence/pair_store.py keeps it in Redis).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import sub
from typing import Any

import msgpack

__all__ = ["PairHistory", "PairLimits", "pair_f", "race_pairs"]

_BACKSPACE = "\b"
_FORMAT = 1
Sums = tuple[int, float, float]  # count, sum, sum of squares of normalised log intervals


@dataclass(frozen=True, slots=True)
class PairLimits:
    # Below this pooled F the rhythm has no letter-pair structure: hold (0 turns the rule off).
    # Chosen by benchmarks/rhythm_sweep.py --careers (docs/FAIRPLAY.md).
    min_f: float = 1.25
    min_intervals: int = 600  # pooled intervals of repeated pairs the rule needs (as in rhythm.py)
    min_repeats: int = 2  # a pair counts once seen this many times
    races: int = 10  # races per generation: the evidence covers the last 10-19 races
    max_pairs: int = 400  # pairs kept per generation (the most frequent): bounds the summary
    pause_ms: int = 1500  # longer intervals are pauses, left out (as in rhythm.py)
    # Normalised log intervals are clipped to ± this. Measured (benchmarks/rhythm_sweep.py
    # --careers): unclipped, honest flat-keyboard jittery careers went down to F 1.18, into the
    # bots' range; clipped at 1.0 their lowest was about 1.36, bots' F unchanged.
    clip: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_f <= 10:
            raise ValueError("pairs: min_f in [0, 10]")
        if self.min_intervals < 50 or self.min_repeats < 2 or self.races < 1 or self.max_pairs < 10:
            raise ValueError("pairs: min_intervals >= 50, min_repeats >= 2, races >= 1, max_pairs >= 10")
        if not self.clip > 0:
            raise ValueError("pairs: clip > 0")


DEFAULT_PAIR_LIMITS = PairLimits()


def race_pairs(keys: str, times: Sequence[int], pause_ms: int = 1500, clip: float = 1.0) -> dict[str, Sums]:
    """One race's intervals by letter pair: log interval minus the race's mean log, clipped to ±clip."""
    logs: list[tuple[str, float]] = []
    for a, b, gap in zip(keys, keys[1:], map(sub, times[1:], times), strict=False):
        if 0 < gap <= pause_ms and a != _BACKSPACE and b != _BACKSPACE:
            logs.append(((a + b).lower(), math.log(gap)))
    if not logs:
        return {}
    mean = sum(x for _, x in logs) / len(logs)
    sums: dict[str, list[float]] = {}
    for pair, x in logs:
        d = min(clip, max(-clip, x - mean))
        s = sums.get(pair)
        if s is None:
            sums[pair] = [1, d, d * d]
        else:
            s[0] += 1
            s[1] += d
            s[2] += d * d
    return {p: (int(s[0]), s[1], s[2]) for p, s in sums.items()}


def _add(into: dict[str, Sums], more: Mapping[str, Sums]) -> dict[str, Sums]:
    out = dict(into)
    for pair, (n, s, ss) in more.items():
        old = out.get(pair)
        out[pair] = (n, s, ss) if old is None else (old[0] + n, old[1] + s, old[2] + ss)
    return out


def pair_f(pooled: Mapping[str, Sums], limits: PairLimits = DEFAULT_PAIR_LIMITS) -> tuple[float | None, int]:
    """(one-way ANOVA F by letter pair, intervals it rests on); F is None below ``min_intervals``."""
    kept = [v for v in pooled.values() if v[0] >= limits.min_repeats]
    n = sum(v[0] for v in kept)
    k = len(kept)
    if n < limits.min_intervals or k < 2 or n <= k:
        return None, n
    grand = sum(v[1] for v in kept) / n
    between = sum(c * (s / c - grand) ** 2 for c, s, _ in kept)
    within = sum(ss - s * s / c for c, s, ss in kept)
    if within <= 0:
        return (math.inf if between > 0 else 0.0), n
    return (between / (k - 1)) / (within / (n - k)), n


def _trim(pairs: dict[str, Sums], cap: int) -> dict[str, Sums]:
    if len(pairs) <= cap:
        return pairs
    return dict(sorted(pairs.items(), key=lambda kv: -kv[1][0])[:cap])


@dataclass(frozen=True, slots=True)
class PairHistory:
    """One player's pooled letter-pair evidence (bounded), and whether it already holds them."""

    current: dict[str, Sums] = field(default_factory=dict)
    current_races: int = 0
    previous: dict[str, Sums] = field(default_factory=dict)
    race_ids: tuple[str, ...] = ()  # races counted, newest last (at most 2 * races)
    held: bool = False  # the evidence said "no letter-pair structure": hold until released

    def pooled(self) -> dict[str, Sums]:
        return _add(self.previous, self.current)

    def plus(
        self, race_id: str, pairs: Mapping[str, Sums], limits: PairLimits = DEFAULT_PAIR_LIMITS
    ) -> PairHistory:
        """This history with one more race (unchanged if that race is already counted)."""
        if race_id in self.race_ids:
            return self
        current, previous, races = self.current, self.previous, self.current_races
        if races >= limits.races:  # a new generation: the oldest races drop out
            current, previous, races = {}, current, 0
        current = _trim(_add(current, pairs), limits.max_pairs)
        ids = (*self.race_ids, race_id)[-2 * limits.races :]
        return PairHistory(current, races + 1, previous, ids, self.held)

    def judged(self, limits: PairLimits = DEFAULT_PAIR_LIMITS) -> PairHistory:
        """Held from now on if the pooled evidence is enough and shows no letter-pair structure."""
        if self.held or not limits.min_f:
            return self
        f, _ = pair_f(self.pooled(), limits)
        if f is not None and f < limits.min_f:
            return PairHistory(self.current, self.current_races, self.previous, self.race_ids, True)
        return self

    def to_bytes(self) -> bytes:
        def flat(pairs: Mapping[str, Sums]) -> list[Any]:
            return [[p, n, round(s, 4), round(ss, 4)] for p, (n, s, ss) in pairs.items()]

        cur, prev = flat(self.current), flat(self.previous)
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

            def unflat(rows: Iterable[Any]) -> dict[str, Sums]:
                return {str(p): (int(n), float(s), float(ss)) for p, n, s, ss in rows}

            return cls(unflat(cur), int(races), unflat(prev), tuple(str(i) for i in ids), bool(held))
        except (ValueError, TypeError, msgpack.ExtraData):
            return cls()
