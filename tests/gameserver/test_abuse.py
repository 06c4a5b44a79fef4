"""Bad input gets a clear error or a close, and the other players of the race do not notice."""

import asyncio
import logging
import socket
import struct

import msgpack
import pytest

from arena.codec import WireFormat
from arena.protocol import (
    CloseCode,
    Error,
    ErrorCode,
    Hello,
    Input,
    Join,
    Joined,
    Ping,
    Pong,
    Spectate,
    Welcome,
)
from gameserver.session import SocketSession
from gameserver.settings import LimitSettings
from tests.conftest import NodeFactory, RunningNode
from tests.gameserver.wsclient import RawClient


async def hello(node: RunningNode, token: str) -> RawClient:
    client = await RawClient.connect(node.ws_url)
    await client.send(Hello(token=token))
    assert isinstance(await client.recv_until(Welcome), Welcome)
    return client


async def test_garbage_gets_errors_then_a_close(node: RunningNode) -> None:
    race = await node.create_race(["ada"])
    client = await hello(node, race["seats"][0]["player_token"])
    await client.ws.send_bytes(b"\xc1\x00\xffnot msgpack")
    err = await client.recv_until(Error)
    assert isinstance(err, Error) and err.code == ErrorCode.BAD_MESSAGE
    await client.ws.send_str("{broken json")
    assert (await client.recv_until(Error)).code == ErrorCode.BAD_MESSAGE  # type: ignore[attr-defined]
    await client.ws.send_bytes(msgpack.packb({"t": "input", "seq": "x", "keys": 1, "times": None}))
    err = await client.recv_until(Error)
    assert isinstance(err, Error) and "field" in err.reason
    for _ in range(10):
        await client.ws.send_bytes(msgpack.packb({"t": "nope"}))
    assert await client.wait_closed() == CloseCode.PROTOCOL_ABUSE
    await client.close()


async def test_input_before_join_and_before_hello(node: RunningNode) -> None:
    client = await RawClient.connect(node.ws_url)
    await client.send(Input(seq=1, keys="a", times=[1]))
    err = await client.recv_until(Error)
    assert isinstance(err, Error) and err.code == ErrorCode.NOT_AUTHENTICATED
    await client.close()


async def test_oversized_frame_is_closed_with_1009(node_factory: NodeFactory) -> None:
    node = await node_factory(limits=LimitSettings(max_frame_bytes=1024))
    race = await node.create_race(["ada"])
    client = await hello(node, race["seats"][0]["player_token"])
    await client.ws.send_bytes(b"\x00" * 5000)
    assert await client.wait_closed() == CloseCode.MESSAGE_TOO_BIG
    await client.close()


async def test_flood_is_rate_limited_then_closed(node_factory: NodeFactory) -> None:
    node = await node_factory(limits=LimitSettings(max_msgs_per_s=5, burst_msgs=5, max_violations=5))
    race = await node.create_race(["ada"])
    client = await hello(node, race["seats"][0]["player_token"])
    for _ in range(40):
        if client.ws.closed:
            break
        await client.ws.send_bytes(msgpack.packb({"t": "ping", "sent": 1}))
    assert await client.wait_closed() == CloseCode.FLOOD
    assert any(isinstance(m, Error) and m.code == ErrorCode.RATE_LIMITED for m in client.received)
    await client.close()


async def test_forged_token_and_ticket_are_closed(node: RunningNode) -> None:
    race = await node.create_race(["ada", "bob"])
    client = await RawClient.connect(node.ws_url)
    await client.send(Hello(token="v1.e30.AAAA"))
    err = await client.recv_until(Error)
    assert isinstance(err, Error) and err.code == ErrorCode.BAD_TOKEN
    assert await client.wait_closed() == CloseCode.BAD_TOKEN
    await client.close()
    # A valid player using somebody else's ticket.
    client = await hello(node, race["seats"][0]["player_token"])
    await client.send(Join(ticket=race["seats"][1]["ticket"]))
    assert await client.wait_closed() == CloseCode.BAD_TOKEN
    await client.close()


async def test_json_text_frames_work_too(node: RunningNode) -> None:
    race = await node.create_race(["ada"])
    client = await RawClient.connect(node.ws_url)
    await client.send(Hello(token=race["seats"][0]["player_token"]), WireFormat.JSON)
    msg = await client.ws.receive(timeout=5)
    assert msg.type.name == "TEXT" and '"t":"welcome"' in msg.data
    await client.send(Join(ticket=race["seats"][0]["ticket"]), WireFormat.JSON)
    joined = await client.recv_until(Joined)
    assert isinstance(joined, Joined) and joined.race_id == race["race_id"]
    await client.close()


async def test_hello_timeout_closes_silent_sockets(node_factory: NodeFactory) -> None:
    node = await node_factory(limits=LimitSettings(hello_timeout_s=0.3))
    client = await RawClient.connect(node.ws_url)
    assert await asyncio.wait_for(client.wait_closed(), 5) == CloseCode.HELLO_TIMEOUT
    await client.close()


async def test_a_handler_bug_costs_that_socket_not_the_node(
    node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failing socket gets an error and a 1011 close (its player resumes on a new socket,
    from what the server holds); every other socket goes on."""

    def broken(self: SocketSession, message: object) -> None:
        raise KeyError("a bug")

    race = await node.create_race(["ada", "bob"])
    ada = await hello(node, race["seats"][0]["player_token"])
    bob = await hello(node, race["seats"][1]["player_token"])
    monkeypatch.setattr(SocketSession, "on_spectate", broken)
    await ada.send(Spectate(race_id="whatever"))
    err = await ada.recv_until(Error)
    assert isinstance(err, Error) and err.code == ErrorCode.INTERNAL
    assert await ada.wait_closed() == CloseCode.INTERNAL_ERROR
    await bob.send(Ping(sent=5))  # the node still serves everyone else
    pong = await bob.recv_until(Pong)
    assert isinstance(pong, Pong) and pong.echo == 5
    assert node.node.metrics.faults.labels("message")._value.get() == 1
    await ada.close()
    await bob.close()


UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def test_a_client_gone_during_the_handshake_is_counted_not_an_error(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    """An upgrade request followed at once by a reset: the node's 101 finds the transport closing.
    That socket's fault stays with it: no handler error (aiohttp would log a traceback at error
    level), a count, and the node serves the next socket."""
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", node.settings.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        sock.sendall(UPGRADE)
        sock.close()
    metrics = node.node.metrics
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while metrics.handshakes_abandoned._value.get() < 10:
        assert loop.time() < deadline, metrics.handshakes_abandoned._value.get()
        await asyncio.sleep(0.05)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert node.node.connection_count == 0
    client = await RawClient.connect(node.ws_url)
    await client.send(Ping(sent=7))
    pong = await client.recv_until(Pong)
    assert isinstance(pong, Pong) and pong.echo == 7
    await client.close()
