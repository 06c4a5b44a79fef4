"""Round trips come from the server's own pings: forged, unsolicited, repeated or late pongs count
for nothing, and the compensation they buy is capped."""

import asyncio

import pytest

from arena.protocol import Error, ErrorCode, Ping, Pong, Start
from gameserver.roundtrip import RoundTripLimits, RoundTrips
from tests.conftest import RunningNode
from tests.gameserver.test_race_flow import CUSTOM, seat


def test_only_an_outstanding_ping_is_answered_once() -> None:
    trips = RoundTrips()
    assert not trips.answer(1_000, 1_100)  # unsolicited
    trips.expect(1_000)
    assert not trips.answer(999, 1_100)  # a forged echo
    assert trips.answer(1_000, 1_080)
    assert not trips.answer(1_000, 1_090)  # the same ping again
    assert trips.estimate_ms == 80.0 and trips.refused == 3


def test_two_pings_in_the_same_millisecond_are_two_answers() -> None:
    """A player seated in the millisecond the room pings everyone gets two pings with the same
    ``sent`` and answers both: an honest client (a soak had 5 of 17,791 refused so, at join)."""
    trips = RoundTrips()
    trips.expect(1_000)  # the seat's ping
    trips.expect(1_000)  # the room's, same instant
    assert trips.answer(1_000, 1_040) and trips.answer(1_000, 1_041)
    assert not trips.answer(1_000, 1_042)  # a third answer is one too many
    assert trips.refused == 1


def test_the_estimate_is_the_fastest_recent_answer_and_capped() -> None:
    trips = RoundTrips(RoundTripLimits(max_ms=300))
    for sent, rtt in ((0, 120), (3_000, 900), (6_000, 2_500)):  # answering late cannot raise it
        trips.expect(sent)
        assert trips.answer(sent, sent + rtt)
    assert trips.estimate_ms == 120.0
    capped = RoundTrips(RoundTripLimits(max_ms=300))
    capped.expect(0)
    capped.answer(0, 5_000)
    assert capped.estimate_ms == 300.0  # however slow, at most max_ms / 2 off a finish


def test_late_and_future_answers_are_refused() -> None:
    trips = RoundTrips(RoundTripLimits(answer_within_ms=2_000))
    trips.expect(10_000)
    assert not trips.answer(10_000, 12_001)
    assert not trips.answer(10_000, 9_999)  # answered before it was sent
    assert trips.estimate_ms is None


def test_outstanding_pings_are_bounded() -> None:
    trips = RoundTrips()
    for sent in range(0, 100_000, 1_000):
        trips.expect(sent)
    assert not trips.answer(0, 99_500)  # long forgotten
    assert trips.answer(99_000, 99_050)


def test_limits_are_bounded() -> None:
    with pytest.raises(ValueError):
        RoundTripLimits(max_ms=-1)
    with pytest.raises(ValueError):
        RoundTripLimits(answer_within_ms=10)


async def test_forged_pongs_buy_no_compensation_and_count_as_violations(node: RunningNode) -> None:
    race = await node.create_race(["mallory", "ada"], race_type="custom", custom_text=CUSTOM)
    (mallory, _), (ada, _) = [await seat(node, s) for s in race["seats"]]
    first = await mallory.recv_until(Ping)
    assert isinstance(first, Ping)
    racer = node.node.room(race["race_id"]).race.racers[race["seats"][0]["player_id"]]  # type: ignore[union-attr]
    for echo in (first.sent - 5_000, first.sent - 60_000, 0):  # an "old" ping: a huge round trip
        await mallory.send(Pong(echo=echo, time=echo))
        err = await mallory.recv_until(Error)
        assert isinstance(err, Error) and err.code == ErrorCode.BAD_MESSAGE and "no ping" in err.reason
    assert racer.rtt_ms is None
    await mallory.send(Pong(echo=first.sent, time=first.sent))  # the real one counts
    await asyncio.sleep(0.1)
    assert racer.rtt_ms is not None and racer.rtt_ms < 1_000
    await mallory.send(Pong(echo=first.sent, time=first.sent))  # but only once
    assert (await mallory.recv_until(Error)).code == ErrorCode.BAD_MESSAGE  # type: ignore[attr-defined]
    assert isinstance(await ada.recv_until(Start, timeout=10), Start)
    await mallory.close()
    await ada.close()
