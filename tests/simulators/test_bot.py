"""Bots racing on a real in-process gameserver node over the real protocol."""

import asyncio
import dataclasses
import random
import time
from typing import Any

import pytest

from arena.clock import now_ms
from arena.codec import WireFormat
from arena.protocol import ErrorCode, Input, Message
from simulators.admin import CreatedRace, SeatTokens
from simulators.bot import Bot, BotReport
from simulators.guard import NotLoopbackError
from simulators.typing import TypingProfile
from tests.simulators.conftest import FAST_RACE, SHORT_TEXT, NodeStarter, SimNode

FAST = TypingProfile(wpm=150.0, error_rate=0.02, jitter_cv=0.4, notice_delay_chars=1, pause_chance=0.0)


def make_bot(
    race: CreatedRace,
    seat: SeatTokens,
    seed: int,
    *,
    fmt: WireFormat = WireFormat.MSGPACK,
    drop_after_ms: int | None = None,
    resume_after_ms: int | None = None,
    leave_after_ms: int | None = None,
) -> Bot:
    return Bot(
        race.url,
        seat.player_token,
        seat.ticket,
        FAST,
        random.Random(seed),
        name=seat.name,
        fmt=fmt,
        drop_after_ms=drop_after_ms,
        resume_after_ms=resume_after_ms,
        leave_after_ms=leave_after_ms,
    )


def assert_clean_finish(report: BotReport, race: CreatedRace) -> None:
    assert report.failure is None, report.failure
    assert report.errors == []
    assert report.joined and report.finished
    assert report.finish is not None and report.finish.flags == []
    assert report.results is not None and report.results.race_id == race.race_id
    assert report.my_row is not None
    assert report.my_row.status == "finished" and report.my_row.flags == []
    assert report.my_row.position == len(SHORT_TEXT)
    assert report.close_code == 1000
    assert report.keys_sent == report.keys_planned > 0


def row_of(report: BotReport, player_id: str) -> dict[str, object]:
    assert report.results is not None
    row = next(r for r in report.results.results if r.player_id == player_id)
    return dataclasses.asdict(row)


async def test_two_bots_finish_and_get_results(sim_node: SimNode) -> None:
    race = await sim_node.create_race(["bot-1", "bot-2"])
    bots = [
        make_bot(race, race.seats[0], 1, fmt=WireFormat.MSGPACK),
        make_bot(race, race.seats[1], 2, fmt=WireFormat.JSON),
    ]
    started = time.monotonic()
    reports = await asyncio.gather(*(b.run(timeout_s=15) for b in bots))
    assert time.monotonic() - started < 12
    for report, seat in zip(reports, race.seats, strict=True):
        assert report.player_id == seat.player_id
        assert_clean_finish(report, race)
        assert report.progress_latencies_ms and all(0 <= ms < 1000 for ms in report.progress_latencies_ms)
        assert report.connections == 1
        assert report.clock_offset_ms is not None and abs(report.clock_offset_ms) < 50
        assert report.inputs_sent >= 5  # typed in several batches, not all at once
        assert 100 < report.my_row.wpm < 200  # type: ignore[union-attr]
    assert sorted(r.my_row.place for r in reports) == [1, 2]  # type: ignore[union-attr,type-var]
    assert not [t for t in asyncio.all_tasks() if t.get_name().endswith("-reader")]


async def test_a_dropped_bot_resumes_and_finishes(sim_node: SimNode) -> None:
    race = await sim_node.create_race(["steady", "flaky"])
    steady = make_bot(race, race.seats[0], 1)
    # The first key comes 180-450 ms after the start plus a gap, and keys go out at the race's
    # 250 ms instants: by 1.3 s some have surely been sent (at 0.8 s, one time in six none had).
    flaky = make_bot(race, race.seats[1], 2, drop_after_ms=1300, resume_after_ms=700)
    reports = await asyncio.gather(steady.run(timeout_s=15), flaky.run(timeout_s=15))
    assert_clean_finish(reports[0], race)
    assert_clean_finish(reports[1], race)
    flaky_report = reports[1]
    assert flaky_report.dropped and flaky_report.connections == 2
    resumed = flaky_report.resume_state
    assert resumed is not None and resumed.status == "racing"
    assert resumed.seq >= 1 and resumed.position > 0  # the server kept what was typed


async def test_a_dropped_bot_that_stays_away_is_dnf(start_node: NodeStarter) -> None:
    node = await start_node(race=dataclasses.replace(FAST_RACE, grace_s=1.0))
    race = await node.create_race(["steady", "gone"])
    steady = make_bot(race, race.seats[0], 1)
    gone = make_bot(race, race.seats[1], 2, drop_after_ms=500)
    reports = await asyncio.gather(steady.run(timeout_s=15), gone.run(timeout_s=15))
    assert_clean_finish(reports[0], race)
    gone_report = reports[1]
    assert gone_report.dropped and gone_report.failure is None and gone_report.results is None
    assert row_of(reports[0], race.seats[1].player_id)["status"] == "dnf"


async def test_a_leaving_bot_is_dnf(sim_node: SimNode) -> None:
    race = await sim_node.create_race(["stayer", "quitter"])
    stayer = make_bot(race, race.seats[0], 1)
    quitter = make_bot(race, race.seats[1], 2, leave_after_ms=600)
    reports = await asyncio.gather(stayer.run(timeout_s=15), quitter.run(timeout_s=15))
    assert_clean_finish(reports[0], race)
    left = reports[1]
    assert left.left and left.failure is None and left.errors == [] and left.close_code == 1000
    assert row_of(reports[0], race.seats[1].player_id)["status"] == "dnf"


async def test_a_redirect_is_followed(start_node: NodeStarter) -> None:
    home = await start_node("sim-home")
    elsewhere = await start_node("sim-elsewhere")
    race = await home.create_race(["wanderer"])
    # Connect to the wrong node first: it knows where the race lives (Redis) and redirects.
    bot = Bot(elsewhere.ws_url, race.seats[0].player_token, race.seats[0].ticket, FAST, random.Random(1))
    report = await bot.run(timeout_s=15)
    assert report.redirected_to == home.ws_url
    assert report.connections == 2
    assert_clean_finish(report, race)


async def test_run_returns_by_its_timeout(sim_node: SimNode) -> None:
    race = await sim_node.create_race(["early", "absent"])  # "absent" never comes: no start
    bot = make_bot(race, race.seats[0], 1)
    started = time.monotonic()
    report = await bot.run(timeout_s=1.5)
    assert time.monotonic() - started < 1.6
    assert report.joined and not report.finished and report.results is None
    assert report.failure is not None and "timed out" in report.failure
    assert report.close_code == 1000  # still closed politely
    assert not [t for t in asyncio.all_tasks() if t.get_name().endswith("-reader")]


async def test_a_bad_token_is_reported(sim_node: SimNode) -> None:
    race = await sim_node.create_race(["forger"])
    bot = Bot(race.url, "v1.bogus.token", race.seats[0].ticket, FAST, random.Random(1))
    report = await bot.run(timeout_s=5)
    assert [e.code for e in report.errors] == [ErrorCode.BAD_TOKEN.value]
    assert report.close_code == 4001
    assert report.failure is not None and not report.joined


async def test_an_unreachable_node_is_a_failure_not_an_exception() -> None:
    from ops.services import free_port

    bot = Bot(f"ws://127.0.0.1:{free_port()}/ws", "t", "t", FAST, random.Random(1))
    report = await bot.run(timeout_s=5)
    assert report.failure is not None and "could not connect" in report.failure
    assert report.connections == 0


@pytest.mark.parametrize("url", ["ws://example.com/ws", "ws://10.1.2.3:8100/ws", "ws://192.168.0.1/ws"])
def test_only_loopback_urls_are_allowed(url: str) -> None:
    with pytest.raises(NotLoopbackError):
        Bot(url, "token", "ticket", FAST, random.Random(1))


@pytest.mark.parametrize("url", ["ws://127.0.0.1:8100/ws", "ws://localhost/ws", "ws://[::1]:8100/ws"])
def test_loopback_urls_are_fine(url: str) -> None:
    Bot(url, "token", "ticket", FAST, random.Random(1))


class LossyBot(Bot):
    """Loses every input after ``keep_seq`` on its first connection, like a link dying
    with data still in flight (TCP loses a tail, never a middle)."""

    keep_seq = 3

    async def _send(self, link: Any, msg: Message) -> None:
        if isinstance(msg, Input) and msg.seq > self.keep_seq and self.report.connections == 1:
            return
        await super()._send(link, msg)


async def test_inputs_lost_in_a_drop_are_resent_after_resume(sim_node: SimNode) -> None:
    race = await sim_node.create_race(["lossy"])
    seat = race.seats[0]
    bot = LossyBot(
        race.url,
        seat.player_token,
        seat.ticket,
        FAST,
        random.Random(3),
        drop_after_ms=2000,  # past at least 4 send instants after the first key
        resume_after_ms=300,
    )
    report = await bot.run(timeout_s=15)
    assert report.resume_state is not None and report.resume_state.seq == LossyBot.keep_seq
    assert_clean_finish(report, race)


async def test_a_planner_replaces_the_human_plan(sim_node: SimNode) -> None:
    race = await sim_node.create_race(["paster"])
    seat = race.seats[0]

    def paste(passage: str) -> list[tuple[str, int]]:
        return [(ch, 400 + i) for i, ch in enumerate(passage)]  # 1 ms apart: a paste

    bot = Bot(race.url, seat.player_token, seat.ticket, FAST, random.Random(1), planner=paste)
    report = await bot.run(timeout_s=10)
    assert report.failure is None and report.errors == []
    assert report.inputs_sent <= 2  # all keys were due within one or two ticks
    assert report.my_row is not None and report.my_row.status == "finished"
    assert "paste" in report.my_row.flags and report.my_row.place is None


async def test_bots_on_their_races_instants_get_frames_without_waiting_for_the_window(
    start_node: NodeStarter,
) -> None:
    # A window far longer than the interval: a frame leaves early only once every room-mate has
    # sent since the last one, which bots sending at the race's instants do each time.
    settings = dataclasses.replace(FAST_RACE, progress_window_ms=1500, input_cadence_ms=250)
    node = await start_node(race=settings)
    race = await node.create_race(["left", "right"])
    bots = [make_bot(race, seat, seed) for seed, seat in enumerate(race.seats, start=1)]
    for bot in bots:
        bot.send_interval_ms = 500
    reports = await asyncio.gather(*(b.run(timeout_s=20) for b in bots))
    for bot, report in zip(bots, reports, strict=True):
        assert_clean_finish(report, race)
        assert bot._cadence_every == 250  # the hint from ``joined``
        latencies = sorted(report.progress_latencies_ms)
        assert len(latencies) >= 3
        assert latencies[len(latencies) // 2] < 60, latencies


def test_the_next_send_is_the_races_next_instant() -> None:
    bot = Bot("ws://127.0.0.1:1/ws", "token", "ticket", FAST, random.Random(1), send_interval_ms=500)
    start_at, offset = now_ms() - 12_345, 40
    bot._start_at, bot._cadence_every, bot._cadence_offset = start_at, 250, offset
    for _ in range(3):
        before = time.monotonic()
        at = bot._next_send_time()
        assert 0 < at - before <= 0.5
        instant = now_ms() + (at - time.monotonic()) * 1000  # the server's clock (offset 0 here)
        phase = (instant - start_at - offset) % 500
        assert min(phase, 500 - phase) < 3  # every second instant: a 500 ms sender
    bot._cadence_every = 0  # no hint: one interval from now
    assert abs(bot._next_send_time() - time.monotonic() - 0.5) < 0.01


async def test_a_bot_that_lost_its_node_alternates_the_race_node_and_where_the_race_is_now() -> None:
    """Rejoin order: the race's node, then the lobby's answer (else another node, in turn)."""
    answers: list[str | None] = ["ws://127.0.0.1:2/ws", None, "fail"]

    async def locate() -> str | None:
        answer = answers.pop(0)
        if answer == "fail":
            raise ConnectionError("the lobby is away too")
        return answer

    bot = Bot(
        "ws://127.0.0.1:1/ws",
        "pt",
        "jt",
        FAST,
        random.Random(1),
        reconnect_s=5.0,
        fallback_urls=["ws://127.0.0.1:3/ws", "ws://127.0.0.1:4/ws"],
        locate=locate,
    )
    urls = [await bot._rejoin_url(attempt) for attempt in range(1, 7)]
    assert urls == [
        "ws://127.0.0.1:1/ws",
        "ws://127.0.0.1:2/ws",  # the lobby knew
        "ws://127.0.0.1:1/ws",
        "ws://127.0.0.1:4/ws",  # the lobby did not: a node in turn
        "ws://127.0.0.1:1/ws",
        "ws://127.0.0.1:3/ws",  # the lobby failed: a node in turn
    ]


async def test_a_bot_that_cannot_rejoin_gives_up_after_reconnect_s() -> None:
    bot = Bot("ws://127.0.0.1:1/ws", "pt", "jt", FAST, random.Random(1), reconnect_s=0.5)
    started = time.monotonic()
    report = await bot.run(10.0)
    assert time.monotonic() - started < 5.0
    assert report.failure is not None and report.failure.startswith("could not rejoin within 0.5s")
    assert report.connections == 0 and report.reconnects == 0
