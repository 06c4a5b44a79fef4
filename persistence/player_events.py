"""One Kafka message per player per record, keyed by the player's id, so each player's events stay in order.

The race and heat topics are keyed by match id: a consumer that follows one player (a profile
service, anti-cheat, notifications) would have to read every partition and could see that
player's races out of order. The player topic (``ARENA_KAFKA_PLAYER_TOPIC``, empty to turn it off)
carries, for every record persistence publishes, one small message per player it concerns, keyed
by the player id: Kafka keeps one key on one partition, in the order it was produced.

- a typing test: one ``test_result`` for its player (mode, WPM, accuracy, flags);
- a race or heat: one ``race_result`` / ``heat_result`` per participant (place, status, WPM,
  accuracy, flags, when the race ended; not the keystroke log, which stays on the race topic);
- a tournament's final result: one ``tournament_final`` per entrant (rank, prize);
- a review decision (an operator's on a held result, or placement's release of a provisional one):
  one ``review_decision`` for its player.

Order. One persistence worker publishes its batches in outbox order, and a key's messages in
produce order (the producer is idempotent, so a retry cannot reorder them). Two workers (or
processes) may publish two records of the same player concurrently, in either order; every
message therefore carries the record's own instant (``at``: the race's end, the decision's time)
for a consumer that must order strictly. The value is msgpack, with a ``kind`` header and
``event_version``.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from arena.results import MatchRecord, TournamentFinalRecord
from arena.typing_tests import TypingTestRecord
from persistence.review import ReviewDecisionRecord

EVENT_VERSION = 1


@dataclass(frozen=True, slots=True)
class PlayerEvent:
    player_id: str  # the Kafka key
    kind: str  # race_result | heat_result | tournament_final | review_decision
    value: bytes  # msgpack


def player_events(
    record: MatchRecord | TournamentFinalRecord | ReviewDecisionRecord | TypingTestRecord,
) -> list[PlayerEvent]:
    """The per-player messages of one record, in the record's own player order."""
    if isinstance(record, TypingTestRecord):
        return [
            _event(
                record.player_id,
                "test_result",
                match_id=record.match_id,
                mode=record.mode,
                state=record.state,
                status=record.status,
                valid=record.valid,
                flags=list(record.flags),
                wpm=record.wpm,
                accuracy=record.accuracy,
                elapsed_ms=record.elapsed_ms,
                at=record.ended_at,
            )
        ]
    if isinstance(record, ReviewDecisionRecord):
        return [
            _event(
                record.player_id,
                "review_decision",
                match_id=record.race_id,
                decision=record.decision,
                reason=record.reason,
                at=record.decided_at,
            )
        ]
    if isinstance(record, TournamentFinalRecord):
        return [
            _event(
                s.player_id,
                "tournament_final",
                match_id=record.tournament_id,
                rank=s.rank,
                prize=s.prize,
                at=record.ended_at,
            )
            for s in record.standings
        ]
    kind = f"{record.kind}_result"
    return [
        _event(
            p.player_id,
            kind,
            match_id=record.match_id,
            race_type=record.race_type,
            state=record.state,
            place=p.place,
            status=p.status,
            valid=p.valid,
            flags=list(p.flags),
            wpm=p.wpm,
            accuracy=p.accuracy,
            elapsed_ms=p.elapsed_ms,
            tournament_id=record.tournament_id,
            at=record.ended_at,
        )
        for p in record.participants
    ]


def _event(player_id: str, kind: str, **fields: Any) -> PlayerEvent:
    body = {"kind": kind, "player_id": player_id, "event_version": EVENT_VERSION, **fields}
    return PlayerEvent(player_id=player_id, kind=kind, value=msgpack.packb(body))


def decode_event(value: bytes) -> dict[str, Any]:
    """A player event's body (for consumers and tests)."""
    body = msgpack.unpackb(value)
    if not isinstance(body, dict):
        raise ValueError("a player event is a msgpack map")
    return body
