"""Checks shared by the tournament flow tests: the bracket against the outbox's heat records."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis

from arena import keys
from arena.results import FINAL_KIND, MatchRecord, TournamentFinalRecord
from tournaments.bracket import Entrant, RaceEntry, RoundOutcome, advancers, final_ranking, heat_standings


async def outbox(redis: aioredis.Redis) -> tuple[list[tuple[str, MatchRecord]], list[TournamentFinalRecord]]:
    """Every match record in the outbox (with its entry id), and every tournament final record."""
    matches: list[tuple[str, MatchRecord]] = []
    finals: list[TournamentFinalRecord] = []
    for entry_id, fields in await redis.xrange(keys.OUTBOX_STREAM):
        if fields[b"kind"] == FINAL_KIND.encode():
            finals.append(TournamentFinalRecord.from_bytes(fields[b"data"]))
        else:
            matches.append((entry_id.decode(), MatchRecord.from_bytes(fields[b"data"])))
    return matches, finals


def heat_records(
    matches: list[tuple[str, MatchRecord]], tid: str
) -> dict[tuple[int, int], list[MatchRecord]]:
    by_heat: dict[tuple[int, int], list[MatchRecord]] = defaultdict(list)
    for _, record in matches:
        if record.tournament_id == tid:
            assert record.kind == "heat" and record.round_no is not None and record.heat_no is not None
            by_heat[(record.round_no, record.heat_no)].append(record)
    return by_heat


def check_bracket(t: dict[str, Any], records: dict[tuple[int, int], list[MatchRecord]]) -> list[str]:
    """The tournament as the API shows it must follow from the heat records by the bracket rules:
    every heat's standings, advancers (no-shows excluded) and the final ranking. Returns the
    ranking recomputed from the records."""
    seeds = {p["player_id"]: p["seed"] for heat in t["bracket"][0]["heats"] for p in heat["players"]}
    rules = t["advancement"]
    outcomes: list[RoundOutcome] = []
    previous_advancers: set[str] | None = None
    for rnd in t["bracket"]:
        outcome = RoundOutcome()
        players = {p["player_id"] for heat in rnd["heats"] for p in heat["players"]}
        if previous_advancers is not None:
            assert players == previous_advancers, (rnd["round"], players, previous_advancers)
        previous_advancers = set()
        for heat in rnd["heats"]:
            members = [Entrant(p["player_id"], p["name"], 0.0) for p in heat["players"]]
            counted = {r["race_id"] for r in heat["races"]}
            mine = [r for r in records.get((rnd["round"], heat["heat"]), []) if r.match_id in counted]
            assert (
                len(mine) == len(counted) == (0 if heat["state"] == "settled" else rules["races_per_round"])
            )
            races = [[RaceEntry(p.player_id, p.place, p.wpm, p.valid) for p in r.participants] for r in mine]
            standings = heat_standings(members, races, seeds, t["heat_size"])
            assert [s.player_id for s in standings] == [s["player_id"] for s in heat["standings"]]
            present = {p.player_id for r in mine for p in r.participants}
            no_shows = (
                set() if heat["state"] == "settled" or not mine else {m.player_id for m in members} - present
            )
            going = [pid for pid in advancers(standings, rules["advance"]) if pid not in no_shows]
            assert going == [s["player_id"] for s in heat["standings"] if s["advanced"]]
            assert no_shows == {s["player_id"] for s in heat["standings"] if s["no_show"]}
            previous_advancers |= set(going)
            outcome.heats.append(standings)
        outcomes.append(outcome)
    decided = len(t["bracket"][-1]["heats"]) == 1
    ranking = final_ranking(outcomes if decided else [*outcomes, RoundOutcome()])
    assert [s["player_id"] for s in t["standings"]] == ranking
    return ranking
