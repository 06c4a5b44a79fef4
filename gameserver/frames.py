"""Whole WebSocket frames built once and written as they are to many sockets.

A server frame is unmasked (RFC 6455 5.1): a 2-10 byte header and the payload. Building it
once per broadcast and handing the same bytes to every transport skips aiohttp's per-send
work (header building, compression checks, drain bookkeeping), the largest cost of fan-out.
"""

from __future__ import annotations

import struct

_FIN_BINARY = 0x82
_FIN_TEXT = 0x81


def ws_frame(payload: bytes | str) -> bytes:
    """The complete frame for one message: binary for bytes (msgpack), text for str (JSON)."""
    if isinstance(payload, str):
        data, first = payload.encode(), _FIN_TEXT
    else:
        data, first = payload, _FIN_BINARY
    n = len(data)
    if n < 126:
        header = bytes((first, n))
    elif n < 65536:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + data


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit the 125-byte control-frame limit."""
    payload = struct.pack("!H", code) + reason.encode()[:123]
    return bytes((0x88, len(payload))) + payload


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A ping (0x9) or pong (0xA) frame with at most 125 bytes of payload."""
    payload = payload[:125]
    return bytes((0x80 | opcode, len(payload))) + payload
