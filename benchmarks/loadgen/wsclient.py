"""A minimal WebSocket client (RFC 6455) as a raw asyncio Protocol: cheap enough for 10,000+ sockets.

Only what a load generator needs: the HTTP upgrade, whole unfragmented frames, answers to
control frames. No extensions (we never offer permessage-deflate, so the server never
compresses) and no fragmentation (aiohttp never fragments what it sends).

Client frames must be masked; the mask key is all zeros, which is legal and makes masking a
no-op, so a payload is sent exactly as it was packed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from typing import cast

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "WSClientProtocol",
    "accept_for",
    "binary_frame",
    "client_frame",
    "handshake_request",
    "server_frame",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_ZERO_MASK = b"\x00\x00\x00\x00"
_MAX_HEADER_BYTES = 16 * 1024
# Header (FIN + binary, MASK bit + length, zero mask key) of every short binary frame, built
# once: a send is then one concatenation.
_SHORT_BINARY_HEADERS = tuple(bytes((0x82, 0x80 | n)) + _ZERO_MASK for n in range(126))


def client_frame(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    """A complete masked client frame (zero mask key) carrying ``payload``."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, 0x80 | n)) + _ZERO_MASK + payload
    if n < 65536:
        return struct.pack("!BBH", first, 0x80 | 126, n) + _ZERO_MASK + payload
    return struct.pack("!BBQ", first, 0x80 | 127, n) + _ZERO_MASK + payload


def binary_frame(payload: bytes) -> bytes:
    """``client_frame`` for the hot path: a table lookup for the common short binary frame."""
    n = len(payload)
    if n < 126:
        return _SHORT_BINARY_HEADERS[n] + payload
    return client_frame(payload)


def server_frame(payload: bytes) -> bytes:
    """The unmasked binary frame a server sends for ``payload`` (to recognise its exact bytes)."""
    n = len(payload)
    if n < 126:
        return bytes((0x82, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x82, 126, n) + payload
    return struct.pack("!BBQ", 0x82, 127, n) + payload


def handshake_request(host: str, port: int, path: str, key: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer to ``key``."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


class WSClientProtocol(asyncio.Protocol):
    """One client WebSocket. Subclasses get ``on_open``, ``on_binary``, ``on_text``, ``on_closed``.

    ``data_received`` is the hot path: the common case (exactly one short binary frame per
    read) costs a few byte reads and one slice.
    """

    __slots__ = ("_buf", "_host", "_key", "_path", "_port", "_upgraded", "close_code", "transport")

    def __init__(self, host: str, port: int, path: str = "/ws") -> None:
        self._host = host
        self._port = port
        self._path = path
        self._key = base64.b64encode(os.urandom(16)).decode("ascii")
        self._buf = b""
        self._upgraded = False
        self.transport: asyncio.Transport | None = None
        self.close_code: int | None = None  # from the server's close frame, if one came

    # ---- hooks for subclasses --------------------------------------------------------

    def on_open(self) -> None:
        """The upgrade succeeded: frames may be sent."""

    def on_binary(self, payload: bytes) -> None:
        """One binary message arrived."""

    def on_text(self, payload: bytes) -> None:
        """One text message arrived (UTF-8 bytes, not decoded here)."""

    def on_failed(self, reason: str) -> None:
        """The upgrade or the framing failed; the transport is being aborted."""

    def on_closed(self, exc: Exception | None) -> None:
        """The TCP connection is gone (after a close frame, an abort, or an error)."""

    # ---- sending ---------------------------------------------------------------------

    def send_binary(self, payload: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(binary_frame(payload))

    def send_close(self, code: int = 1000) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(client_frame(code.to_bytes(2, "big"), OP_CLOSE))
            transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # ---- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport has the Transport API without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(handshake_request(self._host, self._port, self._path, self._key))

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_closed(exc)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        elif self._upgraded:
            # Fast path: one whole short server frame (FIN + binary, no mask) in this read.
            n = len(data)
            if n >= 2 and data[0] == 0x82 and data[1] == n - 2 and n < 128:
                self.on_binary(data[2:])
                return
        if not self._upgraded:
            data = self._read_upgrade(data)
            if not data:
                return
        self._read_frames(data)

    # ---- internals -------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        self.on_failed(reason)
        self.abort()

    def _read_upgrade(self, data: bytes) -> bytes:
        """Consume the HTTP 101 answer; returns the bytes after it (the first frames)."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > _MAX_HEADER_BYTES:
                self._fail("upgrade answer too large")
            else:
                self._buf = data
            return b""
        head = data[:end].decode("latin-1").split("\r\n")
        status = head[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self._fail(f"upgrade refused: {head[0]}")
            return b""
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept") != accept_for(self._key):
            self._fail("bad Sec-WebSocket-Accept")
            return b""
        if headers.get("sec-websocket-extensions"):
            self._fail("server negotiated an extension we did not offer")
            return b""
        self._upgraded = True
        self.on_open()
        return data[end + 4 :]

    def _read_frames(self, data: bytes) -> None:
        pos = 0
        end = len(data)
        while end - pos >= 2:
            first = data[pos]
            length = data[pos + 1]
            if length & 0x80:
                self._fail("server frames must not be masked")
                return
            if length < 126:
                start = pos + 2
            elif length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                start = pos + 4
            else:
                if end - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            stop = start + length
            if stop > end:
                break
            payload = data[start:stop]
            pos = stop
            opcode = first & 0x0F
            if not first & 0x80 or opcode == OP_CONTINUATION:
                self._fail("fragmented frames are not supported")
                return
            if opcode == OP_BINARY:
                self.on_binary(payload)
            elif opcode == OP_TEXT:
                self.on_text(payload)
            elif opcode == OP_PING:
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.write(client_frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.send_close(self.close_code)  # echo it, then close our side
                return
            elif opcode != OP_PONG:
                self._fail(f"unknown opcode {opcode}")
                return
        if pos < end:
            self._buf = data[pos:]
