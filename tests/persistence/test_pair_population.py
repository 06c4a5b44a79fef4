"""Agreement with other people's letter-pair speeds (persistence/pair_population.py): pure logic."""

from __future__ import annotations

import dataclasses
import random

import msgpack
import numpy as np
import pytest

from persistence.pair_population import (
    HELD_POPULATION,
    PopulationLimits,
    PopulationProfile,
    agreement,
    judged,
    pair_means,
)
from persistence.pairs import HELD_F, PAIRS, PairHistory, PairLimits, Sums
from simulators.typing import SHARED_PAIRS, TypingProfile, digraph_factor, draw_profile

P = len(PAIRS)
PAIR_LIMITS = PairLimits()
LIMITS = PopulationLimits(min_r=0.2, min_players=3, min_weight=2.0)


def evidence(means: np.ndarray, count: int = 10, noise: float = 0.0, seed: int = 0) -> Sums:
    """Pooled sums with ``count`` intervals per pair around ``means`` (``noise``: their spread)."""
    rng = np.random.default_rng(seed)
    xs = means[:, None] + noise * rng.standard_normal((P, count))
    v = np.empty(3 * P, dtype=np.float32)
    v[:P] = count
    v[P : 2 * P] = xs.sum(axis=1)
    v[2 * P :] = (xs * xs).sum(axis=1)
    return Sums(v)


def history_of(pooled: Sums, **kw: int) -> PairHistory:
    return PairHistory(current=pooled, current_races=3, **kw)  # type: ignore[arg-type]


PEOPLE = np.random.default_rng(1).normal(0, 0.3, P)  # what people share


def person(seed: int) -> Sums:
    own = np.random.default_rng(100 + seed).normal(0, 0.15, P)
    return evidence(PEOPLE + own, noise=0.3, seed=seed)


def established(players: int = 5) -> PopulationProfile:
    profile = PopulationProfile()
    for n in range(players):
        profile = profile.plus(person(n), LIMITS)
    return profile


def test_means_count_only_pairs_seen_often_enough() -> None:
    pooled = evidence(np.full(P, 0.5), count=4)
    means, seen = pair_means(pooled, 5)
    assert not seen.any() and (means == 0).all()
    means, seen = pair_means(evidence(np.full(P, 0.5), count=5), 5)
    assert seen.all() and means == pytest.approx(np.full(P, 0.5))


def test_the_profile_decays_and_stays_bounded() -> None:
    limits = PopulationLimits(horizon=10, min_weight=1.0)
    profile = PopulationProfile()
    for _ in range(200):
        profile = profile.plus(evidence(np.full(P, 0.4)), limits)
    assert profile.weights.max() < 10  # weight below the horizon, however many contributions
    means, known = profile.means(limits)
    assert known.all() and means == pytest.approx(np.full(P, 0.4))
    # The past fades: 50 contributions of another profile leave almost nothing of the old one.
    for _ in range(50):
        profile = profile.plus(evidence(np.full(P, -0.2)), limits)
    assert profile.means(limits)[0] == pytest.approx(np.full(P, -0.2), abs=0.01)
    assert profile.players == 250
    back = PopulationProfile.from_bytes(profile.to_bytes())
    assert back == profile and len(profile.to_bytes()) < 2_700


def test_a_stored_profile_this_code_does_not_understand_is_empty() -> None:
    assert PopulationProfile.from_bytes(None) == PopulationProfile()
    assert PopulationProfile.from_bytes(b"\x93garbage") == PopulationProfile()
    bad = np.full(P, np.nan).astype("<f8").tobytes()
    raw = msgpack.packb([1, bad, np.ones(P).astype("<f8").tobytes(), 9], use_bin_type=True)
    assert PopulationProfile.from_bytes(raw) == PopulationProfile()


def test_r_tells_people_from_a_made_up_table() -> None:
    profile = established()
    r, n = agreement(person(99), profile, LIMITS)
    assert n == P and r is not None and r > 0.6
    table = np.random.default_rng(7).normal(0, 0.35, P)  # a pair-table bot's own speeds
    r_bot, _ = agreement(evidence(table, noise=0.3, seed=7), profile, LIMITS)
    assert r_bot is not None and abs(r_bot) < 0.3
    # Too few pairs in common: no verdict.
    few = evidence(np.zeros(P))
    few.values[LIMITS.min_common - 1 : P] = 0
    assert agreement(few, profile, LIMITS) == (None, LIMITS.min_common - 1)
    # A flat player: no verdict either.
    assert agreement(evidence(np.zeros(P)), profile, LIMITS)[0] is None


def test_a_fresh_deployment_judges_nobody_and_people_build_the_profile() -> None:
    table = evidence(np.random.default_rng(7).normal(0, 0.35, P), noise=0.3, seed=7)
    profile = PopulationProfile()
    for n in range(LIMITS.min_players - 1):
        profile = profile.plus(person(n), LIMITS)
    after, same = judged(history_of(table), profile, PAIR_LIMITS, LIMITS)
    assert not after.held and after.contributed == 0 and same.players == LIMITS.min_players  # it counts
    profile = profile.plus(person(50), LIMITS)
    after, same = judged(history_of(table), profile, PAIR_LIMITS, LIMITS)
    assert after.held and after.why == HELD_POPULATION and same == profile  # held: no contribution
    # Off (min_r <= 0): nobody is held, contributions still build the profile.
    off = dataclasses.replace(LIMITS, min_r=0.0)
    after, more = judged(history_of(table), profile, PAIR_LIMITS, off)
    assert not after.held and more.players == profile.players + 1


def test_one_contribution_per_player_per_generation_and_only_with_enough_clear_evidence() -> None:
    profile = established()
    h, p1 = judged(history_of(person(9)), profile, PAIR_LIMITS, LIMITS)
    assert not h.held and h.contributed == 0 and p1.players == profile.players + 1
    again, p2 = judged(h, p1, PAIR_LIMITS, LIMITS)
    assert again == h and p2 is p1  # same generation: no second contribution
    nxt, p3 = judged(dataclasses.replace(h, generation=1), p1, PAIR_LIMITS, LIMITS)
    assert nxt.contributed == 1 and p3.players == p1.players + 1
    # Too little evidence: neither judged nor a contribution.
    short = evidence(PEOPLE, count=5)
    h, p4 = judged(history_of(short), profile, PAIR_LIMITS, LIMITS)
    assert h == history_of(short) and p4 is profile
    # Held by the F rule already: stays held as it was, adds nothing.
    held = history_of(person(9)).holding(HELD_F)
    assert judged(held, profile, PAIR_LIMITS, LIMITS) == (held, profile)
    # Evidence with no letter-pair structure (F below the pooled rule's): no contribution.
    flat = evidence(np.zeros(P), noise=0.4, seed=3)
    h, p5 = judged(history_of(flat), PopulationProfile(), PAIR_LIMITS, LIMITS)
    assert not h.held and p5.players == 0


def test_an_old_history_reads_as_held_by_the_f_rule() -> None:
    h = history_of(person(1))
    cur, prev = h.current.values.tobytes(), h.previous.values.tobytes()
    old = msgpack.packb([2, cur, 3, prev, ["a"], True], use_bin_type=True)  # before this change
    back = PairHistory.from_bytes(old)
    assert back.held and back.why == HELD_F and back.generation == 0 and back.contributed == -1
    new = dataclasses.replace(h.holding(HELD_POPULATION), generation=4, contributed=3)
    assert PairHistory.from_bytes(new.to_bytes()) == new


def test_simulated_people_share_the_table_and_pair_table_bots_do_not() -> None:
    rng = random.Random(14)
    pairs = sorted(SHARED_PAIRS)
    table = np.array([SHARED_PAIRS[p] for p in pairs])
    assert table.std() == pytest.approx(1.0, abs=0.05)  # standardised
    for _ in range(20):
        honest = draw_profile(rng)
        assert 0.8 <= honest.population <= 1.0
        logs = np.log([digraph_factor(honest, p[0], p[1], {}) for p in pairs])
        assert np.corrcoef(logs, table)[0, 1] > 0.6
    bot = TypingProfile(150, 0.0, 0.0, 0, 0.0, 0.3, rng.randrange(1 << 30), population=0.0)
    logs = np.log([digraph_factor(bot, p[0], p[1], {}) for p in pairs])
    assert abs(np.corrcoef(logs, table)[0, 1]) < 0.3
