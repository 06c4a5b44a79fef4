"""Outbox stream entries, and their decoding into records.

A node appends ``id``, ``kind`` and ``data`` (the msgpack ``MatchRecord``, kinds ``race`` and
``heat``); the tournament director appends a tournament's final result the same way (kind
``tournament_final``, a ``TournamentFinalRecord``), and ``ops.review`` an operator's decision on a
result held for review (kind ``review_decision``, a ``ReviewDecisionRecord``). The kind decides
how ``data`` is decoded.
Anything that cannot become a well-typed record is a poison entry: retrying will not help, so
it counts as a failure of that entry alone and, after ``max_deliveries``, goes to the
dead-letter stream.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any

import msgpack

from arena.results import (
    FINAL_KIND,
    FINAL_RECORD_VERSION,
    RECORD_VERSION,
    FinalStanding,
    HeatRace,
    MatchRecord,
    ParticipantRecord,
    SettledHeat,
    TournamentFinalRecord,
    final_match_id,
)
from arena.typing_tests import TEST_KIND, TEST_RECORD_VERSION, TypingMode, TypingTestRecord
from persistence.review import REVIEW_KIND, REVIEW_RECORD_VERSION, ReviewDecisionRecord

MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last instant PostgreSQL and datetime share

_NONE = type(None)
# What each annotation of the record dataclasses accepts on the wire. type(), not isinstance():
# a bool is not an int here. A float field also takes an int (msgpack packs 0.0 as 0 from some encoders).
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "None": (_NONE,),
    "list[str]": (list,),
    "list[int]": (list,),
}


def _spec(cls: type, skip: tuple[str, ...] = ()) -> tuple[dict[str, tuple[type, ...]], dict[str, Any]]:
    """Accepted types and defaults of every field, read from the dataclass itself.

    Derived rather than listed, so a field added to the record is accepted at once; the store's
    tests check that every field also has a column.
    """
    types: dict[str, tuple[type, ...]] = {}
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        accepted: tuple[type, ...] = ()
        for part in str(f.type).split("|"):
            accepted += _ACCEPTS[part.strip()]  # a KeyError here: teach _ACCEPTS the new annotation
        types[f.name] = accepted
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
    return types, defaults


_MATCH_FIELDS, _MATCH_DEFAULTS = _spec(MatchRecord, skip=("participants",))
_PARTICIPANT_FIELDS, _PARTICIPANT_DEFAULTS = _spec(ParticipantRecord)
_TIMES = ("created_at", "started_at", "ended_at")
_FINAL_LISTS = ("standings", "heat_races", "settled_heats")
_FINAL_FIELDS, _FINAL_DEFAULTS = _spec(TournamentFinalRecord, skip=_FINAL_LISTS)
_FINAL_ITEMS: dict[str, tuple[type, dict[str, tuple[type, ...]], dict[str, Any]]] = {
    name: (cls, *_spec(cls))
    for name, cls in (("standings", FinalStanding), ("heat_races", HeatRace), ("settled_heats", SettledHeat))
}


MATCH_KINDS = ("race", "heat")  # MatchRecords
# What this consumer stores; the rest is dead-lettered.
KINDS = (*MATCH_KINDS, FINAL_KIND, REVIEW_KIND, TEST_KIND)
_REVIEW_FIELDS, _REVIEW_DEFAULTS = _spec(ReviewDecisionRecord)
_TEST_FIELDS, _TEST_DEFAULTS = _spec(TypingTestRecord)

Record = MatchRecord | TournamentFinalRecord | ReviewDecisionRecord | TypingTestRecord


class PoisonEntry(ValueError):
    """An entry no retry can process; the message is the reason kept with the dead letter."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One outbox stream entry as Redis delivered it."""

    entry_id: str
    fields: dict[bytes, bytes]
    deliveries: int = 1  # 1 for a first delivery; claims raise it

    @property
    def match_id(self) -> str:
        return self.fields.get(b"id", b"").decode("utf-8", "replace")

    @property
    def kind(self) -> str:
        return self.fields.get(b"kind", b"").decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Match:
    """A decoded entry: the record to store, and its original bytes to publish unchanged.

    The record is a race or heat (``MatchRecord``) or a tournament's final result.
    """

    entry: Entry
    record: Record
    data: bytes

    @property
    def match_id(self) -> str:
        return self.record.match_id

    @property
    def key(self) -> str:
        """The Kafka key: the match id; a final result's tournament id; a decision's race id."""
        r = self.record
        if isinstance(r, TournamentFinalRecord):
            return r.tournament_id
        if isinstance(r, ReviewDecisionRecord):
            return r.race_id
        return r.match_id


def decode(entry: Entry) -> Match:
    if entry.kind not in KINDS:
        raise PoisonEntry(f"entry kind {entry.kind!r} is not a record this consumer stores")
    data = entry.fields.get(b"data")
    if data is None:
        raise PoisonEntry("entry has no data field")
    try:
        raw: Any = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise PoisonEntry(f"undecodable msgpack: {exc}") from None
    record: Record
    if entry.kind == FINAL_KIND:
        record = _final(raw)
    elif entry.kind == REVIEW_KIND:
        record = _review(raw)
    elif entry.kind == TEST_KIND:
        record = _test(raw)
    else:
        record = _record(raw)
    if record.match_id != entry.match_id or record.kind != entry.kind:
        raise PoisonEntry(
            f"entry fields ({entry.match_id!r}, {entry.kind!r}) differ from the record's"
            f" ({record.match_id!r}, {record.kind!r})"
        )
    return Match(entry=entry, record=record, data=data)


def _is_day(value: object) -> bool:
    """A daily challenge's day: YYYY-MM-DD, as the store's ``date`` column takes it."""
    if type(value) is not str or len(value) != 10:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _record(raw: Any) -> MatchRecord:
    if not isinstance(raw, dict):
        raise PoisonEntry("record is not a map")
    raw = _MATCH_DEFAULTS | raw
    version = raw["version"]
    if type(version) is int and version > RECORD_VERSION:
        raise PoisonEntry(f"record version {version} is newer than this consumer ({RECORD_VERSION})")
    people = raw.pop("participants", None)
    _check(raw, _MATCH_FIELDS, "record")
    if not raw["match_id"]:
        raise PoisonEntry("empty match id")
    if raw.get("daily") is not None and not _is_day(raw["daily"]):
        raise PoisonEntry(f"record.daily is not a day (YYYY-MM-DD): {raw['daily']!r}")
    for name in _TIMES:
        value = raw[name]
        if value is not None and not 0 <= value <= MAX_MS:
            raise PoisonEntry(f"record.{name} out of range: {value}")
    if not isinstance(people, list):
        raise PoisonEntry("record.participants is not a list")
    participants = []
    for i, p in enumerate(people):
        if not isinstance(p, dict):
            raise PoisonEntry(f"participant {i} is not a map")
        p = _PARTICIPANT_DEFAULTS | p
        _check(p, _PARTICIPANT_FIELDS, f"participant {i}")
        if not all(type(f) is str for f in p["flags"]):
            raise PoisonEntry(f"participant {i}: flags must be strings")
        # key_times are not checked one by one (hot path): a non-number fails the keystroke
        # log's encoding, which the store reports as that record's rejection.
        participants.append(ParticipantRecord(**p))
    return MatchRecord(participants=participants, **raw)


def _test(raw: Any) -> TypingTestRecord:
    """A typing test's result (``arena.typing_tests``): every field typed, its mode known, its
    instants and measures in range, so the store can only refuse it for PostgreSQL's reasons."""
    if not isinstance(raw, dict):
        raise PoisonEntry("record is not a map")
    raw = _TEST_DEFAULTS | raw
    if type(raw["version"]) is int and raw["version"] > TEST_RECORD_VERSION:
        raise PoisonEntry(
            f"record version {raw['version']} is newer than this consumer ({TEST_RECORD_VERSION})"
        )
    _check(raw, _TEST_FIELDS, "record")
    if not raw["match_id"] or not raw["player_id"]:
        raise PoisonEntry("empty test or player id")
    try:
        TypingMode.parse(raw["mode"])
    except ValueError as exc:
        raise PoisonEntry(f"record.mode: {exc}") from None
    for name in _TIMES:
        value = raw[name]
        if value is not None and not 0 <= value <= MAX_MS:
            raise PoisonEntry(f"record.{name} out of range: {value}")
    for name in ("passage_chars", "correct_chars", "typed_chars", "errors", "elapsed_ms"):
        if not 0 <= raw[name] <= 2**31 - 1:
            raise PoisonEntry(f"record.{name} out of range: {raw[name]}")
    if raw["state"] not in ("finished", "aborted") or raw["status"] not in ("finished", "dnf"):
        raise PoisonEntry(f"record state {raw['state']!r} / status {raw['status']!r} unknown")
    if not all(type(f) is str for f in raw["flags"]):
        raise PoisonEntry("record.flags must be strings")
    return TypingTestRecord(**raw)


def _review(raw: Any) -> ReviewDecisionRecord:
    if not isinstance(raw, dict):
        raise PoisonEntry("record is not a map")
    raw = _REVIEW_DEFAULTS | raw
    if type(raw["version"]) is int and raw["version"] > REVIEW_RECORD_VERSION:
        raise PoisonEntry(
            f"record version {raw['version']} is newer than this consumer ({REVIEW_RECORD_VERSION})"
        )
    _check(raw, _REVIEW_FIELDS, "record")
    if not 0 <= raw["decided_at"] <= MAX_MS:
        raise PoisonEntry(f"record.decided_at out of range: {raw['decided_at']}")
    try:
        return ReviewDecisionRecord(**raw)  # checks the decision, ids and reason
    except ValueError as exc:
        raise PoisonEntry(f"review decision: {exc}") from None


def _final(raw: Any) -> TournamentFinalRecord:
    if not isinstance(raw, dict):
        raise PoisonEntry("record is not a map")
    raw = _FINAL_DEFAULTS | raw
    version = raw["version"]
    if type(version) is int and version > FINAL_RECORD_VERSION:
        raise PoisonEntry(f"record version {version} is newer than this consumer ({FINAL_RECORD_VERSION})")
    lists = {name: raw.pop(name, None) for name in _FINAL_LISTS}
    _check(raw, _FINAL_FIELDS, "record")
    if not raw["tournament_id"]:
        raise PoisonEntry("empty tournament id")
    if raw["match_id"] != final_match_id(raw["tournament_id"]):
        raise PoisonEntry(
            f"final record id {raw['match_id']!r} is not {final_match_id(raw['tournament_id'])!r}"
        )
    for name in _TIMES:
        if not 0 <= raw[name] <= MAX_MS:
            raise PoisonEntry(f"record.{name} out of range: {raw[name]}")
    items: dict[str, list[Any]] = {}
    for name, values in lists.items():
        cls, spec, defaults = _FINAL_ITEMS[name]
        if not isinstance(values, list):
            raise PoisonEntry(f"record.{name} is not a list")
        items[name] = []
        for i, item in enumerate(values):
            if not isinstance(item, dict):
                raise PoisonEntry(f"{name} {i} is not a map")
            item = defaults | item
            _check(item, spec, f"{name} {i}")
            items[name].append(cls(**item))
    players = [s.player_id for s in items["standings"]]
    if len(set(players)) != len(players):
        raise PoisonEntry("a player appears twice in the standings")
    return TournamentFinalRecord(
        standings=items["standings"],
        heat_races=items["heat_races"],
        settled_heats=items["settled_heats"],
        **raw,
    )


def _check(raw: dict[str, Any], spec: dict[str, tuple[type, ...]], what: str) -> None:
    # Same number of fields and each one known and typed: then none is missing or unknown.
    if len(raw) != len(spec) or not raw.keys() <= spec.keys():
        unknown, missing = raw.keys() - spec.keys(), spec.keys() - raw.keys()
        if unknown:
            raise PoisonEntry(f"{what} has unknown fields {sorted(unknown)}")
        raise PoisonEntry(f"{what} lacks {sorted(missing)}")
    for name, value in raw.items():
        # type() rather than isinstance(): a bool is not an acceptable int here.
        if type(value) not in spec[name]:
            raise PoisonEntry(f"{what}.{name} has type {type(value).__name__}")
