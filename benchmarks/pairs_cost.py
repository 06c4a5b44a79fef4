"""What the letter-pair evidence costs per result, in-process (issue 14; docs/PERFORMANCE.md).

Per result, persistence groups the race's intervals by letter pair (``race_pairs``), adds them
to the player's summary and judges the pooled F (``PairHistory.plus(...).judged()``). This times
that step for races of 100, 300 and 1,000 keys of real passages (a simulated honest typist),
for the numpy code (``persistence/pairs.py``) and for ``reference``: the per-key Python loop it
replaced, kept here verbatim so the "before" stays measurable and tests/persistence/test_pairs.py
can check that both give the same statistic. The two alternate (``--repeat`` turns each, A B A B)
so foreign load on a shared machine hits both; the median turn is printed, µs per result.
Bounded: ``--results`` results per turn.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/pairs_cost.py [--results 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from itertools import compress
from operator import add, sub

from benchmarks.fairplay import Texts, person
from persistence.pairs import DEFAULT_PAIR_LIMITS, PAIRS, PairHistory, PairLimits
from persistence.pairs import race_pairs as numpy_race_pairs
from simulators.typing import plan_keystrokes

LENGTHS = (100, 300, 1000)
_INDEX = {p: i for i, p in enumerate(PAIRS)}
_P = len(PAIRS)


# --- reference: persistence/pairs.py before numpy (commit 16dd411), float32 arrays "f" ---


def reference_race_pairs(
    keys: str, times: Sequence[int], pause_ms: int = 1500, clip: float = 1.0
) -> array[float]:
    low = keys.lower()
    index = map(_INDEX.get, map(add, low, low[1:]))
    gaps = map(sub, times[1:], times)
    kept = [(i, g) for i, g in zip(index, gaps, strict=False) if i is not None and 0 < g <= pause_ms]
    if not kept:
        return array("f", bytes(4 * 3 * _P))
    at, kept_gaps = zip(*kept, strict=True)
    logs = list(map(math.log, kept_gaps))
    mean = sum(logs) / len(logs)
    v = [0.0] * (3 * _P)
    for i, x in zip(at, logs, strict=True):
        d = x - mean
        if d > clip:
            d = clip
        elif d < -clip:
            d = -clip
        v[i] += 1.0
        v[_P + i] += d
        v[2 * _P + i] += d * d
    return array("f", v)


def reference_plus(a: array[float], b: array[float]) -> array[float]:
    return array("f", map(add, a, b))


def reference_pair_f(v: array[float], limits: PairLimits = DEFAULT_PAIR_LIMITS) -> tuple[float | None, int]:
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


# --- the timed step ---

Race = tuple[str, list[int]]


def races(length: int, count: int, seed: int) -> list[Race]:
    rng = random.Random(f"{seed}:{length}")
    texts = Texts()
    out = []
    for _ in range(count):
        plan = plan_keystrokes(texts.cut(rng, length), person(rng, rng.uniform(40, 110)), rng)
        out.append(("".join(k for k, _ in plan), [t for _, t in plan]))
    return out


def numpy_step(batch: list[Race]) -> None:
    limits = DEFAULT_PAIR_LIMITS
    history = PairHistory()
    for n, (keys, times) in enumerate(batch):
        pairs = numpy_race_pairs(keys, times, limits.pause_ms, limits.clip)
        history = history.plus(str(n), pairs, limits).judged(limits)


def reference_step(batch: list[Race]) -> None:
    limits = DEFAULT_PAIR_LIMITS
    current, previous = array("f", bytes(4 * 3 * _P)), array("f", bytes(4 * 3 * _P))
    for keys, times in batch:
        current = reference_plus(current, reference_race_pairs(keys, times, limits.pause_ms, limits.clip))
        reference_pair_f(reference_plus(previous, current), limits)


def per_result_us(step: Callable[[list[Race]], None], batch: list[Race]) -> float:
    start = time.process_time()
    step(batch)
    return (time.process_time() - start) / len(batch) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=int, default=2000, help="results per turn")
    ap.add_argument("--repeat", type=int, default=3, help="turns per implementation (alternating)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if not 1 <= args.results <= 100_000 or not 1 <= args.repeat <= 20:
        ap.error("--results in [1, 100000], --repeat in [1, 20]")
    print("µs per result (group + pool + judge), median of the turns")
    print(f"{'keys':>6} {'reference':>10} {'numpy':>8} {'ratio':>6}")
    for length in LENGTHS:
        batch = races(length, min(args.results, 200), args.seed)
        batch = (batch * (args.results // len(batch) + 1))[: args.results]
        ref, new = [], []
        for _ in range(args.repeat):
            ref.append(per_result_us(reference_step, batch))
            new.append(per_result_us(numpy_step, batch))
        r, n = statistics.median(ref), statistics.median(new)
        print(f"{length:>6} {r:>10.1f} {n:>8.1f} {r / n:>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
