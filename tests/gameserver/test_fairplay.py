"""Fair-play checks on hand-made and seeded human-like keystroke logs."""

from __future__ import annotations

import math
import random

import pytest

from gameserver.fairplay import (
    FairPlayLimits,
    Flag,
    assess,
    best_window_wpm,
    check_batch,
    interval_cv,
    longest_fast_run,
)
from gameserver.rhythm import RhythmLimits
from gameserver.scoring import Score, TypingState, score

_WORD_LINES = (
    "the of and to in is you that it he was for on are as with his",
    "they at be this have from or one had by word but not what all",
    "were we when your can said there use an each which she do how",
    "their if will up other about out many then them these so some",
    "her would make like him into time has look",
)
WORDS = tuple(word for line in _WORD_LINES for word in line.split())


def make_passage(rng: random.Random, n_chars: int) -> str:
    words: list[str] = []
    length = -1
    while length < n_chars:
        w = rng.choice(WORDS)
        words.append(w)
        length += len(w) + 1
    return " ".join(words)[:n_chars].rstrip()


def human_intervals(rng: random.Random, n: int, wpm: float, cv: float = 0.4, floor: int = 15) -> list[int]:
    """Log-normal (right-skewed, like people's) inter-key gaps for a given speed (1 word = 5 keys)."""
    mean = 12_000 / wpm
    sigma = math.sqrt(math.log(1 + cv * cv))
    return [max(floor, round(mean * rng.lognormvariate(-sigma * sigma / 2, sigma))) for _ in range(n)]


def cumulative(intervals: list[int], start: int) -> list[int]:
    times: list[int] = []
    t = start
    for d in intervals:
        t += d
        times.append(t)
    return times


def race(passage: str, times: list[int]) -> tuple[TypingState, Score]:
    """Type the passage perfectly at the given key times; score at finish."""
    s = TypingState(passage)
    # Send in irregular batches like a client would.
    i = 0
    while i < len(passage):
        j = min(len(passage), i + 7)
        s.apply(passage[i:j], times[i:j])
        i = j
    assert s.finished
    assert s.finish_time_ms is not None
    return s, score(s, s.finish_time_ms)


# --- check_batch -----------------------------------------------------------


def test_check_batch_ok() -> None:
    assert check_batch([100, 150, 150, 200], 90, 1000) is None
    assert check_batch([], 500, 0) is None
    assert check_batch([0, 0], 0, 0) is None


def test_check_batch_negative_time() -> None:
    assert check_batch([-5], 0, 1000) is Flag.BAD_TIMING
    assert check_batch([10, -1], -100, 1000) is Flag.BAD_TIMING


def test_check_batch_non_monotonic_within_batch() -> None:
    assert check_batch([100, 200, 190, 300], 0, 1000) is Flag.BAD_TIMING


def test_check_batch_non_monotonic_vs_previous_batch() -> None:
    assert check_batch([80, 120], 100, 1000) is Flag.BAD_TIMING
    assert check_batch([100, 120], 100, 1000) is None


def test_check_batch_future_keys() -> None:
    limits = FairPlayLimits()
    assert check_batch([900, 2500], 0, 1000, limits) is None  # 1000 + 1500
    assert check_batch([900, 2501], 0, 1000, limits) is Flag.BAD_TIMING
    strict = FairPlayLimits(future_tolerance_ms=0)
    assert check_batch([1001], 0, 1000, strict) is Flag.BAD_TIMING


# --- helpers ---------------------------------------------------------------


def test_interval_cv() -> None:
    assert interval_cv([]) is None
    assert interval_cv([5]) is None
    assert interval_cv([0, 100, 200, 300]) == 0.0
    assert interval_cv([7, 7, 7]) == 0.0
    # gaps 100 and 300: mean 200, pstdev 100
    assert interval_cv([0, 100, 400]) == pytest.approx(0.5)


def test_longest_fast_run() -> None:
    assert longest_fast_run([], 4) == 0
    assert longest_fast_run([10], 4) == 1
    assert longest_fast_run([0, 100, 101, 103, 107, 200, 201], 4) == 4
    assert longest_fast_run([0, 5, 10], 4) == 1


def test_best_window_wpm() -> None:
    assert best_window_wpm([], 5000) == 0.0
    # 10 keys within 5 s -> 2 words per 1/12 min = 24 wpm
    assert best_window_wpm(list(range(0, 1000, 100)), 5000) == 24.0
    # keys exactly window_ms apart are not in the same window
    assert best_window_wpm([0, 5000], 5000) == 2.4
    times = [0, 1000, 2000] + list(range(10_000, 10_050))
    assert best_window_wpm(times, 5000) == 50 * 12_000 / 5000


# --- assess ----------------------------------------------------------------


def test_human_80_wpm_no_flags() -> None:
    rng = random.Random(80)
    passage = make_passage(rng, 400)
    times = cumulative(human_intervals(rng, len(passage), 80), start=400)
    state, result = race(passage, times)
    assert 70 < result.wpm < 90
    assert assess(state, result) == frozenset()


def test_human_with_typos_no_flags() -> None:
    rng = random.Random(7)
    passage = make_passage(rng, 300)
    keys: list[str] = []
    for ch in passage:
        if rng.random() < 0.05:
            keys.append("#")
            keys.append("\b")
        keys.append(ch)
    times = cumulative(human_intervals(rng, len(keys), 90), start=300)
    s = TypingState(passage)
    s.apply("".join(keys), times)
    assert s.finished and s.finish_time_ms is not None
    result = score(s, s.finish_time_ms)
    assert result.errors > 0
    assert assess(s, result) == frozenset()


def test_sustained_300_wpm_too_fast() -> None:
    rng = random.Random(300)
    passage = make_passage(rng, 300)
    times = cumulative(human_intervals(rng, len(passage), 300), start=200)
    state, result = race(passage, times)
    assert result.wpm > 250
    flags = assess(state, result)
    assert Flag.TOO_FAST in flags
    assert Flag.ROBOTIC not in flags
    assert Flag.PASTE not in flags


def test_fast_but_too_short_is_not_judged_on_wpm() -> None:
    state, result = race("abcdefghij", cumulative([30] * 10, start=0))
    assert result.wpm > 250  # 10 chars in 0.3 s
    assert assess(state, result) == frozenset()


def test_regular_100ms_is_robotic() -> None:
    rng = random.Random(1)
    passage = make_passage(rng, 120)
    times = cumulative([100] * len(passage), start=0)
    state, result = race(passage, times)
    assert len(passage) == 120
    assert result.wpm == 120.0  # 24 words in 12 s
    assert assess(state, result) == frozenset({Flag.ROBOTIC})


def test_regular_short_passages_are_robotic_too_few_keys_are_not_judged() -> None:
    # 40 keys = 39 intervals: below the whole-race check, but the windowed rules judge it.
    state, result = race("a" * 40, cumulative([100] * 40, start=0))
    assert assess(state, result) == frozenset({Flag.ROBOTIC})
    # 12 keys = 11 intervals, under the rhythm rules' minimum: nothing to judge.
    state, result = race("a" * 12, cumulative([500] * 12, start=0))
    assert assess(state, result) == frozenset()


def test_pasted_burst_of_20_keys() -> None:
    rng = random.Random(20)
    passage = make_passage(rng, 200)
    intervals = human_intervals(rng, len(passage), 80)
    intervals[100:120] = [1] * 20
    state, result = race(passage, cumulative(intervals, start=400))
    assert assess(state, result) == frozenset({Flag.PASTE})


def test_short_fast_burst_inside_normal_race() -> None:
    rng = random.Random(450)
    passage = make_passage(rng, 560)
    intervals = (
        human_intervals(rng, 200, 80)
        + human_intervals(rng, 160, 450, cv=0.3, floor=10)
        + human_intervals(rng, 200, 80)
    )
    state, result = race(passage, cumulative(intervals, start=400))
    assert result.wpm < 250  # the whole race is not suspicious
    assert best_window_wpm(state.correct_times(), 5000) > 330
    # These gaps are drawn regardless of the letters, which the digraph rule rightly calls
    # robotic on a text this long (tests/gameserver/test_fairplay_rhythm.py): off here.
    no_digraphs = FairPlayLimits(rhythm=RhythmLimits(digraph_min_intervals=10**9))
    assert assess(state, result, no_digraphs) == frozenset({Flag.TOO_FAST})


def test_limits_validation() -> None:
    with pytest.raises(ValueError):
        FairPlayLimits(burst_window_ms=0)
    with pytest.raises(ValueError):
        FairPlayLimits(paste_run=1)
    with pytest.raises(ValueError):
        best_window_wpm([1, 2], 0)
