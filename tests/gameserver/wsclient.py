"""A thin raw WebSocket client for tests that need to misbehave on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp

from arena.codec import WireFormat, decode_server, encode
from arena.protocol import Message

M = TypeVar("M", bound=Message)


class RawClient:
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.received: list[Message] = []

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> RawClient:
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, **kwargs)
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

    async def send(self, msg: Message, fmt: WireFormat = WireFormat.MSGPACK) -> None:
        frame = encode(msg, fmt)
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame)

    async def recv(self, timeout: float = 5.0) -> Message | None:
        """Next decoded message, or None when the socket closed."""
        msg = await self.ws.receive(timeout=timeout)
        if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
            decoded = decode_server(msg.data)
            self.received.append(decoded)
            return decoded
        return None

    async def recv_until(self, kind: type[Message], timeout: float = 5.0) -> Message:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(timeout=max(0.01, deadline - loop.time()))
            if msg is None:
                raise AssertionError(f"closed ({self.ws.close_code}) before {kind.__name__}")
            if isinstance(msg, kind):
                return msg

    async def recv_matching(self, kind: type[M], predicate: Callable[[M], bool], timeout: float = 5.0) -> M:
        """The next message of ``kind`` for which ``predicate`` holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv_until(kind, timeout=max(0.01, deadline - loop.time()))
            assert isinstance(msg, kind)
            if predicate(msg):
                return msg

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Read until the socket closes; returns the close code the server sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.ws.closed and loop.time() < deadline:
            msg = await self.ws.receive(timeout=max(0.01, deadline - loop.time()))
            if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                self.received.append(decode_server(msg.data))
            elif msg.type is aiohttp.WSMsgType.CLOSE:
                # The code in the server's close frame: what a browser's close event reports.
                # (aiohttp's own close_code turns 1006 when the server drops TCP right after.)
                return int(msg.data)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()
