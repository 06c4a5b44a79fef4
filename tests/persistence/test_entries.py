"""Decoding outbox entries: a well-formed record passes, anything else is a poison entry with a reason."""

import dataclasses
import random
from typing import Any

import msgpack
import pytest

from arena.results import FINAL_KIND, MatchRecord
from persistence import synthetic
from persistence.entries import Entry, PoisonEntry, decode
from tests.persistence.helpers import final


def record() -> MatchRecord:
    return synthetic.match(
        random.Random(5), ended_at=1_790_000_000_000, players=["ada", "bob"], keys=10, match_id="r-test"
    )


def entry(data: bytes, match_id: str) -> Entry:
    return Entry("1-1", {b"id": match_id.encode(), b"kind": b"race", b"data": data})


def mutate(change: dict[str, Any], participant: dict[str, Any] | None = None) -> bytes:
    raw = dataclasses.asdict(record())
    raw |= change
    if participant is not None:
        raw["participants"][0] |= participant
    packed: bytes = msgpack.packb(raw)
    return packed


def test_a_record_decodes_to_itself_and_keeps_its_bytes() -> None:
    r = record()
    m = decode(entry(r.to_bytes(), r.match_id))
    assert m.record == r
    assert m.data == r.to_bytes()


def test_fields_with_defaults_may_be_absent() -> None:
    r = record()
    raw = dataclasses.asdict(r)
    for name in ("tournament_id", "round_no", "heat_no", "version"):
        del raw[name]
    assert decode(entry(msgpack.packb(raw), r.match_id)).record == r


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xc1", "undecodable msgpack"),
        (msgpack.packb([1, 2]), "not a map"),
        (mutate({"ended_at": "yesterday"}), "record.ended_at has type str"),
        (mutate({"passage_chars": True}), "record.passage_chars has type bool"),
        (mutate({"version": 99}), "newer than this consumer"),
        (mutate({"shiny": 1}), "unknown fields ['shiny']"),
        (mutate({"ended_at": -5}), "out of range"),
        (mutate({"match_id": ""}), "empty match id"),
        (mutate({}, {"wpm": "fast"}), "participant 0.wpm has type str"),
        (mutate({}, {"flags": [1]}), "flags must be strings"),
    ],
)
def test_poison(data: bytes, reason: str) -> None:
    match_id = "" if reason == "empty match id" else "r-test"
    with pytest.raises(PoisonEntry, match=reason.replace("[", r"\[").replace("]", r"\]")):
        decode(entry(data, match_id))


def test_missing_data_and_mismatched_id_are_poison() -> None:
    with pytest.raises(PoisonEntry, match="no data field"):
        decode(Entry("1-1", {b"id": b"r1", b"kind": b"race"}))
    r = record()
    with pytest.raises(PoisonEntry, match="differ from the record's"):
        decode(entry(r.to_bytes(), "someone-else"))
    with pytest.raises(PoisonEntry, match="kind 'tournament_start' is not a record"):
        decode(Entry("1-1", {b"id": b"t1:start", b"kind": b"tournament_start", b"data": b"\x80"}))


def final_entry(data: bytes, match_id: str = "t1:final", kind: str = FINAL_KIND) -> Entry:
    return Entry("1-1", {b"id": match_id.encode(), b"kind": kind.encode(), b"data": data})


def test_a_final_record_decodes_by_its_kind() -> None:
    f = final("t1", ["ada", "bob", "cy"])
    m = decode(final_entry(f.to_bytes()))
    assert m.record == f and m.data == f.to_bytes()
    assert m.match_id == "t1:final" and m.key == "t1"  # Kafka key: the tournament


def mutate_final(change: dict[str, Any], standing: dict[str, Any] | None = None) -> bytes:
    raw = dataclasses.asdict(final("t1", ["ada", "bob"]))
    raw |= change
    if standing is not None:
        raw["standings"][0] |= standing
    packed: bytes = msgpack.packb(raw)
    return packed


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xc1", "undecodable msgpack"),
        (msgpack.packb([1, 2]), "not a map"),
        (mutate_final({"version": 99}), "newer than this consumer"),
        (mutate_final({"heat_size": "4"}), "record.heat_size has type str"),
        (mutate_final({"ended_at": -1}), "out of range"),
        (mutate_final({"match_id": "t2:final"}), "is not 't1:final'"),
        (mutate_final({"tournament_id": ""}), "empty tournament id"),
        (mutate_final({"standings": {}}), "record.standings is not a list"),
        (mutate_final({}, {"rank": 1.5}), "standings 0.rank has type float"),
        (mutate_final({}, {"medal": "x"}), "standings 0 has unknown fields"),
        (mutate_final({}, {"player_id": "bob"}), "appears twice"),
        (mutate_final({"heat_races": [[1, 1, 0, "r"]]}), "heat_races 0 is not a map"),
    ],
)
def test_final_poison(data: bytes, reason: str) -> None:
    with pytest.raises(PoisonEntry, match=reason.replace("[", r"\[").replace("]", r"\]")):
        decode(final_entry(data))


def test_a_match_record_under_the_final_kind_is_poison() -> None:
    r = record()
    with pytest.raises(PoisonEntry):
        decode(final_entry(r.to_bytes(), r.match_id))


def test_an_int_is_accepted_where_a_float_is_expected() -> None:
    r = record()
    m = decode(entry(mutate({}, {"wpm": 80}), r.match_id))
    assert m.record.participants[0].wpm == 80


@pytest.mark.parametrize("day", ["2027-02-30", "yesterday", "2027-1-5", 20270105])
def test_a_daily_that_is_not_a_day_is_poison(day: object) -> None:
    r = record()
    with pytest.raises(PoisonEntry, match="daily"):
        decode(entry(mutate({"daily": day}), r.match_id))
