"""A race's Redis mirror (``race:{id}:state``): what the node writes there, and when.

The owner node writes the whole mirror on every state or roster change (``Race.version``),
and, while the race runs, the racers' live figures (the ``roster`` field alone) at most once
every ``ARENA_RACE_LIVE_MIRROR_MS`` and only when someone's position moved since the last write.
Readers: the lobby (live races list, lost-node checks), spectators on other nodes (their first
snapshot), the tournament director and API (state, passage). The format is one hash; a live
write changes the ``roster`` value only, never its shape.
"""

from __future__ import annotations

import json

from gameserver.race import Race

# How long a mirror outlives the race's last write: long enough for lost-node checks and late
# spectators. A running race's mirror is also kept for its remaining time (``mirror_ttl_s``),
# so a live write (an HSET without EXPIRE) never lands on an expired key.
RACE_STATE_TTL_S = 3600
# One encoder (compact, as the wire is): json.dumps with options builds one per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def roster_json(race: Race, now: int) -> str:
    """Rows ``[id, name, connected, status, position, wpm, place]``, WPM as of ``now``."""
    return _encode(race.roster_rows(now))


def mirror_fields(race: Race, now: int) -> dict[str, str | int]:
    """The whole mirror: enough for the lobby and for spectators on other nodes."""
    return {
        "state": race.state.value,
        "node": race.node_id,
        "type": race.race_type.value,
        "passage_id": race.passage.id,
        "passage": race.passage.text,
        "players": len(race.racers),
        "roster": roster_json(race, now),
        "start_at": race.start_at or 0,
        "ends_at": race.ends_at or 0,
        "version": race.version,
    }


def mirror_ttl_s(race: Race, now: int) -> int:
    """TTL of a whole write: the race's remaining time (if it runs) plus ``RACE_STATE_TTL_S``."""
    remaining_ms = (race.ends_at or now) - now if not race.ended else 0
    return RACE_STATE_TTL_S + max(0, remaining_ms) // 1000


def live_write_due(changed: bool, last_write_ms: int | None, now: int, every_ms: int) -> bool:
    """Whether a running race's live figures go to its mirror at ``now``.

    Only when they changed since the last write (``changed``), and at most once every
    ``every_ms`` since the last write of the roster (whole or live); ``every_ms`` 0: never.
    """
    if not changed or every_ms <= 0:
        return False
    return last_write_ms is None or now - last_write_ms >= every_ms
