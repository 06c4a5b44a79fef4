"""The codec round-trips every message and refuses malformed input with a clear reason."""

import json

import msgpack
import pytest

from arena import codec
from arena.codec import ProtocolError, WireFormat, decode_client, decode_server, encode
from arena.protocol import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    Hello,
    Input,
    Joined,
    Leave,
    PlayerInfo,
    Progress,
    ResultRow,
    Results,
    ResumeState,
)


@pytest.mark.parametrize("fmt", list(WireFormat))
def test_client_messages_round_trip(fmt: WireFormat) -> None:
    for msg in (Hello(token="t", client="bot"), Input(seq=3, keys="ab\b", times=[1, 2, 3]), Leave()):
        assert decode_client(encode(msg, fmt)) == msg


@pytest.mark.parametrize("fmt", list(WireFormat))
def test_nested_server_messages_round_trip(fmt: WireFormat) -> None:
    joined = Joined(
        race_id="r1",
        race_type="quick",
        passage_id="q001",
        passage="hello world",
        state="waiting",
        players=[PlayerInfo(id="p1", name="ada", connected=True, status="racing", position=0, wpm=0.0)],
        server_time=10,
        start_at=None,
        ends_at=None,
        you=ResumeState(position=0, error_run=0, seq=0, status="racing"),
    )
    results = Results(
        race_id="r1",
        state="finished",
        results=[
            ResultRow(
                player_id="p1",
                name="ada",
                place=1,
                status="finished",
                wpm=61.5,
                raw_wpm=70.0,
                accuracy=97.5,
                consistency=80.0,
                elapsed_ms=12000,
                position=11,
                flags=[],
            )
        ],
    )
    progress = Progress(server_time=5, players=[["p1", 4, 55.5, 0, 2]])
    for msg in (joined, results, progress):
        assert decode_server(encode(msg, fmt)) == msg


def test_json_and_msgpack_carry_the_same_map() -> None:
    msg = Input(seq=1, keys="a", times=[5])
    assert json.loads(encode(msg, WireFormat.JSON)) == msgpack.unpackb(encode(msg, WireFormat.MSGPACK))


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\xc1\xff\x00garbage", "invalid msgpack"),
        ("{not json", "invalid JSON"),
        (msgpack.packb([1, 2, 3]), "must be a map"),
        (msgpack.packb({"t": "teleport"}), "unknown message type"),
        (msgpack.packb({"t": "welcome", "player_id": "p"}), "unknown message type"),
        (msgpack.packb({"t": "input", "seq": "1", "keys": "a", "times": [1]}), "field 'seq'"),
        (msgpack.packb({"t": "input", "seq": 1, "keys": "a"}), "missing field 'times'"),
        (msgpack.packb({"t": "input", "seq": True, "keys": "a", "times": [1]}), "field 'seq'"),
        (msgpack.packb({"t": "input", "seq": 1, "keys": "a", "times": [1.5]}), "field 'times'"),
        (json.dumps({"t": "hello"}), "missing field 'token'"),
    ],
)
def test_malformed_frames_raise_protocol_error(frame: bytes | str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode_client(frame)


def test_client_registry_names_every_client_type() -> None:
    assert set(CLIENT_MESSAGES) == {"hello", "ping", "pong", "join", "input", "leave", "spectate"}


def test_warm_builds_every_message_types_converter_and_field_names() -> None:
    codec.warm()
    messages = {*CLIENT_MESSAGES.values(), *SERVER_MESSAGES.values()}
    assert messages <= set(codec._converters)
    assert messages <= set(codec._field_cache)
    assert ResultRow in codec._field_cache and PlayerInfo in codec._field_cache  # nested ones too
