"""A race's checkpoint journal, held encoded (issue 21).

Every join, countdown, input and leave a race journals (``Race.journal``) waits for the node's
tick to append it to the race's checkpoint (``gameserver/checkpoint.py``), up to
``ARENA_RACE_CHECKPOINT_MS`` (2 s). Held as tuples, an input entry kept its decoded message's
``keys`` str, ``times`` list and an int per keystroke time alive that long: ≈ 2.5-3 KB of small
objects per socket at a load's peak, which pinned pymalloc arenas after the load. So each entry
is packed (msgpack) as it is journalled, into one growing buffer per race; ``take`` hands the
tick the checkpoint items: a msgpack array header and the packed entries after it, byte for byte
what ``checkpoint.encode_entries`` makes of the same entries, so nothing downstream changes.

An entry msgpack refuses (a name that is not valid UTF-8: a lone surrogate) becomes its own JSON
item (``checkpoint.encode_entry``), between the msgpack items of the entries before and after
it: the order holds, and ``checkpoint.decode_item`` reads both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import msgpack

_packer = msgpack.Packer()  # autoreset: each call returns its bytes (and resets on an error)
_pack: Callable[[object], bytes] = _packer.pack
_array_header: Callable[[int], bytes] = _packer.pack_array_header
_encode_json = json.JSONEncoder(separators=(",", ":")).encode  # as checkpoint.encode_entry

Item = tuple[bytes | str, int]  # a checkpoint item and how many entries it carries


class Journal:
    """A race's journal entries, oldest first, packed as they come: a few blocks per race, not a
    few per input."""

    __slots__ = ("_count", "_done", "_packed", "_total")

    def __init__(self) -> None:
        self._packed = bytearray()  # the entries since the last JSON one, each packed, back to back
        self._count = 0  # entries in _packed
        self._done: list[Item] | None = None  # items closed by a JSON entry (rare: None otherwise)
        self._total = 0

    def __len__(self) -> int:
        """Entries journalled and not taken."""
        return self._total

    def append(self, entry: tuple[object, ...]) -> None:
        try:
            packed = _pack(entry)
        except (UnicodeEncodeError, TypeError, ValueError, OverflowError):  # msgpack refuses it: JSON can
            done = self._done if self._done is not None else []
            if self._count:
                done.append(self._item())
            done.append((_encode_json(entry), 1))
            self._done = done
            self._packed = bytearray()
            self._count = 0
        else:
            self._packed += packed
            self._count += 1
        self._total += 1

    def extend(self, entries: Iterable[tuple[object, ...]]) -> None:
        for entry in entries:
            self.append(entry)

    def items(self) -> list[Item]:
        """The entries as checkpoint items, oldest first (one unless an entry needed JSON)."""
        items = list(self._done or ())
        if self._count:
            items.append(self._item())
        return items

    def take(self) -> list[Item]:
        """``items``, and the journal is empty after it."""
        items = self.items()
        self._packed = bytearray()  # a new buffer: a long journal's capacity is not kept
        self._count = self._total = 0
        self._done = None
        return items

    def _item(self) -> Item:
        return _array_header(self._count) + self._packed, self._count  # bytes + bytearray: bytes
