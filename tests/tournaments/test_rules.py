"""The director's rules on top of the bracket (no-shows, settling, standings), states, encoding."""

import pytest

from gameserver.settings import RaceSettings
from tournaments.bracket import Entrant, RoundOutcome, Standing
from tournaments.encoding import decode_heat, heat_fields
from tournaments.model import (
    Heat,
    HeatState,
    InvalidTransition,
    RaceResult,
    Seat,
    TournamentState,
    check_heat_transition,
    check_tournament_transition,
)
from tournaments.rules import decide_heat, heat_deadline_ms, provisional_ranking, race_time_limit_s

MEMBERS = [Entrant(f"p{i}", f"p{i}", 1500.0) for i in range(4)]
SEEDS = {f"p{i}": i + 1 for i in range(4)}


def test_a_no_show_never_advances_even_as_top_seed() -> None:
    race = [RaceResult("p2", 1, 90.0, True), RaceResult("p3", None, 10.0, True)]  # p0, p1 never joined
    outcome = decide_heat(MEMBERS, [race], SEEDS, 4, 2, settled=False)
    assert [s.player_id for s in outcome.standings] == ["p2", "p0", "p1", "p3"]  # DNFs by seed
    assert outcome.no_shows == ["p0", "p1"]
    assert outcome.advancers == ["p2"]  # the second place is not handed to anyone


def test_a_heat_nobody_joined_advances_nobody() -> None:
    outcome = decide_heat(MEMBERS, [[]], SEEDS, 4, 2, settled=False)
    assert outcome.advancers == [] and outcome.no_shows == ["p0", "p1", "p2", "p3"]


def test_a_settled_heat_goes_by_seed_and_blames_nobody() -> None:
    outcome = decide_heat(MEMBERS, [], SEEDS, 4, 2, settled=True)
    assert outcome.advancers == ["p0", "p1"] and outcome.no_shows == []
    bye = decide_heat(MEMBERS[:1], [], SEEDS, 4, 2, settled=True)
    assert bye.advancers == ["p0"]


def test_provisional_standings_put_later_rounds_first() -> None:
    r1 = RoundOutcome(
        heats=[
            [Standing("a", 4, 1, 90, 1), Standing("b", 3, 2, 80, 4), Standing("c", 0, None, 0, 5)],
            [Standing("d", 4, 1, 95, 2), Standing("e", 3, 2, 70, 3), Standing("f", 2, 3, 60, 6)],
        ]
    )
    assert provisional_ranking([r1]) == ["d", "a", "b", "e", "f", "c"]  # by place in heat, then points...
    r2 = RoundOutcome(heats=[[Standing("e", 0, None, 0, 3), Standing("a", 0, None, 0, 1)]])
    assert provisional_ranking([r1, r2])[:2] == ["e", "a"]  # reached the final: above everyone out


def test_heat_deadline_covers_wait_countdown_and_limit() -> None:
    race = RaceSettings(wait_timeout_s=20, countdown_s=5, quick_limit_s=120)
    assert race_time_limit_s("quick", None, race) == 120
    assert race_time_limit_s("custom", 200, race) == 120  # 0.6 s a character
    assert race_time_limit_s("custom", 20, race) == 60  # at least a minute
    assert heat_deadline_ms(1_000, 120, race, 30) == 1_000 + 175_000


def test_transitions() -> None:
    check_heat_transition(HeatState.PLACING, HeatState.PLACING)  # a take-over of an unknown attempt
    check_heat_transition(HeatState.PLACED, HeatState.PENDING)  # next race, or a re-run
    with pytest.raises(InvalidTransition):
        check_heat_transition(HeatState.FINISHED, HeatState.PENDING)
    with pytest.raises(InvalidTransition):
        check_heat_transition(HeatState.PENDING, HeatState.PLACED)  # never without the intent first
    with pytest.raises(InvalidTransition):
        check_tournament_transition(TournamentState.FINISHED, TournamentState.RUNNING)


def test_heat_encoding_round_trips() -> None:
    heat = Heat(
        "t1",
        2,
        3,
        HeatState.PLACED,
        7,
        tuple(MEMBERS),
        race_no=1,
        attempt=2,
        placing_epoch=4,
        race_id="r1",
        node_id="n1",
        url="ws://x/ws",
        seats={"p0": Seat("tok", "tic")},
        placed_at=5,
        deadline_at=9,
        races=((RaceResult("p0", 1, 50.5, True), RaceResult("p1", None, 0.0, False)),),
        race_ids=("r0",),
        present=frozenset({"p0", "p1"}),
        standings=(Standing("p0", 4, 1, 50.5, 1),),
        advancers=("p0",),
        no_shows=("p3",),
        result_lag_ms=12,
    )
    fields = {k: str(v) for k, v in heat_fields(heat).items()} | {"version": "7"}
    assert decode_heat("t1", 2, 3, fields) == heat
    assert decode_heat("t1", 2, 3, {"state": "placed"}) is None  # half-written: absent, not half-read
