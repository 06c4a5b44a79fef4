"""Client WebSocket frames parsed in a callback, straight from the socket's bytes (RFC 6455).

aiohttp does the HTTP upgrade; afterwards the node reads frames itself (see ``connection``):
one ``data_received`` call parses every whole frame in it and hands each message to a
callback, with no queue and no coroutine wake-up per message. That wake-up was the largest
cost per input once writes were cheap (docs/PERFORMANCE.md).

What a server must enforce is enforced here: client frames are masked, reserved bits are
zero (no extension is negotiated), control frames are short and whole, fragments continue
a message, text is UTF-8, and a message is at most ``max_message_bytes``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class WsClose(IntEnum):
    """RFC 6455 close codes the parser answers with."""

    NORMAL = 1000
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    MESSAGE_TOO_BIG = 1009


@dataclass(slots=True)
class FrameError(Exception):
    """The peer broke the framing rules: close with ``code``."""

    code: WsClose
    reason: str


_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)

# (opcode, payload): TEXT payloads arrive decoded as str, every other opcode as bytes.
MessageCallback = Callable[[Opcode, "bytes | str"], None]


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``mask``, as one big-integer operation.

    For the short frames of this protocol that is a few hundred nanoseconds, and it needs
    no compiled helper.
    """
    n = len(payload)
    if n == 0 or mask == b"\x00\x00\x00\x00":  # a zero key (allowed, and used by load generators)
        return payload
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class FrameReader:
    """Incremental parser of one connection's client frames."""

    __slots__ = ("_buffer", "_fragment_opcode", "_fragment_size", "_fragments", "_max", "_on_message")

    def __init__(self, max_message_bytes: int, on_message: MessageCallback) -> None:
        self._max = max_message_bytes
        self._on_message = on_message
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        self._fragment_size = 0

    @property
    def idle(self) -> bool:
        """Nothing buffered and no message half received: the next read starts a frame."""
        return not self._buffer and self._fragment_opcode is None

    def feed(self, data: bytes) -> None:
        """Parse every whole frame in ``data`` (plus what was left over); raises FrameError."""
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        pos, end = 0, len(data)
        while pos < end:
            used = self._parse_one(data, pos, end)
            if used == 0:  # an incomplete frame: keep it for the next read
                self._buffer = data[pos:]
                return
            pos += used

    def _parse_one(self, data: bytes, pos: int, end: int) -> int:
        """Parse the frame at ``pos``; returns its length, or 0 if it is not complete yet."""
        if end - pos < 2:
            return 0
        b0, b1 = data[pos], data[pos + 1]
        if b0 & 0x70:
            raise FrameError(WsClose.PROTOCOL_ERROR, "reserved bits set: no extension was negotiated")
        if not b1 & 0x80:
            raise FrameError(WsClose.PROTOCOL_ERROR, "client frames must be masked")
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if opcode not in _KNOWN_OPCODES:
            raise FrameError(WsClose.PROTOCOL_ERROR, f"unknown opcode {opcode}")
        length, head = b1 & 0x7F, 2
        if length == 126:
            if end - pos < 4:
                return 0
            (length,) = struct.unpack_from("!H", data, pos + 2)
            head = 4
        elif length == 127:
            if end - pos < 10:
                return 0
            (length,) = struct.unpack_from("!Q", data, pos + 2)
            head = 10
        if opcode >= Opcode.CLOSE and (length > 125 or not fin):
            raise FrameError(WsClose.PROTOCOL_ERROR, "control frames must be whole and at most 125 bytes")
        if length > self._max:
            raise FrameError(WsClose.MESSAGE_TOO_BIG, f"message larger than {self._max} bytes")
        total = head + 4 + length
        if end - pos < total:
            return 0
        mask_at = pos + head
        payload = unmask(data[mask_at + 4 : pos + total], data[mask_at : mask_at + 4])
        self._deliver(Opcode(opcode), bool(fin), payload)
        return total

    def _deliver(self, opcode: Opcode, fin: bool, payload: bytes) -> None:
        if opcode >= Opcode.CLOSE:  # control frames may come between fragments
            self._on_message(opcode, payload)
            return
        if opcode is Opcode.CONTINUATION:
            if self._fragment_opcode is None:
                raise FrameError(WsClose.PROTOCOL_ERROR, "continuation without a message to continue")
            self._add_fragment(payload)
            if fin:
                opcode, self._fragment_opcode = self._fragment_opcode, None
                payload, self._fragments = b"".join(self._fragments), []
                self._emit(opcode, payload)
            return
        if self._fragment_opcode is not None:
            raise FrameError(WsClose.PROTOCOL_ERROR, "a new message started inside a fragmented one")
        if fin:
            self._emit(opcode, payload)
            return
        self._fragment_opcode, self._fragment_size = opcode, 0
        self._add_fragment(payload)

    def _add_fragment(self, payload: bytes) -> None:
        self._fragment_size += len(payload)
        if self._fragment_size > self._max:
            raise FrameError(WsClose.MESSAGE_TOO_BIG, f"message larger than {self._max} bytes")
        self._fragments.append(payload)

    def _emit(self, opcode: Opcode, payload: bytes) -> None:
        if opcode is Opcode.TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                raise FrameError(WsClose.INVALID_DATA, "text frame is not valid UTF-8") from None
            self._on_message(opcode, text)
            return
        self._on_message(opcode, payload)


def parse_close(payload: bytes) -> tuple[int, str]:
    """A close frame's code and reason (1005 'no status' when it carried none)."""
    if len(payload) < 2:
        return 1005, ""
    (code,) = struct.unpack_from("!H", payload)
    return code, payload[2:].decode(errors="replace")
