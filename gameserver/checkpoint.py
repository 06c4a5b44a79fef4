"""A race's checkpoint in Redis, and the race rebuilt from it (issue 15: a node's death loses no race).

The checkpoint is one Redis list per race (``keys.race_checkpoint``, hash-tagged by race id): its
definition first (race id, owner node, region, type, passage, seats, created instant, input offset,
heat; its ghosts and daily challenge day if any), written with the race's first tick, then the
race's journal (``Race.journal``): every join, the countdown with its instants, every input the
race applied (player, seq, the server's arrival instant, keys, key times, the round trip it judged
with) and every leave, in the order the race saw them, each packed as it is journalled
(``gameserver/journal.py``). The owner appends what a race journalled, at
most once every ``ARENA_RACE_CHECKPOINT_MS`` (2 s) per race and only when it has news, in the
tick's existing pipelined round trip, so a checkpoint is at most that plus one tick
(``ARENA_RACE_TICK_HZ``: 100 ms) behind what the race applied. A race's list holds what the race
already keeps in memory (its racers' keystroke logs), so it is bounded by the passage and the input
limits; it is deleted once the race's result is in the outbox, and expires anyway after the race's
longest time.

``rebuild`` is pure: it replays a checkpoint through the same ``Race`` logic, so the rebuilt
race scores what the original scored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from arena.ids import NodeId, PlayerId, RaceId
from arena.protocol import RaceType
from arena.typing_tests import TypingMode
from gameserver.fairplay import FairPlayLimits
from gameserver.ghost import GhostLog
from gameserver.passages import Passage, PassageKind
from gameserver.race import HeatTag, Race
from gameserver.scoring import ScoringLimits
from gameserver.settings import RaceSettings

VERSION = 1
# How long a checkpoint outlives the race's longest possible end (a backstop: the owner deletes
# it once the result is in the outbox, a reaper once it finalised the race).
CHECKPOINT_TTL_MARGIN_S = 3600
_encode = json.JSONEncoder(separators=(",", ":")).encode
_pack: Callable[[object], bytes] = msgpack.Packer().pack


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or replayed."""


@dataclass(frozen=True, slots=True)
class Definition:
    """What a race is, written once as the first entry of its checkpoint."""

    race_id: RaceId
    node_id: NodeId
    region: str
    race_type: RaceType
    passage: Passage
    seats: frozenset[PlayerId]
    created_at: int
    input_offset_ms: int
    heat: HeatTag | None
    ghosts: tuple[GhostLog, ...] = ()  # a ghost's progress follows from its log and the race clock
    daily: str | None = None  # the daily challenge's day this race is an attempt at
    test: TypingMode | None = None  # a typing test's mode: its record is a TypingTestRecord


def definition_of(race: Race, region: str) -> Definition:
    return Definition(
        race_id=race.id,
        node_id=race.node_id,
        region=region,
        race_type=race.race_type,
        passage=race.passage,
        seats=frozenset(race.seats),
        created_at=race.created_at,
        input_offset_ms=race.input_offset_ms,
        heat=race.heat,
        ghosts=tuple(feed.log for feed in race.ghosts.values()),
        daily=race.daily,
        test=race.test,
    )


def encode_definition(d: Definition) -> str:
    p = d.passage
    heat = [d.heat.tournament_id, d.heat.round_no, d.heat.heat_no] if d.heat else None
    # Newer parts in one trailing map, absent when the race has none: other definitions are as before.
    extra: dict[str, object] = {}
    if d.ghosts:
        extra["ghosts"] = [g.to_wire() for g in d.ghosts]
    if d.daily:
        extra["daily"] = d.daily
    if d.test is not None:  # a typing test's mode
        extra["test"] = d.test.name
    return _encode(
        [
            "d",
            VERSION,
            d.race_id,
            d.node_id,
            d.region,
            d.race_type.value,
            [p.id, p.kind.value, p.text, p.source],
            sorted(d.seats),
            d.created_at,
            d.input_offset_ms,
            heat,
            *([extra] if extra else []),
        ]
    )


def encode_entry(entry: tuple[object, ...]) -> str:
    """One journal entry (``Race.journal``) as a list item."""
    return _encode(entry)


def encode_entries(entries: Sequence[tuple[object, ...]]) -> bytes:
    """Several journal entries as one list item: one msgpack array of entries (one encoder call
    and one command argument per append, whatever it carries). msgpack, not JSON: this runs for
    every race every ``ARENA_RACE_CHECKPOINT_MS``, and msgpack encodes a 2 s append ≈ 2.5 times
    faster, 20 % smaller (docs/PERFORMANCE.md, "Race checkpoints"). ``decode_item`` reads both.
    A race's ``Journal.take`` makes the same bytes from entries packed one by one.
    """
    return _pack(entries)


def encode_entries_json(entries: Sequence[tuple[object, ...]]) -> str:
    """``encode_entries`` in JSON: an item as nodes wrote them for what msgpack cannot encode
    before the journal was held encoded (``gameserver/journal.py`` now writes such an entry as
    its own ``encode_entry`` item). ``decode_item`` still reads these, so checkpoints written
    then replay; the tests make them with this."""
    return _encode(entries)


def decode_item(raw: bytes | str) -> list[list[Any]]:
    """The journal entries of one checkpoint item after the definition: a msgpack array of
    entries (``encode_entries``), or JSON (one entry, ``encode_entry``, or an array of them, as
    checkpoints written before the msgpack encoding hold)."""
    parsed = json.loads(raw) if isinstance(raw, str) or raw[:1] == b"[" else msgpack.unpackb(raw)
    if not isinstance(parsed, list):
        raise CheckpointError(f"not a list of entries: {type(parsed).__name__}")
    return parsed if parsed and isinstance(parsed[0], list) else [parsed]


def ttl_s(race: Race) -> int:
    """The checkpoint's TTL, set at its first write: the race's longest life plus a margin."""
    s = race.settings
    longest_ms = (s.wait_timeout_s + s.countdown_s) * 1000 + race.time_limit_ms()
    return int(longest_ms / 1000) + CHECKPOINT_TTL_MARGIN_S


def decode_definition(raw: bytes | str) -> Definition:
    try:
        item = json.loads(raw)
        extra = item[11] if len(item) == 12 else {}  # ghosts, daily, test: only when the race has them
        tag, version, race_id, node_id, region, race_type, passage, seats, created_at, offset, heat = (
            item[:11]
        )
        if tag != "d" or version != VERSION:
            raise CheckpointError(f"not a version {VERSION} definition: {tag!r} {version!r}")
        pid, kind, text, source = passage
        return Definition(
            race_id=RaceId(str(race_id)),
            node_id=NodeId(str(node_id)),
            region=str(region),
            race_type=RaceType(race_type),
            passage=Passage(id=str(pid), kind=PassageKind(kind), text=str(text), source=str(source)),
            seats=frozenset(PlayerId(str(s)) for s in seats),
            created_at=int(created_at),
            input_offset_ms=int(offset),
            heat=HeatTag(str(heat[0]), int(heat[1]), int(heat[2])) if heat else None,
            ghosts=tuple(GhostLog.from_wire(g) for g in extra.get("ghosts", ())),
            daily=str(extra["daily"]) if extra.get("daily") else None,
            test=TypingMode.parse(str(extra["test"])) if extra.get("test") else None,
        )
    except CheckpointError:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(f"unreadable definition: {exc}") from None


def rebuild(
    raw: Sequence[bytes | str],
    settings: RaceSettings,
    scoring: ScoringLimits,
    fairplay: FairPlayLimits,
) -> Race:
    """The race a checkpoint describes, by replaying its journal through ``Race`` (no I/O).

    Its racers are disconnected (their sockets were on the dead node) and nothing is queued to
    send. Raises ``CheckpointError`` if the checkpoint is empty, unreadable or does not replay.
    """
    return replay(raw, settings, scoring, fairplay)[0]


def replay(
    raw: Sequence[bytes | str],
    settings: RaceSettings,
    scoring: ScoringLimits,
    fairplay: FairPlayLimits,
) -> tuple[Race, int]:
    """``rebuild``, and the instant of the checkpoint's last entry (the owner's last word on it)."""
    if not raw:
        raise CheckpointError("empty checkpoint")
    d = decode_definition(raw[0])
    race = Race(
        race_id=d.race_id,
        node_id=d.node_id,
        race_type=d.race_type,
        passage=d.passage,
        seats=set(d.seats),
        now=d.created_at,
        settings=settings,
        scoring=scoring,
        fairplay=fairplay,
        heat=d.heat,
        input_offset_ms=d.input_offset_ms,
        ghosts=d.ghosts,
        daily=d.daily,
        test=d.test,
    )
    last = d.created_at
    for n, item in enumerate(raw[1:], start=1):
        try:
            for entry in decode_item(item):
                last = max(last, _replay(race, entry))
        except CheckpointError:
            raise
        except Exception as exc:  # a foreign or truncated entry: the whole checkpoint is suspect
            raise CheckpointError(f"item {n} does not replay: {exc!r}") from None
    for racer in race.racers.values():
        if not racer.ghost:  # a ghost has no socket to lose
            race.disconnect(racer, last)
    race.outgoing.clear()
    race.take_changes()
    return race, last


def _replay(race: Race, entry: list[Any]) -> int:
    """Apply one journal entry; returns its instant."""
    tag = entry[0]
    if tag == "j":
        _, player_id, name, at = entry
        race.join(PlayerId(player_id), str(name), int(at))
    elif tag == "c":
        _, at, start_at, ends_at = entry
        if race.start_at is None:  # else the last join started it: keep the owner's instants
            race.begin_countdown(int(at), int(start_at), int(ends_at))
        race.start_at, race.ends_at = int(start_at), int(ends_at)
    elif tag == "i":
        _, player_id, seq, at, keys, times, rtt_ms = entry
        race.advance(int(at))  # the start (and nothing else: the owner applied it, so it ran)
        racer = race.racers[PlayerId(player_id)]
        racer.round_trips.restore(rtt_ms)
        race.apply_input(racer, int(seq), str(keys), [int(t) for t in times], int(at))
    elif tag == "l":
        _, player_id, at = entry
        race.leave(race.racers[PlayerId(player_id)], int(at))
    elif tag == "d":  # a definition written again (a retried append that had gone through)
        return 0
    else:
        raise CheckpointError(f"unknown entry {tag!r}")
    return int(at)
