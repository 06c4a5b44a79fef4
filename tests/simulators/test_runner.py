"""The many-bots runner and its command line, against a real in-process node."""

import asyncio
import json
import random
import time

import aiohttp
import pytest
from aiohttp import web

import simulators.__main__ as cli
from arena.backoff import BackoffSettings
from arena.protocol import Error
from ops.services import free_port
from simulators.admin import AdminError
from simulators.bot import BotReport
from simulators.guard import NotLoopbackError
from simulators.runner import format_summary, percentile, run_bots, summarise
from simulators.typing import TypingProfile
from tests.simulators.conftest import ADMIN_TOKEN, SHORT_TEXT, SimNode

PROFILE = TypingProfile(wpm=60.0, error_rate=0.01, jitter_cv=0.4, notice_delay_chars=1, pause_chance=0.0)


async def test_run_bots_races_everyone_and_summarises(sim_node: SimNode) -> None:
    summary = await run_bots(
        sim_node.admin_url,
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
        "--node", sim_node.admin_url, "--admin-token", ADMIN_TOKEN, "--bots", "2",
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


def test_the_command_line_retries_a_node_that_is_down_then_fails_at_its_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "configure_logging", lambda settings: None)
    node = f"http://127.0.0.1:{free_port()}"
    argv = ["--node", node, "--admin-token", "t", "--bots", "1", "--timeout", "2", "--seed", "1", "--json"]
    started = time.monotonic()
    rc = cli.main(argv)
    assert rc == 1
    assert time.monotonic() - started > 0.5  # it kept trying, it did not exit at the first refusal
    lines = capsys.readouterr().out.splitlines()  # the refusals' warnings come first
    out = json.loads("\n".join(lines[lines.index("{") :]))
    assert out["ok"] is False and out["races"] == 0
    assert out["placement_errors"]["connect_ClientConnectorError"] >= 2


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


class RefusingNode:
    """A node front on 127.0.0.1 that answers ``POST /admin/races`` with 503 ``draining`` its
    first ``refusals`` times (every time when there is no ``upstream``), then passes the
    request to the real node ``upstream``. Records when each request came."""

    def __init__(self, refusals: int, upstream: str | None = None) -> None:
        self.refusals = refusals
        self.upstream = upstream
        self.arrivals: list[float] = []
        self.port = free_port()
        self.runner = web.AppRunner(self._app(), handle_signals=False)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/admin/races", self._create)
        return app

    async def _create(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.monotonic())
        if self.upstream is None or len(self.arrivals) <= self.refusals:
            return web.json_response({"error": "draining", "reason": "no new races"}, status=503)
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"{self.upstream}/admin/races", data=await request.read(), headers=request.headers
            )
            return web.Response(body=await resp.read(), status=resp.status, content_type="application/json")

    async def __aenter__(self) -> "RefusingNode":
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


FAST_BACKOFF = BackoffSettings(base_s=0.1, cap_s=0.4, jitter=0.0)
TINY_TEXT = "Foxes nap in the sun."  # a race of about two seconds at 150 wpm


async def test_a_draining_node_is_asked_again_with_growing_delays_until_it_takes_races(
    sim_node: SimNode,
) -> None:
    async with RefusingNode(refusals=4, upstream=sim_node.admin_url) as front:
        summary = await run_bots(
            front.http_url, ADMIN_TOKEN, 2, "custom", random.Random(3), 20,
            custom_text=TINY_TEXT, mean_wpm=150, sd_wpm=5, backoff=FAST_BACKOFF,
        )  # fmt: skip
    assert summary.ok, summary.failures
    assert (summary.races, summary.finished) == (1, 2)
    assert summary.placement_errors == {"503_draining": 4}
    gaps = [b - a for a, b in zip(front.arrivals, front.arrivals[1:], strict=False)]
    assert len(gaps) == 4
    for gap, delay in zip(gaps, [0.1, 0.2, 0.4, 0.4], strict=True):
        assert delay <= gap < delay + 0.25, gaps  # capped at 0.4 s
    assert gaps[0] < gaps[1] < gaps[2]
    assert "503_draining=4 (retried)" in format_summary(summary)


async def test_races_go_to_another_node_while_one_drains(sim_node: SimNode) -> None:
    async with RefusingNode(refusals=10**6) as draining:
        summary = await run_bots(
            [draining.http_url, sim_node.admin_url], ADMIN_TOKEN, 4, "custom", random.Random(4), 20,
            seats_per_race=2, custom_text=TINY_TEXT, mean_wpm=150, sd_wpm=5, backoff=FAST_BACKOFF,
        )  # fmt: skip
    assert summary.ok, summary.failures
    assert (summary.races, summary.finished) == (2, 4)
    # The first race was refused once and went to the other node, which then kept the second.
    assert summary.placement_errors == {"503_draining": 1}
    assert len(draining.arrivals) == 1


async def test_a_node_that_never_takes_races_fails_the_run_at_the_deadline_not_before() -> None:
    async with RefusingNode(refusals=10**6) as draining:
        started = time.monotonic()
        summary = await run_bots(
            draining.http_url, ADMIN_TOKEN, 3, "quick", random.Random(5), 1.5,
            seats_per_race=2, backoff=FAST_BACKOFF,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert 1.0 < elapsed < 2.0
    assert not summary.ok and summary.races == 0
    assert summary.unexpected == ["bot-1", "bot-2", "bot-3"]
    assert all("no race created before the deadline" in f for f in summary.failures.values())
    assert summary.placement_errors["503_draining"] == len(draining.arrivals) >= 4


async def test_a_refusal_that_cannot_pass_ends_the_run_at_once(sim_node: SimNode) -> None:
    with pytest.raises(AdminError) as exc:
        await run_bots(sim_node.admin_url, "wrong-token", 1, "quick", random.Random(1), 10)
    assert exc.value.status == 401 and not exc.value.retryable
