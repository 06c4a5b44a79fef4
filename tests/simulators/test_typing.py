"""Human-like keystroke plans: complete, plausible, and clean for the server's fair-play checks."""

import dataclasses
import itertools
import random
import statistics

import pytest

from gameserver.fairplay import assess
from gameserver.scoring import BACKSPACE, TypingState, score
from simulators.typing import (
    MAX_WPM,
    MIN_WPM,
    QWERTY_NEIGHBOURS,
    TypingProfile,
    draw_profile,
    neighbour_key,
    plan_keystrokes,
)

SENTENCES = (
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! "
    "Sphinx of black quartz, judge my vow; 42 wizards quickly jinxed the gnomes at 7:30? "
)
PASSAGE_300 = (SENTENCES * 2)[:300].strip()
PASSAGE_LONG = (SENTENCES * 8).strip()  # ~1350 chars

AVERAGE = TypingProfile(wpm=60.0, error_rate=0.03, jitter_cv=0.45, notice_delay_chars=1, pause_chance=0.05)


def profile_like(**changes: float) -> TypingProfile:
    """AVERAGE with some fields changed."""
    return dataclasses.replace(AVERAGE, **changes)  # type: ignore[arg-type]


def replay(passage: str, plan: list[tuple[str, int]]) -> TypingState:
    state = TypingState(passage)
    state.apply("".join(k for k, _ in plan), [t for _, t in plan])
    return state


def measured_wpm(passage: str, plan: list[tuple[str, int]]) -> float:
    return len(passage) * 12_000 / plan[-1][1]


@pytest.mark.parametrize("seed", range(40))
def test_plans_complete_the_passage(seed: int) -> None:
    rng = random.Random(seed)
    profile = TypingProfile(
        wpm=rng.uniform(20, 150),
        error_rate=rng.choice((0.0, 0.03, 0.2)),
        jitter_cv=rng.uniform(0.3, 0.6),
        notice_delay_chars=seed % 4,
        pause_chance=0.05,
    )
    for passage in (PASSAGE_300, "a", "Hi!", "x y", "End with a typo-prone letter q"):
        plan = plan_keystrokes(passage, profile, rng)
        state = replay(passage, plan)
        assert state.finished and state.position == len(passage)
        assert state.error_run == 0
        # The finishing key is the last one: nothing is typed after the finish.
        assert state.finish_time_ms == plan[-1][1]
        assert len(state.log_keys()) == len(plan)


@pytest.mark.parametrize("seed", range(10))
def test_times_are_non_decreasing_integers(seed: int) -> None:
    rng = random.Random(seed)
    plan = plan_keystrokes(PASSAGE_300, draw_profile(rng, mean_wpm=120), rng)
    times = [t for _, t in plan]
    assert all(isinstance(t, int) for t in times)
    assert times[0] > 0  # a reaction time before the first key
    assert all(b >= a for a, b in itertools.pairwise(times))


@pytest.mark.parametrize("wpm", [20.0, 40.0, 60.0, 100.0, 150.0])
def test_measured_wpm_is_close_to_the_profile(wpm: float) -> None:
    for seed in range(5):
        rng = random.Random(seed)
        profile = profile_like(wpm=wpm, jitter_cv=0.5, notice_delay_chars=2, pause_chance=0.06)
        plan = plan_keystrokes(PASSAGE_LONG, profile, rng)
        assert measured_wpm(PASSAGE_LONG, plan) == pytest.approx(wpm, rel=0.25)


def test_typos_are_neighbouring_keys_then_backspaced() -> None:
    rng = random.Random(3)
    profile = TypingProfile(wpm=60.0, error_rate=0.3, jitter_cv=0.4, notice_delay_chars=0, pause_chance=0.0)
    plan = plan_keystrokes(PASSAGE_300, profile, rng)
    keys = "".join(k for k, _ in plan)
    assert keys.count(BACKSPACE) > 30
    # With notice_delay_chars=0 every typo is followed at once by one backspace.
    pos = 0
    for i, key in enumerate(keys):
        if key == BACKSPACE:
            continue
        if i + 1 < len(keys) and keys[i + 1] == BACKSPACE:
            intended = PASSAGE_300[pos]
            assert key != intended
            assert key.lower() in QWERTY_NEIGHBOURS[intended.lower()]
            assert key.isupper() == intended.isupper()
        else:
            assert key == PASSAGE_300[pos]
            pos += 1
    assert pos == len(PASSAGE_300)


@pytest.mark.parametrize("delay", [0, 1, 2, 3])
def test_typos_are_noticed_after_the_profiles_delay(delay: int) -> None:
    rng = random.Random(delay)
    profile = profile_like(error_rate=0.1, notice_delay_chars=delay, pause_chance=0.0)
    plan = plan_keystrokes(PASSAGE_300, profile, rng)
    state = TypingState(PASSAGE_300)
    corrections = 0
    for i, (key, at) in enumerate(plan):
        if key == BACKSPACE and plan[i - 1][0] != BACKSPACE:
            # A correction starts: it removes the typo and the chars typed after it, exactly.
            run = next((j for j in range(i, len(plan)) if plan[j][0] != BACKSPACE), len(plan)) - i
            assert run == state.error_run == min(delay + 1, len(PASSAGE_300) - state.position)
            corrections += 1
        state.apply(key, [at])
    assert corrections > 5
    assert state.corrections == 0  # no correct char was ever deleted


def test_no_typos_without_an_error_rate() -> None:
    rng = random.Random(1)
    profile = TypingProfile(wpm=80.0, error_rate=0.0, jitter_cv=0.4, notice_delay_chars=2, pause_chance=0.1)
    plan = plan_keystrokes(PASSAGE_300, profile, rng)
    assert "".join(k for k, _ in plan) == PASSAGE_300


def test_backspaces_are_quicker_than_ordinary_keys() -> None:
    rng = random.Random(5)
    profile = TypingProfile(wpm=60.0, error_rate=0.1, jitter_cv=0.4, notice_delay_chars=3, pause_chance=0.0)
    plan = plan_keystrokes(PASSAGE_LONG, profile, rng)
    char_gaps = [at - before for (_, before), (key, at) in itertools.pairwise(plan) if key != BACKSPACE]
    # The first backspace of a correction follows a reaction pause; the rest are quick.
    repeat_gaps = [
        at - before
        for (prev_key, before), (key, at) in itertools.pairwise(plan)
        if key == BACKSPACE and prev_key == BACKSPACE
    ]
    assert statistics.median(repeat_gaps) < statistics.median(char_gaps)


def test_the_same_seed_gives_the_same_plan() -> None:
    first = plan_keystrokes(PASSAGE_300, AVERAGE, random.Random(9))
    again = plan_keystrokes(PASSAGE_300, AVERAGE, random.Random(9))
    other = plan_keystrokes(PASSAGE_300, AVERAGE, random.Random(10))
    assert first == again
    assert first != other


@pytest.mark.parametrize("seed", range(20))
def test_a_60_wpm_plan_is_not_flagged(seed: int) -> None:
    rng = random.Random(seed)
    profile = draw_profile(rng, mean_wpm=60.0, sd_wpm=0.001)
    assert profile.wpm == pytest.approx(60.0, abs=0.1)
    plan = plan_keystrokes(PASSAGE_300, profile, rng)
    state = replay(PASSAGE_300, plan)
    result = score(state, plan[-1][1])
    assert assess(state, result) == frozenset()


@pytest.mark.parametrize("seed", range(20))
def test_the_fastest_sloppiest_typist_is_not_flagged(seed: int) -> None:
    profile = TypingProfile(
        wpm=MAX_WPM, error_rate=0.06, jitter_cv=0.3, notice_delay_chars=3, pause_chance=0.08
    )
    rng = random.Random(seed)
    plan = plan_keystrokes(PASSAGE_300, profile, rng)
    state = replay(PASSAGE_300, plan)
    assert assess(state, score(state, plan[-1][1])) == frozenset()


def test_drawn_profiles_are_plausible() -> None:
    rng = random.Random(42)
    profiles = [draw_profile(rng) for _ in range(3000)]
    speeds = [p.wpm for p in profiles]
    assert all(MIN_WPM <= w <= MAX_WPM for w in speeds)
    assert statistics.fmean(speeds) == pytest.approx(60.0, abs=4.0)
    assert statistics.stdev(speeds) == pytest.approx(22.0, abs=5.0)
    assert statistics.median(speeds) < statistics.fmean(speeds)  # right-skewed, like real typists
    assert all(0.005 <= p.error_rate <= 0.06 for p in profiles)
    assert all(0.3 <= p.jitter_cv <= 0.55 for p in profiles)
    assert {p.notice_delay_chars for p in profiles} == {0, 1, 2, 3}
    slow = [p.error_rate for p in profiles if p.wpm < 45]
    fast = [p.error_rate for p in profiles if p.wpm > 85]
    assert statistics.fmean(fast) < statistics.fmean(slow)


def test_neighbours_are_symmetric_and_keep_case() -> None:
    for key, near in QWERTY_NEIGHBOURS.items():
        assert near
        for other in near:
            assert key in QWERTY_NEIGHBOURS[other]
    rng = random.Random(0)
    assert neighbour_key("G", rng) in set("BFHTV")
    assert neighbour_key(" ", rng) is None
    assert neighbour_key(".", rng) is None


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        plan_keystrokes("", AVERAGE, random.Random(0))
    with pytest.raises(ValueError):
        plan_keystrokes("a\bb", AVERAGE, random.Random(0))
    with pytest.raises(ValueError):
        TypingProfile(wpm=60.0, error_rate=0.9, jitter_cv=0.4, notice_delay_chars=1, pause_chance=0.0)
    with pytest.raises(ValueError):
        TypingProfile(wpm=60.0, error_rate=0.01, jitter_cv=0.4, notice_delay_chars=4, pause_chance=0.0)
