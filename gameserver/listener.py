"""The node's HTTP listeners: deadlines for slow clients, and every open connection counted.

aiohttp parses the requests; what a public game node also needs is set up here, for the
players' listener (``gameserver.app``) and, deadlines only, the admin one (``gameserver.admin``).

- **Head deadline.** aiohttp 3.14 arms its keep-alive timer when a connection opens and again
  after every response, and closes the connection when it fires with no whole request received
  (``RequestHandler._process_keepalive``). With ``keepalive_timeout`` set to
  ``ARENA_REQUEST_HEAD_TIMEOUT_S`` through the application's ``handler_args``, that timer is the
  request-head deadline: half a request line, headers sent a byte at a time, or nothing at all,
  and the connection goes when it passes. It also ends idle keep-alive connections.
- **Body deadline.** Once the head is in, aiohttp has no timer on the body: the admin listener's
  middleware below waits for all of it (received, not read: handlers read it as before) at most
  ``ARENA_REQUEST_BODY_TIMEOUT_S`` (then 408, and the connection is closed after at most as long
  again of lingering, aiohttp's ``lingering_time``). A body larger than aiohttp's read buffer
  (128 KiB) stalls it and gets the 408 too. The players' listener reads no bodies (``/ws`` and
  the probes are GETs): what a request sends there anyway is read for at most ``lingering_time``
  after its answer, and the connection closed.
- **Counting.** ``NodeSite`` is aiohttp's ``TCPSite`` with the protocol of every accepted
  connection wrapped in a counter, so the ``ConnectionGate`` knows how many TCP connections are
  open whatever their state: half a request, an upgrade, a socket before or after hello. A
  WebSocket upgrade is refused with 503 when that count passes ``ARENA_MAX_CONNECTIONS``; past
  ``SPARE_CONNECTIONS`` more (room for the health probes of a full node, and for the upgrades
  that get their 503), connections are refused at accept. When a socket is taken over after its upgrade
  (``connection.Connection.take_over``), its close still reaches the counter: the connection
  hands ``connection_lost`` to the protocol it took over from, which is the counter.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gameserver.metrics import NodeMetrics
from gameserver.settings import LimitSettings

# Connections accepted past ARENA_MAX_CONNECTIONS (WebSocket upgrades get 503 there) so a full
# node still answers its health probes on this listener (admin and metrics have their own).
SPARE_CONNECTIONS = 64

_FULL_BODY = json.dumps({"error": "node_full", "reason": "too many connections"}).encode()
_FULL_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_FULL_BODY)
) + _FULL_BODY


class ConnectionGate:
    """Open TCP connections of the node's listener (kept by ``NodeSite``) and the limit on them."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.open = 0  # accepted and not yet closed, whatever they are doing
        self.metrics: NodeMetrics | None = None

    def watch(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics
        metrics.open_connections.set_function(lambda: self.open)

    def upgrade_allowed(self, sockets: int) -> bool:
        """May one more WebSocket start? ``sockets``: the node's own count, which stands in when
        the listener is not a ``NodeSite`` (then ``open`` stays 0)."""
        if max(self.open, sockets + 1) <= self.max_connections:  # this connection included
            return True
        self.refused("upgrade")
        return False

    def refused(self, reason: str) -> None:
        """Count a connection refused or cut: accept, upgrade or body_timeout."""
        if self.metrics is not None:
            self.metrics.connections_refused.labels(reason).inc()

    def protocol_factory(self, server: web.Server) -> Any:
        """aiohttp's protocol factory, each connection counted, refused past the spare room."""

        def accept() -> asyncio.Protocol:
            if self.open >= self.max_connections + SPARE_CONNECTIONS:
                self.refused("accept")
                return _Refused()
            return _Counted(self, server())

        return accept


class _Counted(asyncio.Protocol):
    """Forwards everything to aiohttp's protocol and keeps the gate's count."""

    __slots__ = ("_counted", "_gate", "_inner")

    def __init__(self, gate: ConnectionGate, inner: asyncio.Protocol) -> None:
        self._gate = gate
        self._inner = inner
        self._counted = False

    def let_go(self) -> None:
        """aiohttp has let go of this connection (``let_go``): keep counting it until it really
        closes, without holding aiohttp's protocol."""
        self._inner = _LET_GO

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._counted = True
        self._gate.open += 1
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self._gate.open -= 1
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


_LET_GO = asyncio.Protocol()  # what a let-go connection forwards to: nothing


def let_go(request: web.BaseRequest, outer: asyncio.BaseProtocol) -> asyncio.BaseProtocol | None:
    """aiohttp forgets a connection the node has taken over after its WebSocket upgrade
    (``gameserver.session``). Without this aiohttp keeps, for the socket's whole life, the
    request (headers, parsed message, URL), its protocol, parser, writer and two tasks: ≈ 10 KB
    of small objects per socket, 38 % of what a loaded node's sockets hold, which pins
    pymalloc arenas for good after a load (issue 21; docs/PERFORMANCE.md). Told that the
    connection is lost, with its transport taken from it first so that it does not close the
    socket, aiohttp ends the request as for a client that hung up (what the handler returns is
    not written) and drops everything it held.

    ``outer`` is the transport's protocol before the take-over. Returns the protocol to tell
    when the socket really closes: the listener's counter (``NodeSite``), or None."""
    http = request.protocol
    http.transport = None  # the socket is the node's now: aiohttp's close below must not touch it
    http.connection_lost(None)
    if isinstance(outer, _Counted):
        outer.let_go()
        return outer
    return None


class _Refused(asyncio.Protocol):
    """A connection past the cap: a 503 and the door closed (a reset, if it had sent already)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_FULL_RESPONSE)
        transport.close()


class NodeSite(web.TCPSite):
    """``web.TCPSite`` whose connections the application's ``ConnectionGate`` counts."""

    __slots__ = ("_gate",)

    def __init__(self, runner: web.AppRunner, host: str, port: int, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._gate = runner.app[GATE_KEY]

    async def start(self) -> None:
        # TCPSite.start, with the gate's factory around aiohttp's protocol factory.
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        listening = await asyncio.get_running_loop().create_server(
            self._gate.protocol_factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._server = listening
        sockets = listening.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def handler_args(limits: LimitSettings) -> dict[str, Any]:
    """aiohttp ``RequestHandler`` settings of the node's application (``Application(handler_args=)``)."""
    return {
        "keepalive_timeout": limits.request_head_timeout_s,  # the head deadline, see above
        "lingering_time": limits.request_body_timeout_s,  # reading what a refused request still sends
    }


def body_deadline(timeout_s: float, metrics: NodeMetrics) -> Any:
    """A middleware that waits for a request's body ``timeout_s`` at most after its head (else 408)."""

    @web.middleware
    async def body_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists and not request.content.is_eof():
            try:
                async with asyncio.timeout(timeout_s):
                    await request.content.wait_eof()  # all received, nothing consumed: the handler reads it
            except TimeoutError:
                metrics.connections_refused.labels("body_timeout").inc()
                response = web.json_response(
                    {"error": "request_timeout", "reason": f"the body did not arrive within {timeout_s} s"},
                    status=408,
                )
                response.force_close()
                return response
        return await handler(request)

    return body_in_time


GATE_KEY = web.AppKey("connection_gate", ConnectionGate)
