"""The race lifecycle and the server's judgement, driven with explicit clocks (no I/O)."""

import random

import pytest

from arena.ids import NodeId, PlayerId, RaceId
from arena.protocol import Countdown, Finish, PlayerStatus, RaceState, RaceType, Roster, Start
from gameserver.fairplay import FairPlayLimits, Flag
from gameserver.passages import Passage
from gameserver.race import InputOutcome, InvalidTransition, Race, SeatError
from gameserver.scoring import ScoringLimits
from gameserver.settings import RaceSettings

TEXT = "the quick brown fox jumps over the lazy dog and runs far away"
T0 = 1_000_000
SETTINGS = RaceSettings(countdown_s=3, wait_timeout_s=10, grace_s=15, quick_limit_s=60)


def make_race(seats: int = 2, settings: RaceSettings = SETTINGS) -> Race:
    passage = Passage(id="t1", kind="quick", text=TEXT, source="test")
    return Race(
        race_id=RaceId("r1"),
        node_id=NodeId("n1"),
        race_type=RaceType.QUICK,
        passage=passage,
        seats={PlayerId(f"p{i}") for i in range(1, seats + 1)},
        now=T0,
        settings=settings,
        scoring=ScoringLimits(),
        fairplay=FairPlayLimits(),
    )


def started_race(seats: int = 2) -> Race:
    race = make_race(seats)
    for i in range(1, seats + 1):
        race.join(PlayerId(f"p{i}"), f"player{i}", T0)
    race.advance(T0 + 3000)
    assert race.state is RaceState.RUNNING
    return race


def type_all(race: Race, pid: str, start_ms: int, interval_ms: int, seq: int = 1) -> InputOutcome:
    """Type the passage perfectly, one key per interval, in one batch arriving at the last key."""
    racer = race.racers[PlayerId(pid)]
    rng = random.Random(pid)
    times, t = [], start_ms
    for _ in TEXT:
        t += max(20, int(rng.gauss(interval_ms, interval_ms * 0.35)))
        times.append(t)
    assert race.start_at is not None
    return race.apply_input(racer, seq, TEXT, times, race.start_at + times[-1] + 20)


def test_countdown_begins_when_every_seat_is_taken() -> None:
    race = make_race(2)
    race.join(PlayerId("p1"), "ada", T0)
    assert race.state is RaceState.WAITING
    race.join(PlayerId("p2"), "bob", T0 + 100)
    assert race.state is RaceState.COUNTDOWN
    assert race.start_at == T0 + 100 + 3000
    assert any(isinstance(m, Countdown) for m in race.outgoing)
    race.advance(T0 + 3099)
    assert race.state is RaceState.COUNTDOWN
    race.advance(T0 + 3100)
    assert race.state is RaceState.RUNNING
    assert any(isinstance(m, Start) for m in race.outgoing)


def test_wait_timeout_starts_with_whoever_came_or_aborts_empty_race() -> None:
    race = make_race(3)
    race.join(PlayerId("p1"), "ada", T0)
    race.advance(T0 + 10_000)
    assert race.state is RaceState.COUNTDOWN
    empty = make_race(3)
    empty.advance(T0 + 10_000)
    assert empty.state is RaceState.ABORTED
    assert empty.end_reason == "nobody joined"


def test_invalid_transitions_raise() -> None:
    race = make_race()
    with pytest.raises(InvalidTransition):
        race.transition(RaceState.RUNNING)
    with pytest.raises(InvalidTransition):
        race.transition(RaceState.FINISHED)
    race.abort(T0, "test")
    with pytest.raises(InvalidTransition):
        race.transition(RaceState.COUNTDOWN)


def test_seats_are_reserved_and_limited() -> None:
    race = make_race(2)
    with pytest.raises(SeatError) as info:
        race.join(PlayerId("stranger"), "eve", T0)
    assert info.value.code == "race_full"
    race.join(PlayerId("p1"), "ada", T0)
    race.join(PlayerId("p2"), "bob", T0)
    race.advance(T0 + 3000)
    racer, resumed = race.join(PlayerId("p1"), "ada", T0 + 3001)
    assert resumed and racer.id == "p1"


def test_finish_ranking_and_places() -> None:
    race = started_race(2)
    assert type_all(race, "p2", 0, 150) is InputOutcome.FINISHED
    assert type_all(race, "p1", 0, 200) is InputOutcome.FINISHED
    finishes = [m for m in race.outgoing if isinstance(m, Finish)]
    assert [(f.player_id, f.place) for f in finishes] == [("p2", 1), ("p1", 2)]
    race.advance(race.start_at + 10_000)  # type: ignore[operator]
    assert race.state is RaceState.FINISHED
    rows = race.result_rows()
    assert [(r.player_id, r.place, r.status) for r in rows] == [("p2", 1, "finished"), ("p1", 2, "finished")]
    assert rows[0].wpm > rows[1].wpm > 0
    assert rows[0].accuracy == 100.0


def test_duplicate_sequence_numbers_are_ignored() -> None:
    race = started_race(2)
    racer = race.racers[PlayerId("p1")]
    assert race.apply_input(racer, 1, "the", [100, 200, 300], race.start_at + 400) is InputOutcome.APPLIED  # type: ignore[operator]
    assert race.apply_input(racer, 1, "the", [100, 200, 300], race.start_at + 500) is InputOutcome.DUPLICATE  # type: ignore[operator]
    assert racer.typing.position == 3


def test_finish_time_is_judged_by_the_server() -> None:
    """A client claiming an early finish time gets at most the allowed hold before arrival."""
    race = started_race(2)
    racer = race.racers[PlayerId("p1")]
    racer.round_trips.expect(5_000)
    assert racer.round_trips.answer(5_000, 5_100)  # a 100 ms round trip of the server's own ping
    times = list(range(100, 100 + 200 * len(TEXT), 200))
    arrival = race.start_at + 20_000  # type: ignore[operator]
    race.apply_input(racer, 1, TEXT, times, arrival)
    # claimed last key ~3.7 s, arrived at 20 s less 50 ms one-way: held back, clamped to the
    # arrival less the send interval (500 ms) and the one-way delay (50 ms)
    assert racer.finish_elapsed_ms == 20_000 - 50 - (500 + 50)


def test_time_limit_makes_the_rest_dnf() -> None:
    race = started_race(2)
    type_all(race, "p1", 0, 150)
    racer2 = race.racers[PlayerId("p2")]
    race.apply_input(racer2, 1, "the qu", [100, 300, 500, 700, 900, 1100], race.start_at + 1200)  # type: ignore[operator]
    race.advance(race.ends_at)  # type: ignore[arg-type]
    assert race.state is RaceState.FINISHED
    assert race.end_reason == "time limit reached"
    rows = race.result_rows()
    assert [(r.player_id, r.status, r.place) for r in rows] == [("p1", "finished", 1), ("p2", "dnf", None)]
    assert rows[1].position == 6


def test_grace_window_then_dnf() -> None:
    race = started_race(2)
    p1 = race.racers[PlayerId("p1")]
    race.disconnect(p1, T0 + 4000)
    race.advance(T0 + 4000 + 14_999)
    assert p1.status is PlayerStatus.RACING
    race.join(PlayerId("p1"), "ada", T0 + 4000 + 14_999)  # back in time
    race.disconnect(p1, T0 + 20_000)
    race.advance(T0 + 35_000)
    assert p1.status is PlayerStatus.DNF


def test_leave_is_dnf_and_the_race_ends_when_everyone_is_done() -> None:
    race = started_race(2)
    type_all(race, "p1", 0, 150)
    race.leave(race.racers[PlayerId("p2")], race.start_at + 5000)  # type: ignore[operator]
    assert race.state is RaceState.FINISHED
    record = race.match_record()
    assert record.state == "finished"
    assert [(p.player_id, p.status) for p in record.participants] == [("p1", "finished"), ("p2", "dnf")]
    assert record.participants[0].keys == TEXT
    assert len(record.participants[0].key_times) == len(TEXT)


def test_flagged_finisher_is_kept_but_never_ranked() -> None:
    race = started_race(2)
    racer = race.racers[PlayerId("p1")]
    # every key exactly 30 ms apart: 400 wpm and robot-regular
    times = [30 * (i + 1) for i in range(len(TEXT))]
    race.apply_input(racer, 1, TEXT, times, race.start_at + times[-1] + 10)  # type: ignore[operator]
    assert Flag.TOO_FAST in racer.flags
    type_all(race, "p2", 0, 200)
    rows = race.result_rows()
    assert [(r.player_id, r.place) for r in rows] == [("p2", 1), ("p1", None)]
    assert "too_fast" in rows[1].flags
    race.advance(race.start_at + 60_000)  # type: ignore[operator]
    assert race.match_record().participants[1].valid is False


def test_keys_from_the_future_are_flagged_bad_timing() -> None:
    race = started_race(2)
    racer = race.racers[PlayerId("p1")]
    race.apply_input(racer, 1, "th", [100, 9000], race.start_at + 200)  # type: ignore[operator]
    assert Flag.BAD_TIMING in racer.flags


def test_typed_text_that_does_not_match_never_advances() -> None:
    race = started_race(2)
    racer = race.racers[PlayerId("p1")]
    race.apply_input(racer, 1, "xxxxxxxx", [100 * i for i in range(1, 9)], race.start_at + 900)  # type: ignore[operator]
    assert racer.typing.position == 0
    assert racer.status is PlayerStatus.RACING


def test_a_players_own_typing_alone_is_not_news_to_them() -> None:
    race = started_race(2)
    assert race.take_changes() is None  # the start changed the picture for everyone
    p1, p2 = race.racers[PlayerId("p1")], race.racers[PlayerId("p2")]
    start = race.start_at or 0
    race.apply_input(p1, 1, "th", [100, 200], start + 300)
    assert race.dirty and race.take_changes() == "p1"
    assert not race.dirty
    race.apply_input(p1, 2, "e", [300], start + 400)
    race.apply_input(p2, 1, "t", [350], start + 400)
    assert race.take_changes() is None
    race.apply_input(p2, 2, "x", [500], start + 600)  # a typo moves nobody: nothing to send
    assert not race.dirty


def test_a_roster_sent_mid_race_carries_live_wpm() -> None:
    race = started_race(2)
    assert race.start_at is not None
    race.apply_input(
        race.racers[PlayerId("p1")], 1, TEXT[:20], [200 * (i + 1) for i in range(20)], race.start_at + 4100
    )
    race.outgoing.clear()
    race.disconnect(race.racers[PlayerId("p2")], race.start_at + 5000)
    (roster,) = race.outgoing
    assert isinstance(roster, Roster)
    wpm = {p.id: p.wpm for p in roster.players}
    assert wpm[PlayerId("p1")] > 0 and wpm[PlayerId("p2")] == 0


def test_a_frame_need_not_wait_once_every_typist_has_sent() -> None:
    race = started_race(4)
    race.take_changes()
    p1, p2, p3, p4 = (race.racers[PlayerId(f"p{i}")] for i in range(1, 5))
    start = race.start_at or 0
    race.apply_input(p1, 1, "t", [100], start + 300)
    race.apply_input(p2, 1, "t", [110], start + 301)
    assert not race.everyone_typed()  # p3 and p4 are still racing and may send in this instant
    race.leave(p4, start + 302)  # a racer who left is not waited for
    race.disconnect(p3, start + 303)  # nor one whose socket went
    assert race.everyone_typed()
    race.take_changes()
    assert not race.everyone_typed()  # nothing new since the last frame
    race.join(PlayerId("p3"), "player3", start + 400)
    race.take_changes()
    race.apply_input(p1, 2, "h", [450], start + 500)
    race.apply_input(p3, 1, "t", [460], start + 501)
    assert not race.everyone_typed()  # p2 is typing and back in the count
    race.apply_input(p2, 2, "h", [470], start + 502)
    assert race.everyone_typed()


def test_a_stopping_node_leaves_unfinished_logs_unjudged_but_keeps_arrival_evidence() -> None:
    """A stop aborts races with ``judge_logs=False``: an aborted race is never rated, ranked or a
    ghost, so the whole-log checks (1-3 ms a long log) are skipped; a plain abort still runs them."""
    half = TEXT[:40]
    times = [150 * (i + 1) for i in range(len(half))]  # a metronome: robotic from 12 intervals
    verdicts = {}
    for judge in (True, False):
        race = started_race(2)
        racer = race.racers[PlayerId("p1")]
        race.apply_input(racer, 1, half, times, race.start_at + times[-1] + 20)  # type: ignore[operator]
        assert not racer.flags  # nothing judged mid-race
        race.abort(race.start_at + times[-1] + 100, "node shutting down", judge_logs=judge)  # type: ignore[operator]
        assert racer.status is PlayerStatus.DNF
        verdicts[judge] = set(racer.flags)
    assert Flag.ROBOTIC in verdicts[True]
    assert verdicts[False] == set()
