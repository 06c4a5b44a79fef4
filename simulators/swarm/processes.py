"""CPU and memory of every process of a run (bot workers and whatever servers the caller
names), sampled once a second from /proc."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from simulators.procstat import machine_busy, process_cpu, process_rss_mb

__all__ = ["PEAK_WINDOW_S", "MachineSeries", "MachineStats", "ProcessSeries", "ProcessStats", "sample_all"]

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
        return ProcessStats(
            name=self.name,
            pid=self.pid,
            cpu_pct_mean=round(mean, 1),
            cpu_pct_peak=round(_peak(pct), 1),
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


def _peak(pct: list[float]) -> float:
    """The mean of the busiest PEAK_WINDOW_S consecutive samples."""
    window = min(PEAK_WINDOW_S, len(pct))
    return max((sum(pct[i : i + window]) / window for i in range(len(pct) - window + 1)), default=0.0)


@dataclass(frozen=True, slots=True)
class MachineStats:
    cores: int
    busy_pct_mean: float  # all cores together, in % of one core (2 busy cores = 200)
    others_pct_mean: float  # what processes not sampled by this run used, in % of one core
    others_pct_peak: float  # the busiest PEAK_WINDOW_S seconds of it


@dataclass
class MachineSeries:
    """The whole machine's busy time, to tell the run's own load from other work on a shared
    machine (other processes' CPU makes every figure pessimistic)."""

    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    busy: list[float] = field(default_factory=list)  # jiffies, all cores
    total: list[float] = field(default_factory=list)

    def sample(self) -> None:
        busy, total = machine_busy()
        self.busy.append(busy)
        self.total.append(total)

    def busy_pct(self) -> list[float]:
        out: list[float] = []
        for i in range(1, len(self.total)):
            dt = self.total[i] - self.total[i - 1]
            out.append(100.0 * self.cores * (self.busy[i] - self.busy[i - 1]) / dt if dt > 0 else 0.0)
        return out

    def stats(self, processes: list[ProcessStats]) -> MachineStats:
        busy = self.busy_pct()
        others = []
        for i, value in enumerate(busy):
            ours = sum(p.cpu_pct_series[i] for p in processes if i < len(p.cpu_pct_series))
            others.append(max(0.0, value - ours))
        return MachineStats(
            cores=self.cores,
            busy_pct_mean=round(sum(busy) / len(busy), 1) if busy else 0.0,
            others_pct_mean=round(sum(others) / len(others), 1) if others else 0.0,
            others_pct_peak=round(_peak(others), 1),
        )


def sample_all(series: list[ProcessSeries], machine: MachineSeries, t0: float) -> None:
    """One sample of each process and of the machine, from ``t0`` on (workers' start-up
    imports are not load)."""
    now = time.monotonic() - t0
    if now < 0:
        return
    machine.sample()
    for s in series:
        s.sample(now)
