"""The fair-play benchmark's table: clean, held for review and flagged are counted apart."""

import random

from benchmarks.fairplay import Batch, Career, Outcome, Script, career_table, is_held, judge_career, table
from persistence.settings import ReadSideSettings
from simulators.typing import TypingProfile
from tests.persistence.test_pairs import bot_race, person_race


def test_a_clean_finish_at_the_review_threshold_counts_as_held_not_clean() -> None:
    outcomes = [
        Outcome("honest", True, 120.0, "finished", 120.0),
        Outcome("honest", True, 205.0, "finished", 205.0),
        Outcome("paste", False, 400.0, "finished", 400.0, ["arrived_too_fast"]),
        Outcome("paste", False, 230.0, "finished", 230.0),
    ]
    assert [is_held(o) for o in outcomes] == [False, True, False, True]
    lines = table(outcomes).splitlines()
    assert lines[0].split()[:6] == ["class", "n", "clean", "held", "flagged", "dnf"]
    assert lines[1].split()[:6] == ["honest", "2", "1", "1", "0", "0"]
    assert lines[2].split()[:6] == ["paste", "2", "0", "1", "1", "0"]
    assert "honest racers held for review: 1 of 2 (0 of them typing below 180 WPM)" in lines


def test_careers_are_judged_with_placement_provisional_then_released_or_held() -> None:
    """Without a node: the careers' keystroke logs judged as persistence would store them."""
    rng = random.Random(30)
    profile = TypingProfile(wpm=80, error_rate=0.03, jitter_cv=0.4, notice_delay_chars=1, pause_chance=0.05,
                            digraph_sd=0.3, keyboard=30)  # fmt: skip

    def career(cls: str, honest: bool, logs: list[tuple[str, list[int]]], wpm: float) -> Career:
        c = Career(cls, honest, [Outcome(cls, honest, wpm, "finished", wpm) for _ in logs])
        judge_career(c, [Script(text, [Batch(0, text, times)], wpm) for text, times in logs])
        return c

    honest = career("honest", True, [person_race(rng, profile, 400) for _ in range(5)], 80.0)
    bot = career("bot", False, [bot_race(rng, 400) for _ in range(5)], 140.0)
    assert honest.states == ["released", "released", "clear", "clear", "clear"]
    assert (honest.provisional, honest.placed_at, honest.ranked, honest.held_at) == (2, 3, 5, None)
    assert bot.states == ["held"] * 5 and (bot.provisional, bot.placed_at, bot.ranked) == (3, None, 0)
    off = Career("honest", True, list(honest.races))
    judge_career(off, [Script(t, [Batch(0, t, ts)], 80.0) for t, ts in [person_race(rng, profile, 400)] * 5],
                 ReadSideSettings(review_provisional_max_s=0))  # fmt: skip
    assert off.provisional == 0 and off.states[0] == "clear"  # placement off: ranked at once
    lines = career_table([honest, bot], 5).splitlines()
    assert lines[0].split()[8:12] == ["provisional", "ranked", "placed", "after"]
    assert lines[1].split()[:9] == ["honest", "1", "5", "5", "0", "0", "2", "5", "3"]
    assert lines[2].split()[:9] == ["bot", "1", "5", "5", "0", "0", "3", "0", "-"]
    assert "cheat careers' races on a board: 0 of 5" in lines
