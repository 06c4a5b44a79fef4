"""The WebSocket endpoint: a socket's life from hello to close, and the one dispatch point."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from typing import Any

import structlog
from aiohttp import hdrs, web

from arena.clock import now_ms
from arena.codec import ProtocolError, decode_client
from arena.ids import RaceId
from arena.protocol import (
    CloseCode,
    ErrorCode,
    Hello,
    Input,
    Join,
    Joined,
    Leave,
    Message,
    Ping,
    Pong,
    RaceState,
    Redirect,
    Spectate,
    Welcome,
)
from arena.tokens import JoinTicket, TokenError
from gameserver.connection import ClosingError, Connection, check_keys
from gameserver.listener import GATE_KEY, let_go
from gameserver.metrics import FlushReason
from gameserver.node import Node
from gameserver.race import InputOutcome, Racer, SeatError
from gameserver.room import RaceRoom
from gameserver.wsproto import switching_protocols

log = structlog.get_logger(__name__)

_SEAT_CLOSE = {"race_full": CloseCode.RACE_FULL, "race_over": CloseCode.RACE_OVER}


class SocketSession:
    """Serves one socket. Every client message goes through ``dispatch``, in arrival order.

    Messages are handled in the connection's read callback. The few that need Redis
    (a redirect, watching a race owned elsewhere) return a coroutine; it runs as this
    session's one task, and messages arriving meanwhile wait in ``_backlog`` so order holds.
    """

    def __init__(self, node: Node, conn: Connection) -> None:
        self.node = node
        self.conn = conn
        self.metrics = node.metrics
        # The seat this socket holds (set by a join, cleared by a leave or the close): the
        # session's, not the connection's, so the socket layer knows nothing of races.
        self.room: RaceRoom | None = None
        self.racer: Racer | None = None
        self._busy: asyncio.Task[None] | None = None
        self._backlog: deque[tuple[bool, bytes | str]] = deque()
        loop = asyncio.get_running_loop()
        self._hello_timer: asyncio.TimerHandle | None = loop.call_later(
            conn.limits.hello_timeout_s, self._hello_expired
        )
        conn.on_message = self.on_frame
        conn.on_rate_limited = self._rate_limited

    async def end(self) -> None:
        """The socket is gone: leave the race or stop watching (``serve`` runs this)."""
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        if self._busy is not None:
            await asyncio.gather(self._busy, return_exceptions=True)
        self._backlog.clear()
        if self.conn.framing_error is not None:
            self.metrics.closes.labels(str(int(self.conn.framing_error))).inc()
        await self.on_closed()

    def _hello_expired(self) -> None:
        self._hello_timer = None
        if self.conn.player is None:
            self._close(CloseCode.HELLO_TIMEOUT, "no hello in time")

    def _rate_limited(self) -> None:
        """A frame over the message rate (the connection dropped it)."""
        self.metrics.errors.labels(ErrorCode.RATE_LIMITED.value).inc()
        if self.conn.violation(ErrorCode.RATE_LIMITED, "too many messages"):
            self.metrics.closes.labels(str(int(CloseCode.FLOOD))).inc()

    def on_frame(self, is_text: bool, data: bytes | str) -> None:
        """A data message the rate limit admitted (``Connection`` counts every frame)."""
        if self._busy is not None:
            self._backlog.append((is_text, data))
            return
        self._handle(is_text, data)

    def _handle(self, is_text: bool, data: bytes | str) -> None:
        conn = self.conn
        conn.note_format(is_text)
        try:
            message = decode_client(data)
        except ProtocolError as exc:
            self.metrics.errors.labels(ErrorCode.BAD_MESSAGE.value).inc()
            if conn.violation(ErrorCode.BAD_MESSAGE, str(exc)):
                self.metrics.closes.labels(str(int(CloseCode.PROTOCOL_ABUSE))).inc()
            return
        self.metrics.message_in(message.TYPE)
        try:
            slow = self.dispatch(message)
        except ClosingError as exc:
            self._refuse(exc)
            return
        except Exception:  # a bug costs this socket (the player resumes on a new one), not the node
            self.conn.log.exception("message_handler_failed", type=message.TYPE.value)
            self.metrics.faults.labels("message").inc()
            self.conn.send_error(ErrorCode.INTERNAL, "the server failed on that message")
            self._close(CloseCode.INTERNAL_ERROR, "the server failed on that message")
            return
        if slow is not None:
            self._busy = asyncio.create_task(self._run_slow(slow), name="socket-slow-path")

    async def _run_slow(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except ClosingError as exc:
            self._refuse(exc)
        except Exception:  # Redis trouble: the client gets an error, the socket lives on
            self.conn.log.exception("socket_handler_failed")
            self._error(ErrorCode.INTERNAL, "the server could not do that now; try again")
        finally:
            self._busy = None
        while self._backlog and self._busy is None and not self.conn.closed:
            self._handle(*self._backlog.popleft())

    def _refuse(self, exc: ClosingError) -> None:
        self.metrics.errors.labels(exc.code.value).inc()
        self.conn.send_error(exc.code, exc.reason)
        self._close(exc.close, exc.reason)

    def dispatch(self, message: Message) -> Coroutine[Any, Any, None] | None:
        """Handle one message; returns the rest of the work when it needs to wait on Redis."""
        match message:
            case Input():
                self.on_input(message)
            case Pong(echo=echo):
                racer = self.racer
                if racer is None or not racer.round_trips.answer(echo, now_ms()):
                    self.metrics.errors.labels(ErrorCode.BAD_MESSAGE.value).inc()
                    self.conn.violation(ErrorCode.BAD_MESSAGE, "that pong answers no ping of ours")
            case Ping(sent=sent):
                self.conn.send(Pong(echo=sent, time=now_ms()))
            case Hello():
                self.on_hello(message)
            case _ if self.conn.player is None:
                self._error(ErrorCode.NOT_AUTHENTICATED, "say hello with a player token first")
            case Join():
                return self.on_join(message)
            case Leave():
                return self.on_leave()
            case Spectate():
                return self.on_spectate(message)
            case _:
                self._error(ErrorCode.BAD_MESSAGE, f"{message.TYPE.value} is not a client message")
        return None

    # ---- handlers ----------------------------------------------------------------

    def on_hello(self, hello: Hello) -> None:
        if self.conn.player is not None:
            self._error(ErrorCode.BAD_MESSAGE, "already said hello")
            return
        try:
            player = self.node.signer.verify_player(hello.token)
        except TokenError as exc:
            code = ErrorCode.TOKEN_EXPIRED if exc.expired else ErrorCode.BAD_TOKEN
            raise ClosingError(code, str(exc), CloseCode.BAD_TOKEN) from None
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        self.conn.player = player
        self.conn.log = log.bind(node_id=self.node.settings.node_id, player_id=player.player_id)
        limits = self.conn.limits
        self.conn.send(
            Welcome(
                player_id=player.player_id,
                name=player.name,
                node_id=self.node.settings.node_id,
                server_time=now_ms(),
                max_keys=limits.max_keys_per_msg,
                max_rate=limits.max_msgs_per_s,
            )
        )

    def on_join(self, join: Join) -> Coroutine[Any, Any, None] | None:
        conn, node = self.conn, self.node
        assert conn.player is not None
        try:
            ticket = node.signer.verify_join(join.ticket)
        except TokenError as exc:
            code = ErrorCode.TOKEN_EXPIRED if exc.expired else ErrorCode.BAD_TOKEN
            raise ClosingError(code, str(exc), CloseCode.BAD_TOKEN) from None
        if ticket.player_id != conn.player.player_id:
            raise ClosingError(ErrorCode.BAD_TOKEN, "ticket belongs to another player", CloseCode.BAD_TOKEN)
        if ticket.node_id != node.settings.node_id or node.room(ticket.race_id) is None:
            return self._join_moved(ticket)  # ours and gone: handed to another node by a drain?
        self._seat(ticket)
        return None

    async def _join_moved(self, ticket: JoinTicket) -> None:
        """A ticket naming another node: the race may have moved (adopted after its node died,
        ``gameserver/adoption.py``). Ours now: seat the player as if the ticket named us; else
        send them to its owner (the adopter, or the node the ticket names)."""
        owner = await self.node.race_owner(ticket.race_id)
        me = self.node.settings.node_id
        if owner == me or (owner is None and ticket.node_id == me):
            self._seat(ticket)  # ours (or over and forgotten: race_not_found)
            return
        await self._redirect(owner or ticket.node_id, ticket.race_id)

    def _seat(self, ticket: JoinTicket) -> None:
        conn, node = self.conn, self.node
        if self.room is not None or conn.watching is not None:
            self._error(ErrorCode.ALREADY_JOINED, "leave the current race first")
            return
        room = node.room(ticket.race_id)
        if room is None:
            raise ClosingError(
                ErrorCode.RACE_NOT_FOUND, "no such race on this node", CloseCode.RACE_NOT_FOUND
            )
        if room.moving_at is not None:  # being handed off (gameserver/mover.py): rejoin shortly
            self._close(CloseCode.RACE_MOVED, "race is moving to another node")
            return
        now = now_ms()
        try:
            racer, resumed = room.race.join(ticket.player_id, ticket.name, now)
        except SeatError as exc:
            raise ClosingError(ErrorCode(exc.code), exc.reason, _SEAT_CLOSE[exc.code]) from None
        replaced = room.attach(racer.id, conn)
        if replaced is not None:
            replaced.send_error(ErrorCode.ALREADY_JOINED, "connected again elsewhere")
            replaced.close(CloseCode.REPLACED, "connected again elsewhere")
        self.room, self.racer = room, racer
        conn.log = conn.log.bind(race_id=room.race.id)
        conn.log.info("player_joined", resumed=resumed)
        race = room.race
        conn.send(
            Joined(
                race_id=race.id,
                race_type=race.race_type.value,
                passage_id=race.passage.id,
                passage=race.passage.text,
                state=race.state.value,
                players=race.player_infos(now),
                server_time=now,
                start_at=race.start_at,
                ends_at=race.ends_at,
                you=race.resume_state(racer),
                input_every_ms=node.settings.race.input_cadence_ms,
                input_offset_ms=race.input_offset_ms,
            )
        )
        racer.round_trips.expect(now)
        conn.send(Ping(sent=now))  # a first round trip before the start
        room.flush_outgoing()
        if room.finalized:
            conn.send(room.results())

    def on_input(self, inp: Input) -> None:
        conn = self.conn
        room = self.room
        if room is None or self.racer is None:
            if conn.player is None:
                self._error(ErrorCode.NOT_AUTHENTICATED, "say hello with a player token first")
                return
            reason = "spectators cannot type" if conn.watching else "join a race first"
            self._error(ErrorCode.NOT_JOINED, reason)
            return
        if room.moving_at is not None:
            return  # frozen for a hand-off: not applied, so not acknowledged; resent after the rejoin
        race = room.race
        now = now_ms()
        if race.state is RaceState.COUNTDOWN and race.start_at is not None and now >= race.start_at:
            # The start instant passed and the tick has not come round yet: the server's
            # clock says running, so the first keys on the first send instant count.
            race.advance(now)
            room.flush_outgoing()
        if race.state is not RaceState.RUNNING:
            code = ErrorCode.RACE_OVER if race.ended else ErrorCode.NOT_RUNNING
            self._error(code, f"the race is {race.state.value}")
            return
        problem = check_keys(inp.keys, inp.times, conn.limits.max_keys_per_msg)
        if problem is not None:
            code, reason = problem
            self.metrics.errors.labels(code.value).inc()
            conn.violation(code, reason)
            return
        outcome = race.apply_input(self.racer, inp.seq, inp.keys, inp.times, now)
        if race.dirty:
            if race.everyone_typed():  # the last room-mate of this send instant: no reason to wait
                self.node.send_progress(room, now, FlushReason.INSTANT)
            else:
                self.node.progress_due(room, now)
        if outcome is InputOutcome.FINISHED:
            self.node.send_outgoing(room)

    def on_spectate(self, spectate: Spectate) -> Coroutine[Any, Any, None] | None:
        conn, node = self.conn, self.node
        if self.room is not None or conn.watching is not None:
            self._error(ErrorCode.ALREADY_JOINED, "leave the current race first")
            return None
        race_id = RaceId(spectate.race_id)
        room = node.room(race_id)
        if room is None:
            return self._watch_remote(race_id)
        room.spectators.add(conn)  # ours: watch it directly
        conn.watching = race_id
        conn.send(room.watching(now_ms()))
        if room.finalized:
            conn.send(room.results())
        return None

    async def _watch_remote(self, race_id: RaceId) -> None:
        snapshot = await self.node.remote_snapshot(race_id)
        if snapshot is None:
            self._error(ErrorCode.RACE_NOT_FOUND, "no such live race")
            return
        conn = self.conn
        conn.watching = race_id
        conn.send(snapshot)
        await self.node.relay.watch(race_id, conn)

    def on_leave(self) -> Coroutine[Any, Any, None] | None:
        conn = self.conn
        if conn.watching is not None:
            return self.stop_watching()
        if self.room is None or self.racer is None:
            self._error(ErrorCode.NOT_JOINED, "not in a race")
            return None
        room, racer = self.room, self.racer
        if room.moving_at is not None:  # its journal is handed off: leave on the adopter, after the rejoin
            self._error(ErrorCode.NOT_RUNNING, "the race is moving to another node")
            return None
        room.detach(racer.id, conn)
        self.room = self.racer = None
        room.race.leave(racer, now_ms())
        room.flush_outgoing()
        return None

    async def stop_watching(self) -> None:
        conn = self.conn
        race_id, conn.watching = conn.watching, None
        if race_id is None:
            return
        room = self.node.room(race_id)
        if room is not None:
            room.spectators.discard(conn)
        else:
            await self.node.relay.unwatch(race_id, conn)

    async def on_closed(self) -> None:
        conn = self.conn
        room, racer = self.room, self.racer
        self.room = self.racer = None
        if room is not None and racer is not None and room.detach(racer.id, conn):
            room.race.disconnect(racer, now_ms())
            room.flush_outgoing()
            conn.log.info("player_disconnected")
        await self.stop_watching()

    # ---- helpers -----------------------------------------------------------------

    async def _redirect(self, node_id: str, race_id: RaceId) -> None:
        url = await self.node.node_url(node_id)
        if url is None:
            raise ClosingError(ErrorCode.WRONG_NODE, f"node {node_id} is unknown", CloseCode.RACE_NOT_FOUND)
        self.conn.send(Redirect(url=url, node_id=node_id, race_id=race_id))
        self._close(CloseCode.REDIRECT, "race is on another node")

    def _error(self, code: ErrorCode, reason: str) -> None:
        self.metrics.errors.labels(code.value).inc()
        self.conn.send_error(code, reason)

    def _close(self, code: CloseCode, reason: str) -> None:
        self.metrics.closes.labels(str(int(code))).inc()
        self.conn.close(code, reason)


async def websocket_handler(request: web.Request, node: Node) -> web.StreamResponse:
    limits = node.settings.limits
    # Every open connection counts (half requests and upgrades in progress too), this one included.
    if not request.app[GATE_KEY].upgrade_allowed(node.connection_count):
        return web.json_response({"error": "node_full", "reason": "too many connections"}, status=503)
    # aiohttp checks the upgrade request (its 400 or 405 and reason if it is not one); the node
    # answers it and then reads and writes the socket itself (gameserver.connection), with no
    # compression (frames are pre-built and tiny) and no aiohttp heartbeat.
    handshake = web.WebSocketResponse(max_msg_size=limits.max_frame_bytes, compress=False, heartbeat=None)
    if not handshake.can_prepare(request).ok:
        await handshake.prepare(request)  # raises aiohttp's answer
        raise web.HTTPBadRequest(text="not a WebSocket upgrade")  # (prepare does not return here)
    transport = request.transport
    if transport is None or transport.is_closing():
        # The client hung up before the 101 went out: its own fault, and nobody to answer.
        # Counted (the issue 21 soak met one), and aiohttp's attempt to write this fails quietly.
        node.metrics.handshakes_abandoned.inc()
        return web.Response(status=400, text="client went away during the handshake")
    conn = Connection(limits)
    # uvloop's transports are not asyncio.Transport subclasses: take it as aiohttp gives it.
    # aiohttp lets go of the connection (listener.let_go: it keeps nothing per socket); the
    # listener's counter is told when the socket really closes.
    conn.take_over(transport, let_go(request, transport.get_protocol()))
    transport.write(switching_protocols(request.headers[hdrs.SEC_WEBSOCKET_KEY]))
    serve(node, conn)
    # Not written: aiohttp ends the request as one whose client left (listener.let_go).
    return web.Response(status=101)


def serve(node: Node, conn: Connection) -> None:
    """Serve a socket the node has taken over. No task while it is open (its messages are
    handled in its read callback); when it closes, its session's ending (leave the race, stop
    watching) runs as a task the node owns (``Node.end_socket``), and then the socket goes."""
    session = SocketSession(node, conn)
    node.add_socket(conn)
    conn.lost.add_done_callback(lambda _: node.end_socket(_ended(node, conn, session)))


async def _ended(node: Node, conn: Connection, session: SocketSession) -> None:
    try:
        await session.end()
    finally:
        node.remove_socket(conn)
        conn.abort()
        conn.release()
