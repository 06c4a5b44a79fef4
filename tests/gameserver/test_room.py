"""The room's writes: one frame per race for every socket, and pings riding on progress."""

from typing import Any, cast

import msgpack

from arena.ids import PlayerId
from gameserver.connection import Connection
from gameserver.metrics import FlushReason, NodeMetrics
from gameserver.room import RaceRoom
from gameserver.settings import LimitSettings
from tests.gameserver.test_race import started_race


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0  # bytes the client has not read yet

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return False


def messages(write: bytes) -> list[dict[str, Any]]:
    """The server frames in one write: short, unmasked, binary (msgpack)."""
    out, i = [], 0
    while i < len(write):
        assert write[i] == 0x82 and write[i + 1] < 126
        n = write[i + 1]
        out.append(msgpack.unpackb(write[i + 2 : i + 2 + n]))
        i += 2 + n
    return out


def socket() -> tuple[Connection, FakeTransport]:
    conn, transport = Connection(LimitSettings()), FakeTransport()
    conn.transport = cast(Any, transport)
    return conn, transport


def room_of_two() -> tuple[RaceRoom, list[FakeTransport], FakeTransport]:
    race = started_race(2)
    race.take_changes()
    room = RaceRoom(race, NodeMetrics())
    players = []
    for pid in ("p1", "p2"):
        conn, transport = socket()
        room.attach(PlayerId(pid), conn)
        players.append(transport)
    watcher, watched = socket()
    room.spectators.add(watcher)
    return room, players, watched


def type_both(room: RaceRoom, seq: int) -> None:
    """Both players send their ``seq``-th key ("t", then "h") at the same instant."""
    race = room.race
    start = race.start_at or 0
    key = "th"[seq - 1]
    for i, pid in enumerate(("p1", "p2"), start=1):
        race.apply_input(race.racers[PlayerId(pid)], seq, key, [seq * 100 + i], start + seq * 100)


async def test_a_ping_rides_on_the_next_progress_frame_in_the_same_write() -> None:
    room, players, spectator = room_of_two()
    now = (room.race.start_at or 0) + 100
    room.ask_ping(now, ride_ms=1000)
    type_both(room, 1)
    room.broadcast_progress(now, FlushReason.INSTANT)
    for transport in players:
        (write,) = transport.writes  # one system call for both
        progress, ping = messages(write)
        assert progress["t"] == "progress" and ping == {"t": "ping", "sent": now}
    (write,) = spectator.writes  # spectators are not pinged
    assert [m["t"] for m in messages(write)] == ["progress"]
    assert room.ping_due_at is None
    type_both(room, 2)
    room.broadcast_progress(now + 100, FlushReason.INSTANT)
    assert [[m["t"] for m in messages(t.writes[-1])] for t in players] == [["progress"], ["progress"]]


async def test_a_ping_waits_for_a_frame_every_player_gets() -> None:
    room, players, _ = room_of_two()
    race = room.race
    now = (race.start_at or 0) + 100
    room.ask_ping(now, ride_ms=1000)
    race.apply_input(race.racers[PlayerId("p1")], 1, "t", [50], now)
    room.broadcast_progress(now, FlushReason.WINDOW)  # p1's own typing: p1 gets no frame, nobody the ping
    assert players[0].writes == []
    assert [m["t"] for m in messages(players[1].writes[0])] == ["progress"]
    assert room.ping_due_at == now + 1000
    room.ask_ping(now + 500, ride_ms=1000)  # asking again keeps the first deadline
    assert room.ping_due_at == now + 1000
    room.ping_all(now + 1000)  # what the tick does at the deadline
    assert [messages(t.writes[-1]) for t in players] == [[{"t": "ping", "sent": now + 1000}]] * 2
    assert room.ping_due_at is None


async def test_a_socket_that_skips_the_ping_owes_no_answer_to_it() -> None:
    """A backlogged socket skips progress frames and the pings riding on them. Those pings must
    not be expected of it: they would push the real ping it will answer late out of its racer's
    outstanding pings, and the honest answer would be refused as a violation."""
    room, players, _ = room_of_two()
    race = room.race
    start = race.start_at or 0
    room.ping_all(start)  # both get this one
    players[1].buffered = 1 << 20  # p2 stops reading
    for lap in range(1, 11):  # ten pings riding on progress frames p2 does not get
        room.ask_ping(start + lap * 100, ride_ms=1000)
        room.broadcast_progress(start + lap * 100, FlushReason.TICK)
    assert len(players[0].writes) == 11 and len(players[1].writes) == 1
    assert race.racers[PlayerId("p2")].round_trips.answer(start, start + 5000)  # answered late: counted
    assert race.racers[PlayerId("p1")].round_trips.answer(start + 1000, start + 1050)
