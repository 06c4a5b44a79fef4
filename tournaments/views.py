"""What the API answers: tournaments, brackets, standings and a player's heat, as JSON-ready dicts.

Views are built from what the store read; no I/O here. Seats (tokens and tickets) appear
only in ``assignment_view``, for the player they belong to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tournaments.model import Heat, HeatState, Tournament, TournamentState, Visibility
from tournaments.store import Participant


def spec_view(t: Tournament) -> dict[str, Any]:
    s = t.spec
    return {
        "name": s.name,
        "type": s.kind.value,
        "visibility": s.visibility.value,
        "race_type": s.race_type,
        "custom_text": s.custom_text,
        "region": s.region,
        "max_players": s.max_players,
        "heat_size": s.heat_size,
        "advancement": {"rule": s.rule.value, "advance": s.advance, "races_per_round": s.races_per_round},
        "rounds": s.max_rounds,
        "prizes": list(s.prizes),
        "starts_at": s.starts_at,
    }


def summary_view(t: Tournament) -> dict[str, Any]:
    """A tournament in a listing."""
    return {
        "id": t.id,
        **spec_view(t),
        "state": t.state.value,
        "players": t.players,
        "created_at": t.created_at,
        "started_at": t.started_at,
        "finished_at": t.finished_at,
        "round": t.round,
        "rounds_planned": t.rounds_planned,
    }


def heat_view(t: Tournament, heat: Heat, race_state: str | None) -> dict[str, Any]:
    names = {e.player_id: e.name for e in t.entrants}
    seeds = t.seeds
    return {
        "heat": heat.heat_no,
        "state": heat.state.value,
        "race_state": race_state,  # the node's view of the current race (waiting, countdown, running...)
        "race_no": heat.race_no,
        "races_per_round": t.spec.races_per_round,
        "race_id": heat.race_id,
        "node_id": heat.node_id,
        "url": heat.url,  # the node's WebSocket URL: spectators watch the heat's race there
        "reruns": heat.reruns,
        "players": [
            {"player_id": m.player_id, "name": m.name, "seed": seeds.get(m.player_id)} for m in heat.members
        ],
        "races": [
            {
                "race_id": race_id,
                "results": [
                    {"player_id": r.player_id, "place": r.place, "wpm": r.wpm, "valid": r.valid} for r in race
                ],
            }
            for race_id, race in zip(heat.race_ids, heat.races, strict=False)
        ],
        "standings": [
            {
                "player_id": s.player_id,
                "name": names.get(s.player_id, ""),
                "points": s.points,
                "best_place": s.best_place,
                "wpm": s.total_wpm,
                "advanced": s.player_id in heat.advancers,
                "no_show": s.player_id in heat.no_shows,
            }
            for s in heat.standings
        ],
        "reason": heat.reason or None,
        "finished_at": heat.finished_at,
    }


def detail_view(
    t: Tournament,
    rounds: Sequence[Sequence[Heat]],
    ranking: Sequence[str],
    race_states: Mapping[str, str],
    *,
    caller: str | None,
    registered: bool,
    prizes: Mapping[str, str],
    registrations: Sequence[Participant] = (),
) -> dict[str, Any]:
    """The players (registered so far, or seeded at the start), the bracket (every round and
    heat with players and results) and the standings."""
    names = {e.player_id: e.name for e in t.entrants}
    last_round = {m.player_id: h.round_no for heats in rounds for h in heats for m in h.members}
    alive = _alive(t, rounds)
    view = summary_view(t)
    view.update(
        {
            "reason": t.reason or None,
            "registered": registered,
            "participants": _participants(t, registrations),
            "bracket": [
                {
                    "round": r,
                    "state": "finished" if all(h.done for h in heats) else "running",
                    "heats": [heat_view(t, h, race_states.get(h.race_id or "")) for h in heats],
                }
                for r, heats in enumerate(rounds, start=1)
            ],
            "standings": [
                {
                    "rank": rank,
                    "player_id": pid,
                    "name": names.get(pid, ""),
                    "round": last_round.get(pid, 0),
                    "status": _status(t, pid, alive, rank),
                    "prize": prizes.get(pid),
                }
                for rank, pid in enumerate(ranking, start=1)
            ],
        }
    )
    if caller is not None and caller == t.created_by and t.spec.visibility is Visibility.PRIVATE:
        view["invite_code"] = t.invite_code
    return view


def _participants(t: Tournament, registrations: Sequence[Participant]) -> list[dict[str, Any]]:
    """Seeded entrants once started; before that, the registrations in their order."""
    if t.entrants:
        return [
            {"player_id": e.player_id, "name": e.name, "seed": i, "rating": round(e.rating, 1)}
            for i, e in enumerate(t.entrants, start=1)
        ]
    return [{"player_id": p.player_id, "name": p.name, "seed": None, "rating": None} for p in registrations]


def _alive(t: Tournament, rounds: Sequence[Sequence[Heat]]) -> set[str]:
    """Players still in: those of the current round, unless their heat is decided without them."""
    if not rounds or t.state is not TournamentState.RUNNING:
        return set()
    current = rounds[-1]
    alive: set[str] = set()
    for h in current:
        alive |= set(h.advancers) if h.done else {m.player_id for m in h.members}
    return alive


def _status(t: Tournament, pid: str, alive: set[str], rank: int) -> str:
    if t.state is TournamentState.FINISHED:
        return "winner" if rank == 1 else "finished"
    if t.state is TournamentState.RUNNING:
        return "in" if pid in alive else "out"
    return t.state.value


# ---- a player's heat ------------------------------------------------------------------


class PlayerStatus:
    NOT_REGISTERED = "not_registered"
    REGISTERED = "registered"  # the tournament has not started
    WAITING = "waiting"  # dealt into a heat whose race is not ready yet, or between races
    RACING = "racing"  # a seat is reserved: join with player_token and ticket
    ADVANCED = "advanced"  # through to the next round, not dealt yet
    ELIMINATED = "eliminated"
    FINISHED = "finished"  # the tournament is over (see rank)
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Assignment:
    status: str
    round: int | None = None
    heat: int | None = None
    race_no: int | None = None
    race_id: str | None = None
    node_id: str | None = None
    url: str | None = None
    player_token: str | None = None
    ticket: str | None = None
    rank: int | None = None

    @property
    def key(self) -> str:
        """Changes whenever the answer does: pass it back as ``?since=`` to wait for the next."""
        return f"{self.status}:{self.round or 0}:{self.heat or 0}:{self.race_no or 0}:{self.race_id or ''}"

    def view(self, tournament_id: str) -> dict[str, Any]:
        return {
            "tournament_id": tournament_id,
            "status": self.status,
            "round": self.round,
            "heat": self.heat,
            "race_no": self.race_no,
            "race_id": self.race_id,
            "node_id": self.node_id,
            "url": self.url,
            "player_token": self.player_token,
            "ticket": self.ticket,
            "rank": self.rank,
            "key": self.key,
        }


def assignment_for(
    t: Tournament, heat: Heat | None, player_id: str, *, registered: bool, rank: int | None, final: bool
) -> Assignment:
    """Where the player stands: their seat when their heat's race is ready. ``final``: the
    heat is the last round's only one (its players wait for their rank, nobody is 'out')."""
    if t.state is TournamentState.CANCELLED:
        return Assignment(PlayerStatus.CANCELLED)
    if not registered:
        return Assignment(PlayerStatus.NOT_REGISTERED)
    if t.state is TournamentState.REGISTERING:
        return Assignment(PlayerStatus.REGISTERED)
    if t.state is TournamentState.FINISHED:
        return Assignment(PlayerStatus.FINISHED, rank=rank)
    if heat is None:
        return Assignment(PlayerStatus.WAITING)
    where = Assignment(PlayerStatus.WAITING, round=heat.round_no, heat=heat.heat_no, race_no=heat.race_no)
    if heat.round_no < t.round:
        return replace(where, status=PlayerStatus.ELIMINATED)
    if heat.done and final:
        return where  # the ranking comes with the end, a moment later
    if heat.done:
        status = PlayerStatus.ADVANCED if player_id in heat.advancers else PlayerStatus.ELIMINATED
        return replace(where, status=status)
    seat = heat.seats.get(player_id)
    if heat.state is HeatState.PLACED and seat is not None:
        return replace(
            where,
            status=PlayerStatus.RACING,
            race_id=heat.race_id,
            node_id=heat.node_id,
            url=heat.url,
            player_token=seat.player_token,
            ticket=seat.ticket,
        )
    return where
