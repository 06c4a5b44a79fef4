"""Was the load generator itself the bottleneck? A saturated generator makes every figure
(latencies especially) meaningless, so the report says so loudly."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_CPU_PCT", "MAX_LAG_P99_MS", "Verdict", "WorkerLoad", "judge"]

MAX_CPU_PCT = 85.0  # of one core: past this the bots' own scheduling delays show up as latency
MAX_LAG_P99_MS = 20.0  # event-loop lag p99: frames and sends wait this long in the bots' loop


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    worker: int
    pid: int
    cpu_pct_mean: float  # over the whole run
    cpu_pct_peak: float  # the busiest few seconds
    loop_lag_p99_ms: float | None


@dataclass(frozen=True, slots=True)
class Verdict:
    saturated: bool
    reasons: list[str]


def judge(workers: list[WorkerLoad]) -> Verdict:
    """Saturated if any worker's busiest CPU window passed 85 % of a core or its loop lag p99
    passed 20 ms."""
    reasons: list[str] = []
    for w in workers:
        who = f"worker {w.worker} (pid {w.pid})"
        if w.cpu_pct_peak > MAX_CPU_PCT:
            reasons.append(f"{who} CPU peaked at {w.cpu_pct_peak:.0f}% of a core (> {MAX_CPU_PCT:.0f}%)")
        if w.loop_lag_p99_ms is not None and w.loop_lag_p99_ms > MAX_LAG_P99_MS:
            reasons.append(f"{who} event-loop lag p99 {w.loop_lag_p99_ms:.1f} ms (> {MAX_LAG_P99_MS:.0f} ms)")
    return Verdict(saturated=bool(reasons), reasons=reasons)
