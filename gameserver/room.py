"""A race together with the sockets watching it: the I/O side of ``Race``.

The room turns the race's ``outgoing`` messages and progress into frames, encoding each
frame once per wire format and writing the same bytes to every socket of the race: its
players and its local spectators. When another node has spectators of this race, the
msgpack frame is also queued for the race's pub/sub channel (published once per tick).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from arena.codec import WireFormat, encode_map, to_wire
from arena.ids import PlayerId
from arena.protocol import Message, MsgType, Ping, Results, Watching
from gameserver.connection import Connection
from gameserver.frames import ws_frame
from gameserver.metrics import FlushReason, NodeMetrics
from gameserver.race import Race

_PROGRESS = MsgType.PROGRESS.value


class RaceRoom:
    def __init__(self, race: Race, metrics: NodeMetrics) -> None:
        self.race = race
        self.metrics = metrics
        self.players: dict[PlayerId, Connection] = {}
        self.spectators: set[Connection] = set()
        self.finalized = False  # outbox written and results sent
        self.faulted = False  # the server failed on this race: it was aborted and only ends now
        self.removable_at: int | None = None
        self.remote_watched = False  # some other node relays this race to its spectators
        self.to_publish: list[bytes] = []  # msgpack frames for the pub/sub channel
        self.mirrored_version = -1
        self.roster_mirrored_at: int | None = None  # last write of the roster to the mirror (ms)
        self.progress_queued = False  # waiting in the node's ProgressBatcher
        self.ping_phase = 0  # the tick (modulo the ping period) in which its players are pinged
        # A ping waiting to ride on the race's next progress frame: one write carries both.
        # Sent alone at this instant if no frame came by then (nobody typing).
        self.ping_due_at: int | None = None
        # Checkpointed (gameserver/checkpoint.py): the definition still to write (first tick),
        # and whether the checkpoint is still the node's to delete once the result is written.
        self.checkpoint_def: str | None = None
        self.checkpointed = False
        self.checkpoint_at = 0  # the last append of its journal (ms): the next is due checkpoint_ms later
        # A drain with move (gameserver/mover.py): frozen since (ms; the tick skips it, inputs are
        # dropped, to be resent after the rejoin), and whether its hand-off is written.
        self.moving_at: int | None = None
        self.handed_off = False
        self.taken_back = False  # nobody adopted it in time: it ends here, it is not moved again
        # Journal entries encoded but not in Redis yet (item, entries), oldest first: what a failed
        # or late append left, compact (≈ 40 B an entry, against ≈ 300 B as Python objects).
        self.checkpoint_backlog: list[tuple[bytes | str, int]] = []
        # Its definition is being written at creation (Node.write_definition): the tick leaves
        # its checkpoint alone meanwhile, so no entry can land before the definition.
        self.checkpoint_pending = False
        # Its backlog passed ARENA_RACE_CHECKPOINT_BACKLOG_KB (appends too far behind), or a stop
        # aborted it: it journals nothing more; its checkpoint stays at its last written entry.
        self.checkpoint_frozen = False

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
        conns = [c for c in self.players.values() if not c.closed]
        conns.extend(c for c in self.spectators if not c.closed)
        return conns

    def results(self) -> Results:
        race = self.race
        return Results(
            race_id=race.id, state=race.state.value, results=race.result_rows(), reason=race.end_reason
        )

    def watching(self, now: int) -> Watching:
        race = self.race
        return Watching(
            race_id=race.id,
            race_type=race.race_type.value,
            passage_id=race.passage.id,
            passage=race.passage.text,
            state=race.state.value,
            players=race.player_infos(now),
            server_time=now,
            start_at=race.start_at,
            ends_at=race.ends_at,
            node_id=race.node_id,
        )

    def broadcast(self, msg: Message, *, relay: bool = True) -> None:
        """Send one message to every socket, encoded at most once per format."""
        self._send_wire(to_wire(msg), relay=relay)
        self.metrics.frames_sent(msg.TYPE, len(self.players) + len(self.spectators))

    def _send_wire(
        self,
        wire: dict[str, Any],
        *,
        relay: bool,
        skip_backlogged: bool = False,
        skip: Connection | None = None,
        players_too: dict[str, Any] | None = None,
    ) -> int:
        """Encode once per format, frame once, write the same bytes to every socket.

        ``players_too`` is a second message for the players only, written with the first in
        the same write (a ping riding on a progress frame: one system call, not two).
        """
        if players_too is None:
            everyone = itertools.chain(self.players.values(), self.spectators)
            sent = _write_each(everyone, wire, skip_backlogged, skip)
        else:
            sent = _write_each(self.players.values(), wire, skip_backlogged, skip, players_too)
            sent += _write_each(self.spectators, wire, skip_backlogged, skip)
        if relay and self.remote_watched:
            packed = encode_map(wire, WireFormat.MSGPACK)
            assert isinstance(packed, bytes)
            self.to_publish.append(packed)
        return sent

    def flush_outgoing(self) -> None:
        race = self.race
        while race.outgoing:
            batch, race.outgoing = race.outgoing, []
            for msg in batch:
                self.broadcast(msg)

    def broadcast_progress(self, now: int, reason: FlushReason) -> None:
        """One progress frame for the whole race, skipped for sockets with a backlog."""
        self.metrics.progress_flushed(reason)
        race = self.race
        sole_typist = race.take_changes()
        wire = {"t": _PROGRESS, "server_time": now, "players": race.progress_rows(now)}
        skip = self.players.get(sole_typist) if sole_typist is not None else None
        ping = None
        if self.ping_due_at is not None and skip is None:  # a frame for every player: the ping rides
            ping = to_wire(Ping(sent=now))
            self.ping_due_at = None
            # Only players whose socket takes this frame get the ping: a backlogged one skips it,
            # and a ping expected but never sent would push a real one out of its racer's
            # outstanding pings (gameserver.roundtrip), refusing an honest late answer.
            self._expect_pongs(now, writable_only=True)
            self.metrics.frames_sent(MsgType.PING, len(self.players))
        sent = self._send_wire(wire, relay=True, skip_backlogged=True, skip=skip, players_too=ping)
        self.metrics.frames_sent(MsgType.PROGRESS, sent)
        if race.first_unsent_input_ms is not None:
            self.metrics.input_to_broadcast_seconds.observe((now - race.first_unsent_input_ms) / 1000)
            race.first_unsent_input_ms = None

    def ask_ping(self, now: int, ride_ms: int) -> None:
        """Ping the players with the race's next progress frame, or alone ``ride_ms`` from now."""
        if self.ping_due_at is None:
            self.ping_due_at = now + ride_ms

    def ping_all(self, now: int) -> None:
        """Server pings measure each player's round trip for latency compensation."""
        self.ping_due_at = None
        self._expect_pongs(now)
        _write_each(self.players.values(), to_wire(Ping(sent=now)), skip_backlogged=False, skip=None)

    def _expect_pongs(self, sent: int, writable_only: bool = False) -> None:
        """Only answers to pings the server sent measure a round trip (``gameserver.roundtrip``)."""
        racers = self.race.racers
        for player_id, conn in self.players.items():
            racer = racers.get(player_id)
            if racer is not None and (not writable_only or conn.takes_offers()):
                racer.round_trips.expect(sent)


def _write_each(
    conns: Iterable[Connection],
    wire: dict[str, Any],
    skip_backlogged: bool,
    skip: Connection | None,
    then: dict[str, Any] | None = None,
) -> int:
    """Write ``wire`` (and ``then`` behind it) to each socket, framed once per wire format.

    Straight over the collection: no list per frame; write() skips closing sockets.
    """
    frames: dict[WireFormat, bytes] = {}
    sent = 0
    for conn in conns:
        if conn is skip:
            continue
        frame = frames.get(conn.fmt)
        if frame is None:
            frame = ws_frame(encode_map(wire, conn.fmt))
            if then is not None:
                frame += ws_frame(encode_map(then, conn.fmt))
            frames[conn.fmt] = frame
        sent += conn.offer(frame) if skip_backlogged else conn.write(frame)
    return sent
