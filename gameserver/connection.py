"""One player's or spectator's WebSocket after the upgrade: frames in, pre-built frames out.

aiohttp answers the HTTP upgrade; then ``take_over`` makes this object the transport's
protocol, so every read is parsed in ``data_received`` (``wsproto.FrameReader``) and each
message goes to the session's callback at once: no reader task, no queue, no coroutine
wake-up per message. aiohttp's own protocol is still told when the socket goes, so its
server bookkeeping (connection list, graceful shutdown) stays right.

Writes are whole frames built once per broadcast (``frames``) and written to the transport.
A reader that falls too far behind is dropped instead of growing the node's memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from arena.codec import WireFormat, encode
from arena.ids import RaceId
from arena.protocol import BACKSPACE, CloseCode, Error, ErrorCode, Message
from arena.tokens import PlayerToken
from gameserver.frames import close_frame, control_frame, ws_frame
from gameserver.settings import LimitSettings
from gameserver.wsproto import FrameError, FrameReader, Opcode, WsClose, parse_close, unmask

log = structlog.get_logger(__name__)

# Frames above this much unsent data are skipped for progress (the next frame supersedes them),
# so one slow reader never stalls a broadcast for everyone else.
_PROGRESS_BACKLOG_LIMIT = 32 * 1024

# (is_text, payload): a data message for the session.
MessageHandler = Callable[[bool, "bytes | str"], None]


class TokenBucket:
    """Message rate limit per connection: ``rate`` per second with ``burst`` headroom."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class ClosingError(Exception):
    """Raised inside dispatch to send an error and close the socket with a close code."""

    code: ErrorCode
    reason: str
    close: CloseCode


def _ignore_message(is_text: bool, payload: bytes | str) -> None:
    """Messages before a session is attached are dropped (none can arrive: see take_over)."""


def _ignore_refusal() -> None:
    """Refused frames before a session is attached (none can arrive: see take_over)."""


def _ignore_frame(opcode: Opcode, payload: bytes | str) -> None:
    """Frames after ``release`` are dropped (none can arrive: the socket is gone)."""


class Connection(asyncio.Protocol):
    def __init__(self, limits: LimitSettings) -> None:
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.fmt = WireFormat.MSGPACK
        self.bucket = TokenBucket(limits.max_msgs_per_s, limits.burst_msgs)
        self.violations = 0
        self.player: PlayerToken | None = None
        self.watching: RaceId | None = None  # the race this socket spectates
        self.log = log
        self.on_message: MessageHandler = _ignore_message
        # Called for every frame over the message rate (the frame is dropped): the session
        # counts it as a violation, and enough of them close the socket with 4003.
        self.on_rate_limited: Callable[[], None] = _ignore_refusal
        self.close_code: int | None = None  # what we closed with, or what the client said
        self.framing_error: WsClose | None = None  # why the peer's frames were refused
        self.reads = 0  # bumped on every read: the keepalive sweep compares it
        self._reads_at_sweep = -1
        self._idle_sweeps = 0
        # Every frame takes a token: data, continuation, ping, pong (and close, always honoured).
        self._reader = FrameReader(
            limits.max_frame_bytes, self._on_ws_message, self.bucket.take, self._on_refused
        )
        self._http_protocol: asyncio.BaseProtocol | None = None
        self._closing = False  # a close frame went out: no more data frames
        self._close_timer: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ---- taking the socket over from aiohttp ----------------------------------------

    def take_over(self, transport: asyncio.Transport, http_protocol: asyncio.BaseProtocol | None) -> None:
        """Become the transport's protocol; ``http_protocol`` is told when the socket closes (the
        listener's counter). The client waits for the 101 before sending (RFC 6455 4.1), so no
        frame can be sitting in aiohttp's buffers at this point."""
        self.transport = transport
        self._http_protocol = http_protocol
        transport.set_protocol(self)

    # ---- asyncio.Protocol -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        # Fast path for nearly every read: exactly one whole, short, masked binary frame.
        n = len(data)
        short_binary = 6 <= n < 132 and data[0] == 0x82 and data[1] == 0x80 | (n - 6)
        if short_binary and not self._closing and self._reader.idle:
            if self.bucket.take():
                self.on_message(False, unmask(data[6:], data[2:6]))
            else:
                self.on_rate_limited()
            return
        try:
            self._reader.feed(data)
        except FrameError as exc:
            if not self._closing:  # (after our own close frame it changes nothing)
                self.framing_error = exc.code
            self._fail(exc.code, exc.reason)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def pause_writing(self) -> None:
        """Nothing to pause: progress skips backlogged sockets and the hard limit drops them."""

    def resume_writing(self) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        http_protocol, self._http_protocol = self._http_protocol, None
        if http_protocol is not None:
            http_protocol.connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)

    # ---- frames in --------------------------------------------------------------------

    def _on_ws_message(self, opcode: Opcode, payload: bytes | str) -> None:
        # (after our close frame only the peer's close matters)
        if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
            if not self._closing:
                self.on_message(opcode is Opcode.TEXT, payload)
        elif opcode is Opcode.CLOSE:
            assert isinstance(payload, bytes)
            self._on_close_frame(payload)
        elif opcode is Opcode.PING and not self._closing:  # admitted by the rate limit: costs a pong
            assert isinstance(payload, bytes)
            self._write_control(control_frame(Opcode.PONG, payload))
        # PONG: the read itself proved the peer alive

    def _on_refused(self, opcode: Opcode) -> None:
        if not self._closing:
            self.on_rate_limited()

    def _on_close_frame(self, payload: bytes) -> None:
        """The peer's close frame, already checked (``wsproto.check_close``): a code a peer
        may send, or none. Echo it (an empty close for none: 1005 is never sent), hang up."""
        code, _reason = parse_close(payload)
        transport = self.transport
        if transport is None:
            return
        if not self._closing:  # the client started: echo its code, then hang up
            self._closing = True
            self.close_code = code
            transport.write(close_frame(code) if payload else bytes((0x88, 0)))
        transport.close()

    # ---- frames out -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closing

    def note_format(self, is_text: bool) -> None:
        """Answer in the format the client last used: binary is msgpack, text is JSON."""
        self.fmt = WireFormat.JSON if is_text else WireFormat.MSGPACK

    def send(self, msg: Message) -> None:
        self.write(ws_frame(encode(msg, self.fmt)))

    def write(self, frame: bytes) -> bool:
        """Write a whole pre-built WebSocket frame; False if the socket is going away."""
        transport = self.transport
        if transport is None or self._closing:
            return False
        transport.write(frame)
        if transport.get_write_buffer_size() > self.limits.max_send_buffer_bytes:
            self.log.warning("socket_dropped_backlog", buffered=transport.get_write_buffer_size())
            self.close_code = int(CloseCode.TOO_SLOW)
            self._closing = True
            transport.abort()
        return True

    def takes_offers(self) -> bool:
        """Whether ``offer`` writes now: open and without a backlog."""
        transport = self.transport
        return (
            transport is not None
            and not self._closing
            and transport.get_write_buffer_size() <= _PROGRESS_BACKLOG_LIMIT
        )

    def offer(self, frame: bytes) -> bool:
        """Write a frame that the next one supersedes (progress): skipped while the socket has
        a backlog, so one slow reader never holds anyone up. True if written."""
        transport = self.transport  # takes_offers inlined: this runs per socket per progress frame
        if transport is None or self._closing or transport.get_write_buffer_size() > _PROGRESS_BACKLOG_LIMIT:
            return False
        transport.write(frame)
        return True

    def send_error(self, code: ErrorCode, reason: str) -> None:
        self.send(Error(code=code.value, reason=reason))

    def close(self, code: CloseCode | WsClose, reason: str) -> None:
        """Send a close frame; the socket goes when the client answers or the timeout passes."""
        transport = self.transport
        if transport is None or self._closing:
            return
        self._closing = True
        self.close_code = int(code)
        transport.write(close_frame(int(code), reason))
        loop = asyncio.get_running_loop()
        self._close_timer = loop.call_later(self.limits.close_timeout_s, transport.close)

    def close_going_away(self) -> None:
        self.close(CloseCode.GOING_AWAY, "node shutting down")

    def abort(self) -> None:
        transport = self.transport
        self._closing = True
        if transport is not None:
            transport.abort()

    def _fail(self, code: WsClose, reason: str) -> None:
        """A framing error: the stream cannot be parsed any further, so say why and hang up
        (RFC 6455 7.1.7, "fail the WebSocket connection")."""
        transport = self.transport
        if transport is None:
            return
        if not self._closing:  # one close frame at most: ours may already be out
            self._closing = True
            self.close_code = int(code)
            transport.write(close_frame(int(code), reason))
        transport.close()

    def release(self) -> None:
        """The socket is gone and its session done: drop the references that tie this object
        to its session and frame reader in reference cycles (``on_message``, the reader's
        callback), so refcounting frees them at once instead of the cyclic collector, which
        the node runs rarely (``gameserver.__main__``). Call it last: nothing reads afterwards."""
        self._closing = True
        self.on_message = _ignore_message
        self.on_rate_limited = _ignore_refusal
        self._reader = FrameReader(0, _ignore_frame)

    def _write_control(self, frame: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(frame)

    def keepalive(self) -> bool:
        """One keepalive sweep: ping a socket silent since the last sweep, drop one silent
        for two. Returns False when the socket was dropped."""
        if self.reads != self._reads_at_sweep:
            self._reads_at_sweep = self.reads
            self._idle_sweeps = 0
            return True
        self._idle_sweeps += 1
        if self._idle_sweeps >= 2:
            self.log.info("socket_dropped_silent")
            self.abort()
            return False
        self._write_control(control_frame(Opcode.PING, b"ka"))
        return True

    def violation(self, code: ErrorCode, reason: str) -> bool:
        """Count a bad message; True when the connection has been closed for abuse."""
        self.violations += 1
        self.send_error(code, reason)
        if self.violations >= self.limits.max_violations:
            close = CloseCode.FLOOD if code is ErrorCode.RATE_LIMITED else CloseCode.PROTOCOL_ABUSE
            self.close(close, f"too many bad messages ({code.value})")
            return True
        return False


def check_keys(keys: str, times: list[int], max_keys: int) -> tuple[ErrorCode, str] | None:
    """Why an input batch is malformed (error code and reason), or None.

    Keys must be printable ASCII or backspace.
    """
    if len(keys) != len(times):
        return ErrorCode.BAD_MESSAGE, "keys and times differ in length"
    if len(keys) > max_keys:
        return ErrorCode.TOO_MANY_KEYS, f"at most {max_keys} keys per message"
    for ch in keys:
        if not (" " <= ch <= "~" or ch == BACKSPACE):
            return ErrorCode.BAD_MESSAGE, "keys must be printable ASCII or backspace"
    return None
