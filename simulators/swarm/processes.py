"""CPU and memory of every process of a run (bot workers and whatever servers the caller
names), sampled once a second from /proc."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from simulators.swarm.procstat import process_cpu, process_rss_mb

__all__ = ["PEAK_WINDOW_S", "ProcessSeries", "ProcessStats", "sample_all"]

PEAK_WINDOW_S = 5  # the "peak" CPU is the busiest window of this many samples


@dataclass
class ProcessSeries:
    name: str
    pid: int
    times: list[float] = field(default_factory=list)  # seconds since the run's start
    cpu_s: list[float] = field(default_factory=list)  # cumulative user + system seconds
    rss_mb: list[float] = field(default_factory=list)
    gone: bool = False  # the process ended (or was never there)

    def sample(self, t: float) -> None:
        if self.gone:
            return
        try:
            cpu = process_cpu(self.pid).total_s
            rss = process_rss_mb(self.pid)
        except (OSError, ValueError, IndexError):
            self.gone = True
            return
        self.times.append(t)
        self.cpu_s.append(cpu)
        self.rss_mb.append(rss)

    def cpu_pct(self) -> list[float]:
        """Per-interval CPU, in percent of one core."""
        out: list[float] = []
        for i in range(1, len(self.times)):
            dt = self.times[i] - self.times[i - 1]
            out.append(100.0 * (self.cpu_s[i] - self.cpu_s[i - 1]) / dt if dt > 0 else 0.0)
        return out

    def stats(self) -> ProcessStats:
        pct = self.cpu_pct()
        span = self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0
        mean = 100.0 * (self.cpu_s[-1] - self.cpu_s[0]) / span if span > 0 else 0.0
        window = min(PEAK_WINDOW_S, len(pct))
        peak = max((sum(pct[i : i + window]) / window for i in range(len(pct) - window + 1)), default=0.0)
        return ProcessStats(
            name=self.name,
            pid=self.pid,
            cpu_pct_mean=round(mean, 1),
            cpu_pct_peak=round(peak, 1),
            rss_mb_max=round(max(self.rss_mb), 1) if self.rss_mb else 0.0,
            cpu_pct_series=[round(x, 1) for x in pct],
        )


@dataclass(frozen=True, slots=True)
class ProcessStats:
    name: str
    pid: int
    cpu_pct_mean: float
    cpu_pct_peak: float  # busiest PEAK_WINDOW_S seconds
    rss_mb_max: float
    cpu_pct_series: list[float]


def sample_all(series: list[ProcessSeries], t0: float) -> None:
    """One sample of each process, from ``t0`` on (workers' start-up imports are not load)."""
    now = time.monotonic() - t0
    if now < 0:
        return
    for s in series:
        s.sample(now)
