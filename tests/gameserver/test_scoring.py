"""Exact-figure tests of the keystroke replay and scoring, on hand-made logs."""

from __future__ import annotations

import random

import pytest

from gameserver.scoring import (
    BACKSPACE,
    Score,
    ScoringLimits,
    TypingState,
    consistency,
    score,
    wpm,
)

B = BACKSPACE


def even_times(n: int, start: int = 100, step: int = 100) -> list[int]:
    return [start + i * step for i in range(n)]


def snapshot(s: TypingState) -> tuple[object, ...]:
    return (
        s.position,
        s.error_run,
        s.finished,
        s.finish_time_ms,
        s.typed_chars,
        s.correct_keystrokes,
        s.incorrect_keystrokes,
        s.backspaces,
        s.corrections,
        s.last_time_ms,
        s.log_keys(),
        s.log_times(),
        s.correct_times(),
        s.per_second_correct(),
    )


def test_perfect_typing_exact_figures() -> None:
    passage = "abcde fghi"  # 10 chars = 2 words
    s = TypingState(passage)
    times = even_times(10, start=1200, step=1200)  # last key at 12000 ms
    assert s.apply(passage, times) == 10
    assert s.finished
    assert s.finish_time_ms == 12000
    assert s.last_time_ms == 12000
    assert (s.typed_chars, s.correct_keystrokes, s.incorrect_keystrokes) == (10, 10, 0)
    assert (s.backspaces, s.corrections, s.error_run) == (0, 0, 0)
    # keys at 1.2 s steps: seconds 0, 5 and 11 get no key
    assert s.per_second_correct() == [0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1]
    # 2 words in 0.2 minutes
    assert score(s, 12000) == Score(
        wpm=10.0,
        raw_wpm=10.0,
        accuracy=100.0,
        # last second dropped: 12 seconds, 9 keys -> mean 3/4, pstdev
        # sqrt(3)/4 -> 100 * (1 - sqrt(3)/3) = 42.264...
        consistency=42.26,
        correct_chars=10,
        typed_chars=10,
        errors=0,
        elapsed_ms=12000,
    )


def test_typos_then_corrections() -> None:
    s = TypingState("cat")
    keys = "cxb" + B + B + "at"
    assert s.apply(keys, even_times(len(keys))) == 3
    assert s.finished and s.finish_time_ms == 700
    assert s.typed_chars == 5
    assert s.correct_keystrokes == 3
    assert s.incorrect_keystrokes == 2
    assert s.backspaces == 2
    assert s.corrections == 0
    result = score(s, 700)
    assert result.accuracy == 60.0
    assert result.errors == 2
    assert result.correct_chars == 3
    # 3 chars in 0.7 s: 0.6 words / (0.7 / 60) min = 51.428... ; raw 5 chars
    assert result.wpm == 51.43
    assert result.raw_wpm == 85.71


def test_partial_progress_state() -> None:
    s = TypingState("hello")
    assert s.apply("hex", [10, 20, 30]) == 2
    assert (s.position, s.error_run, s.finished) == (2, 1, False)
    assert s.apply(B + "l", [40, 50]) == 3
    assert (s.position, s.error_run, s.last_time_ms) == (3, 0, 50)
    assert s.finish_time_ms is None
    # 3 correct out of 4 char keystrokes
    assert score(s, 50).accuracy == 75.0


def test_accuracy_two_decimals() -> None:
    s = TypingState("abcdef")
    s.apply("abz", [1, 2, 3])
    assert score(s, 3).accuracy == 66.67


def test_deleting_correct_char_counts_correction() -> None:
    s = TypingState("abc")
    keys = "ab" + B + "bc"
    s.apply(keys, even_times(5))
    assert s.finished
    assert s.position == 3
    assert s.corrections == 1
    assert s.backspaces == 1
    assert s.correct_keystrokes == 3  # b typed again after its deletion is not a new correct key
    assert s.retyped == 1
    assert s.typed_chars == 3
    assert score(s, 500).accuracy == 100.0


def test_deleting_and_retyping_correct_text_earns_nothing() -> None:
    """The inflated-accuracy cheat: pad a race with delete-and-retype cycles of correct text."""
    padded = TypingState("abcdef")
    padded.apply("abx" + B + "c" + (B + "c") * 40 + "def", even_times(3 + 2 + 80 + 3))
    assert padded.finished and padded.retyped == 40
    assert (padded.correct_keystrokes, padded.incorrect_keystrokes, padded.typed_chars) == (6, 1, 7)
    assert score(padded, 1000).accuracy == 85.71  # 6 / (6 + 1), not (6 + 40) / (6 + 40 + 1)
    assert score(padded, 1000).raw_wpm == wpm(7, 1000)  # the retyped keys do not count as typing


def test_backspace_on_empty_buffer_is_counted_noop() -> None:
    s = TypingState("abc")
    s.apply(B + B, [5, 6])
    assert (s.position, s.error_run, s.backspaces, s.corrections) == (0, 0, 2, 0)
    assert s.typed_chars == 0
    assert score(s, 6).accuracy == 0.0  # nothing typed


def test_typing_past_an_error_is_misaligned() -> None:
    s = TypingState("abc")
    # x is wrong; b and c equal the passage chars but follow the error
    assert s.apply("axbc", even_times(4)) == 1
    assert s.error_run == 3
    assert s.correct_keystrokes == 1
    assert s.incorrect_keystrokes == 3
    assert not s.finished
    # three backspaces remove exactly the three wrong chars
    assert s.apply(B * 3 + "bc", even_times(5, start=500)) == 3
    assert s.finished
    assert s.corrections == 0
    assert s.finish_time_ms == 900


def test_max_error_run_cap() -> None:
    s = TypingState("abc", ScoringLimits(max_error_run=3))
    s.apply("a" + "x" * 5, even_times(6))
    assert s.error_run == 3
    assert s.incorrect_keystrokes == 5  # capped keys still count as errors
    assert s.typed_chars == 6
    s.apply(B * 3, even_times(3, start=700))
    assert (s.position, s.error_run) == (1, 0)
    s.apply("bc", [1000, 1100])
    assert s.finished and s.position == 3
    assert s.corrections == 0


def test_default_max_error_run_is_32() -> None:
    s = TypingState("abc")
    s.apply("z" * 40, even_times(40))
    assert s.error_run == 32
    assert s.incorrect_keystrokes == 40


def test_zero_max_error_run_is_stop_on_error() -> None:
    s = TypingState("abc", ScoringLimits(max_error_run=0))
    s.apply("axbxc", even_times(5))
    assert s.finished
    assert (s.incorrect_keystrokes, s.correct_keystrokes, s.error_run) == (2, 3, 0)


def test_keys_after_finish_ignored() -> None:
    s = TypingState("abc")
    assert s.apply("abcXY" + B, even_times(6)) == 3
    assert s.finish_time_ms == 300
    assert s.last_time_ms == 300
    assert s.log_keys() == "abc"
    assert s.log_times() == [100, 200, 300]
    assert (s.typed_chars, s.backspaces) == (3, 0)
    before = snapshot(s)
    assert s.apply(B * 3 + "zz", even_times(5, start=400)) == 3
    assert snapshot(s) == before


def test_log_is_concatenation_of_batches() -> None:
    s = TypingState("hello world")
    s.apply("hel", [10, 20, 30])
    s.apply("", [])
    s.apply("p" + B + "lo", [40, 50, 60, 70])
    assert s.log_keys() == "help" + B + "lo"
    assert s.log_times() == [10, 20, 30, 40, 50, 60, 70]
    assert s.correct_times() == [10, 20, 30, 60, 70]


def test_batch_split_points_give_same_result() -> None:
    passage = "the quick fox"
    keys = "thw" + B + "e quick" + B + B + "ck fpx" + B + B + "ox!!" + B
    times = even_times(len(keys), start=150, step=137)
    whole = TypingState(passage)
    whole.apply(keys, times)
    assert whole.finished
    assert whole.log_keys() == keys[: keys.index("ox") + 2]
    expected = snapshot(whole)

    for cut in range(len(keys) + 1):
        s = TypingState(passage)
        s.apply(keys[:cut], times[:cut])
        s.apply(keys[cut:], times[cut:])
        assert snapshot(s) == expected, cut

    rng = random.Random(1234)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(keys)), rng.randint(1, 6)))
        s = TypingState(passage)
        for a, b in zip([0, *cuts], [*cuts, len(keys)], strict=True):
            s.apply(keys[a:b], times[a:b])
        assert snapshot(s) == expected, cuts


def test_split_batches_with_errors_unfinished() -> None:
    passage = "abcdefgh"
    keys = "abq" + "c" * 40 + B * 35 + "cdx"
    times = even_times(len(keys), step=10)
    whole = TypingState(passage, ScoringLimits(max_error_run=5))
    whole.apply(keys, times)
    assert not whole.finished
    expected = snapshot(whole)
    for cut in range(len(keys) + 1):
        s = TypingState(passage, ScoringLimits(max_error_run=5))
        s.apply(keys[:cut], times[:cut])
        s.apply(keys[cut:], times[cut:])
        assert snapshot(s) == expected, cut


def test_pause_lowers_wpm_exactly() -> None:
    passage = "abcdefghij"  # 10 chars = 2 words
    steady = TypingState(passage)
    steady.apply(passage, even_times(10, start=200, step=200))
    assert steady.finish_time_ms == 2000
    assert score(steady, 2000).wpm == 60.0  # 2 words / (2 s)

    paused = TypingState(passage)
    times = even_times(5, start=200, step=200) + even_times(5, start=4000, step=200)
    paused.apply(passage, times)
    assert paused.finish_time_ms == 4800  # 2000 + 200 + a 3000 ms pause - 400
    assert times[5] - times[4] == 3000
    assert score(paused, 4800).wpm == 25.0  # 2 words / 0.08 min


def test_per_second_correct() -> None:
    s = TypingState("abcdefgh")
    s.apply("ab" + "x" + B + "cdefg", [100, 900, 1000, 1100, 1200, 2500, 2600, 2999, 4000])
    # wrong key and backspace do not count; second 3 is empty
    assert s.per_second_correct() == [2, 1, 3, 0, 1]
    assert TypingState("ab").per_second_correct() == []


def test_wpm_edge_cases() -> None:
    assert wpm(0, 1000) == 0.0
    assert wpm(10, 0) == 0.0
    assert wpm(10, -5) == 0.0
    assert wpm(50, 60_000) == 10.0
    assert wpm(1, 7000) == 1.71  # 0.2 words / (7/60) min = 1.714...
    assert wpm(5, 1) == 60000.0


def test_consistency_exact_values() -> None:
    assert consistency([]) == 0.0
    assert consistency([7]) == 100.0
    assert consistency([0]) == 100.0
    assert consistency([3, 5]) == 75.0  # two seconds: none dropped
    assert consistency([4, 6, 5]) == 80.0  # last dropped: mean 5, pstdev 1
    assert consistency([0, 0, 0]) == 0.0
    assert consistency([0, 12, 0, 5]) == 0.0  # cv > 1 clamps to 0


def test_consistency_steady_vs_erratic() -> None:
    steady = [5, 5, 6, 5, 5, 6, 5, 5, 2]
    erratic = [1, 9, 1, 9, 0, 10, 2, 8, 3]
    assert consistency(steady) > 90.0
    assert consistency(erratic) < 30.0
    assert consistency([5] * 10) == 100.0
    assert consistency([1, 9, 1, 9, 1]) == 20.0  # mean 5, pstdev 4


def test_score_consistency_from_state() -> None:
    passage = "a" * 15
    s = TypingState(passage)
    # 4 keys in second 0, 6 in second 1, 5 in second 2 (the last, dropped)
    times = [100, 300, 500, 700, 1000, 1100, 1200, 1300, 1400, 1500] + [
        2000,
        2100,
        2200,
        2300,
        2400,
    ]
    s.apply(passage, times)
    assert s.per_second_correct() == [4, 6, 5]
    assert score(s, 2400).consistency == 80.0


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="empty"):
        TypingState("")
    with pytest.raises(ValueError, match="BACKSPACE"):
        TypingState("a\bb")
    with pytest.raises(ValueError, match="max_error_run"):
        ScoringLimits(max_error_run=-1)
    with pytest.raises(ValueError, match="same length"):
        TypingState("abc").apply("ab", [1])


def test_correct_keystrokes_are_the_furthest_position_ever_reached() -> None:
    """Against a slow reference over random typing with errors, corrections and batch splits."""
    rng = random.Random(11)
    text = "abcabd"
    for _ in range(300):
        keys = "".join(rng.choice("abcd" + B + B) for _ in range(rng.randrange(1, 40)))
        state = TypingState(text, ScoringLimits(max_error_run=3))
        cut = rng.randrange(len(keys) + 1)
        state.apply(keys[:cut], list(range(cut)))
        state.apply(keys[cut:], list(range(cut, len(keys))))
        pos = err = furthest = 0
        for key in keys[: len(state.log_keys())]:
            if key == B:
                err, pos = (err - 1, pos) if err else (0, max(0, pos - 1))
            elif not err and key == text[pos]:
                pos += 1
                furthest = max(furthest, pos)
            else:
                err = min(3, err + 1)
        assert state.correct_keystrokes == furthest, keys
        assert state.position == pos
