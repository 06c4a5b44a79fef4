"""The whole-result checks give the same figures, to the bit, as their straightforward versions
(kept here as the reference) on random keystroke logs: the faster code (no call per key, each
group summed once) changes no verdict (docs/PERFORMANCE.md, "Results at stop")."""

import math
import random
from itertools import pairwise

import pytest

from gameserver.fairplay import best_window_wpm, interval_cv, longest_fast_run
from gameserver.rhythm import DEFAULT_RHYTHM_LIMITS, Rhythm, RhythmLimits, _window_stats, rhythm

LIMITS = DEFAULT_RHYTHM_LIMITS


def reference_window_stats(gaps: list[int]) -> tuple[float, float, float, int]:
    n = len(gaps)
    ordered = sorted(gaps)
    median = ordered[n // 2]
    log_sd = math.log(ordered[(3 * n) // 4] / ordered[n // 4]) / 1.349
    mean = sum(gaps) / n
    dev = [g - mean for g in gaps]
    sq = [d * d for d in dev]
    m2 = sum(sq) / n
    if m2 <= 0:
        return log_sd, 0.0, 1.0, median
    skew = sum(s * d for s, d in zip(sq, dev, strict=True)) / n / m2**1.5
    auto = max(abs(sum(a * b for a, b in zip(dev, dev[k:], strict=False))) for k in range(1, 5)) / (m2 * n)
    return log_sd, skew, auto, median


def reference_digraph_f(keys: str, times: list[int], limits: RhythmLimits) -> float | None:
    groups: dict[str, list[int]] = {}
    for a, b, gap in zip(keys, keys[1:], [y - x for x, y in pairwise(times)], strict=False):
        if 0 < gap <= limits.pause_ms and a != "\b" and b != "\b":
            group = groups.get(a + b)
            if group is None:
                groups[a + b] = [gap]
            else:
                group.append(gap)
    kept = [list(map(math.log, g)) for g in groups.values() if len(g) >= limits.digraph_min_repeats]
    k = len(kept)
    n = sum(len(g) for g in kept)
    if n < limits.digraph_min_intervals or k < 2:
        return None
    grand = sum(sum(g) for g in kept) / n
    between = within = 0.0
    for g in kept:
        m = sum(g) / len(g)
        between += len(g) * (m - grand) ** 2
        within += sum((x - m) ** 2 for x in g)
    if within <= 0:
        return math.inf if between > 0 else 0.0
    return (between / (k - 1)) / (within / (n - k))


def reference_rhythm(keys: str, times: list[int], limits: RhythmLimits = LIMITS) -> Rhythm | None:
    gaps = [b - a for a, b in pairwise(times)]
    kept = [max(1, g) for g in gaps if g <= limits.pause_ms]
    n = len(kept)
    if n < limits.min_intervals:
        return None
    w = limits.window
    if n < w:
        chunks = [kept]
    else:
        chunks = [kept[i : i + w] for i in range(0, n - w + 1, w)]
        if n % w:
            chunks.append(kept[-w:])
    stats = [reference_window_stats(c) for c in chunks]
    full = n >= limits.skew_min_intervals
    share = limits.failing_share
    failed: list[str] = []
    if sum(s[0] < limits.min_log_sd for s in stats) > share * len(stats):
        failed.append("spread")
    slow = limits.shape_max_median_ms  # a slower window's tail is cut off by the pause limit
    if full and sum(s[1] < limits.min_skew and s[3] <= slow for s in stats) > share * len(stats):
        failed.append("shape")
    if sum(s[2] > limits.max_autocorr for s in stats) > share * len(stats):
        failed.append("periodic")
    digraph_f = reference_digraph_f(keys, times, limits) if len(keys) > limits.digraph_min_intervals else None
    if digraph_f is not None and digraph_f < limits.min_digraph_f:
        failed.append("digraphs")
    med = sorted
    return Rhythm(
        windows=len(stats),
        log_sd=_median(med(s[0] for s in stats)),
        skew=_median(med(s[1] for s in stats)) if full else None,
        autocorr=_median(med(s[2] for s in stats)),
        digraph_f=digraph_f,
        failed=tuple(failed),
    )


def _median(values: list[float]) -> float:
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def reference_interval_cv(times: list[int]) -> float | None:
    n = len(times) - 1
    if n < 1:
        return None
    total = total_sq = 0
    for a, b in pairwise(times):
        total += b - a
        total_sq += (b - a) * (b - a)
    if total <= 0:
        return 0.0
    spread = n * total_sq - total * total
    return math.sqrt(spread) / total if spread > 0 else 0.0


def reference_longest_fast_run(times: list[int], max_interval_ms: int) -> int:
    if not times:
        return 0
    best = run = 1
    for a, b in pairwise(times):
        run = run + 1 if b - a <= max_interval_ms else 1
        best = max(best, run)
    return best


def reference_best_window_wpm(times: list[int], window_ms: int) -> float:
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_ms:
            lo += 1
        best = max(best, hi - lo + 1)
    return best * 12000 / window_ms


def random_log(rng: random.Random) -> tuple[str, list[int]]:
    """A keystroke log of a person, a script, or something in between (pauses, zero gaps, keys
    out of order, backspaces, a small alphabet so letter pairs repeat)."""
    n = rng.choice([0, 1, 5, 13, 40, 100, 700, 1500, 3000])
    kind = rng.random()
    alphabet = "etaoin shr" if rng.random() < 0.7 else "abcdefghijklmnopqrstuvwxyz ,."
    keys = "".join("\b" if rng.random() < 0.03 else rng.choice(alphabet) for _ in range(n))
    t, times = rng.randrange(0, 5000), []
    for _ in range(n):
        if kind < 0.4:  # log-normal person
            gap = int(rng.lognormvariate(math.log(180), 0.45))
        elif kind < 0.6:  # jittered metronome
            gap = 120 + rng.randrange(-12, 13)
        elif kind < 0.75:  # two alternating values
            gap = rng.choice([90, 150])
        else:  # anything: zeros, negatives, pauses
            gap = rng.choice([0, 0, -3, 1, 2, 2000, 5000]) if rng.random() < 0.2 else rng.randrange(1, 400)
        t += gap
        times.append(t)
    return keys, times


@pytest.mark.parametrize("seed", range(4))
def test_the_checks_match_their_reference_to_the_bit(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        keys, times = random_log(rng)
        slow = rng.choice([60, 150, 500])  # some windows' shape left unjudged
        limits = (
            LIMITS
            if rng.random() < 0.8
            else RhythmLimits(digraph_min_intervals=50, window=16, shape_max_median_ms=slow)
        )
        assert repr(rhythm(keys, times, limits)) == repr(reference_rhythm(keys, times, limits))
        assert repr(interval_cv(times)) == repr(reference_interval_cv(times))
        assert longest_fast_run(times, 15) == reference_longest_fast_run(times, 15)
        if times:
            ordered = sorted(times)
            assert best_window_wpm(ordered, 1000) == reference_best_window_wpm(ordered, 1000)
        gaps = [max(1, rng.randrange(-5, 300)) for _ in range(rng.choice([8, 32, 33]))]
        assert repr(_window_stats(gaps)) == repr(reference_window_stats(gaps))
