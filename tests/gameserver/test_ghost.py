"""Ghosts: a stored keystroke log replayed on the race clock (pure: explicit clocks, no I/O)."""

import json
import random

import pytest

from arena.ids import NodeId, PlayerId, RaceId
from arena.protocol import Finish, PlayerStatus, RaceState, RaceType
from gameserver.checkpoint import decode_definition, definition_of, encode_definition, rebuild
from gameserver.fairplay import FairPlayLimits
from gameserver.ghost import MAX_GHOST_KEYS, MAX_GHOSTS, GhostError, GhostFeed, parse_ghosts
from gameserver.journal import Journal
from gameserver.passages import Passage, PassageKind
from gameserver.race import Race
from gameserver.scoring import ScoringLimits
from gameserver.settings import RaceSettings

TEXT = "the quick brown fox jumps over the lazy dog"
T0 = 1_000_000
SETTINGS = RaceSettings(countdown_s=3, wait_timeout_s=10, grace_s=15, quick_limit_s=60)
LIMIT_MS = 60_000


def ghost_def(name: str = "past ada", every_ms: int = 100, keys: str = TEXT) -> dict[str, object]:
    return {
        "name": name,
        "keys": keys,
        "key_times": [every_ms * (i + 1) for i in range(len(keys))],
        "race_id": "rold",
        "player_id": "pada",
    }


def make_race(ghosts: list[dict[str, object]], seats: int = 1) -> Race:
    return Race(
        race_id=RaceId("r1"),
        node_id=NodeId("n1"),
        race_type=RaceType.QUICK,
        passage=Passage(id="t1", kind=PassageKind.QUICK, text=TEXT, source="test"),
        seats={PlayerId(f"p{i}") for i in range(1, seats + 1)},
        now=T0,
        settings=SETTINGS,
        scoring=ScoringLimits(),
        fairplay=FairPlayLimits(),
        ghosts=tuple(parse_ghosts(ghosts, limit_ms=LIMIT_MS)),
    )


def started(race: Race) -> int:
    """Seat p1 (the ghost takes no seat, so the countdown begins) and run to the start."""
    race.join(PlayerId("p1"), "bob", T0)
    assert race.state is RaceState.COUNTDOWN
    assert race.start_at is not None
    race.advance(race.start_at)
    assert race.state is RaceState.RUNNING
    return race.start_at


def type_text(race: Race, start: int, every_ms: int) -> None:
    """p1 types the passage like a person (irregular gaps, ``every_ms`` on average) in one batch."""
    rng, times, t = random.Random(every_ms), [], 0
    for _ in TEXT:
        t += max(20, int(rng.gauss(every_ms, every_ms * 0.35)))
        times.append(t)
    race.apply_input(race.racers[PlayerId("p1")], 1, TEXT, times, start + times[-1] + 20)


def test_the_ghost_types_its_log_on_the_race_clock_and_is_marked_in_the_roster() -> None:
    race = make_race([ghost_def(every_ms=100)])
    start = started(race)
    ghost = race.racers[PlayerId("ghost-1")]
    assert ghost.ghost and ghost.connected
    race.dirty = False
    race.advance(start + 1_050)  # ten keys are due
    assert ghost.typing.position == 10
    assert race.dirty  # everyone gets a frame with the ghost's progress
    assert race.take_changes() is None  # news for every player, not one's own typing
    rows = {row[0]: row for row in race.progress_rows(start + 1_050)}
    assert rows["ghost-1"][1] == 10
    infos = {p.id: p for p in race.player_infos(start + 1_050)}
    assert infos["ghost-1"].ghost and not infos["p1"].ghost
    marks = {row[0]: row[7] for row in race.roster_rows(start)}  # the mirror's rows carry the mark
    assert marks == {"p1": False, "ghost-1": True}


def test_the_ghost_finishes_at_its_logs_time_without_fair_play_and_is_never_in_the_record() -> None:
    race = make_race([ghost_def(every_ms=100)])
    start = started(race)
    race.advance(start + len(TEXT) * 100)
    ghost = race.racers[PlayerId("ghost-1")]
    assert ghost.status is PlayerStatus.FINISHED
    assert ghost.finish_elapsed_ms == len(TEXT) * 100
    assert not ghost.flags
    finish = [m for m in race.outgoing if isinstance(m, Finish) and m.player_id == "ghost-1"]
    assert finish and finish[0].place == 1
    assert race.state is RaceState.RUNNING  # the player has not finished: the race goes on
    type_text(race, start, 150)  # slower than the ghost
    race.advance(start + len(TEXT) * 300)
    assert race.state is RaceState.FINISHED
    shown = {r.player_id: r for r in race.result_rows()}
    assert shown["ghost-1"].ghost and shown["ghost-1"].place == 1
    assert shown["p1"].place == 2 and not shown["p1"].ghost
    record = race.match_record()
    assert [p.player_id for p in record.participants] == ["p1"]
    assert record.participants[0].place == 1  # placed among the players only


def test_the_players_end_the_race_and_a_slower_ghost_is_shown_unfinished() -> None:
    race = make_race([ghost_def(every_ms=400)])
    start = started(race)
    type_text(race, start, 100)
    race.advance(start + len(TEXT) * 160)
    assert race.state is RaceState.FINISHED
    ghost = race.racers[PlayerId("ghost-1")]
    assert ghost.status is PlayerStatus.DNF and not ghost.flags
    assert 0 < ghost.typing.position < len(TEXT)
    assert race.result_rows()[0].player_id == "p1"


def test_ghosts_take_no_seat_and_a_race_of_ghosts_alone_is_never_run() -> None:
    race = make_race([ghost_def(), ghost_def("b")], seats=2)
    race.join(PlayerId("p1"), "bob", T0)
    assert race.state is RaceState.WAITING  # p2's seat is still free
    empty = make_race([ghost_def()], seats=1)
    empty.advance(T0 + 10_000)
    assert empty.state is RaceState.ABORTED and empty.end_reason == "nobody joined"


def test_the_instant_flush_does_not_wait_for_a_ghost() -> None:
    race = make_race([ghost_def(every_ms=100)])
    start = started(race)
    race.take_changes()
    racer = race.racers[PlayerId("p1")]
    race.apply_input(racer, 1, "th", [100, 200], start + 220)
    assert race.everyone_typed()


def test_the_checkpoint_keeps_the_ghosts_and_the_rebuilt_race_has_them() -> None:
    race = make_race([ghost_def(every_ms=100)])
    race.journal = Journal()
    definition = encode_definition(definition_of(race, "local"))
    assert decode_definition(definition).ghosts == tuple(f.log for f in race.ghosts.values())
    start = started(race)
    race.advance(start + 2_000)
    race.apply_input(race.racers[PlayerId("p1")], 1, "the", [100, 200, 300], start + 2_000)
    journal = [item for item, _ in race.journal.items()]
    rebuilt = rebuild([definition, *journal], SETTINGS, ScoringLimits(), FairPlayLimits())
    ghost = rebuilt.racers[PlayerId("ghost-1")]
    assert ghost.ghost and ghost.connected  # a ghost has no socket to lose
    assert ghost.typing.position == race.racers[PlayerId("ghost-1")].typing.position == 20
    rebuilt.abort(start + 3_000, "node lost")
    assert [p.player_id for p in rebuilt.match_record().participants] == ["p1"]


def test_a_definition_without_ghosts_is_written_as_before() -> None:
    race = make_race([])
    encoded = encode_definition(definition_of(race, "local"))
    assert len(json.loads(encoded)) == 11
    assert decode_definition(encoded).ghosts == ()


@pytest.mark.parametrize(
    ("ghosts", "wanted"),
    [
        ("x", "a list"),
        ([ghost_def()] * (MAX_GHOSTS + 1), "a list of at most"),
        (["x"], "must be an object"),
        ([{**ghost_def(), "name": ""}], "name"),
        ([{**ghost_def(), "name": 5}], "name"),
        ([{**ghost_def(), "race_id": "r" * 65}], "race_id"),
        ([{**ghost_def(), "keys": ""}], "keys"),
        ([{**ghost_def(), "keys": "a" * (MAX_GHOST_KEYS + 1)}], "keys"),
        ([{**ghost_def(), "key_times": [1, 2]}], "one time per key"),
        ([{**ghost_def(keys="ab"), "key_times": [200, 100]}], "non-decreasing"),
        ([{**ghost_def(keys="ab"), "key_times": [-1, 100]}], "non-decreasing"),
        ([{**ghost_def(keys="ab"), "key_times": [1, LIMIT_MS + 1]}], "non-decreasing"),
        ([{**ghost_def(keys="ab"), "key_times": [1, 2.5]}], "non-decreasing"),
        ([{**ghost_def(keys="ab"), "key_times": [1, True]}], "non-decreasing"),
    ],
)
def test_every_field_of_a_ghost_is_range_checked(ghosts: object, wanted: str) -> None:
    with pytest.raises(GhostError, match=wanted):
        parse_ghosts(ghosts, limit_ms=LIMIT_MS)


def test_the_feed_gives_each_key_once_when_its_time_comes() -> None:
    (log,) = parse_ghosts([ghost_def(keys="abc", every_ms=100)], limit_ms=LIMIT_MS)
    feed = GhostFeed(log)
    assert feed.due(99) is None
    assert feed.due(200) == ("ab", [100, 200])
    assert feed.due(200) is None
    assert feed.due(10_000) == ("c", [300])
    assert feed.exhausted


def test_a_daily_attempt_names_its_day_in_the_checkpoint_and_the_record() -> None:
    race = Race(
        race_id=RaceId("r2"),
        node_id=NodeId("n1"),
        race_type=RaceType.QUICK,
        passage=Passage(id="t1", kind=PassageKind.QUICK, text=TEXT, source="test"),
        seats={PlayerId("p1")},
        now=T0,
        settings=SETTINGS,
        scoring=ScoringLimits(),
        fairplay=FairPlayLimits(),
        daily="2026-12-06",
    )
    race.journal = Journal()
    definition = encode_definition(definition_of(race, "local"))
    assert decode_definition(definition).daily == "2026-12-06"
    start = started(race)
    journal = [item for item, _ in race.journal.items()]
    rebuilt = rebuild([definition, *journal], SETTINGS, ScoringLimits(), FairPlayLimits())
    rebuilt.abort(start + 1_000, "node lost")
    assert rebuilt.match_record().daily == "2026-12-06"
    race.abort(start + 1_000, "test")
    assert race.match_record().daily == "2026-12-06"
