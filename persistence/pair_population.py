"""Agreement with other people's letter-pair speeds (docs/FAIRPLAY.md, "Pair-table bots").

People differ in how fast they type each letter pair, but they agree on much of it: "e " and
"er" are quick for nearly everyone, a word's first letter slow. On 162 recorded people
(benchmarks/human_keystrokes.py) a player's per-pair means correlated with everyone else's
average at r +0.77 (median; all but one with enough keys at +0.48 or more), while a bot with a
made-up speed per pair kept across races (a "pair-table bot": it has the letter-pair structure
the pooled F rule of persistence/pairs.py looks for) lands near 0.

So persistence keeps a **population profile** from its own evidence (``PopulationProfile``, one
Redis key): per pair of ``PAIRS``, a decaying sum of players' pooled per-pair means and of their
weights. A player adds one contribution per evidence generation (at most once every
``races`` races) and only while their evidence is enough, passed the pooled F rule and holds
nothing. Once ``min_players`` contributions are in, a player whose pooled evidence has
``PairLimits.min_intervals`` intervals is judged: the Pearson r between their per-pair means
(pairs seen ``min_count`` times) and the profile's, below ``min_r``, holds the player
(``pairs_population``) until an operator releases a result. Pure: no I/O
(persistence/pair_store.py keeps the profile in Redis beside the players' evidence).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

from persistence.pairs import PAIRS, PairHistory, PairLimits, Sums, pair_f

__all__ = ["HELD_POPULATION", "PopulationLimits", "PopulationProfile", "agreement", "judged"]

HELD_POPULATION = "pairs_population"  # PairHistory.why (HoldReason.PAIRS_POPULATION)
_P = len(PAIRS)
_FORMAT = 1

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PopulationLimits:
    # Below this r the player's pair speeds do not agree with other people's: hold (<= 0: off).
    # Calibrated with benchmarks/rhythm_sweep.py --careers and benchmarks/human_keystrokes.py
    # (docs/FAIRPLAY.md, "Pair-table bots").
    min_r: float = 0.2
    # Contributions the profile needs before it judges anyone: a fresh deployment judges nobody.
    min_players: int = 50
    min_count: int = 5  # a player's pair counts for r (and their contribution) when seen this often
    min_common: int = 20  # pairs in both the player's means and the profile's: fewer, no judgement
    # Weight of the profile's past: each contribution multiplies the old sums by 1 - 1/horizon,
    # so a pair's weight stays below ``horizon`` and the profile follows the players of the last
    # few ``horizon`` contributions (a slow drift of who plays, keyboards, passages).
    horizon: int = 1000
    min_weight: float = 3.0  # a profile pair counts once this much weight is behind it

    def __post_init__(self) -> None:
        if not -1 <= self.min_r < 1:
            raise ValueError("population: min_r in [-1, 1)")
        if self.min_players < 1 or self.min_count < 1 or self.min_common < 3 or self.horizon < 10:
            raise ValueError("population: min_players >= 1, min_count >= 1, min_common >= 3, horizon >= 10")
        if not 0 < self.min_weight <= self.horizon:
            raise ValueError("population: min_weight in (0, horizon]")


DEFAULT_POPULATION_LIMITS = PopulationLimits()


def _zeros() -> Floats:
    return np.zeros(_P, dtype=np.float64)


def pair_means(pooled: Sums, min_count: int) -> tuple[Floats, npt.NDArray[np.bool_]]:
    """(per-pair mean normalised log interval, which pairs were seen ``min_count`` times)."""
    v = pooled.values.astype(np.float64)
    counts, sums = v[:_P], v[_P : 2 * _P]
    seen = counts >= min_count - 0.5
    means = np.zeros(_P, dtype=np.float64)
    means[seen] = sums[seen] / counts[seen]
    return means, seen


@dataclass(frozen=True, slots=True, eq=False)
class PopulationProfile:
    """The players' per-pair means, pooled: a decaying sum and weight per pair (about 2.6 KB)."""

    sums: Floats = field(default_factory=_zeros)
    weights: Floats = field(default_factory=_zeros)
    players: int = 0  # contributions so far (capped: only "enough or not" matters)

    def established(self, limits: PopulationLimits) -> bool:
        return self.players >= limits.min_players

    def plus(self, pooled: Sums, limits: PopulationLimits) -> PopulationProfile:
        """With one player's contribution: their means of the pairs seen ``min_count`` times."""
        means, seen = pair_means(pooled, limits.min_count)
        keep = 1.0 - 1.0 / limits.horizon
        return PopulationProfile(
            self.sums * keep + np.where(seen, means, 0.0),
            self.weights * keep + seen,
            min(self.players + 1, 1 << 30),
        )

    def means(self, limits: PopulationLimits) -> tuple[Floats, npt.NDArray[np.bool_]]:
        known = self.weights >= limits.min_weight
        means = np.zeros(_P, dtype=np.float64)
        means[known] = self.sums[known] / self.weights[known]
        return means, known

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PopulationProfile)
            and self.players == other.players
            and bool(np.array_equal(self.sums, other.sums) and np.array_equal(self.weights, other.weights))
        )

    __hash__ = None  # type: ignore[assignment]

    def to_bytes(self) -> bytes:
        raw = [_FORMAT, self.sums.astype("<f8").tobytes(), self.weights.astype("<f8").tobytes(), self.players]
        packed: bytes = msgpack.packb(raw, use_bin_type=True)
        return packed

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> PopulationProfile:
        """A stored profile; an empty one for None or bytes this code does not understand."""
        if not raw:
            return cls()
        try:
            value: Any = msgpack.unpackb(raw, raw=False)
            fmt, sums, weights, players = value
            if fmt != _FORMAT or len(sums) != 8 * _P or len(weights) != 8 * _P:
                return cls()
            s = np.frombuffer(sums, dtype="<f8").astype(np.float64)
            w = np.frombuffer(weights, dtype="<f8").astype(np.float64)
            if not (np.isfinite(s).all() and np.isfinite(w).all() and (w >= 0).all()):
                return cls()
            return cls(s, w, max(0, int(players)))
        except (ValueError, TypeError, msgpack.ExtraData):
            return cls()


def agreement(
    pooled: Sums, profile: PopulationProfile, limits: PopulationLimits = DEFAULT_POPULATION_LIMITS
) -> tuple[float | None, int]:
    """(Pearson r of the player's per-pair means with the profile's, pairs it rests on); r is
    None below ``min_common`` pairs or when either side is flat."""
    mine, seen = pair_means(pooled, limits.min_count)
    theirs, known = profile.means(limits)
    both = seen & known
    n = int(both.sum())
    if n < limits.min_common:
        return None, n
    x, y = mine[both] - mine[both].mean(), theirs[both] - theirs[both].mean()
    denominator = float(np.sqrt((x * x).sum() * (y * y).sum()))
    if denominator <= 0:
        return None, n
    return float((x * y).sum()) / denominator, n


def judged(
    history: PairHistory,
    profile: PopulationProfile,
    pairs: PairLimits,
    limits: PopulationLimits = DEFAULT_POPULATION_LIMITS,
) -> tuple[PairHistory, PopulationProfile]:
    """After the pooled F rule (``history.judged``): hold the player if the population profile is
    established and their evidence (``pairs.min_intervals``) disagrees with it; else, once per
    generation, add their evidence to the profile if it passed the F rule."""
    if history.held:
        return history, profile
    pooled = history.pooled()
    # The F rule's count of intervals (pairs seen min_repeats times), without its F: O(160).
    counts = pooled.values[:_P]
    if float(counts[counts >= pairs.min_repeats - 0.5].sum()) < pairs.min_intervals - 0.5:
        return history, profile  # not enough evidence: neither judged nor a contribution
    if limits.min_r > 0 and profile.established(limits):
        r, _ = agreement(pooled, profile, limits)
        if r is not None and r < limits.min_r:
            return history.holding(HELD_POPULATION), profile
    if history.contributed == history.generation:
        return history, profile
    f, _ = pair_f(pooled, pairs)  # once per generation: only evidence that passed the F rule adds
    if f is None or (pairs.min_f and f < pairs.min_f):
        return history, profile
    return replace(history, contributed=history.generation), profile.plus(pooled, limits)
