"""Client WebSocket frames parsed in a callback, straight from the socket's bytes (RFC 6455).

aiohttp checks the HTTP upgrade request; the node answers it (``switching_protocols``) and
then reads frames itself (see ``connection``):
one ``data_received`` call parses every whole frame in it and hands each message to a
callback, with no queue and no coroutine wake-up per message. That wake-up was the largest
cost per input once writes were cheap (docs/PERFORMANCE.md).

What a server must enforce is enforced here: client frames are masked, reserved bits are
zero (no extension is negotiated), lengths use the fewest bytes, control frames are short
and whole, fragments continue a message, text is UTF-8 (checked fragment by fragment, so a
bad first fragment fails at once), close frames carry a valid code and a UTF-8 reason, and
a message is at most ``max_message_bytes``. Nothing after a close frame is read.

Every frame, control frames and continuations included, is offered to ``admit`` (the
connection's rate limit) once whole; a refused frame is dropped and reported to ``refused``
(a refused fragment drops its whole message). Close frames are never refused.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from aiohttp.http_websocket import WS_KEY  # RFC 6455 1.3's GUID, as aiohttp's own handshake uses


def switching_protocols(key: str) -> bytes:
    """The 101 answer to an upgrade request whose ``Sec-WebSocket-Key`` is ``key`` (already
    checked by aiohttp): no subprotocol, no extension (RFC 6455 4.2.2)."""
    accept = base64.b64encode(hashlib.sha1(key.encode() + WS_KEY).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


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


def valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a close frame (RFC 6455 7.4, IANA registry).

    1000-1003 and 1007-1011 are RFC 6455's; 1012-1014 (service restart, try again later,
    bad gateway) were registered with IANA since and are accepted too. 1004 is reserved,
    1005, 1006 and 1015 must never be sent, 1016-2999 are unassigned; 3000-3999 are for
    libraries and frameworks, 4000-4999 for applications.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


@dataclass(slots=True)
class FrameError(Exception):
    """The peer broke the framing rules: close with ``code``."""

    code: WsClose
    reason: str


_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)

# (opcode, payload): TEXT payloads arrive decoded as str, every other opcode as bytes.
MessageCallback = Callable[[Opcode, "bytes | str"], None]
# Asked once per whole frame: may it pass (the rate limit)? And told which frame was refused.
AdmitCallback = Callable[[], bool]
RefusedCallback = Callable[[Opcode], None]

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


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

    __slots__ = (
        "_admit",
        "_buffer",
        "_closed",
        "_dropping",
        "_fragment_opcode",
        "_fragment_size",
        "_fragments",
        "_max",
        "_on_message",
        "_pieces",
        "_refused",
        "_text",
    )

    def __init__(
        self,
        max_message_bytes: int,
        on_message: MessageCallback,
        admit: AdmitCallback | None = None,
        refused: RefusedCallback | None = None,
    ) -> None:
        self._max = max_message_bytes
        self._on_message = on_message
        self._admit = admit
        self._refused = refused
        self._buffer = b""
        self._fragments: list[bytes] = []  # a fragmented binary message so far
        self._pieces: list[str] = []  # a fragmented text message so far, decoded
        self._text: codecs.IncrementalDecoder | None = None  # a fragmented text message's decoder
        self._fragment_opcode: Opcode | None = None
        self._fragment_size = 0
        self._dropping = False  # a fragment of this message was refused: drop the rest of it
        self._closed = False  # the peer's close frame came: nothing after it is read

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
        while pos < end and not self._closed:
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
            if length < 126:
                raise FrameError(WsClose.PROTOCOL_ERROR, "length not in its shortest form (RFC 6455 5.2)")
        elif length == 127:
            if end - pos < 10:
                return 0
            (length,) = struct.unpack_from("!Q", data, pos + 2)
            head = 10
            if length < 65536:
                raise FrameError(WsClose.PROTOCOL_ERROR, "length not in its shortest form (RFC 6455 5.2)")
        if opcode >= Opcode.CLOSE:
            if length > 125 or not fin:
                raise FrameError(WsClose.PROTOCOL_ERROR, "control frames must be whole and at most 125 bytes")
        elif (self._fragment_opcode is None) is (opcode == 0):  # from the header, as the size below
            if opcode:
                raise FrameError(WsClose.PROTOCOL_ERROR, "a new message started inside a fragmented one")
            raise FrameError(WsClose.PROTOCOL_ERROR, "continuation without a message to continue")
        # Refused from the header, before the payload: 2^63 and up included (far too big, whatever
        # the top bit says), and a continuation that would take its message over the limit.
        if length > self._max or (not opcode and length > self._max - self._fragment_size):
            raise FrameError(WsClose.MESSAGE_TOO_BIG, f"message larger than {self._max} bytes")
        total = head + 4 + length
        if end - pos < total:
            return 0
        mask_at = pos + head
        payload = unmask(data[mask_at + 4 : pos + total], data[mask_at : mask_at + 4])
        self._deliver(Opcode(opcode), bool(fin), payload)
        return total

    def _deliver(self, opcode: Opcode, fin: bool, payload: bytes) -> None:
        admitted = self._admit is None or self._admit()
        if opcode >= Opcode.CLOSE:  # control frames may come between fragments
            if opcode is Opcode.CLOSE:  # always honoured, whatever the rate
                check_close(payload)
                self._closed = True
            elif not admitted:
                self._refuse(opcode)
                return
            self._on_message(opcode, payload)
            return
        if opcode is Opcode.CONTINUATION:  # (_parse_one checked that a message is open)
            if not admitted:  # every refused frame counts, even within a message already dropped
                if not self._dropping:
                    self._dropping = True
                    self._fragments, self._pieces = [], []
                self._refuse(opcode)
            self._add_fragment(payload, fin)
            if fin:
                self._end_message()
            return
        if fin:
            message: bytes | str = payload
            if opcode is Opcode.TEXT:  # (inline: this is the path of nearly every text message)
                try:
                    message = payload.decode()
                except UnicodeDecodeError:
                    raise FrameError(WsClose.INVALID_DATA, "text frame is not valid UTF-8") from None
            if admitted:
                self._on_message(opcode, message)
            else:
                self._refuse(opcode)
            return
        self._fragment_opcode, self._fragment_size, self._dropping = opcode, 0, not admitted
        self._text = _Utf8Decoder() if opcode is Opcode.TEXT else None
        if not admitted:
            self._refuse(opcode)
        self._add_fragment(payload, False)

    def _add_fragment(self, payload: bytes, fin: bool) -> None:
        self._fragment_size += len(payload)
        if self._fragment_size > self._max:
            raise FrameError(WsClose.MESSAGE_TOO_BIG, f"message larger than {self._max} bytes")
        text = self._text
        if text is not None:
            try:  # fragment by fragment: a character may be split between two of them
                piece = text.decode(payload, fin)
            except UnicodeDecodeError:
                raise FrameError(WsClose.INVALID_DATA, "text frame is not valid UTF-8") from None
            if not self._dropping:
                self._pieces.append(piece)
        elif not self._dropping:
            self._fragments.append(payload)

    def _end_message(self) -> None:
        opcode, dropped = self._fragment_opcode, self._dropping
        assert opcode is not None
        message: bytes | str = "".join(self._pieces) if self._text is not None else b"".join(self._fragments)
        self._fragment_opcode, self._fragment_size, self._text, self._dropping = None, 0, None, False
        self._fragments, self._pieces = [], []
        if not dropped:
            self._on_message(opcode, message)

    def _refuse(self, opcode: Opcode) -> None:
        if self._refused is not None:
            self._refused(opcode)


def check_close(payload: bytes) -> None:
    """Refuse a close frame RFC 6455 forbids (5.5.1, 7.4): a 1-byte body, a code no peer may
    send (1002), a reason that is not UTF-8 (1007)."""
    if not payload:
        return
    if len(payload) == 1:
        raise FrameError(WsClose.PROTOCOL_ERROR, "a close frame body is a 2-byte code and a reason")
    (code,) = struct.unpack_from("!H", payload)
    if not valid_close_code(code):
        raise FrameError(WsClose.PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(WsClose.INVALID_DATA, f"close {code}: the reason is not valid UTF-8") from None


def parse_close(payload: bytes) -> tuple[int, str]:
    """A close frame's code and reason (1005 'no status' when it carried none); the frame
    has passed ``check_close``."""
    if len(payload) < 2:
        return 1005, ""
    (code,) = struct.unpack_from("!H", payload)
    return code, payload[2:].decode(errors="replace")
