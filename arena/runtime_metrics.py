"""Histograms every long-lived process keeps about its own runtime: how late its event loop
answers and how long the garbage collector pauses it. One definition, so every process's
series have the same buckets and can be read side by side."""

from __future__ import annotations

import gc
import time

from prometheus_client import CollectorRegistry, Histogram

LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


def loop_lag_histogram(prefix: str, what_wakes: str, registry: CollectorRegistry) -> Histogram:
    """``{prefix}_loop_lag_seconds``: how late ``what_wakes`` woke up."""
    return Histogram(
        f"{prefix}_loop_lag_seconds",
        f"How late {what_wakes} woke up: time the event loop was busy with something else",
        buckets=LOOP_LAG_BUCKETS,
        registry=registry,
    )


def gc_pause_histogram(prefix: str, registry: CollectorRegistry, where: str = "") -> Histogram:
    """``{prefix}_gc_pause_seconds{generation}``."""
    return Histogram(
        f"{prefix}_gc_pause_seconds",
        "Garbage collector pauses, by generation" + (f" ({where})" if where else ""),
        ["generation"],
        buckets=GC_PAUSE_BUCKETS,
        registry=registry,
    )


def time_gc_pauses(gc_pause_seconds: Histogram) -> None:
    """Observe every garbage collection's pause in ``gc_pause_seconds{generation}`` (a process has
    one collector: call this once, in main)."""
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            gc_pause_seconds.labels(str(info["generation"])).observe(time.perf_counter() - started[0])

    gc.callbacks.append(on_gc)
