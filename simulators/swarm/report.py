"""The swarm's report: merged from every worker's result, written as JSON, PNG and text."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simulators.swarm.processes import MachineStats, ProcessStats
from simulators.swarm.saturation import Verdict, WorkerLoad, judge
from simulators.swarm.scenario import Scenario
from simulators.swarm.stats import (
    Percentiles,
    concurrency_series,
    input_latencies_ms,
    merge_counts,
    percentiles,
    rate_series,
)

__all__ = ["SHARED_MACHINE_PCT", "Report", "build_report", "render_png", "render_text", "write_report"]

SHARED_MACHINE_PCT = 15.0  # other processes busier than this (% of a core, busiest 5 s): say so


@dataclass(frozen=True, slots=True)
class Series:
    connections: list[int]  # open bot WebSockets at each second
    races: list[int]  # races with a bot of this run in them (first join .. last close)
    inputs_per_s: list[int]
    frames_per_s: list[int]  # progress frames received by all bots


@dataclass(frozen=True, slots=True)
class Report:
    scenario: dict[str, Any]
    seconds: int
    players: dict[str, int]  # planned, matched, joined, started, finished, with_errors
    races: int
    time_to_match_s: Percentiles
    join_latency_ms: Percentiles
    input_to_broadcast_ms: Percentiles  # as room-mates see it
    inputs_per_s: dict[str, float]  # mean, peak
    frames_per_s: dict[str, float]
    errors: dict[str, int]
    processes: list[ProcessStats]
    workers: list[WorkerLoad]
    verdict: Verdict
    series: Series
    machine: MachineStats | None = None  # None when not sampled (unit tests)
    time_to_match_by_type_s: dict[str, Percentiles] | None = None  # per race type
    # Matchmaking quality: max - min of the seeded ratings inside each race with two or more
    # seeded bots of this run (house bots and unseeded bots are not counted); None: no such race.
    rating_spread_in_race: Percentiles | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_report(
    scenario: Scenario,
    results: list[dict[str, Any]],
    processes: list[ProcessStats],
    seconds: int,
    machine: MachineStats | None = None,
    *,
    lost_workers: list[int] | None = None,
) -> Report:
    """Merge the workers' results (as written by ``simulators.swarm.worker``)."""
    records = [r for result in results for r in result["records"]]
    sends: dict[str, list[float | None]] = {}
    for result in results:
        sends.update(result["sends"])
    observations = [tuple(o) for result in results for o in result["observations"]]
    latencies = input_latencies_ms(sends, observations)  # type: ignore[arg-type]
    matches = [r["matched"] - r["ticket_sent"] for r in records if r["matched"] is not None]
    joins = [(r["joined"] - r["connect_started"]) * 1000.0 for r in records if r["joined"] is not None]
    errors = Counter(kind for r in records for kind in r["errors"])
    for worker in lost_workers or []:  # died without a result: its bots are not in the figures
        errors[f"worker_{worker}_lost"] += 1
    inputs = merge_counts(_int_keys(result["inputs_per_s"]) for result in results)
    frames = merge_counts(_int_keys(result["frames_per_s"]) for result in results)
    by_proc = {p.pid: p for p in processes}
    workers = [_worker_load(result, by_proc.get(result["pid"])) for result in results]
    series = Series(
        connections=concurrency_series(
            (
                (r["connect_started"], r["closed"])
                for r in records
                if r["connect_started"] is not None and r["closed"] is not None
            ),
            seconds,
        ),
        races=concurrency_series(_race_intervals(records), seconds),
        inputs_per_s=rate_series(inputs, seconds),
        frames_per_s=rate_series(frames, seconds),
    )
    return Report(
        scenario=asdict(scenario),
        seconds=seconds,
        players={
            "arrived": len(records),
            "matched": sum(1 for r in records if r["matched"] is not None),
            "joined": sum(1 for r in records if r["joined"] is not None),
            "started": sum(1 for r in records if r["started"] is not None),
            "finished": sum(1 for r in records if r["finished"]),
            "with_errors": sum(1 for r in records if r["errors"]),
        },
        races=len({r["race_id"] for r in records if r["race_id"]}),
        time_to_match_s=percentiles(matches),
        join_latency_ms=percentiles(joins),
        input_to_broadcast_ms=percentiles(latencies),
        inputs_per_s=_mean_peak(series.inputs_per_s),
        frames_per_s=_mean_peak(series.frames_per_s),
        errors=dict(sorted(errors.items())),
        processes=processes,
        workers=workers,
        verdict=judge(workers),
        series=series,
        machine=machine,
        time_to_match_by_type_s={
            race_type: percentiles(
                r["matched"] - r["ticket_sent"]
                for r in records
                if r["race_type"] == race_type and r["matched"] is not None
            )
            for race_type in sorted({r["race_type"] for r in records})
        },
        rating_spread_in_race=_rating_spread(records),
    )


def _rating_spread(records: list[dict[str, Any]]) -> Percentiles | None:
    by_race: dict[str, list[float]] = {}
    for r in records:
        if r["race_id"] and r.get("seeded"):  # no "seeded": not seeded
            by_race.setdefault(r["race_id"], []).append(r["rating"])
    spreads = [max(ratings) - min(ratings) for ratings in by_race.values() if len(ratings) >= 2]
    return percentiles(spreads) if spreads else None


def _int_keys(counts: dict[str, int]) -> dict[int, int]:
    return {int(k): v for k, v in counts.items()}  # JSON made the seconds strings


def _race_intervals(records: list[dict[str, Any]]) -> list[tuple[float, float]]:
    spans: dict[str, tuple[float, float]] = {}
    for r in records:
        if r["race_id"] and r["joined"] is not None and r["closed"] is not None:
            low, high = spans.get(r["race_id"], (math.inf, -math.inf))
            spans[r["race_id"]] = (min(low, r["joined"]), max(high, r["closed"]))
    return list(spans.values())


def _mean_peak(values: list[int]) -> dict[str, float]:
    busy = [v for v in values if v > 0]  # the seconds anything happened
    return {"mean": round(sum(busy) / len(busy), 1) if busy else 0.0, "peak": float(max(values, default=0))}


def _worker_load(result: dict[str, Any], proc: ProcessStats | None) -> WorkerLoad:
    own_mean = 100.0 * result["cpu_s"] / result["wall_s"] if result["wall_s"] > 0 else 0.0
    lag = percentiles(result["lags_ms"]).p99
    return WorkerLoad(
        worker=result["worker"],
        pid=result["pid"],
        cpu_pct_mean=round(proc.cpu_pct_mean if proc else own_mean, 1),
        cpu_pct_peak=round(proc.cpu_pct_peak if proc else own_mean, 1),
        loop_lag_p99_ms=lag,
    )


# ---- rendering -------------------------------------------------------------------------


def _ptile(p: Percentiles, unit: str, scale: float = 1.0) -> str:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v * scale:.0f}" if scale != 1.0 or unit == "ms" else f"{v:.2f}"

    return f"p50 {fmt(p.p50)}  p95 {fmt(p.p95)}  p99 {fmt(p.p99)}  max {fmt(p.max)} {unit}  (n={p.count})"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_text(report: Report) -> str:
    s = report.scenario
    lines: list[str] = []
    if report.verdict.saturated:
        lines += [
            "!" * 78,
            "!! THE LOAD GENERATOR WAS SATURATED: the figures below measure the bots, not the cluster.",
            *(f"!!   {reason}" for reason in report.verdict.reasons),
            "!" * 78,
        ]
    p = report.players
    lines += [
        f"scenario          {s['name']}: {s['players']} players at {s['arrival_rate']}/s"
        f" over {s['duration_s']:.0f} s"
        f" (+{s['drain_s']:.0f} s drain), {s['workers']} worker(s)",
        f"players           {p['arrived']} arrived, {p['matched']} matched, {p['joined']} joined,"
        f" {p['started']} started, {p['finished']} finished, {p['with_errors']} with errors",
        f"races             {report.races}",
        f"time to match     {_ptile(report.time_to_match_s, 's')}",
        *(
            f"  {race_type:<15} {_ptile(p, 's')}"
            for race_type, p in (report.time_to_match_by_type_s or {}).items()
            if len(report.time_to_match_by_type_s or {}) > 1
        ),
        "rating spread     "
        + (
            _ptile(report.rating_spread_in_race, "points") + "  (max - min per race, seeded bots of this run)"
            if report.rating_spread_in_race is not None
            else "- (no race had two seeded bots: run with --redis-url)"
        ),
        f"join latency      {_ptile(report.join_latency_ms, 'ms')}",
        f"input->broadcast  {_ptile(report.input_to_broadcast_ms, 'ms')}  (as room-mates see it)",
        f"inputs/s          mean {report.inputs_per_s['mean']:.0f}  peak {report.inputs_per_s['peak']:.0f}",
        f"progress frames/s mean {report.frames_per_s['mean']:.0f}  peak {report.frames_per_s['peak']:.0f}"
        "  (received by all bots)",
        f"peak concurrency  {max(report.series.connections, default=0)} connections,"
        f" {max(report.series.races, default=0)} races",
        "errors            " + (", ".join(f"{k}={v}" for k, v in report.errors.items()) or "none"),
        "processes         (CPU % of one core: mean / busiest 5 s; max RSS)",
    ]
    lines += [
        f"  {proc.name:<14} pid {proc.pid:<7} CPU {proc.cpu_pct_mean:5.1f}% / {proc.cpu_pct_peak:5.1f}%"
        f"  RSS {proc.rss_mb_max:7.1f} MB"
        for proc in report.processes
    ]
    lines += [f"  worker {w.worker} loop lag p99 {_num(w.loop_lag_p99_ms)} ms" for w in report.workers]
    m = report.machine
    if m is not None:
        lines.append(
            f"machine           {m.cores} cores, busy {m.busy_pct_mean:.0f}% of a core on average;"
            f" other processes {m.others_pct_mean:.0f}% (busiest 5 s {m.others_pct_peak:.0f}%)"
        )
        if m.others_pct_peak > SHARED_MACHINE_PCT:
            lines.append(
                "                  SHARED MACHINE: other work competed for the CPU; figures are pessimistic"
            )
    lines.append(
        "generator         SATURATED (see above)"
        if report.verdict.saturated
        else "generator         not saturated"
    )
    return "\n".join(lines)


def render_png(report: Report, path: Path) -> None:
    """Four panels over time: concurrency, rates, CPU per process, and the latency summary."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    seconds = list(range(report.seconds))
    fig, axes = plt.subplots(4, 1, figsize=(10, 12), sharex=False)
    ax = axes[0]
    ax.plot(seconds, report.series.connections, label="connections")
    ax.plot(seconds, report.series.races, label="races")
    ax.set_ylabel("concurrent")
    ax.legend(loc="upper right")
    ax.set_title(
        f"swarm '{report.scenario['name']}'" + ("  — GENERATOR SATURATED" if report.verdict.saturated else "")
    )
    ax = axes[1]
    ax.plot(seconds, report.series.inputs_per_s, label="inputs/s")
    ax.plot(seconds, report.series.frames_per_s, label="progress frames/s")
    ax.set_ylabel("per second")
    ax.legend(loc="upper right")
    ax = axes[2]
    for proc in report.processes:
        ax.plot(range(1, len(proc.cpu_pct_series) + 1), proc.cpu_pct_series, label=proc.name)
    ax.axhline(85.0, color="red", linestyle=":", linewidth=1)
    ax.set_ylabel("CPU % of a core")
    ax.set_xlabel("seconds since start")
    if report.processes:  # an empty legend is a warning
        ax.legend(loc="upper right", fontsize="small")
    ax = axes[3]
    names = ["match (s)", "join (ms/100)", "input->broadcast (ms/100)"]
    figures = [report.time_to_match_s, report.join_latency_ms, report.input_to_broadcast_ms]
    scales = [1.0, 0.01, 0.01]
    width = 0.25
    for i, q in enumerate(("p50", "p95", "p99")):
        values = [(getattr(f, q) or 0.0) * scale for f, scale in zip(figures, scales, strict=True)]
        ax.bar([x + i * width for x in range(len(names))], values, width, label=q)
    ax.set_xticks([x + width for x in range(len(names))], names)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "png": out_dir / "report.png", "text": out_dir / "report.txt"}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=1))
    render_png(report, paths["png"])
    paths["text"].write_text(render_text(report) + "\n")
    return paths
