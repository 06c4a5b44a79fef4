"""The fair-play benchmark's table: clean, held for review and flagged are counted apart."""

from benchmarks.fairplay import Outcome, is_held, table


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
