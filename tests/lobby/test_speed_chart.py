"""A stored test's speed chart: correct keys per second, by the server's buffer model."""

from lobby.speed_chart import correct_keys, speed_series


def test_only_keys_that_extend_the_correct_prefix_count() -> None:
    # "the": t, h, a wrong x, a backspace, e; then a space past the text's end is wrong.
    keys, times = "thx\be ", [100, 900, 1200, 1300, 1500, 2100]
    assert correct_keys(keys, times, "the") == [100, 900, 1500]
    assert correct_keys("thx\b\b\bthe", [1, 2, 3, 4, 5, 6, 7, 8, 9], "the") == [1, 2, 7, 8, 9]  # retyped
    assert correct_keys("\b\bt", [1, 2, 3], "t") == [3]  # backspaces on an empty buffer change nothing
    assert correct_keys(keys, times, None) == [100, 900, 1200, 1500, 2100]  # text unknown: raw


def test_wrong_keys_past_the_servers_cap_never_reach_the_buffer() -> None:
    # Three wrong keys with a cap of two: the third is lost, so two backspaces clear the errors.
    keys = "axyz\b\bb"
    assert correct_keys(keys, list(range(7)), "ab", max_error_run=2) == [0, 6]
    assert correct_keys(keys, list(range(7)), "ab", max_error_run=3) == [0]


def test_the_series_has_one_wpm_per_second_as_the_page_draws_it() -> None:
    keys, times = "thx\be ", [100, 900, 1200, 1300, 1500, 2100]
    assert speed_series(keys, times, "the") == [24.0, 12.0, 0.0]  # 2, 1 and 0 correct keys: x12
    assert speed_series("ab", [0, 1000], "ab") == [24.0]  # a key at 1,000 ms is in the first second
    assert speed_series("", [], "ab") == []
