"""The windowed rhythm rules (gameserver.rhythm): each rule against the script it targets, and
seeded human-like typists (simulators.typing, with per-typist letter-pair speeds) never flagged."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from gameserver.passages import Corpus
from gameserver.rhythm import RhythmLimits, judge, rhythm
from simulators.typing import TypingProfile, draw_profile, plan_keystrokes

TEXTS = [p.text for p in Corpus.load()]


def text_of(rng: random.Random, length: int) -> str:
    text = rng.choice(TEXTS)
    while len(text) < length:
        text += " " + rng.choice(TEXTS)
    return text[:length].strip()


def human(rng: random.Random, text: str, wpm: float) -> tuple[str, list[int]]:
    drawn = draw_profile(rng)
    profile = TypingProfile(
        wpm=wpm,
        error_rate=drawn.error_rate,
        jitter_cv=drawn.jitter_cv,
        notice_delay_chars=drawn.notice_delay_chars,
        pause_chance=drawn.pause_chance,
        digraph_sd=drawn.digraph_sd,
        keyboard=drawn.keyboard,
    )
    plan = plan_keystrokes(text, profile, rng)
    return "".join(k for k, _ in plan), [t for _, t in plan]


def scripted(text: str, gap: Callable[[int], float]) -> tuple[str, list[int]]:
    t, times = 300, []
    for i in range(len(text)):
        t += max(1, round(gap(i)))
        times.append(t)
    return text, times


@pytest.mark.parametrize("seed", range(48))
def test_human_typists_pass_every_rule(seed: int) -> None:
    rng = random.Random(seed)
    length = (25, 60, 180, 400, 1100)[seed % 5]
    wpm = 20 + (seed * 37) % 191  # 20-210
    keys, times = human(rng, text_of(rng, length), wpm)
    found = rhythm(keys, times)
    assert found is not None
    assert found.failed == (), (wpm, length, found)


def test_jittered_metronome_fails_spread() -> None:
    rng = random.Random(1)
    found = rhythm(*scripted(text_of(rng, 300), lambda i: 80 * rng.uniform(0.8, 1.2)))
    assert found is not None and "spread" in found.failed


def test_two_long_pauses_do_not_hide_a_metronome() -> None:
    rng = random.Random(2)
    text = text_of(rng, 300)
    found = rhythm(*scripted(text, lambda i: 70 * rng.uniform(0.9, 1.1) + (1400 if i in (100, 200) else 0)))
    assert found is not None and "spread" in found.failed


def test_symmetric_jitter_fails_shape() -> None:
    rng = random.Random(3)
    found = rhythm(*scripted(text_of(rng, 300), lambda i: max(10.0, rng.gauss(90, 25))))
    assert found is not None and "shape" in found.failed
    assert found.skew is not None and found.skew < 0.5


@pytest.mark.parametrize("wpm", [8, 10, 12, 15])
def test_very_slow_typists_are_not_judged_on_shape(wpm: int) -> None:
    """Below 24 WPM the pause limit (1.5 s) cuts off a person's slow tail: their intervals look
    symmetric. The old shape rule flagged 99 % of 8 WPM and 30 % of 12 WPM simulated races."""
    rng = random.Random(wpm)
    flagged = []
    for _ in range(15):
        keys, times = human(rng, text_of(rng, rng.randint(150, 400)), wpm)
        found = rhythm(keys, times)
        if found is not None and found.failed:
            flagged.append(found)
    assert flagged == []
    old = RhythmLimits(shape_max_median_ms=10**6)  # the rule as it was: flags the slowest
    if wpm == 8:
        keys, times = human(rng, text_of(rng, 300), wpm)
        found = rhythm(keys, times, old)
        assert found is not None and found.failed == ("shape",)


def test_symmetric_jitter_is_judged_on_shape_near_24_wpm() -> None:
    rng = random.Random(5)
    found = rhythm(*scripted(text_of(rng, 300), lambda i: max(10.0, rng.gauss(420, 110))))
    assert found is not None and "shape" in found.failed


def test_alternating_intervals_fail_periodicity() -> None:
    rng = random.Random(4)
    found = rhythm(*scripted(text_of(rng, 300), lambda i: (50 if i % 2 else 120) * rng.uniform(0.97, 1.03)))
    assert found is not None and "periodic" in found.failed
    assert found.autocorr > 0.9


def test_short_passages_are_judged() -> None:
    rng = random.Random(5)
    text = text_of(rng, 30)
    assert judge(*scripted(text, lambda i: 90 * rng.uniform(0.85, 1.15)))
    assert not judge(*human(rng, text, 90))


def test_human_looking_gaps_with_no_letter_pair_structure_fail_digraphs() -> None:
    # Log-normal gaps like a person's, drawn regardless of the letters: only the digraph rule
    # can tell, and only on a long text.
    rng = random.Random(6)
    text = text_of(rng, 1200)
    found = rhythm(*scripted(text, lambda i: 70 * rng.lognormvariate(0, 0.45)))
    assert found is not None and found.failed == ("digraphs",)
    assert found.digraph_f is not None and found.digraph_f < 1.25
    person = rhythm(*human(rng, text, 170))
    assert person is not None and person.digraph_f is not None and person.digraph_f > 1.5


def test_a_human_recording_replayed_on_another_text_fails_digraphs() -> None:
    rng = random.Random(7)
    text = text_of(rng, 1200)
    _, recorded = human(rng, text_of(rng, 1300), 140)
    gaps = [(b - a) / 1.6 for a, b in zip([0, *recorded], recorded, strict=False)]
    found = rhythm(*scripted(text, lambda i: gaps[i]))
    assert found is not None and "digraphs" in found.failed


def test_flat_keyboards_on_mid_length_texts_pass() -> None:
    """The honest corner the sweep (benchmarks/rhythm_sweep.py) found flagged by the old limits
    (F < 1.5 from 400 intervals): pair speeds with sigma 0.2, jitter 0.5, 500-1,100 characters."""
    old = RhythmLimits(min_digraph_f=1.5, digraph_min_intervals=400)
    flagged_before = 0
    for seed in range(12):
        rng = random.Random(seed)
        for length in (500, 700, 1100):
            profile = TypingProfile(
                wpm=rng.uniform(90, 210), error_rate=0.02, jitter_cv=0.5, notice_delay_chars=1,
                pause_chance=0.05, digraph_sd=0.2, keyboard=draw_profile(rng).keyboard,
            )  # fmt: skip
            plan = plan_keystrokes(text_of(rng, length), profile, rng)
            keys, times = "".join(k for k, _ in plan), [t for _, t in plan]
            found = rhythm(keys, times)
            assert found is not None and "digraphs" not in found.failed, (seed, length, found)
            before = rhythm(keys, times, old)
            flagged_before += before is not None and "digraphs" in before.failed
    assert flagged_before >= 3  # the old limits did flag these people


def test_too_few_intervals_are_not_judged() -> None:
    assert rhythm(*scripted("abcdefghijk", lambda i: 100)) is None  # 10 intervals
    assert rhythm("ab" * 20, [i * 2000 for i in range(40)]) is None  # all pauses


def test_rhythm_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        RhythmLimits(window=4)
    with pytest.raises(ValueError):
        RhythmLimits(failing_share=0)
