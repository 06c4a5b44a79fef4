"""The many-bots runner and its command line, against a real in-process node."""

import asyncio
import json
import random

import pytest

import simulators.__main__ as cli
from arena.protocol import Error
from ops.services import free_port
from simulators.bot import BotReport
from simulators.guard import NotLoopbackError
from simulators.runner import format_summary, percentile, run_bots, summarise
from simulators.typing import TypingProfile
from tests.simulators.conftest import ADMIN_TOKEN, SHORT_TEXT, SimNode

PROFILE = TypingProfile(wpm=60.0, error_rate=0.01, jitter_cv=0.4, notice_delay_chars=1, pause_chance=0.0)


async def test_run_bots_races_everyone_and_summarises(sim_node: SimNode) -> None:
    summary = await run_bots(
        sim_node.http_url,
        ADMIN_TOKEN,
        3,
        "custom",
        random.Random(7),
        20,
        seats_per_race=2,
        custom_text=SHORT_TEXT,
        mean_wpm=150,
        sd_wpm=5,
    )
    assert summary.ok, summary.failures
    assert (summary.races, summary.bots, summary.finished, summary.dnf, summary.flagged) == (2, 3, 3, 0, 0)
    assert summary.wpm_min is not None and summary.wpm_max is not None and summary.wpm_mean is not None
    assert 90 < summary.wpm_min <= summary.wpm_mean <= summary.wpm_max < 220
    assert summary.accuracy_mean is not None and summary.accuracy_mean > 80
    assert summary.latency_p50_ms is not None and summary.latency_p99_ms is not None
    assert 0 <= summary.latency_p50_ms <= summary.latency_p99_ms < 1000
    assert summary.errors_by_code == {}
    assert sorted(r.name for r in summary.reports) == ["bot-1", "bot-2", "bot-3"]
    table = format_summary(summary)
    assert "3 finished, 0 DNF" in table and "result" in table and "ok" in table
    assert json.dumps(summary.to_dict())  # JSON-able


async def test_the_command_line_runs_a_race(
    sim_node: SimNode, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "configure_logging", lambda settings: None)  # keep the test session's logging
    argv = [
        "--node", sim_node.http_url, "--admin-token", ADMIN_TOKEN, "--bots", "2",
        "--race-type", "custom", "--custom-text", SHORT_TEXT, "--seed", "1", "--timeout", "20",
        "--mean-wpm", "150", "--sd-wpm", "5", "--json", "--format", "json",
    ]  # fmt: skip
    # The CLI runs its own (uvloop) event loop, so it gets a thread; the node stays on ours.
    rc = await asyncio.to_thread(cli.main, argv)
    # Node logs share stdout here (the CLI's own logging goes to stderr): the JSON is last.
    lines = capsys.readouterr().out.splitlines()
    out = json.loads("\n".join(lines[lines.index("{") :]))
    assert rc == 0, out
    assert out["bots"] == 2 and out["finished"] == 2 and out["ok"] is True


def test_the_command_line_refuses_remote_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(["--node", "http://203.0.113.5:8100", "--admin-token", "t"])
    assert exc.value.code == 2
    assert "loopback" in capsys.readouterr().err


def test_the_command_line_fails_when_the_node_is_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "configure_logging", lambda settings: None)
    rc = cli.main(["--node", f"http://127.0.0.1:{free_port()}", "--admin-token", "t", "--bots", "1"])
    assert rc == 1
    assert "error:" in capsys.readouterr().err


async def test_run_bots_refuses_remote_nodes() -> None:
    with pytest.raises(NotLoopbackError):
        await run_bots("http://example.com:8100", "t", 1, "quick", random.Random(1), 5)


def test_unexpected_errors_and_failures_fail_the_run() -> None:
    fine = BotReport(player_id="p1", name="bot-1", profile=PROFILE)
    late = BotReport(
        player_id="p2", name="bot-2", profile=PROFILE, errors=[Error(code="race_over", reason="")]
    )
    broken = BotReport(
        player_id="p3", name="bot-3", profile=PROFILE, errors=[Error(code="bad_message", reason="")]
    )
    lost = BotReport(player_id="p4", name="bot-4", profile=PROFILE, failure="timed out")
    assert summarise([fine, late], races=1, duration_s=1.0).ok
    summary = summarise([fine, late, broken, lost], races=1, duration_s=1.0)
    assert not summary.ok
    assert summary.unexpected == ["bot-3", "bot-4"]
    assert summary.errors_by_code == {"bad_message": 1, "race_over": 1}
    assert summary.failures == {"bot-4": "timed out"}
    assert summary.dnf == 4 and summary.wpm_mean is None and summary.latency_p50_ms is None
    assert "FAILED" in format_summary(summary)


def test_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
