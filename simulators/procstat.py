"""CPU and memory of processes and cores, read from /proc (Linux): for the swarm's reports and the
benchmarks (which import it from here, the installed package)."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

__all__ = ["CpuSample", "core_busy", "cpu_model", "machine_busy", "process_cpu", "process_rss_mb", "self_cpu"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSample:
    user_s: float
    system_s: float

    @property
    def total_s(self) -> float:
        return self.user_s + self.system_s


def process_cpu(pid: int) -> CpuSample:
    """User and system CPU seconds a process has used (utime, stime of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # After the ")" that ends the command name: field 3 (state) is index 0, utime (14) index 11.
    return CpuSample(int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK)


def self_cpu() -> CpuSample:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CpuSample(usage.ru_utime, usage.ru_stime)


def process_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def core_busy(core: int) -> tuple[float, float]:
    """(busy, total) jiffies of one core from /proc/stat; busy includes irq and softirq time."""
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith(f"cpu{core} "):
                values = [int(v) for v in line.split()[1:]]
                idle = values[3] + values[4]  # idle + iowait
                total = sum(values[:8])  # guest time is already inside user
                return float(total - idle), float(total)
    raise ValueError(f"no cpu{core} in /proc/stat")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores together, from the "cpu " line of /proc/stat."""
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("cpu "):
                values = [int(v) for v in line.split()[1:]]
                idle = values[3] + values[4]
                total = sum(values[:8])
                return float(total - idle), float(total)
    raise ValueError("no cpu line in /proc/stat")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
