"""A typing-test result's percentile ("faster than 83 %") from per-day WPM histograms.

Persistence adds each counted result to its mode's histogram of the UTC day it ended
(``keys.test_wpm_histogram``: a hash, one field per 1-WPM bucket, ``HINCRBY`` + ``EXPIRE``): one
command per result whatever the volume. The lobby reads the last ``WINDOW_DAYS`` days' hashes
(at most ``BUCKETS`` fields each) and ranks a WPM among them: the cost is bounded by the bucket
count, never by the number of results. Pure functions here; the I/O is in persistence and the lobby.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

WINDOW_DAYS = 7
KEEP_S = (WINDOW_DAYS + 1) * 86400  # a day's hash outlives the window it belongs to
BUCKETS = 400  # 0..399 WPM; faster results share the last bucket (fair play flags them anyway)


def bucket_of(wpm: float) -> int:
    return min(BUCKETS - 1, max(0, int(wpm)))


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def window_days(now_ms: int) -> list[str]:
    """The UTC days of the window ending today, newest first."""
    today = datetime.fromtimestamp(now_ms / 1000, UTC)
    return [(today - timedelta(days=i)).strftime("%Y-%m-%d") for i in range(WINDOW_DAYS)]


def merge(days: Iterable[Mapping[bytes | str, bytes | str]]) -> list[int]:
    """Counts per bucket over several days' hashes as Redis returns them (unknown fields ignored)."""
    counts = [0] * BUCKETS
    for day in days:
        for field, value in day.items():
            try:
                b, n = int(field), int(value)
            except ValueError:
                continue
            if 0 <= b < BUCKETS and n > 0:
                counts[b] += n
    return counts


def percentile(counts: list[int], wpm: float) -> tuple[float, int]:
    """(percent of results this WPM is faster than, results in the window).

    The usual percentile rank: the results in lower buckets, plus half of those in the same
    bucket (ties split evenly), over all of them; one decimal. 0.0 for an empty window.
    """
    total = sum(counts)
    if total == 0:
        return 0.0, 0
    b = bucket_of(wpm)
    below = sum(counts[:b])
    return round((below + counts[b] / 2) * 100 / total, 1), total
