"""Bracket logic on hand-made tournaments: seeding, byes, advancement, ties, final ranking."""

import random

import pytest

from tournaments.bracket import (
    Advancement,
    BracketRules,
    Entrant,
    RaceEntry,
    RoundOutcome,
    advancers,
    deal_heats,
    deal_sizes,
    final_ranking,
    heat_standings,
    prize_for,
    round_sizes,
    seed_order,
)


def entrants(n: int) -> list[Entrant]:
    return [Entrant(f"p{i:02d}", f"player {i}", 2000.0 - 10 * i) for i in range(n)]


def test_twenty_five_players_heats_of_five_top_two() -> None:
    rules = BracketRules(heat_size=5, advance=2)
    assert round_sizes(25, rules) == [25, 10, 4]  # three rounds, the last one the final
    heats = deal_heats(seed_order(entrants(25)), 5)
    assert [len(h) for h in heats] == [5] * 5
    # snake: the top five seeds are spread over the five heats
    assert sorted(h[0].player_id for h in heats) == [f"p{i:02d}" for i in range(5)]
    assert [h[1].player_id for h in heats] == ["p09", "p08", "p07", "p06", "p05"]


def test_balanced_heats_and_byes() -> None:
    assert deal_sizes(6, 5) == [3, 3]
    assert deal_sizes(11, 5) == [4, 4, 3]
    assert round_sizes(6, BracketRules(heat_size=5, advance=2)) == [6, 4]
    assert round_sizes(3, BracketRules(heat_size=5, advance=2)) == [3]  # straight to the final
    # a heat of one is a bye: its player advances without racing
    seeds = {"solo": 1}
    standings = heat_standings([Entrant("solo", "s", 1500)], [], seeds, 5)
    assert advancers(standings, 2) == ["solo"]


def test_rules_are_validated() -> None:
    with pytest.raises(ValueError):
        BracketRules(heat_size=5, advance=5)
    with pytest.raises(ValueError):
        BracketRules(rule=Advancement.TOP_K, races_per_round=3)


def test_heat_standings_tie_breaks() -> None:
    members = entrants(5)
    seeds = {e.player_id: i + 1 for i, e in enumerate(members)}
    race = [
        RaceEntry("p03", 1, 90.0),
        RaceEntry("p01", 2, 85.0),
        RaceEntry("p00", None, 0.0),  # DNF
        RaceEntry("p04", 3, 70.0, valid=False),  # flagged: scores like a DNF
        # p02 never showed: DNF
    ]
    order = [s.player_id for s in heat_standings(members, [race], seeds, 5)]
    # finishers by place; then the point-less by seed (p00 seed 1, p02 seed 3, p04 seed 5)
    assert order == ["p03", "p01", "p00", "p02", "p04"]


def test_points_rule_over_several_races() -> None:
    members = entrants(3)
    seeds = {e.player_id: i + 1 for i, e in enumerate(members)}
    races = [
        [RaceEntry("p00", 1, 80), RaceEntry("p01", 2, 79), RaceEntry("p02", 3, 60)],
        [RaceEntry("p01", 1, 82), RaceEntry("p02", 2, 70), RaceEntry("p00", 3, 50)],
        [RaceEntry("p02", 1, 90), RaceEntry("p01", 2, 81), RaceEntry("p00", None, 0)],
    ]
    standings = heat_standings(members, races, seeds, 5)
    # points (5 for a win, 4 second, 3 third): p01 = 4+5+4 = 13, p02 = 3+4+5 = 12, p00 = 5+3+0 = 8
    assert [(s.player_id, s.points) for s in standings] == [("p01", 13), ("p02", 12), ("p00", 8)]


def test_equal_points_fall_to_best_place_then_wpm() -> None:
    members = entrants(2)
    seeds = {"p00": 1, "p01": 2}
    races = [
        [RaceEntry("p00", 1, 50), RaceEntry("p01", 2, 60)],
        [RaceEntry("p01", 1, 70), RaceEntry("p00", 2, 40)],
    ]
    standings = heat_standings(members, races, seeds, 5)
    assert [s.player_id for s in standings] == ["p01", "p00"]  # same points and best place: wpm 130 > 90


def play_tournament(n: int, rules: BracketRules, rng: random.Random) -> tuple[list[RoundOutcome], list[str]]:
    """Play a whole bracket with random race results; returns the rounds and the final ranking."""
    pool = seed_order(entrants(n))
    seeds = {e.player_id: i + 1 for i, e in enumerate(pool)}
    rounds: list[RoundOutcome] = []
    for _ in round_sizes(n, rules):
        outcome = RoundOutcome()
        next_pool: list[Entrant] = []
        for heat in deal_heats(pool, rules.heat_size):
            order = heat[:]
            rng.shuffle(order)
            race = [RaceEntry(e.player_id, i + 1, 100.0 - i) for i, e in enumerate(order)]
            standings = heat_standings(heat, [race] if len(heat) > 1 else [], seeds, rules.heat_size)
            outcome.heats.append(standings)
            going = set(advancers(standings, rules.advance))
            next_pool.extend(e for e in heat if e.player_id in going)
        rounds.append(outcome)
        pool = seed_order(next_pool)
    return rounds, final_ranking(rounds)


@pytest.mark.parametrize("n", [2, 5, 6, 7, 11, 25, 26, 64])
def test_final_ranking_is_consistent_with_the_heats(n: int) -> None:
    rules = BracketRules(heat_size=5, advance=2)
    rounds, ranking = play_tournament(n, rules, random.Random(n))
    assert sorted(ranking) == sorted(e.player_id for e in entrants(n))  # everyone, once
    final = [s.player_id for s in rounds[-1].heats[0]]
    assert len(rounds[-1].heats) == 1 and ranking[: len(final)] == final
    # a player knocked out in round r ranks below everyone who reached round r + 1
    reached = [{s.player_id for heat in r.heats for s in heat} for r in rounds]
    for r in range(len(rounds) - 1):
        out = reached[r] - reached[r + 1]
        assert max(ranking.index(p) for p in reached[r + 1]) < min(ranking.index(p) for p in out)


def test_prizes_by_rank() -> None:
    prizes = ["gold", "silver"]
    assert [prize_for(r, prizes) for r in (1, 2, 3)] == ["gold", "silver", None]
