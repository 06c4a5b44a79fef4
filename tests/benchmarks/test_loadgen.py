"""The load generator's WebSocket client and players, against a real node on loopback."""

from __future__ import annotations

import asyncio
import struct
from typing import Any, cast

import msgpack

from benchmarks.loadgen import AdminClient, Player, RaceGroup, Swarm
from benchmarks.loadgen.wsclient import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    WSClientProtocol,
    accept_for,
    binary_frame,
    client_frame,
)
from tests.conftest import ADMIN, NodeFactory


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


class Recorder(WSClientProtocol):
    __slots__ = ("failures", "messages")

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 1)
        self.messages: list[bytes] = []
        self.failures: list[str] = []

    def on_binary(self, payload: bytes) -> None:
        self.messages.append(payload)

    def on_failed(self, reason: str) -> None:
        self.failures.append(reason)


def upgraded() -> tuple[Recorder, FakeTransport]:
    client = Recorder()
    transport = FakeTransport()
    client.connection_made(cast(Any, transport))
    key = client._key
    client.data_received(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {accept_for(key)}\r\n\r\n".encode()
    )
    return client, transport


def server_frame(payload: bytes, opcode: int = 2) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def test_accept_key_matches_rfc6455_example() -> None:
    assert accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_client_frames_are_masked_with_a_zero_key() -> None:
    for size in (0, 125, 126, 65535, 65536):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        frame = client_frame(payload)
        assert frame[0] == 0x82 and frame[1] & 0x80
        header = {True: 2, False: 4 if size < 65536 else 10}[size < 126]
        assert frame[header : header + 4] == b"\x00\x00\x00\x00"
        assert frame[header + 4 :] == payload
        assert binary_frame(payload) == frame


def test_frames_split_and_joined_across_reads() -> None:
    client, _ = upgraded()
    payloads = [b"a" * 5, b"b" * 300, b"c" * 70000, b"d"]
    stream = b"".join(server_frame(p) for p in payloads)
    for i in range(0, len(stream), 7):  # worst case: reads cut everywhere
        client.data_received(stream[i : i + 7])
    assert client.messages == payloads
    client.data_received(stream)  # and all at once
    assert client.messages == payloads * 2
    assert not client.failures


def test_ping_is_answered_and_close_is_echoed() -> None:
    client, transport = upgraded()
    transport.written.clear()
    client.data_received(server_frame(b"hi", OP_PING) + server_frame(b"\x03\xe8bye", OP_CLOSE))
    assert transport.written[0] == client_frame(b"hi", OP_PONG)
    assert transport.written[1] == client_frame(b"\x03\xe8", OP_CLOSE)
    assert client.close_code == 1000 and transport.closing


def test_a_refused_upgrade_fails_the_client() -> None:
    client = Recorder()
    transport = FakeTransport()
    client.connection_made(cast(Any, transport))
    client.data_received(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    assert client.failures and "503" in client.failures[0] and transport.closing


async def test_players_race_on_a_real_node(node_factory: NodeFactory) -> None:
    """10 players in 2 races: join, type, answer pings, and measure latency with no errors."""
    node = await node_factory()
    swarm = Swarm("127.0.0.1", node.settings.port, seed=1)
    async with AdminClient(node.admin_url, ADMIN, race_type="quick") as admin:

        async def make_race(index: int) -> Any:
            return await admin.create_race([f"lg{index}-{j}" for j in range(5)])

        swarm.start_timer()
        try:
            await swarm.add_races(2, make_race, concurrency=2, join_timeout_s=5.0)
            assert not swarm.connect_failures
            assert await swarm.wait_started(5.0)
            stats = await swarm.measure(2.0, drain_s=0.5)
        finally:
            swarm.close_all()
            await asyncio.sleep(0.1)

    assert stats.started == 10
    assert 30 <= stats.inputs_sent <= 50  # 10 players x 2 per second x 2 s
    assert len(stats.latencies_ms) >= stats.inputs_sent - 10
    assert stats.latencies_ms[0] > 0 and stats.latencies_ms[-1] < 1000
    assert stats.lost == 0 and stats.progress_frames > 0
    assert not (stats.errors or stats.closes or stats.protocol_errors or stats.race_events)
    assert swarm.pongs_sent > 0  # the test node pings every second
    # The node agrees: every batch applied, positions match, nothing flagged as cheating.
    racers = {str(r.id): r for room in node.node.rooms.values() for r in room.race.racers.values()}
    for player in swarm.players:
        racer = racers[player.player_id]
        assert racer.seq == player.seq and racer.typing.position == player.typed
        assert not racer.flags and racer.rtt_ms is not None


async def frames_per_input(node: Any, *, follow_cadence: bool) -> float:
    """Progress frames received per input sent, 2 races of 5 on a real node for 2 s."""
    swarm = Swarm("127.0.0.1", node.settings.port, seed=2, follow_cadence=follow_cadence, clock_error_ms=5)
    async with AdminClient(node.admin_url, ADMIN, race_type="quick") as admin:

        async def make_race(index: int) -> Any:
            return await admin.create_race([f"c{follow_cadence:d}{index}-{j}" for j in range(5)])

        swarm.start_timer()
        try:
            await swarm.add_races(2, make_race, concurrency=2, join_timeout_s=5.0)
            assert await swarm.wait_started(5.0)
            await asyncio.sleep(0.6)  # past the first send of every player
            stats = await swarm.measure(2.0, drain_s=0.5)
        finally:
            swarm.close_all()
            await asyncio.sleep(0.1)
    assert stats.lost == 0 and not (stats.errors or stats.protocol_errors)
    return stats.progress_frames / stats.inputs_sent


async def test_players_following_the_cadence_share_frames(node_factory: NodeFactory) -> None:
    """On the race's instants a race's five inputs make one frame for five sockets: one frame
    received per input. Each on a phase of its own, most inputs make a frame of their own."""
    node = await node_factory()
    assert node.settings.race.input_cadence_ms == 250
    aligned = await frames_per_input(node, follow_cadence=True)
    scattered = await frames_per_input(node, follow_cadence=False)
    assert aligned <= 1.25, aligned
    assert scattered >= 2.0, scattered


def test_room_mates_decode_a_frame_once() -> None:
    """A race's sockets get the same bytes: the first copy is decoded, the next credits its row."""
    swarm = Swarm("127.0.0.1", 1)
    race = RaceGroup("r1")
    a, b = (Player(swarm, race, pid, "t", "k") for pid in ("pa", "pb"))
    for p in (a, b):
        p._upgraded = True
        p.pending = [0.0]
        p.seq = 1
    swarm.window_start, swarm.window_end = -1.0, float("inf")
    payload = msgpack.packb(
        {"t": "progress", "server_time": 1, "players": [["pa", 3, 1.0, 0, 1], ["pb", 2, 1.0, 0, 1]]}
    )
    frame = server_frame(payload)
    a.data_received(frame)  # a sees b's row; its own row waits for a room-mate
    assert (a.acked, b.acked) == (0, 1)
    b.data_received(frame)  # same bytes on b's socket: credits a, no decode
    assert (a.acked, b.acked) == (1, 1)
    assert len(swarm.latencies) == 2 and race.frames == 2
