"""Pure arithmetic of the report: percentiles, the cross-process latency merge, time series."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from simulators.runner import percentile

__all__ = [
    "Observation",
    "Percentiles",
    "concurrency_series",
    "input_latencies_ms",
    "merge_counts",
    "percentiles",
    "rate_series",
]


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


def percentiles(values: Iterable[float]) -> Percentiles:
    ordered = sorted(values)

    def at(q: float) -> float | None:
        value = percentile(ordered, q)
        return None if value is None else round(value, 2)

    return Percentiles(
        count=len(ordered),
        p50=at(50),
        p95=at(95),
        p99=at(99),
        max=round(ordered[-1], 2) if ordered else None,
    )


# (subject player id, highest seq seen before, seq now seen, monotonic receive time)
Observation = tuple[str, int, int, float]


def input_latencies_ms(
    sends: dict[str, Sequence[float | None]], observations: Iterable[Observation]
) -> list[float]:
    """Input-to-broadcast latency as room-mates see it, one sample per (input, room-mate).

    ``sends[player][seq - 1]`` is the monotonic send time of the player's input ``seq``
    (seqs start at 1 and increase by one), None for an input that did not move the player's
    position (the node broadcasts only changes, so it is not counted). An observation says a
    room-mate first saw the player's seq rise from ``before`` to ``now`` at ``t``: every input
    in ``(before, now]`` reached that room-mate at ``t``. Senders and receivers may be in different processes:
    ``time.monotonic()`` is one clock for the whole machine on Linux.
    """
    out: list[float] = []
    for player, before, now, t in observations:
        times = sends.get(player)
        if not times:
            continue
        for seq in range(max(1, before + 1), min(now, len(times)) + 1):
            sent = times[seq - 1]
            if sent is not None:
                out.append((t - sent) * 1000.0)
    return out


def merge_counts(parts: Iterable[dict[int, int]]) -> dict[int, int]:
    """Per-second counters (second -> count) of several workers, added up."""
    total: dict[int, int] = {}
    for part in parts:
        for second, count in part.items():
            total[int(second)] = total.get(int(second), 0) + count
    return total


def rate_series(counts: dict[int, int], seconds: int) -> list[int]:
    """A dense per-second series 0..seconds-1 from sparse counts."""
    return [counts.get(s, 0) for s in range(seconds)]


def concurrency_series(intervals: Iterable[tuple[float, float]], seconds: int) -> list[int]:
    """How many (start, end) intervals (seconds since the start) are open at each whole second."""
    deltas = [0] * (seconds + 1)
    for start, end in intervals:
        first = max(0, math.ceil(start))
        last = min(seconds, math.ceil(end))  # open at s when start <= s < end
        if first < last:
            deltas[first] += 1
            deltas[last] -= 1
    out: list[int] = []
    running = 0
    for s in range(seconds):
        running += deltas[s]
        out.append(running)
    return out
