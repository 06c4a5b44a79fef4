"""The keystroke log, stored compactly in one ``bytea`` column (``race_participants.keylog``).

Format 1 is a msgpack array ``[1, keys, deltas]``: ``keys`` is the typed string (``\\b`` is a
backspace) and ``deltas`` the key times as differences from the previous key (the first
from the race start). Gaps between keys are mostly under 256 ms, which msgpack packs in one
or two bytes, against three to five for the absolute times; bytes, not text, so no
character a client managed to type can be refused by PostgreSQL.
"""

from __future__ import annotations

import operator
from itertools import accumulate
from typing import Any

import msgpack

FORMAT = 1


class KeylogError(ValueError):
    """Bytes that are not a keystroke log this code understands."""


def encode(keys: str, times: list[int]) -> bytes:
    deltas = times[:1]
    deltas += map(operator.sub, times[1:], times)  # C-speed pairwise differences
    packed: bytes = msgpack.packb([FORMAT, keys, deltas], use_bin_type=True)
    return packed


def decode(raw: bytes) -> tuple[str, list[int]]:
    """Keys and absolute key times (ms since the race start)."""
    try:
        value: Any = msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.ExtraData) as exc:
        raise KeylogError(f"undecodable keystroke log: {exc}") from None
    if not (isinstance(value, list) and len(value) == 3 and value[0] == FORMAT):
        raise KeylogError("unknown keystroke log format")
    _, keys, deltas = value
    if not isinstance(keys, str) or not isinstance(deltas, list):
        raise KeylogError("malformed keystroke log")
    return keys, list(accumulate(deltas))
