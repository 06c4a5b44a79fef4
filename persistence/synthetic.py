"""Synthetic, realistic match records: for tests, the benchmark and smoke runs.

Keystroke logs are sized like real ones (a quick race is a few hundred keys per player),
so throughput figures are not flattered by empty records.
"""

from __future__ import annotations

import random

from arena.ids import new_player_id, new_race_id
from arena.results import MatchRecord, ParticipantRecord

_LETTERS = "abcdefghijklmnopqrstuvwxyz     "
_PAIR_SPEED = {
    a + b: random.Random(f"pair:{a}{b}").lognormvariate(-0.045, 0.3) for a in _LETTERS for b in _LETTERS
}


def participant(
    rng: random.Random, player_id: str, place: int | None, *, started_at: int, keys: int = 250
) -> ParticipantRecord:
    gaps = [max(15, int(rng.gauss(180, 60))) for _ in range(keys)]
    text = "".join(rng.choice(_LETTERS) for _ in range(keys))
    times, t = [], 0
    for i, gap in enumerate(gaps):
        # Each letter pair at its own speed, as people type (persistence/pairs.py holds a player
        # whose races show none); the same pair speeds for every synthetic player.
        t += max(15, round(gap * _PAIR_SPEED.get(text[i - 1 : i + 1], 1.0)))
        times.append(t)
    finished = place is not None
    wpm = round(keys / 5 / (t / 60000), 2)
    return ParticipantRecord(
        player_id=player_id,
        name=f"player-{player_id[-6:]}",
        place=place,
        status="finished" if finished else "dnf",
        valid=True,
        flags=[],
        wpm=wpm,
        raw_wpm=round(wpm * 1.05, 2),
        accuracy=round(rng.uniform(85, 100), 2),
        consistency=round(rng.uniform(50, 95), 2),
        correct_chars=keys,
        typed_chars=keys + 5,
        errors=5,
        elapsed_ms=t,
        joined_at=started_at - 8_000,
        finished_at=started_at + t if finished else None,
        keys=text,
        key_times=times,
    )


def match(
    rng: random.Random,
    *,
    ended_at: int,
    players: list[str] | None = None,
    race_type: str = "quick",
    keys: int = 250,
    match_id: str | None = None,
    tournament_id: str | None = None,
    round_no: int | None = None,
    heat_no: int | None = None,
) -> MatchRecord:
    """A finished race (or, with ``tournament_id``, a heat) of 2 to 5 players."""
    ids = players or [new_player_id() for _ in range(rng.randint(2, 5))]
    duration = 60_000
    return MatchRecord(
        match_id=match_id or new_race_id(),
        kind="heat" if tournament_id else "race",
        node_id="node-synthetic",
        race_type=race_type,
        passage_id="q001",
        passage_chars=keys,
        state="finished",
        reason="all_finished",
        created_at=ended_at - duration - 10_000,
        started_at=ended_at - duration,
        ended_at=ended_at,
        participants=[
            participant(rng, pid, i + 1, started_at=ended_at - duration, keys=keys)
            for i, pid in enumerate(ids)
        ],
        tournament_id=tournament_id,
        round_no=round_no,
        heat_no=heat_no,
    )
