"""The soak benchmark's pure parts: the fit, the verdicts, the bounded sampler, the metrics parser
(the run itself is a script, not a test)."""

import asyncio
import time
from pathlib import Path

import pytest

from benchmarks.soak import (
    BACK_PCT,
    FLAT_PCT,
    Sample,
    SoakSettings,
    Timeline,
    Window,
    judge,
    metrics_urls,
    parse_args,
    parse_metrics,
    parse_node_env,
    render_nodes,
    sample_loop,
    slope_per_minute,
    soak_scenario,
)
from ops.cluster import Cluster
from simulators.swarm.scenario import parse_scenario
from tests.simulators.test_swarm import MINIMAL


def test_slope_is_a_least_squares_line_per_minute() -> None:
    assert slope_per_minute([(0.0, 10.0), (60.0, 12.0), (120.0, 14.0)]) == pytest.approx(2.0)
    noisy = [(t * 30.0, 50.0 + 0.5 * t / 2 + (0.3 if t % 2 else -0.3)) for t in range(40)]
    assert slope_per_minute(noisy) == pytest.approx(0.5, abs=0.05)
    assert slope_per_minute([(t * 30.0, 60.0) for t in range(10)]) == 0.0
    assert slope_per_minute([(0.0, 1.0), (60.0, 2.0)]) is None  # too few points to say
    assert slope_per_minute([(5.0, 1.0), (5.0, 2.0), (5.0, 3.0)]) is None  # no time passed


def test_the_window_is_the_last_two_thirds_of_the_arrivals() -> None:
    window = Window.last_two_thirds(60.0, 1860.0)
    assert (window.start, window.end, window.minutes) == (660.0, 1860.0, 20.0)


def _series(idle: float, growth_per_min: float, after: float) -> list[tuple[float, str, float]]:
    """60 s idle, 30 min of load, 2 min after; a sample every 30 s."""
    out = [(t, "idle", idle) for t in (0.0, 30.0)]
    out += [(60.0 + t, "load", idle + 2.0 + growth_per_min * t / 60.0) for t in range(0, 1801, 30)]
    out += [(1900.0 + t, "after", after) for t in (0.0, 30.0, 60.0)]
    return out


def test_a_flat_process_passes_and_a_growing_one_fails() -> None:
    window = Window.last_two_thirds(60.0, 1860.0)
    flat = judge("node-1", _series(55.0, 0.01, 57.0), window)
    assert flat.flat is True
    assert flat.idle_mb == 55.0 and flat.after_mb == 57.0
    assert flat.slope_mb_per_min == pytest.approx(0.01)
    assert flat.back_pct == pytest.approx(100 * 2 / 55)
    # The node: 2.4 MB a minute, kept after the load.
    leaking = judge("node-1", _series(54.0, 2.4, 78.6), window)
    assert leaking.flat is False
    assert leaking.change_pct is not None and leaking.change_pct > FLAT_PCT
    assert leaking.back_pct is not None and leaking.back_pct > BACK_PCT
    # Flat under load but never giving back what it took: not flat either.
    kept = judge("node-1", _series(50.0, 0.0, 50.0 * (1 + 1.5 * BACK_PCT / 100)), window)
    assert kept.change_pct == pytest.approx(0.0) and kept.flat is False
    # Data stores are shown, never judged.
    assert judge("redis", _series(12.0, 2.4, 40.0), window, judged=False).flat is None


async def test_the_sampler_is_bounded_in_time_and_count_and_stops_when_asked() -> None:
    stop = asyncio.Event()
    calls: list[float] = []

    async def take() -> None:
        calls.append(time.monotonic())

    started = time.monotonic()
    n = await sample_loop(take, 0.02, started + 0.2, stop)
    assert n == len(calls) and 5 <= n <= 11  # ceil(0.2 / 0.02) + 1 at most
    assert time.monotonic() - started < 1.0
    # Never ahead of the schedule (a late sample is followed by a sooner one, not by a drift).
    assert all(t - started >= i * 0.02 - 0.005 for i, t in enumerate(calls))

    calls.clear()
    asyncio.get_running_loop().call_later(0.1, stop.set)  # the run ends while the sampler waits
    started = time.monotonic()
    assert await sample_loop(take, 5.0, started + 60.0, stop) == 1  # no 5 s wait once stopped
    assert time.monotonic() - started < 1.0

    fake_now = [100.0]

    async def take_without_time_passing() -> None:
        calls.append(fake_now[0])

    stop.clear()
    calls.clear()
    # A clock that never moves: the count alone bounds the loop (ceil(10 / 5) + 1).
    assert await sample_loop(take_without_time_passing, 5.0, 110.0, stop, clock=lambda: fake_now[0]) == 3


def test_metrics_are_parsed_into_series_counts_and_labelled_values() -> None:
    text = "\n".join(
        [
            "# HELP arena_gameserver_node_items Entries",
            "# TYPE arena_gameserver_node_items gauge",
            'arena_gameserver_node_items{structure="rooms"} 12.0',
            'arena_gameserver_node_items{structure="sockets"} 40.0',
            'arena_gameserver_python_objects{type="all"} 9830.0',
            'arena_gameserver_races{state="running"} 3.0',
            "arena_gameserver_connections 40.0",
            "",
        ]
    )
    series, families = parse_metrics(text, ("arena_gameserver_node_items", "arena_gameserver_python_objects"))
    assert series == 5
    assert families == {
        "arena_gameserver_node_items": {"rooms": 12.0, "sockets": 40.0},
        "arena_gameserver_python_objects": {"all": 9830.0},
    }


def test_the_scenario_is_stretched_to_the_soak() -> None:
    base = parse_scenario(MINIMAL)
    scenario = soak_scenario(base, SoakSettings(minutes=8, rate=10.0, workers=2))
    assert scenario.players == 4800 and scenario.arrival_rate == 10.0
    assert scenario.duration_s == 480.0 and scenario.workers == 2
    assert scenario.race_mix == base.race_mix and scenario.typing == base.typing


def test_settings_are_checked() -> None:
    _, settings = parse_args(["--minutes", "8", "--sample-s", "15"])
    assert settings.minutes == 8.0 and settings.sample_s == 15.0 and settings.heap_stats
    assert parse_args(["--no-heap-stats"])[1].heap_stats is False
    for bad in (["--minutes", "0"], ["--rate", "500"], ["--sample-s", "1"], ["--env", "PATH=/tmp"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_one_node_can_run_changed_beside_one_as_shipped(tmp_path: Path) -> None:
    args, _ = parse_args(["--node-env", "2:PYTHONMALLOC=malloc", "--node-env", "2:ARENA_NODE_GC_FULL_S=60"])
    assert args.node_env == {"node-2": {"PYTHONMALLOC": "malloc", "ARENA_NODE_GC_FULL_S": "60"}}
    assert parse_args([])[0].node_env == {}
    assert parse_node_env(["1:MALLOC_ARENA_MAX=1"]) == {"node-1": {"MALLOC_ARENA_MAX": "1"}}
    for bad in ("3:PYTHONMALLOC=malloc", "PYTHONMALLOC=malloc", "x:ARENA_A=1", "2:PATH=/tmp", "2:ARENA_A"):
        with pytest.raises(ValueError):
            parse_node_env([bad])
        with pytest.raises(SystemExit):
            parse_args(["--node-env", bad])
    # The cluster gives it to that node only, over the environment every process gets.
    cluster = Cluster(run_dir=tmp_path, bots=0, house_per_queue=0, node_env=args.node_env)
    procs = {p.name: p for p in cluster._arena_processes({"PYTHONMALLOC": "pymalloc", "X": "1"}, tmp_path)}
    assert procs["node-2"].env["PYTHONMALLOC"] == "malloc" and procs["node-2"].env["X"] == "1"
    assert procs["node-2"].env["ARENA_NODE_ID"] == "node-2"
    assert procs["node-1"].env["PYTHONMALLOC"] == "pymalloc"
    assert "ARENA_NODE_GC_FULL_S" not in procs["node-1"].env
    assert procs["lobby"].env["PYTHONMALLOC"] == "pymalloc"


def test_the_nodes_metrics_are_read_from_their_admin_listeners(tmp_path: Path) -> None:
    cluster = Cluster(run_dir=tmp_path, bots=0, port_base=8300)  # nothing is started
    urls = metrics_urls(cluster)
    assert urls["node-1"] == "http://127.0.0.1:8309/metrics"  # PORT_OFFSETS: node-1-admin
    assert urls["node-2"] == "http://127.0.0.1:8310/metrics"
    assert urls["lobby"] == "http://127.0.0.1:8300/metrics"
    assert set(urls) == {"node-1", "node-2", "lobby", "matchmaker", "persistence", "tournaments"}


def test_the_nodes_report_says_which_full_collections_ran() -> None:
    gcs = {"arena_gameserver_gc_full_collections_total": {"idle": 1.0, "scheduled": 0.0, "startup": 1.0}}
    items = {"arena_gameserver_node_items": {"rooms": 0.0, "sockets": 0.0}}
    samples = [
        Sample(30.0, "load", {}, {"node-1": 190}, {"node-1": items}),
        Sample(90.0, "after", {}, {"node-1": 201}, {"node-1": items | gcs}),
    ]
    text = render_nodes(samples, Timeline(arrivals_until=60.0), Window(0.0, 60.0))
    assert "node-1 after            rooms=0 sockets=0  full collections: idle=1 scheduled=0 startup=1" in text
    assert "node-1 end of arrivals  rooms=0 sockets=0\n" in text
