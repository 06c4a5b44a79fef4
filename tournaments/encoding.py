"""Tournaments and heats to and from their Redis hashes (string fields; lists as JSON).

Decoding is strict: a half-written or foreign hash decodes to None (and is logged), never to
a half-filled object.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import structlog

from tournaments.bracket import Advancement, Entrant, Standing
from tournaments.model import (
    Heat,
    HeatState,
    RaceResult,
    Seat,
    Tournament,
    TournamentKind,
    TournamentSpec,
    TournamentState,
    Visibility,
)

log = structlog.get_logger(__name__)


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


def _str(value: int | None) -> str:
    return "" if value is None else str(value)


def _entrants(raw: str) -> tuple[Entrant, ...]:
    return tuple(Entrant(str(pid), str(name), float(rating)) for pid, name, rating in json.loads(raw))


def entrants_json(entrants: tuple[Entrant, ...]) -> str:
    return json.dumps([[e.player_id, e.name, e.rating] for e in entrants])


# ---- tournaments -----------------------------------------------------------------------


def spec_fields(spec: TournamentSpec) -> dict[str, str]:
    return {
        "name": spec.name,
        "kind": spec.kind.value,
        "visibility": spec.visibility.value,
        "race_type": spec.race_type,
        "max_players": str(spec.max_players),
        "heat_size": str(spec.heat_size),
        "rule": spec.rule.value,
        "advance": str(spec.advance),
        "races_per_round": str(spec.races_per_round),
        "max_rounds": str(spec.max_rounds),
        "prizes": json.dumps(list(spec.prizes)),
        "starts_at": _str(spec.starts_at),
        "custom_text": spec.custom_text if spec.custom_text is not None else "",
        "region": spec.region,
    }


def new_tournament_fields(t: Tournament) -> dict[str, str]:
    """Every field of a tournament just created."""
    return {
        "id": t.id,
        **spec_fields(t.spec),
        "state": t.state.value,
        "version": "0",
        "created_at": str(t.created_at),
        "created_by": t.created_by,
        "players": "0",
        "round": "0",
        "rounds_planned": "0",
        "heats": "[]",
        "invite_code": t.invite_code or "",
        "epoch": "0",
    }


def decode_tournament(d: Mapping[str, str]) -> Tournament | None:
    try:
        spec = TournamentSpec(
            name=d["name"],
            kind=TournamentKind(d["kind"]),
            visibility=Visibility(d["visibility"]),
            race_type=d["race_type"],
            max_players=int(d["max_players"]),
            heat_size=int(d["heat_size"]),
            rule=Advancement(d["rule"]),
            advance=int(d["advance"]),
            races_per_round=int(d["races_per_round"]),
            max_rounds=int(d["max_rounds"]),
            prizes=tuple(str(p) for p in json.loads(d["prizes"])),
            starts_at=_opt_int(d.get("starts_at")),
            custom_text=d.get("custom_text") or None,
            region=d["region"],
        )
        return Tournament(
            id=d["id"],
            spec=spec,
            state=TournamentState(d["state"]),
            version=int(d["version"]),
            created_at=int(d["created_at"]),
            created_by=d["created_by"],
            players=int(d["players"]),
            round=int(d["round"]),
            rounds_planned=int(d["rounds_planned"]),
            started_at=_opt_int(d.get("started_at")),
            finished_at=_opt_int(d.get("finished_at")),
            entrants=_entrants(d["entrants"]) if d.get("entrants") else (),
            invite_code=d.get("invite_code") or None,
            reason=d.get("reason", ""),
        )
    except (KeyError, ValueError, TypeError) as exc:
        log.warning("tournament_unreadable", tournament_id=d.get("id"), error=repr(exc))
        return None


def heats_per_round(d: Mapping[str, str]) -> list[int]:
    return [int(n) for n in json.loads(d.get("heats") or "[]")]


# ---- heats -----------------------------------------------------------------------------


def _standings_json(standings: tuple[Standing, ...]) -> str:
    return json.dumps([[s.player_id, s.points, s.best_place, s.total_wpm, s.seed] for s in standings])


def _standings(raw: str) -> tuple[Standing, ...]:
    return tuple(
        Standing(str(pid), int(points), None if best is None else int(best), float(wpm), int(seed))
        for pid, points, best, wpm, seed in json.loads(raw)
    )


def _races_json(races: tuple[tuple[RaceResult, ...], ...]) -> str:
    return json.dumps([[[r.player_id, r.place, r.wpm, r.valid] for r in race] for race in races])


def _races(raw: str) -> tuple[tuple[RaceResult, ...], ...]:
    return tuple(
        tuple(
            RaceResult(str(pid), None if place is None else int(place), float(wpm), bool(valid))
            for pid, place, wpm, valid in race
        )
        for race in json.loads(raw)
    )


def heat_fields(heat: Heat) -> dict[str, str]:
    """Every field of a heat but ``version`` (the guarded write bumps that one)."""
    return {
        "state": heat.state.value,
        "members": entrants_json(heat.members),
        "race_no": str(heat.race_no),
        "attempt": str(heat.attempt),
        "placing_epoch": str(heat.placing_epoch),
        "race_id": heat.race_id or "",
        "node_id": heat.node_id or "",
        "url": heat.url or "",
        "seats": json.dumps({pid: [s.player_token, s.ticket] for pid, s in heat.seats.items()}),
        "placed_at": _str(heat.placed_at),
        "deadline_at": _str(heat.deadline_at),
        "reruns": str(heat.reruns),
        "failures": str(heat.failures),
        "failing_since": _str(heat.failing_since),
        "races": _races_json(heat.races),
        "race_ids": json.dumps(list(heat.race_ids)),
        "present": json.dumps(sorted(heat.present)),
        "standings": _standings_json(heat.standings),
        "advancers": json.dumps(list(heat.advancers)),
        "no_shows": json.dumps(list(heat.no_shows)),
        "reason": heat.reason,
        "finished_at": _str(heat.finished_at),
        "result_lag_ms": _str(heat.result_lag_ms),
    }


def decode_heat(tournament_id: str, round_no: int, heat_no: int, d: Mapping[str, str]) -> Heat | None:
    try:
        seats: dict[str, Any] = json.loads(d["seats"])
        return Heat(
            tournament_id=tournament_id,
            round_no=round_no,
            heat_no=heat_no,
            state=HeatState(d["state"]),
            version=int(d["version"]),
            members=_entrants(d["members"]),
            race_no=int(d["race_no"]),
            attempt=int(d["attempt"]),
            placing_epoch=int(d["placing_epoch"]),
            race_id=d["race_id"] or None,
            node_id=d["node_id"] or None,
            url=d["url"] or None,
            seats={pid: Seat(str(s[0]), str(s[1])) for pid, s in seats.items()},
            placed_at=_opt_int(d["placed_at"]),
            deadline_at=_opt_int(d["deadline_at"]),
            reruns=int(d["reruns"]),
            failures=int(d["failures"]),
            failing_since=_opt_int(d["failing_since"]),
            races=_races(d["races"]),
            race_ids=tuple(str(r) for r in json.loads(d["race_ids"])),
            present=frozenset(str(p) for p in json.loads(d["present"])),
            standings=_standings(d["standings"]),
            advancers=tuple(str(p) for p in json.loads(d["advancers"])),
            no_shows=tuple(str(p) for p in json.loads(d["no_shows"])),
            reason=d["reason"],
            finished_at=_opt_int(d["finished_at"]),
            result_lag_ms=_opt_int(d.get("result_lag_ms")),
        )
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        log.warning(
            "heat_unreadable", tournament_id=tournament_id, round=round_no, heat=heat_no, error=repr(exc)
        )
        return None
