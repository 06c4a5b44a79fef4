"""The outbox record's encoding: the bytes persistence has always read, built without a deep copy."""

import dataclasses

import msgpack

from arena.results import MatchRecord, ParticipantRecord


def participant(i: int, *, finished: bool) -> ParticipantRecord:
    return ParticipantRecord(
        player_id=f"p{i}",
        name=f"player {i}",
        place=i + 1 if finished else None,
        status="finished" if finished else "dnf",
        valid=i != 2,
        flags=["too_fast"] if i == 2 else [],
        wpm=61.5 + i,
        raw_wpm=70.25,
        accuracy=0.97,
        consistency=0.8,
        correct_chars=40 + i,
        typed_chars=44 + i,
        errors=4,
        elapsed_ms=30_000 + i,
        joined_at=1_000 + i,
        finished_at=31_000 + i if finished else None,
        keys="the quick\bk brown fox",
        key_times=list(range(100, 2200, 100)),
    )


def test_a_record_packs_as_its_asdict_did_and_reads_back() -> None:
    record = MatchRecord(
        match_id="r1",
        kind="heat",
        node_id="node-a",
        race_type="marathon",
        passage_id="m-12",
        passage_chars=1500,
        state="aborted",
        reason="the server is shutting down",
        created_at=1,
        started_at=None,
        ended_at=99,
        participants=[participant(i, finished=i < 2) for i in range(5)],
        tournament_id="t1",
        round_no=2,
        heat_no=3,
    )
    raw = record.to_bytes()
    assert raw == msgpack.packb(_as_packed(record), use_bin_type=True)
    assert MatchRecord.from_bytes(raw) == record
    empty = dataclasses.replace(record, participants=[], tournament_id=None, round_no=None, heat_no=None)
    assert empty.to_bytes() == msgpack.packb(_as_packed(empty), use_bin_type=True)
    daily = dataclasses.replace(record, daily="2026-12-06")  # a daily attempt's record carries its day
    assert daily.to_bytes() == msgpack.packb(dataclasses.asdict(daily), use_bin_type=True)
    assert MatchRecord.from_bytes(daily.to_bytes()) == daily
    assert MatchRecord.from_bytes(empty.to_bytes()) == empty


def _as_packed(record: MatchRecord) -> dict[str, object]:
    """``asdict`` as records were always packed: without ``daily`` when it is None (older readers
    of the outbox refuse a field they do not know)."""
    data = dataclasses.asdict(record)
    if data["daily"] is None:
        del data["daily"]
    return data
