"""One player's WebSocket: framing, limits, and the single dispatch point for client messages."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from aiohttp import WSMsgType, web

from arena.codec import WireFormat, encode
from arena.ids import RaceId
from arena.protocol import BACKSPACE, CloseCode, Error, ErrorCode, Message
from arena.tokens import PlayerToken
from gameserver.frames import ws_frame
from gameserver.settings import LimitSettings

if TYPE_CHECKING:
    from gameserver.race import Racer
    from gameserver.room import RaceRoom

log = structlog.get_logger(__name__)

# Frames above this much unsent data are skipped for progress (the next tick supersedes them),
# so one slow reader never stalls a tick for everyone else.
_PROGRESS_BACKLOG_LIMIT = 32 * 1024


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


class Connection:
    def __init__(
        self, ws: web.WebSocketResponse, limits: LimitSettings, transport: asyncio.Transport | None
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.fmt = WireFormat.MSGPACK
        self.limits = limits
        self.bucket = TokenBucket(limits.max_msgs_per_s, limits.burst_msgs)
        self.violations = 0
        self.player: PlayerToken | None = None
        self.room: RaceRoom | None = None
        self.racer: Racer | None = None
        self.watching: RaceId | None = None  # the race this socket spectates
        self.log = log

    @property
    def closed(self) -> bool:
        return self.ws.closed

    def note_format(self, kind: WSMsgType) -> None:
        """Answer in the format the client last used: binary is msgpack, text is JSON."""
        self.fmt = WireFormat.JSON if kind is WSMsgType.TEXT else WireFormat.MSGPACK

    async def send(self, msg: Message) -> None:
        await self.send_frame(encode(msg, self.fmt))

    async def send_frame(self, payload: bytes | str) -> None:
        self.write(ws_frame(payload))

    def write(self, frame: bytes) -> bool:
        """Write a whole pre-built WebSocket frame; False if the socket is going away."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.ws.closed:
            return False
        transport.write(frame)
        return True

    def backlogged(self) -> bool:
        transport = self.transport
        return transport is not None and transport.get_write_buffer_size() > _PROGRESS_BACKLOG_LIMIT

    async def send_error(self, code: ErrorCode, reason: str) -> None:
        await self.send(Error(code=code.value, reason=reason))

    async def close(self, code: CloseCode, reason: str) -> None:
        if not self.ws.closed:
            await self.ws.close(code=int(code), message=reason.encode()[:120])

    async def close_going_away(self) -> None:
        await self.close(CloseCode.GOING_AWAY, "node shutting down")

    async def violation(self, code: ErrorCode, reason: str) -> bool:
        """Count a bad message; True when the connection has been closed for abuse."""
        self.violations += 1
        await self.send_error(code, reason)
        if self.violations >= self.limits.max_violations:
            close = CloseCode.FLOOD if code is ErrorCode.RATE_LIMITED else CloseCode.PROTOCOL_ABUSE
            await self.close(close, f"too many bad messages ({code.value})")
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
