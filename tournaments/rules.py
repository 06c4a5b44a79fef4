"""The director's documented rules on top of the bracket: no-shows, settling, standings. Pure.

- **No-show.** A heat member who is in none of the heat's race records never joined: the node
  counted them DNF, and the bracket ranks them like any DNF. A no-show never advances, even
  where the top K would include them; their place is not given to anyone else. A heat where
  nobody showed up therefore advances nobody.
- **Settled heat.** A heat decided without a complete result (a node that died twice, a race
  that never reported, no node able to take it) keeps the races it completed; players are
  ordered by the bracket tie-break (with no race at all, that is the seed) and nobody counts as
  a no-show: the players are not at fault.
- **Standings.** While the tournament runs, the standings are ``final_ranking`` of the rounds
  so far followed by an empty final: players in a later round first, then by their position
  in their heat, points, best place, WPM and seed. When it finishes they are the final ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from arena.protocol import RaceType
from arena.results import MatchRecord
from gameserver.settings import RaceSettings
from tournaments.bracket import (
    Entrant,
    RaceEntry,
    RoundOutcome,
    Standing,
    advancers,
    final_ranking,
    heat_standings,
    prize_for,
)
from tournaments.model import RaceResult


def race_results(record: MatchRecord) -> list[RaceResult]:
    """A heat race's record as the heat keeps it: everyone who joined, in the record's order."""
    return [RaceResult(p.player_id, p.place, float(p.wpm), p.valid) for p in record.participants]


@dataclass(frozen=True, slots=True)
class HeatOutcome:
    standings: list[Standing]
    advancers: list[str]
    no_shows: list[str]


def decide_heat(
    members: Sequence[Entrant],
    races: Sequence[Sequence[RaceResult]],
    seeds: dict[str, int],
    heat_size: int,
    advance: int,
    *,
    settled: bool,
) -> HeatOutcome:
    """Standings and advancers of a heat from its races (see the module rules)."""
    entries = [[RaceEntry(r.player_id, r.place, r.wpm, r.valid) for r in race] for race in races]
    standings = heat_standings(members, entries, seeds, heat_size)
    present = {r.player_id for race in races for r in race}
    no_shows = [] if settled or not races else [m.player_id for m in members if m.player_id not in present]
    going = [pid for pid in advancers(standings, advance) if pid not in no_shows]
    return HeatOutcome(standings=standings, advancers=going, no_shows=no_shows)


def provisional_ranking(rounds: Sequence[RoundOutcome]) -> list[str]:
    """The standings of a running tournament: the rounds so far, then an empty final."""
    return final_ranking([*rounds, RoundOutcome()])


@dataclass(frozen=True, slots=True)
class Placing:
    rank: int
    player_id: str
    prize: str | None


def final_placings(rounds: Sequence[RoundOutcome], prizes: Sequence[str], *, decided: bool) -> list[Placing]:
    """The final ranking with prizes. ``decided``: the last round was a single final heat;
    otherwise (everyone left was a no-show) the ranking ends with an empty final."""
    ranking = final_ranking(rounds) if decided else provisional_ranking(rounds)
    return [Placing(rank, pid, prize_for(rank, prizes)) for rank, pid in enumerate(ranking, start=1)]


def ranking_scores(ranking: Sequence[str]) -> dict[str, float]:
    """Scores for the rankings sorted set: higher is better, so ZREVRANGE reads rank order."""
    n = len(ranking)
    return {pid: float(n - i) for i, pid in enumerate(ranking)}


def race_time_limit_s(race_type: str, passage_chars: int | None, race: RaceSettings) -> float:
    """The node's time limit for a race (``gameserver.race.Race.time_limit_ms``)."""
    limits = {
        RaceType.QUICK.value: race.quick_limit_s,
        RaceType.STANDARD.value: race.standard_limit_s,
        RaceType.MARATHON.value: race.marathon_limit_s,
    }
    if race_type in limits:
        return limits[race_type]
    return max(60.0, (passage_chars or race.custom_max_chars) * race.custom_limit_s_per_char)


def heat_deadline_ms(placed_at: int, time_limit_s: float, race: RaceSettings, margin_s: float) -> int:
    """When a placed race must have reported: the wait, the countdown, the limit, a margin."""
    return placed_at + int((race.wait_timeout_s + race.countdown_s + time_limit_s + margin_s) * 1000)
