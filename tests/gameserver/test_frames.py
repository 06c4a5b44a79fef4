"""Pre-built frames written straight to the transport arrive as the same messages."""

import aiohttp
from aiohttp import WSMsgType, web

from gameserver.frames import ws_frame
from ops.services import free_port

PAYLOADS: list[bytes | str] = [b"x", b"y" * 200, b"z" * 70000, "text", "t" * 300]


async def test_frames_arrive_intact() -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None
        for payload in PAYLOADS:
            request.transport.write(ws_frame(payload))
        await ws.receive()  # until the client closes
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        url = f"ws://127.0.0.1:{port}/"
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            for payload in PAYLOADS:
                msg = await ws.receive(timeout=5)
                assert msg.type is (WSMsgType.TEXT if isinstance(payload, str) else WSMsgType.BINARY)
                assert msg.data == payload
    finally:
        await runner.cleanup()


def test_header_sizes() -> None:
    assert ws_frame(b"ab")[:2] == b"\x82\x02"
    assert ws_frame(b"a" * 126)[:4] == b"\x82\x7e\x00\x7e"
    assert ws_frame(b"a" * 65536)[:2] == b"\x82\x7f" and len(ws_frame(b"a" * 65536)) == 65536 + 10
