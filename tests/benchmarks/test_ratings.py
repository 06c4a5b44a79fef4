"""The rating benchmark's own maths and a tiny run of it (pure: no servers)."""

from __future__ import annotations

import argparse
import itertools
import random
import time

from benchmarks.ratings import MODELS, kendall_tau, simulate


def _brute_tau(xs: list[float], ys: list[float]) -> float:
    score = 0
    pairs = list(itertools.combinations(range(len(xs)), 2))
    for i, j in pairs:
        s = (xs[i] - xs[j]) * (ys[i] - ys[j])
        score += 1 if s > 0 else -1 if s < 0 else 0
    return score / len(pairs)


def test_kendall_tau_matches_the_definition() -> None:
    rng = random.Random(3)
    for n in (2, 7, 50, 200):
        xs = [rng.random() for _ in range(n)]
        ys = [x + rng.gauss(0, 0.3) for x in xs]
        assert abs(kendall_tau(xs, ys) - _brute_tau(xs, ys)) < 1e-12
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0


def test_a_small_run_ranks_players_and_is_bounded() -> None:
    args = argparse.Namespace(players=400, races=1200, rounds_per_day=20, seed=1)
    for name in ("glicko2", "plackett_luce"):
        started = time.monotonic()
        result = simulate(MODELS[name](), args, deadline=time.monotonic() + 60)
        assert result.rated == 1200
        assert time.monotonic() - started < 60
        final = result.taus[1200]
        assert 0.5 < final <= 1.0, (name, final)  # ratings follow true skill
        assert result.taus[120] < final  # and get better with races
        assert result.pred and result.rate_s > 0
