"""A race together with the sockets watching it: the I/O side of ``Race``.

The room turns the race's ``outgoing`` messages and progress into frames, encoding each
frame once per wire format and writing the same bytes to every socket of the race.
"""

from __future__ import annotations

from arena.codec import WireFormat, encode, encode_map
from arena.ids import PlayerId
from arena.protocol import Message, MsgType, Ping
from gameserver.connection import Connection
from gameserver.metrics import NodeMetrics
from gameserver.race import Race


class RaceRoom:
    def __init__(self, race: Race, metrics: NodeMetrics) -> None:
        self.race = race
        self.metrics = metrics
        self.players: dict[PlayerId, Connection] = {}
        self.finalized = False  # outbox written and results sent
        self.removable_at: int | None = None

    def attach(self, player_id: PlayerId, conn: Connection) -> Connection | None:
        """Bind a player's socket; returns the socket it replaced, if any."""
        old = self.players.get(player_id)
        self.players[player_id] = conn
        return old if old is not conn else None

    def detach(self, player_id: PlayerId, conn: Connection) -> bool:
        """Unbind a socket if it is still the player's current one."""
        if self.players.get(player_id) is conn:
            del self.players[player_id]
            return True
        return False

    def sockets(self) -> list[Connection]:
        return [c for c in self.players.values() if not c.closed]

    async def broadcast(self, msg: Message) -> None:
        """Send one message to every socket, encoded at most once per format."""
        frames: dict[WireFormat, bytes | str] = {}
        for conn in self.sockets():
            frame = frames.get(conn.fmt)
            if frame is None:
                frame = frames[conn.fmt] = encode(msg, conn.fmt)
            await conn.send_frame(frame)
        self.metrics.frames_out.labels(msg.TYPE.value).inc(len(self.players))

    async def flush_outgoing(self) -> None:
        race = self.race
        while race.outgoing:
            batch, race.outgoing = race.outgoing, []
            for msg in batch:
                await self.broadcast(msg)

    async def broadcast_progress(self, now: int) -> None:
        """One progress frame for the whole race, skipped for sockets with a backlog."""
        race = self.race
        race.dirty = False
        wire = {"t": MsgType.PROGRESS.value, "server_time": now, "players": race.progress_rows(now)}
        frames: dict[WireFormat, bytes | str] = {}
        sent = 0
        for conn in self.sockets():
            if conn.backlogged():
                continue
            frame = frames.get(conn.fmt)
            if frame is None:
                frame = frames[conn.fmt] = encode_map(wire, conn.fmt)
            await conn.send_frame(frame)
            sent += 1
        self.metrics.frames_out.labels(MsgType.PROGRESS.value).inc(sent)
        if race.first_unsent_input_ms is not None:
            self.metrics.input_to_broadcast_seconds.observe((now - race.first_unsent_input_ms) / 1000)
            race.first_unsent_input_ms = None

    async def ping_all(self, now: int) -> None:
        """Server pings measure each player's round trip for latency compensation."""
        await self.broadcast(Ping(sent=now))
