"""The end-to-end benchmark's comparison with the seeds (the run itself is a script, not a test)."""

from typing import Any

import pytest

from benchmarks.end_to_end import TARGETS, compare, format_comparison, parse_args
from simulators.swarm.report import build_report
from simulators.swarm.scenario import parse_scenario
from tests.simulators.test_swarm import MINIMAL, _results


def _report(lag_ms: float = 3.0) -> Any:
    return build_report(parse_scenario(MINIMAL), _results(lag_ms), [], seconds=8)


def test_the_seeds_targets_beside_the_measured_figures() -> None:
    report = _report()
    rows = compare(report)
    assert [t.limit for t, _, _ in rows] == [5.0, 200.0, 100.0] == [t.limit for t in TARGETS]
    (_, match, match_ok), (_, join, join_ok), (_, progress, progress_ok) = rows
    assert match == report.time_to_match_s.p95 and match_ok is True
    assert join == report.join_latency_ms.p95 and join_ok is True
    assert progress == report.input_to_broadcast_ms.p95 and progress_ok is False  # 250 ms max in the data
    text = format_comparison(report)
    assert "Race Matching: <5 seconds (p95)" in text and "NOT MET" in text
    assert "saturated" not in text
    assert "saturated" in format_comparison(_report(lag_ms=500.0))


def test_settings_for_the_cluster_must_be_arena_settings() -> None:
    assert parse_args(["--env", "ARENA_RACE_TICK_HZ=20"]).env == ["ARENA_RACE_TICK_HZ=20"]
    with pytest.raises(SystemExit):
        parse_args(["--env", "PATH=/tmp"])
