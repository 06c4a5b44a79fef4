"""The percentile of a typing-test result from daily WPM histograms (pure)."""

from arena.wpm_histogram import BUCKETS, WINDOW_DAYS, bucket_of, day_of, merge, percentile, window_days

DAY_MS = 86_400_000
NOON = 1_796_558_400_000  # 2026-12-06T12:00:00Z


def test_buckets_are_whole_wpm_and_clamped() -> None:
    assert [bucket_of(w) for w in (-3.0, 0.0, 59.99, 60.0, 399.5, 1e9)] == [0, 0, 59, 60, 399, BUCKETS - 1]


def test_the_window_is_seven_utc_days_ending_today() -> None:
    days = window_days(NOON)
    assert len(days) == WINDOW_DAYS and days[0] == "2026-12-06" == day_of(NOON) and days[-1] == "2026-11-30"
    midnight = NOON - 12 * 3600 * 1000
    assert day_of(midnight) == "2026-12-06" and day_of(midnight - 1) == "2026-12-05"


def test_merge_adds_days_and_ignores_what_is_not_a_bucket() -> None:
    counts = merge([{b"60": b"2", b"70": b"1"}, {"60": "3", "junk": "1", "-1": "5", "400": "9", "80": "x"}])
    assert counts[60] == 5 and counts[70] == 1 and sum(counts) == 6


def test_percentile_splits_ties_and_is_bounded() -> None:
    counts = [0] * BUCKETS
    counts[40], counts[60], counts[80] = 50, 30, 20  # 100 results
    assert percentile(counts, 80.4) == (90.0, 100)  # above 80, half of the 20 tied
    assert percentile(counts, 70.0) == (80.0, 100)  # faster than every 40 and 60
    assert percentile(counts, 10.0) == (0.0, 100)
    assert percentile(counts, 300.0) == (100.0, 100)
    assert percentile([0] * BUCKETS, 100.0) == (0.0, 0)
    alone = [0] * BUCKETS
    alone[55] = 1
    assert percentile(alone, 55.5) == (50.0, 1)
