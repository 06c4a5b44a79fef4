"""Pure parts of the swarm: scenarios, the plan, percentiles and the latency merge, the
saturation verdict, and the report files."""

import json
import random
from pathlib import Path
from typing import Any

import pytest

from simulators.swarm.plan import WorkerPlan, plan_arrivals, split_by_worker
from simulators.swarm.player import PlayerRecord, SwarmBot, Tally, _failure_kind
from simulators.swarm.processes import MachineSeries, MachineStats, ProcessSeries
from simulators.swarm.report import build_report, render_text, write_report
from simulators.swarm.saturation import WorkerLoad, judge
from simulators.swarm.scenario import ScenarioError, load_scenario, parse_scenario
from simulators.swarm.stats import (
    concurrency_series,
    input_latencies_ms,
    merge_counts,
    percentiles,
    rate_series,
)
from simulators.typing import draw_profile

SCENARIOS = Path(__file__).resolve().parents[2] / "simulators" / "scenarios"
MINIMAL = {"swarm": {"players": 10, "arrival_rate": 5.0, "duration_s": 10}}


# ---- scenarios ----------------------------------------------------------------------


def test_every_shipped_scenario_parses() -> None:
    files = sorted(SCENARIOS.glob("*.toml"))
    assert files
    for path in files:
        scenario = load_scenario(path)
        assert scenario.players >= 1 and scenario.limit_s > scenario.duration_s - 1


def test_defaults_fill_what_a_minimal_scenario_leaves_out() -> None:
    s = parse_scenario(MINIMAL)
    assert (s.name, s.workers, s.seed, s.drain_s) == ("swarm", 1, 1, 60.0)
    assert s.race_mix == {"quick": 1.0} and s.regions == {"local": 1.0}
    assert s.rating.sd == 0.0 and s.typing.send_interval_ms == 200
    assert s.limit_s == 70.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"swarm": {"arrival_rate": 5.0, "duration_s": 10}}, "swarm.players is required"),
        ({"swarm": {**MINIMAL["swarm"], "players": 0}}, "swarm.players must be in [1, 100000]"),
        ({"swarm": {**MINIMAL["swarm"], "players": "ten"}}, "swarm.players must be an integer"),
        ({"swarm": {**MINIMAL["swarm"], "players": True}}, "swarm.players must be an integer"),
        ({"swarm": {**MINIMAL["swarm"], "arrival_rate": 0}}, "swarm.arrival_rate must be in"),
        ({"swarm": {**MINIMAL["swarm"], "duraton_s": 3}}, "[swarm]: unknown key(s) ['duraton_s']"),
        ({"swarm": {**MINIMAL["swarm"], "name": " "}}, "swarm.name must be a non-empty string"),
        ({"race_mix": {"custom": 1.0}}, "race_mix.custom: unknown"),
        ({"race_mix": {"quick": 0.0}}, "[race_mix]: the weights must not all be 0"),
        ({"race_mix": {"quick": -1}}, "race_mix.quick must be in"),
        ({"regions": "local"}, "[regions] must be a table"),
        ({"typing": {"mean_wpm": 500}}, "typing.mean_wpm must be in [15, 160]"),
        ({"rating": {"spread": 3}}, "[rating]: unknown key(s) ['spread']"),
        ({"extra": {}}, "top level: unknown key(s) ['extra']"),
    ],
)
def test_scenario_errors_name_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(MINIMAL | change)
    assert message in str(err.value)


def test_a_missing_swarm_table_and_bad_toml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"missing table \[swarm\]"):
        parse_scenario({})
    bad = tmp_path / "bad.toml"
    bad.write_text("[swarm\nplayers = 1")
    with pytest.raises(ScenarioError, match="bad.toml: not valid TOML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")


# ---- the plan -----------------------------------------------------------------------


def test_arrivals_are_seeded_bounded_and_follow_the_weights() -> None:
    s = parse_scenario(
        {
            "swarm": {"players": 2000, "arrival_rate": 100.0, "duration_s": 100, "seed": 3},
            "race_mix": {"quick": 3, "standard": 1},
            "rating": {"mean": 1500, "sd": 200},
        }
    )
    arrivals = plan_arrivals(s)
    assert arrivals == plan_arrivals(s)  # the same seed, the same run
    assert len(arrivals) == 2000 and all(0 < a.at_s < 100 for a in arrivals)
    assert 15 < arrivals[-1].at_s < 25  # 2,000 at 100/s: about 20 s
    quick = sum(a.race_type == "quick" for a in arrivals) / len(arrivals)
    assert 0.7 < quick < 0.8
    assert 150 < (sum((a.rating - 1500) ** 2 for a in arrivals) / len(arrivals)) ** 0.5 < 250
    short = parse_scenario({"swarm": {"players": 1000, "arrival_rate": 10.0, "duration_s": 5}})
    assert len(plan_arrivals(short)) < 100  # arrivals past the duration are not planned


def test_workers_share_arrivals_round_robin_and_plans_round_trip() -> None:
    arrivals = plan_arrivals(parse_scenario(MINIMAL))
    shares = split_by_worker(arrivals, 3)
    assert sorted(a.index for share in shares for a in share) == [a.index for a in arrivals]
    assert [len(s) for s in shares] == [4, 3, 3]
    plan = WorkerPlan(1, "http://127.0.0.1:1", 10.0, 20.0, parse_scenario(MINIMAL).typing, None, shares[1])
    assert WorkerPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


# ---- statistics ---------------------------------------------------------------------


def test_percentiles_interpolate_and_handle_empty() -> None:
    p = percentiles(float(v) for v in range(1, 101))
    assert (p.count, p.p50, p.p95, p.p99, p.max) == (100, 50.5, 95.05, 99.01, 100.0)
    empty = percentiles([])
    assert (empty.count, empty.p50, empty.max) == (0, None, None)


def test_latency_merge_credits_every_seq_a_room_mate_saw() -> None:
    sends: dict[str, list[float | None]] = {"a": [10.0, 10.2, 10.4, None, 10.8], "b": [11.0]}
    observations = [
        ("a", 0, 2, 10.25),  # seqs 1 and 2 seen at once: 250 ms and 50 ms
        ("a", 2, 3, 10.45),  # seq 3: 50 ms
        ("a", 3, 5, 10.85),  # seq 4 moved nobody (a typo fixed): not counted; seq 5: 50 ms
        ("b", 0, 1, 11.1),  # 100 ms, seen by a room-mate in another worker
        ("b", 1, 5, 12.0),  # seqs beyond what was sent are ignored
        ("c", 0, 1, 1.0),  # a player this run never saw sending
    ]
    got = sorted(round(x, 6) for x in input_latencies_ms(sends, observations))
    assert got == [50.0, 50.0, 50.0, 100.0, 250.0]


def test_counts_and_concurrency_series() -> None:
    merged = merge_counts([{0: 2, 2: 1}, {2: 3, 5: 1}])
    assert merged == {0: 2, 2: 4, 5: 1}
    assert rate_series(merged, 4) == [2, 0, 4, 0]
    assert concurrency_series([(0.5, 2.5), (1.0, 1.5), (3.2, 10.0)], 5) == [0, 2, 1, 0, 1]


def test_process_series_mean_and_peak() -> None:
    s = ProcessSeries(
        "x", 1, times=[0, 1, 2, 3, 4, 5, 6], cpu_s=[0, 0.1, 0.2, 0.3, 1.2, 2.1, 2.2], rss_mb=[5, 9, 7]
    )
    stats = s.stats()
    assert stats.cpu_pct_series == [10.0, 10.0, 10.0, 90.0, 90.0, 10.0]
    assert stats.cpu_pct_mean == pytest.approx(36.7, abs=0.1)
    assert stats.cpu_pct_peak == pytest.approx(42.0)  # the busiest 5 samples
    assert stats.rss_mb_max == 9


# ---- saturation ---------------------------------------------------------------------


def test_saturation_verdict() -> None:
    calm = WorkerLoad(worker=0, pid=10, cpu_pct_mean=40.0, cpu_pct_peak=70.0, loop_lag_p99_ms=3.0)
    assert not judge([calm]).saturated
    busy = WorkerLoad(worker=1, pid=11, cpu_pct_mean=80.0, cpu_pct_peak=92.0, loop_lag_p99_ms=3.0)
    laggy = WorkerLoad(worker=2, pid=12, cpu_pct_mean=30.0, cpu_pct_peak=40.0, loop_lag_p99_ms=25.0)
    verdict = judge([calm, busy, laggy])
    assert verdict.saturated and len(verdict.reasons) == 2
    assert "worker 1" in verdict.reasons[0] and "CPU" in verdict.reasons[0]
    assert "worker 2" in verdict.reasons[1] and "lag" in verdict.reasons[1]


# ---- the report ---------------------------------------------------------------------


def _record(index: int, worker: int, race: str, **extra: Any) -> dict[str, Any]:
    base = {
        "index": index,
        "race_type": "quick",
        "region": "local",
        "rating": 1500.0,
        "worker": worker,
        "arrived": 0.1,
        "ticket_sent": 0.2,
        "matched": 1.2,
        "connect_started": 1.3,
        "joined": 1.31,
        "started": 2.0,
        "results": 6.0,
        "closed": 6.0,
        "player_id": f"p{index}",
        "race_id": race,
        "node_id": "n1",
        "finished": True,
        "wpm": 70.0,
        "inputs_sent": 3,
        "errors": [],
    }
    return base | extra


def _results(lag_ms: float) -> list[dict[str, Any]]:
    common = {"cpu_s": 1.0, "wall_s": 10.0, "lags_ms": [1.0, 2.0, lag_ms]}
    return [
        common
        | {
            "worker": 0,
            "pid": 100,
            "records": [_record(0, 0, "r1"), _record(1, 0, "r1", errors=["server_race_over_expected"])],
            "inputs_per_s": {"2": 3, "3": 2},
            "frames_per_s": {"2": 5},
            "sends": {"p0": [2.0, 2.2], "p1": [2.1]},
            "observations": [["p2", 0, 1, 2.35]],
        },
        common
        | {
            "worker": 1,
            "pid": 101,
            "records": [
                _record(2, 1, "r1"),
                _record(
                    3,
                    1,
                    None,
                    matched=None,
                    connect_started=None,
                    joined=None,
                    started=None,
                    results=None,
                    closed=None,
                    finished=False,
                    errors=["deadline_in_match"],
                ),
            ],
            "inputs_per_s": {"3": 1},
            "frames_per_s": {"2": 4, "4": 1},
            "sends": {"p2": [2.3]},
            "observations": [["p0", 0, 2, 2.25], ["p1", 0, 1, 2.3]],
        },
    ]


def test_report_gives_the_rating_spread_inside_races_of_seeded_bots() -> None:
    results = _results(lag_ms=3.0)
    assert build_report(parse_scenario(MINIMAL), results, [], seconds=8).rating_spread_in_race is None
    results[0]["records"] = [
        _record(10, 0, "r1", rating=1400.0, seeded=True),
        _record(11, 0, "r1", rating=1550.0, seeded=True),
        _record(12, 0, "r1", rating=2500.0, seeded=False),  # unseeded: it queued at the default
        _record(13, 0, "r2", rating=1600.0, seeded=True),
        _record(14, 0, "r2", rating=1610.0, seeded=True),
        _record(15, 0, "r3", rating=1000.0, seeded=True),  # alone among this run's bots: no spread
    ]
    report = build_report(parse_scenario(MINIMAL), results, [], seconds=8)
    spread = report.rating_spread_in_race
    assert spread is not None and spread.count == 2
    assert (spread.p50, spread.max) == (80.0, 150.0)  # spreads 150 and 10
    assert "rating spread     p50" in render_text(report) and "n=2" in render_text(report)


def test_report_merges_workers_and_writes_json_png_and_text(tmp_path: Path) -> None:
    scenario = parse_scenario(MINIMAL)
    report = build_report(scenario, _results(lag_ms=3.0), [], seconds=8)
    assert report.players == {
        "arrived": 4,
        "matched": 3,
        "joined": 3,
        "started": 3,
        "finished": 3,
        "with_errors": 2,
    }
    assert report.races == 1
    assert report.time_to_match_s.count == 3 and report.time_to_match_s.p50 == pytest.approx(1.0)
    assert report.time_to_match_by_type_s is not None
    assert (
        list(report.time_to_match_by_type_s) == ["quick"]
        and report.time_to_match_by_type_s["quick"].count == 3
    )
    assert report.join_latency_ms.p50 == pytest.approx(10.0)
    # p0's seqs 1, 2 seen by worker 1 (250, 50 ms), p1's (200 ms), p2's by worker 0 (50 ms)
    assert report.input_to_broadcast_ms.count == 4
    assert report.input_to_broadcast_ms.max == pytest.approx(250.0)
    assert report.series.inputs_per_s == [0, 0, 3, 3, 0, 0, 0, 0]
    assert report.series.frames_per_s[2] == 9
    assert report.series.connections[2] == 3 and report.series.races[5] == 1
    assert report.errors == {"deadline_in_match": 1, "server_race_over_expected": 1}
    assert not report.verdict.saturated

    paths = write_report(report, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["input_to_broadcast_ms"]["count"] == 4 and data["verdict"]["saturated"] is False
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths["text"].read_text()
    assert "time to match" in text and "not saturated" in text and "SATURATED" not in text


def test_a_saturated_generator_is_said_loudly() -> None:
    report = build_report(parse_scenario(MINIMAL), _results(lag_ms=500.0), [], seconds=8)
    assert report.verdict.saturated
    text = render_text(report)
    assert text.startswith("!" * 10) and "THE LOAD GENERATOR WAS SATURATED" in text
    assert "event-loop lag p99" in text


def test_a_bot_knows_which_inputs_move_its_position() -> None:
    """Only inputs that move the position are broadcast; typo fixes alone are not timed."""
    rng = random.Random(1)
    bot = SwarmBot(
        "ws://127.0.0.1:9/ws",
        "token",
        "ticket",
        draw_profile(rng),
        rng,
        record=PlayerRecord(0, "quick", "local", 1500.0, 0),
        tally=Tally(t0=0.0),
    )
    bot._passage = "the cat"
    assert bot._moves("th")  # 0 -> 2
    assert not bot._moves("x")  # a typo: still 2
    assert not bot._moves("\b")  # fixed: still 2
    assert bot._moves("e c")  # 2 -> 5
    assert bot._moves("\b")  # 5 -> 4: a visible step back
    assert bot._moves("cat") and bot._position == 7


def test_machine_load_tells_other_work_from_the_runs_own() -> None:
    machine = MachineSeries(cores=2, busy=[0, 50, 150, 160], total=[0, 200, 400, 600])
    assert machine.busy_pct() == [50.0, 100.0, 10.0]  # % of one core, both cores together
    ours = ProcessSeries("w", 1, times=[0, 1, 2, 3], cpu_s=[0, 0.2, 0.3, 0.4], rss_mb=[1]).stats()
    stats = machine.stats([ours])
    assert stats.cores == 2 and stats.busy_pct_mean == pytest.approx(53.3, abs=0.1)
    assert stats.others_pct_mean == pytest.approx(40.0)  # (50 - 20) + (100 - 10) + 0, over 3 s
    report = build_report(parse_scenario(MINIMAL), _results(lag_ms=3.0), [ours], seconds=8, machine=stats)
    text = render_text(report)
    assert "other processes 40%" in text and "SHARED MACHINE" in text
    quiet = MachineStats(cores=2, busy_pct_mean=20.0, others_pct_mean=1.0, others_pct_peak=2.0)
    report = build_report(parse_scenario(MINIMAL), _results(lag_ms=3.0), [ours], seconds=8, machine=quiet)
    assert "SHARED MACHINE" not in render_text(report)


def test_bot_failures_become_a_few_kinds() -> None:
    assert _failure_kind("timed out after 20.0s without results", None) == "race_timeout"
    assert _failure_kind("could not connect to ws://127.0.0.1:9/ws: OSError()", None) == "ws_connect_failed"
    assert _failure_kind("connection closed before the results (close code 4006)", 4006) == "ws_closed_4006"
    assert _failure_kind("redirected more than once", None) == "redirect_loop"
    assert _failure_kind("undecodable frame from the server: x", None) == "bot_failure"


def test_a_worker_lost_without_a_result_is_an_error_of_the_report() -> None:
    report = build_report(parse_scenario(MINIMAL), _results(lag_ms=3.0)[:1], [], seconds=8, lost_workers=[1])
    assert report.errors["worker_1_lost"] == 1 and report.players["arrived"] == 2
    assert "worker_1_lost=1" in render_text(report)


def test_time_to_match_per_race_type_when_there_are_several() -> None:
    results = _results(lag_ms=3.0)
    results[0]["records"][0]["race_type"] = "standard"
    results[0]["records"][0]["matched"] = 5.2  # 5 s after its ticket
    report = build_report(parse_scenario(MINIMAL), results, [], seconds=8)
    by_type = report.time_to_match_by_type_s
    assert by_type is not None and by_type["standard"].p50 == pytest.approx(5.0)
    assert by_type["quick"].count == 2
    text = render_text(report)
    assert "  standard        p50 5.00" in text and "  quick           p50 1.00" in text
