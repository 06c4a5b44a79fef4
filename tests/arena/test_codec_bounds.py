"""Every field of every client message has a range, checked when the message is decoded.

The message fuzzer's property is the one that failed in production: whatever the codec accepts,
the server can encode again (a progress frame carries ``seq``; msgpack cannot hold 2**70).
"""

import json

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arena.codec import (
    MAX_JSON_DEPTH,
    ProtocolError,
    WireFormat,
    decode_client,
    encode,
    json_depth,
    load_json,
)
from arena.protocol import CLIENT_MESSAGES, MAX_KEY_TIME_MS, MAX_SAFE_INT, MAX_SEQ, MAX_TOKEN_CHARS

OUT_OF_RANGE = [
    ({"t": "input", "seq": 2**70, "keys": "a", "times": [1]}, "seq"),
    ({"t": "input", "seq": MAX_SEQ + 1, "keys": "a", "times": [1]}, "seq"),
    ({"t": "input", "seq": -1, "keys": "a", "times": [1]}, "seq"),
    ({"t": "input", "seq": 1, "keys": "a", "times": [-1]}, "times"),
    ({"t": "input", "seq": 1, "keys": "a", "times": [2**32]}, "times"),
    ({"t": "input", "seq": 1, "keys": "ab", "times": [1, MAX_KEY_TIME_MS + 1]}, "times"),
    ({"t": "input", "seq": 1, "keys": "a", "times": [1.5]}, "times"),
    ({"t": "input", "seq": 1, "keys": "a" * 1025, "times": [1] * 1025}, "keys"),
    ({"t": "input", "seq": True, "keys": "a", "times": [1]}, "seq"),
    ({"t": "pong", "echo": -(10**400), "time": 1}, "echo"),
    ({"t": "pong", "echo": 1, "time": MAX_SAFE_INT + 1}, "time"),
    ({"t": "ping", "sent": -5}, "sent"),
    ({"t": "hello", "token": "x" * (MAX_TOKEN_CHARS + 1)}, "token"),
    ({"t": "hello", "token": "x", "client": "c" * 129}, "client"),
    ({"t": "join", "ticket": "x" * (MAX_TOKEN_CHARS + 1)}, "ticket"),
    ({"t": "spectate", "race_id": "r" * 65}, "race_id"),
]


@pytest.mark.parametrize(("message", "field"), OUT_OF_RANGE)
def test_a_field_out_of_range_is_refused_naming_it(message: dict[str, object], field: str) -> None:
    with pytest.raises(ProtocolError, match=f"field '{field}'"):
        decode_client(json.dumps(message))


def test_the_edges_of_each_range_are_accepted() -> None:
    edge = {"t": "input", "seq": MAX_SEQ, "keys": "ab", "times": [0, MAX_KEY_TIME_MS]}
    for fmt_frame in (json.dumps(edge), msgpack.packb(edge)):
        decoded = decode_client(fmt_frame)
        assert encode(decoded, WireFormat.MSGPACK)  # what is accepted can be encoded
    decode_client(json.dumps({"t": "pong", "echo": MAX_SAFE_INT, "time": 0}))


@pytest.mark.parametrize(
    ("text", "depth"),
    [("1", 0), ("[]", 1), ('{"a": [1, {"b": []}]}', 4), ('["[[[[", "]]"]', 1), ('["\\"[[["]', 1)],
)
def test_json_depth_skips_brackets_inside_strings(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def test_nesting_deeper_than_the_bound_is_refused_without_recursing() -> None:
    deep = "[" * 100_000 + "]" * 100_000  # CPython's decoder would raise RecursionError here
    with pytest.raises(ProtocolError, match="nested deeper"):
        decode_client(deep)
    with pytest.raises(ValueError, match="nested deeper"):
        load_json(deep.encode())
    at_bound = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert load_json(at_bound) is not None


def test_deep_msgpack_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_client(b"\x91" * 100_000 + b"\xc0")


# ---- the message fuzzer: protocol map shapes with hostile values ----------------------------

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_field_names = st.sampled_from(["seq", "keys", "times", "echo", "time", "sent", "token", "client", "ticket",
                                "race_id", "x"])


@st.composite
def _client_maps(draw: st.DrawFn) -> dict[str, object]:
    message: dict[str, object] = {"t": draw(st.sampled_from([*CLIENT_MESSAGES, "nope"]))}
    for name in draw(st.lists(_field_names, max_size=5, unique=True)):
        message[name] = draw(_values | st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=5))
    return message


@settings(
    max_examples=400, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(message=_client_maps(), as_json=st.booleans())
def test_fuzzed_messages_are_refused_or_encodable(message: dict[str, object], as_json: bool) -> None:
    try:
        frame: bytes | str = json.dumps(message) if as_json else msgpack.packb(message)
    except (OverflowError, ValueError, TypeError):
        return  # msgpack itself cannot carry it: no client can send it
    try:
        decoded = decode_client(frame)
    except ProtocolError:
        return
    for fmt in WireFormat:
        assert decode_client(encode(decoded, fmt)) == decoded
