"""Slow and half-open clients: request deadlines, and every open connection counts toward the limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
import pytest
from yarl import URL

from gameserver import listener
from gameserver.listener import GATE_KEY
from gameserver.settings import LimitSettings
from tests.conftest import ADMIN, NodeFactory, RunningNode
from tests.gameserver.test_framing import RawSocket
from tests.gameserver.test_wsproto import client_frame

HALF_REQUEST = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websock"


async def open_half_requests(
    node: RunningNode, n: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    conns = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", node.settings.port)
        writer.write(HALF_REQUEST)
        conns.append((reader, writer))
    await asyncio.gather(*(writer.drain() for _, writer in conns))
    return conns


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def admin_port(node: RunningNode) -> int:
    port = URL(node.admin_url).port
    assert port is not None
    return port


def refused(node: RunningNode, reason: str) -> float | None:
    name = "arena_gameserver_connections_refused_total"
    return node.node.metrics.registry.get_sample_value(name, {"reason": reason})


async def upgrade_status(node: RunningNode) -> int:
    """The HTTP status a WebSocket upgrade gets now (101 if it went through; closed at once)."""
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(node.ws_url)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101


async def test_half_requests_count_toward_the_limit_and_are_closed_at_the_head_deadline(
    node_factory: NodeFactory,
) -> None:
    node = await node_factory(limits=LimitSettings(max_connections=50, request_head_timeout_s=1.0))
    gate = node.runner.app[GATE_KEY]
    loop = asyncio.get_running_loop()
    started = loop.time()
    conns = await open_half_requests(node, 50)
    await wait_for(lambda: gate.open == 50)
    assert await upgrade_status(node) == 503  # the 51st is refused while they hang
    # Each is closed by the server once the deadline passes: EOF, without a response.
    for reader, _ in conns:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    assert 0.9 <= loop.time() - started < 4.0
    for _, writer in conns:
        writer.close()
    await wait_for(lambda: gate.open == 0)
    assert await upgrade_status(node) == 101
    assert refused(node, "upgrade") == 1
    assert node.node.metrics.registry.get_sample_value("arena_gameserver_listener_connections") == 0


async def test_an_upgraded_socket_counts_until_it_closes(node_factory: NodeFactory) -> None:
    node = await node_factory(limits=LimitSettings(max_connections=2, hello_timeout_s=60))
    gate = node.runner.app[GATE_KEY]
    first = await RawSocket.open(node)  # upgraded, no hello yet
    _, writer = await asyncio.open_connection("127.0.0.1", node.settings.port)
    writer.write(HALF_REQUEST)  # an upgrade in progress
    await wait_for(lambda: gate.open == 2)
    assert await upgrade_status(node) == 503
    first.shut()
    writer.close()
    await wait_for(lambda: gate.open == 0)
    assert node.node.connection_count == 0
    assert await upgrade_status(node) == 101


async def test_past_the_spare_room_connections_are_refused_at_accept(
    node_factory: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener, "SPARE_CONNECTIONS", 3)
    node = await node_factory(limits=LimitSettings(max_connections=2))
    gate = node.runner.app[GATE_KEY]
    conns = await open_half_requests(node, 5)  # the limit and the spare room
    await wait_for(lambda: gate.open == 5)
    # A health check still fits nowhere: the listener answers 503 itself and hangs up.
    reader, writer = await asyncio.open_connection("127.0.0.1", node.settings.port)
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 503") and b"node_full" in answer
    writer.close()
    assert gate.open == 5
    for _, w in conns:
        w.close()
    await wait_for(lambda: gate.open == 0)
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{node.http_url}/healthz")
        assert resp.status == 200
    assert refused(node, "accept") == 1


async def test_a_body_that_does_not_arrive_in_time_gets_408(node_factory: NodeFactory) -> None:
    node = await node_factory(limits=LimitSettings(request_body_timeout_s=0.5))
    body = json.dumps({"race_type": "quick", "players": [{"name": "ada"}]}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", admin_port(node))
    writer.write(
        b"POST /admin/races HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ADMIN.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body[:10]
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await asyncio.wait_for(reader.read(), 5)  # the 408, then the server hangs up
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
    assert 0.4 <= loop.time() - started < 3.0
    writer.close()
    assert refused(node, "body_timeout") == 1
    # A whole body in time is served as before.
    race = await node.create_race(["ada"])
    assert race["seats"][0]["player_token"]


async def test_a_body_in_pieces_within_the_deadline_reaches_the_handler_whole(
    node_factory: NodeFactory,
) -> None:
    node = await node_factory(limits=LimitSettings(request_body_timeout_s=2.0))
    body = b'{"exit": true}'
    reader, writer = await asyncio.open_connection("127.0.0.1", admin_port(node))
    writer.write(
        b"POST /admin/drain HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ADMIN.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body[:5]
    )  # fmt: skip
    await asyncio.sleep(0.3)
    writer.write(body[5:])
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 202")
    assert node.node.exit_requested.is_set()  # the handler read the body the middleware waited for
    assert node.node.exiting
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_the_head_deadline(
    node_factory: NodeFactory,
) -> None:
    node = await node_factory(limits=LimitSettings(request_head_timeout_s=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", node.settings.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)  # served, then closed when idle past the deadline
    assert answer.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_the_head_deadline_does_not_touch_an_upgraded_socket(node_factory: NodeFactory) -> None:
    node = await node_factory(limits=LimitSettings(request_head_timeout_s=0.2, hello_timeout_s=60))
    sock = await RawSocket.open(node)
    await asyncio.sleep(0.6)
    sock.send(client_frame(0x9, b"still there?"))
    assert await sock.frame() == (0xA, b"still there?")
    sock.shut()
