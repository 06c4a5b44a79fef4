"""The node's own frame handling over a real socket: what a raw client sees."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

import msgpack

from arena.protocol import CloseCode
from gameserver.settings import LimitSettings
from tests.conftest import NodeFactory, RunningNode
from tests.gameserver.test_wsproto import client_frame


class RawSocket:
    """A WebSocket spoken by hand, to send what no library would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, node: RunningNode) -> RawSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.settings.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"permessage-deflate" not in head.lower()  # no extension: frames are plain
        return cls(reader, writer)

    def send(self, frame: bytes) -> None:
        self.writer.write(frame)

    async def frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next server frame (opcode, payload); server frames are never masked."""
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        assert not b1 & 0x80
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def close_code(self, timeout: float = 5.0) -> int:
        """Read until the server's close frame; its code."""
        while True:
            opcode, payload = await self.frame(timeout)
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])

    async def eof(self, timeout: float = 5.0) -> bool:
        """True once the server hung up (a reset counts: it may close with our bytes unread)."""
        try:
            await asyncio.wait_for(self.reader.read(), timeout)
        except ConnectionResetError:
            pass
        return True

    def shut(self) -> None:
        self.writer.close()


async def test_unmasked_frames_are_a_protocol_error(node: RunningNode) -> None:
    sock = await RawSocket.open(node)
    sock.send(client_frame(0x2, msgpack.packb({"t": "ping", "sent": 1}), masked=False))
    assert await sock.close_code() == 1002
    assert await sock.eof()  # failed at once: the rest of the stream cannot be parsed
    sock.shut()


async def test_invalid_utf8_text_is_refused_with_1007(node: RunningNode) -> None:
    sock = await RawSocket.open(node)
    sock.send(client_frame(0x1, b'{"t":"ping","sent":"\xff"}'))
    assert await sock.close_code() == 1007
    sock.shut()


async def test_pings_fragments_and_the_closing_handshake(node: RunningNode) -> None:
    sock = await RawSocket.open(node)
    sock.send(client_frame(0x9, b"are you there"))
    assert await sock.frame() == (0xA, b"are you there")
    ping = msgpack.packb({"t": "ping", "sent": 7})
    sock.send(client_frame(0x2, ping[:3], fin=False) + client_frame(0x0, ping[3:]))
    opcode, payload = await sock.frame()
    assert opcode == 0x2 and msgpack.unpackb(payload)["t"] == "pong" and msgpack.unpackb(payload)["echo"] == 7
    sock.send(client_frame(0x8, struct.pack("!H", 1000) + b"bye"))
    assert await sock.close_code() == 1000  # echoed, then the server hangs up
    assert await sock.eof()
    sock.shut()


async def test_a_silent_socket_is_pinged_then_dropped(node_factory: NodeFactory) -> None:
    node = await node_factory(limits=LimitSettings(keepalive_s=0.2, hello_timeout_s=60))
    sock = await RawSocket.open(node)
    opcode, _ = await sock.frame(timeout=5)
    assert opcode == 0x9  # the keepalive ping, which this client ignores
    assert await sock.eof(timeout=5)
    assert node.node.connection_count == 0
    sock.shut()


async def test_hello_timeout_closes_with_4008(node_factory: NodeFactory) -> None:
    node = await node_factory(limits=LimitSettings(hello_timeout_s=0.3))
    sock = await RawSocket.open(node)
    assert await sock.close_code() == CloseCode.HELLO_TIMEOUT
    sock.shut()
