"""Outbox stream entries, and their decoding into match records.

A node appends ``id``, ``kind`` and ``data`` (the msgpack ``MatchRecord``). Anything that
cannot become a well-typed record is a poison entry: retrying will not help, so it counts as
a failure of that entry alone and, after ``max_deliveries``, goes to the dead-letter stream.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import msgpack

from arena.results import RECORD_VERSION, MatchRecord, ParticipantRecord

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


MATCH_KINDS = ("race", "heat")  # what this consumer stores; anything else is dead-lettered


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
    """A decoded entry: the record to store, and its original bytes to publish unchanged."""

    entry: Entry
    record: MatchRecord
    data: bytes

    @property
    def match_id(self) -> str:
        return self.record.match_id


def decode(entry: Entry) -> Match:
    if entry.kind not in MATCH_KINDS:
        raise PoisonEntry(f"entry kind {entry.kind!r} is not a match this consumer stores")
    data = entry.fields.get(b"data")
    if data is None:
        raise PoisonEntry("entry has no data field")
    try:
        raw: Any = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise PoisonEntry(f"undecodable msgpack: {exc}") from None
    record = _record(raw)
    if record.match_id != entry.match_id or record.kind != entry.kind:
        raise PoisonEntry(
            f"entry fields ({entry.match_id!r}, {entry.kind!r}) differ from the record's"
            f" ({record.match_id!r}, {record.kind!r})"
        )
    return Match(entry=entry, record=record, data=data)


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
