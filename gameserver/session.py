"""The WebSocket endpoint: a socket's life from hello to close, and the one dispatch point."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import WSMsgType, web

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
    Results,
    Spectate,
    Welcome,
)
from arena.tokens import TokenError
from gameserver.connection import ClosingError, Connection, check_keys
from gameserver.node import Node
from gameserver.race import InputOutcome, SeatError

log = structlog.get_logger(__name__)

_SEAT_CLOSE = {"race_full": CloseCode.RACE_FULL, "race_over": CloseCode.RACE_OVER}


class SocketSession:
    """Serves one socket. Every client message goes through ``dispatch``."""

    def __init__(self, node: Node, conn: Connection) -> None:
        self.node = node
        self.conn = conn

    async def run(self) -> None:
        ws = self.conn.ws
        hello_deadline = asyncio.get_running_loop().time() + self.conn.limits.hello_timeout_s
        while not ws.closed:
            timeout = None
            if self.conn.player is None:
                timeout = max(0.0, hello_deadline - asyncio.get_running_loop().time())
            try:
                msg = await ws.receive(timeout=timeout)
            except TimeoutError:
                await self._close(CloseCode.HELLO_TIMEOUT, "no hello in time")
                break
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                await self.on_frame(msg.type, msg.data)
            elif msg.type is WSMsgType.ERROR:
                # aiohttp has already closed oversized or broken frames with 1009/1002.
                self.node.metrics.closes.labels(str(ws.close_code or 0)).inc()
                break
            else:  # CLOSE, CLOSING, CLOSED
                break
        await self.on_closed()

    async def on_frame(self, kind: WSMsgType, data: bytes | str) -> None:
        conn = self.conn
        if not conn.bucket.take():
            if await conn.violation(ErrorCode.RATE_LIMITED, "too many messages"):
                self.node.metrics.closes.labels(str(int(CloseCode.FLOOD))).inc()
            self.node.metrics.errors.labels(ErrorCode.RATE_LIMITED.value).inc()
            return
        conn.note_format(kind)
        try:
            message = decode_client(data)
        except ProtocolError as exc:
            self.node.metrics.errors.labels(ErrorCode.BAD_MESSAGE.value).inc()
            if await conn.violation(ErrorCode.BAD_MESSAGE, str(exc)):
                self.node.metrics.closes.labels(str(int(CloseCode.PROTOCOL_ABUSE))).inc()
            return
        self.node.metrics.messages_in.labels(message.TYPE.value).inc()
        try:
            await self.dispatch(message)
        except ClosingError as exc:
            self.node.metrics.errors.labels(exc.code.value).inc()
            await conn.send_error(exc.code, exc.reason)
            await self._close(exc.close, exc.reason)

    async def dispatch(self, message: Message) -> None:
        match message:
            case Ping(sent=sent):
                await self.conn.send(Pong(echo=sent, time=now_ms()))
            case Pong(echo=echo):
                if self.conn.racer is not None:
                    self.conn.racer.observe_rtt(now_ms() - echo)
            case Hello():
                await self.on_hello(message)
            case _ if self.conn.player is None:
                await self._error(ErrorCode.NOT_AUTHENTICATED, "say hello with a player token first")
            case Join():
                await self.on_join(message)
            case Input():
                await self.on_input(message)
            case Leave():
                await self.on_leave()
            case Spectate():
                await self.on_spectate(message)
            case _:
                await self._error(ErrorCode.BAD_MESSAGE, f"{message.TYPE.value} is not a client message")

    # ---- handlers ----------------------------------------------------------------

    async def on_hello(self, hello: Hello) -> None:
        if self.conn.player is not None:
            await self._error(ErrorCode.BAD_MESSAGE, "already said hello")
            return
        try:
            player = self.node.signer.verify_player(hello.token)
        except TokenError as exc:
            code = ErrorCode.TOKEN_EXPIRED if exc.expired else ErrorCode.BAD_TOKEN
            raise ClosingError(code, str(exc), CloseCode.BAD_TOKEN) from None
        self.conn.player = player
        self.conn.log = log.bind(node_id=self.node.settings.node_id, player_id=player.player_id)
        limits = self.conn.limits
        await self.conn.send(
            Welcome(
                player_id=player.player_id,
                name=player.name,
                node_id=self.node.settings.node_id,
                server_time=now_ms(),
                max_keys=limits.max_keys_per_msg,
                max_rate=limits.max_msgs_per_s,
            )
        )

    async def on_join(self, join: Join) -> None:
        conn, node = self.conn, self.node
        assert conn.player is not None
        try:
            ticket = node.signer.verify_join(join.ticket)
        except TokenError as exc:
            code = ErrorCode.TOKEN_EXPIRED if exc.expired else ErrorCode.BAD_TOKEN
            raise ClosingError(code, str(exc), CloseCode.BAD_TOKEN) from None
        if ticket.player_id != conn.player.player_id:
            raise ClosingError(ErrorCode.BAD_TOKEN, "ticket belongs to another player", CloseCode.BAD_TOKEN)
        if ticket.node_id != node.settings.node_id:
            await self._redirect(ticket.node_id, ticket.race_id)
            return
        if conn.room is not None or conn.watching is not None:
            await self._error(ErrorCode.ALREADY_JOINED, "leave the current race first")
            return
        room = node.room(ticket.race_id)
        if room is None:
            raise ClosingError(
                ErrorCode.RACE_NOT_FOUND, "no such race on this node", CloseCode.RACE_NOT_FOUND
            )
        now = now_ms()
        try:
            racer, resumed = room.race.join(ticket.player_id, ticket.name, now)
        except SeatError as exc:
            raise ClosingError(ErrorCode(exc.code), exc.reason, _SEAT_CLOSE[exc.code]) from None
        replaced = room.attach(racer.id, conn)
        if replaced is not None:
            await replaced.send_error(ErrorCode.ALREADY_JOINED, "connected again elsewhere")
            await replaced.close(CloseCode.REPLACED, "connected again elsewhere")
        conn.room, conn.racer = room, racer
        conn.log = conn.log.bind(race_id=room.race.id)
        conn.log.info("player_joined", resumed=resumed)
        race = room.race
        await conn.send(
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
            )
        )
        await conn.send(Ping(sent=now))  # a first round trip before the start
        await room.flush_outgoing()
        if room.finalized:
            await conn.send(
                Results(
                    race_id=race.id,
                    state=race.state.value,
                    results=race.result_rows(),
                    reason=race.end_reason,
                )
            )

    async def on_input(self, inp: Input) -> None:
        conn = self.conn
        if conn.room is None or conn.racer is None:
            reason = "spectators cannot type" if conn.watching else "join a race first"
            await self._error(ErrorCode.NOT_JOINED, reason)
            return
        race = conn.room.race
        if race.state is not RaceState.RUNNING:
            code = ErrorCode.RACE_OVER if race.ended else ErrorCode.NOT_RUNNING
            await self._error(code, f"the race is {race.state.value}")
            return
        problem = check_keys(inp.keys, inp.times, conn.limits.max_keys_per_msg)
        if problem is not None:
            code, reason = problem
            self.node.metrics.errors.labels(code.value).inc()
            await conn.violation(code, reason)
            return
        outcome = race.apply_input(conn.racer, inp.seq, inp.keys, inp.times, now_ms())
        if outcome is InputOutcome.FINISHED:
            await conn.room.flush_outgoing()

    async def on_spectate(self, spectate: Spectate) -> None:
        conn, node = self.conn, self.node
        if conn.room is not None or conn.watching is not None:
            await self._error(ErrorCode.ALREADY_JOINED, "leave the current race first")
            return
        race_id = RaceId(spectate.race_id)
        room = node.room(race_id)
        if room is not None:  # ours: watch it directly
            room.spectators.add(conn)
            conn.watching = race_id
            await conn.send(room.watching(now_ms()))
            if room.finalized:
                race = room.race
                await conn.send(
                    Results(
                        race_id=race.id,
                        state=race.state.value,
                        results=race.result_rows(),
                        reason=race.end_reason,
                    )
                )
            return
        snapshot = await node.remote_snapshot(race_id)
        if snapshot is None:
            await self._error(ErrorCode.RACE_NOT_FOUND, "no such live race")
            return
        conn.watching = race_id
        await conn.send(snapshot)
        await node.relay.watch(race_id, conn)

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

    async def on_leave(self) -> None:
        conn = self.conn
        if conn.watching is not None:
            await self.stop_watching()
            return
        if conn.room is None or conn.racer is None:
            await self._error(ErrorCode.NOT_JOINED, "not in a race")
            return
        room, racer = conn.room, conn.racer
        room.detach(racer.id, conn)
        conn.room = conn.racer = None
        room.race.leave(racer, now_ms())
        await room.flush_outgoing()

    async def on_closed(self) -> None:
        conn = self.conn
        await self.stop_watching()
        room, racer = conn.room, conn.racer
        conn.room = conn.racer = None
        if room is not None and racer is not None and room.detach(racer.id, conn):
            room.race.disconnect(racer, now_ms())
            await room.flush_outgoing()
            conn.log.info("player_disconnected")

    # ---- helpers -----------------------------------------------------------------

    async def _redirect(self, node_id: str, race_id: RaceId) -> None:
        url = await self.node.node_url(node_id)
        if url is None:
            raise ClosingError(ErrorCode.WRONG_NODE, f"node {node_id} is unknown", CloseCode.RACE_NOT_FOUND)
        await self.conn.send(Redirect(url=url, node_id=node_id, race_id=race_id))
        await self._close(CloseCode.REDIRECT, "race is on another node")

    async def _error(self, code: ErrorCode, reason: str) -> None:
        self.node.metrics.errors.labels(code.value).inc()
        await self.conn.send_error(code, reason)

    async def _close(self, code: CloseCode, reason: str) -> None:
        self.node.metrics.closes.labels(str(int(code))).inc()
        await self.conn.close(code, reason)


async def websocket_handler(request: web.Request, node: Node) -> web.StreamResponse:
    limits = node.settings.limits
    if node.connection_count >= limits.max_connections:
        return web.json_response({"error": "node_full", "reason": "too many connections"}, status=503)
    ws = web.WebSocketResponse(max_msg_size=limits.max_frame_bytes, autoping=True, heartbeat=30.0)
    await ws.prepare(request)
    node.connection_count += 1
    node.metrics.connections.inc()
    try:
        # uvloop's transports are not asyncio.Transport subclasses: take it as aiohttp gives it.
        await SocketSession(node, Connection(ws, limits, request.transport)).run()
    finally:
        node.connection_count -= 1
        node.metrics.connections.dec()
        if not ws.closed:
            await ws.close()
    return ws
