"""Connection limits that need no network: a stand-in transport records what was written."""

from __future__ import annotations

import asyncio

from arena.protocol import CloseCode
from gameserver.connection import Connection
from gameserver.settings import LimitSettings


class RecordingTransport(asyncio.Transport):
    """Keeps everything written; ``unread`` pretends the peer stopped reading."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.unread = 0
        self.aborted = self.closed = False
        self._protocol: asyncio.BaseProtocol | None = None

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))
        self.unread += len(data)

    def get_write_buffer_size(self) -> int:
        return self.unread

    def is_closing(self) -> bool:
        return self.aborted or self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


async def test_a_peer_that_stops_reading_is_dropped_at_the_send_limit() -> None:
    conn = Connection(LimitSettings(max_send_buffer_bytes=10_000))
    transport = RecordingTransport()
    conn.take_over(transport, asyncio.Protocol())
    frame = b"\x82\x7e\x03\xe8" + b"x" * 1000
    while conn.write(frame):
        assert len(transport.written) <= 11
    assert transport.aborted and conn.closed and conn.close_code == CloseCode.TOO_SLOW
    assert not conn.write(frame)


async def test_close_sends_one_frame_and_hangs_up_after_the_timeout() -> None:
    conn = Connection(LimitSettings(close_timeout_s=0.05))
    transport = RecordingTransport()
    conn.take_over(transport, asyncio.Protocol())
    conn.close(CloseCode.RACE_OVER, "over")
    conn.close(CloseCode.NORMAL, "again")  # a second close is a no-op
    assert transport.written == [b"\x88\x06\x0f\xaaover"]
    assert not conn.write(b"\x82\x00")  # no data after a close frame
    await asyncio.sleep(0.1)
    assert transport.closed


async def test_keepalive_pings_once_then_drops_a_silent_peer() -> None:
    conn = Connection(LimitSettings())
    transport = RecordingTransport()
    conn.take_over(transport, asyncio.Protocol())
    assert conn.keepalive()  # first sweep: a baseline
    assert conn.keepalive() and transport.written == [b"\x89\x02ka"]
    conn.data_received(b"\x8a\x80abcd")  # a masked empty pong
    assert conn.keepalive() and not transport.aborted
    assert conn.keepalive()
    assert not conn.keepalive() and transport.aborted


async def test_progress_is_skipped_while_a_socket_has_a_backlog() -> None:
    conn = Connection(LimitSettings())
    transport = RecordingTransport()
    conn.take_over(transport, asyncio.Protocol())
    assert conn.offer(b"\x82\x01a")
    transport.unread = 40_000  # the peer is behind: the next progress frame would only add to it
    assert not conn.offer(b"\x82\x01b")
    assert conn.write(b"\x82\x01c")  # results and other must-arrive frames still go
    assert transport.written == [b"\x82\x01a", b"\x82\x01c"]
