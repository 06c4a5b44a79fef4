"""RFC 6455 conformance of a real node, case by case, after the Autobahn TestSuite's groups.

Each case opens a socket to one node (shared by the module), writes raw frames (whole, a byte
per write, or in chunks) and checks what comes back, frame by frame: pongs, replies to the
protocol's own ``ping`` message (the node's echo), or a close with the right code and then the
end of the stream. A case that does not end in a close finishes with the closing handshake
(close 1000, echoed), so every case also proves the socket is still in step.

Groups (Autobahn numbering where there is one): 1 framing and lengths, 2 pings and pongs,
3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close handling, 9 limits, plus the
message rate of every frame (issue 13 E). Intentional differences from Autobahn: messages are
not echoed (the node answers its protocol's ``ping`` instead), the size limit is the node's
``ARENA_MAX_FRAME_BYTES`` (1009 past it) rather than Autobahn's 16 MB, UTF-8 fails fast per
fragment (not within a frame; a frame is at most that limit) and close codes 1012-1014 (IANA)
are valid.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgpack
import pytest
import pytest_asyncio
from aiohttp import web

from arena.ids import NodeId
from arena.settings import RedisSettings, SecretSettings
from gameserver.app import build_app
from gameserver.listener import GATE_KEY, NodeSite
from gameserver.settings import LimitSettings, NodeSettings
from ops.services import RedisServer, free_port
from tests.conftest import ADMIN, FAST_RACE, RunningNode
from tests.gameserver.test_framing import RawSocket
from tests.gameserver.test_wsproto import client_frame

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX = 70_000  # the node's ARENA_MAX_FRAME_BYTES here: every length encoding fits under it
BURST = 200  # ARENA_BURST_MSGS: room for a message cut into a fragment per byte (every frame counts)
CLOSE, PING, PONG, TEXT, BINARY, CONT = 0x8, 0x9, 0xA, 0x1, 0x2, 0x0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wsnode(redis_server: RedisServer) -> AsyncIterator[RunningNode]:
    port = free_port()
    settings = NodeSettings(
        node_id=NodeId("node-conformance"),
        port=port,
        admin_port=0,  # any free port
        redis=RedisSettings(url=redis_server.url),
        secrets=SecretSettings(token_secret=b"test-secret-0123456789", admin_token=ADMIN),
        race=FAST_RACE,
        limits=LimitSettings(max_frame_bytes=MAX, burst_msgs=BURST, hello_timeout_s=30),
    )
    runner = web.AppRunner(build_app(settings), handle_signals=False)
    await runner.setup()
    await NodeSite(runner, "127.0.0.1", port).start()
    try:
        yield RunningNode(settings, runner)
    finally:
        await runner.cleanup()


# ---- building what to send ----------------------------------------------------------


def app_ping(sent: int, *, text: bool, size: int | None = None, note: str = "") -> bytes:
    """The protocol's ``ping`` message, ``size`` bytes long if asked (a padding field)."""

    def build(pad: int) -> bytes:
        msg: dict[str, object] = {"t": "ping", "sent": sent}
        if note:
            msg["note"] = note
        if size is not None:
            msg["pad"] = "x" * pad
        return json.dumps(msg).encode() if text else msgpack.packb(msg)

    if size is None:
        return build(0)
    for pad in range(max(0, size - 40), size + 1):
        data = build(pad)
        if len(data) == size:
            return data
    raise AssertionError(f"no padding gives {size} bytes")


def ping_msg(sent: int, text: bool = False, **kw: object) -> bytes:
    return client_frame(TEXT if text else BINARY, app_ping(sent, text=text, **kw))  # type: ignore[arg-type]


def fragments(opcode: int, payload: bytes, sizes: list[int]) -> list[bytes]:
    """``payload`` cut into frames of ``sizes`` (the rest in the last one)."""
    out, at = [], 0
    for size in sizes:
        out.append(payload[at : at + size])
        at += size
    out.append(payload[at:])
    return [
        client_frame(opcode if i == 0 else CONT, part, fin=i == len(out) - 1) for i, part in enumerate(out)
    ]


def close(code: int | None = None, reason: bytes = b"") -> bytes:
    return client_frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


def json_text(text: str | bytes) -> bytes:
    """A JSON ``ping`` carrying ``text`` (any bytes) in a string field."""
    raw = text.encode() if isinstance(text, str) else text
    return b'{"t":"ping","sent":6,"note":"' + raw + b'"}'


# ---- expectations ---------------------------------------------------------------------


@dataclass
class Case:
    send: list[bytes]
    expect: list[tuple[object, ...]]  # ("pong", payload) | ("reply", sent) | ("any",) | ("close", code)
    writes: str = "whole"  # whole | bytewise | chunks | frames (one write per frame)


def frame_case(*send: bytes, expect: list[tuple[object, ...]], writes: str = "whole") -> Case:
    return Case(list(send), expect, writes)


G = [0x00, 0x7F, 0x80]  # a binary ping payload with every byte value class
BIN125 = bytes(range(125))
VALID_UTF8 = [
    "Hello-µ@ßöäüàá-UTF-8!!",
    "κόσμε",
    "\x7f\x80\u07ff\u0800\uffff\U00010000\U0010ffff",  # the boundaries of every length
    "\ufffe\ufdd0",  # noncharacters are valid UTF-8
    "😀 split 😀",
]
INVALID_UTF8 = {
    "surrogate": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    "lone-continuation": b"a\x80b",
    "overlong-2": b"\xc0\xaf",
    "overlong-3": b"\xe0\x80\xaf",
    "overlong-4": b"\xf0\x80\x80\xaf",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "five-bytes": b"\xf8\x88\x80\x80\x80",
    "six-bytes": b"\xfc\x84\x80\x80\x80\x80",
    "fe": b"\xfe",
    "ff": b"\xff",
    "cut-at-end": b"abc\xce",
    "low-surrogate": b"\xed\xbf\xbf",
}
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]

CASES: dict[str, Case] = {}

# 1 framing: every length encoding, text and binary, whole and in pieces
for length in (0, 125, 126, 127, 128, 65535, 65536):
    for text in (True, False):
        kind = "text" if text else "binary"
        payload = b"" if length == 0 else app_ping(1, text=text, size=length)
        expect = [("any",)] if length == 0 else [("reply", 1)]  # an empty message is not a protocol one
        CASES[f"1-{kind}-{length}"] = frame_case(
            client_frame(TEXT if text else BINARY, payload), expect=expect
        )
CASES["1-text-65536-chunked"] = Case(
    [client_frame(TEXT, app_ping(2, text=True, size=65536))], [("reply", 2)], "chunks"
)
CASES["1-binary-128-bytewise"] = Case([ping_msg(3, size=128)], [("reply", 3)], "bytewise")
CASES["1-two-messages-one-write"] = frame_case(
    ping_msg(4), ping_msg(5, text=True), expect=[("reply", 4), ("reply", 5)]
)
CASES["1-unmasked"] = frame_case(
    client_frame(BINARY, app_ping(1, text=False), masked=False), expect=[("close", 1002)]
)
CASES["1-length-not-shortest-16"] = frame_case(
    struct.pack("!BBH", 0x82, 0x80 | 126, 10) + b"\0\0\0\0" + b"x" * 10, expect=[("close", 1002)]
)
CASES["1-length-not-shortest-64"] = frame_case(
    struct.pack("!BBQ", 0x82, 0x80 | 127, 200) + b"\0\0\0\0" + b"x" * 200, expect=[("close", 1002)]
)

# 2 pings and pongs
CASES["2.1-ping-empty"] = frame_case(client_frame(PING, b""), expect=[("pong", b"")])
CASES["2.2-ping-text"] = frame_case(client_frame(PING, b"Hello, world!"), expect=[("pong", b"Hello, world!")])
CASES["2.3-ping-binary"] = frame_case(client_frame(PING, bytes(G * 8)), expect=[("pong", bytes(G * 8))])
CASES["2.4-ping-125"] = frame_case(client_frame(PING, BIN125), expect=[("pong", BIN125)])
CASES["2.5-ping-126"] = frame_case(client_frame(PING, BIN125 + b"!"), expect=[("close", 1002)])
CASES["2.6-ping-125-bytewise"] = Case([client_frame(PING, BIN125)], [("pong", BIN125)], "bytewise")
CASES["2.7-unsolicited-pong"] = frame_case(client_frame(PONG, b""), expect=[])
CASES["2.8-unsolicited-pong-payload"] = frame_case(client_frame(PONG, b"unsolicited"), expect=[])
CASES["2.9-pong-then-ping"] = frame_case(
    client_frame(PONG, b"unsolicited"), client_frame(PING, b"ping!"), expect=[("pong", b"ping!")]
)
CASES["2.10-ten-pings"] = frame_case(
    *(client_frame(PING, b"p%d" % i) for i in range(10)), expect=[("pong", b"p%d" % i) for i in range(10)]
)
CASES["2.11-ten-pings-bytewise"] = Case(
    [client_frame(PING, b"p%d" % i) for i in range(10)], [("pong", b"p%d" % i) for i in range(10)], "bytewise"
)

# 3 reserved bits: after a good message, so the failure is not just a bad first frame
for rsv, name in ((0x40, "rsv1"), (0x20, "rsv2"), (0x10, "rsv3"), (0x70, "all")):
    for opcode, kind, payload in (
        (TEXT, "text", app_ping(1, text=True)),
        (BINARY, "binary", app_ping(1, text=False)),
        (PING, "ping", b"p"),
        (CLOSE, "close", struct.pack("!H", 1000)),
    ):
        CASES[f"3-{name}-{kind}"] = Case(
            [ping_msg(9), client_frame(opcode, payload, rsv=rsv)], [("reply", 9), ("close", 1002)], "frames"
        )

# 4 opcodes: reserved non-control (3-7) and control (B-F) ones
for opcode in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
    CASES[f"4-opcode-{opcode:x}"] = Case(
        [ping_msg(9), client_frame(opcode, b"reserved"), ping_msg(10)],
        [("reply", 9), ("close", 1002)],
        "frames",
    )
    CASES[f"4-opcode-{opcode:x}-empty"] = frame_case(client_frame(opcode, b""), expect=[("close", 1002)])

# 5 fragmentation
MSG = app_ping(11, text=True, note="fragmented message")
BMSG = app_ping(12, text=False, note="fragmented message")
CASES["5.1-ping-fragmented"] = frame_case(
    client_frame(PING, b"frag", fin=False), client_frame(CONT, b"ment"), expect=[("close", 1002)]
)
CASES["5.2-pong-fragmented"] = frame_case(
    client_frame(PONG, b"frag", fin=False), client_frame(CONT, b"ment"), expect=[("close", 1002)]
)
CASES["5.3-text-two-fragments"] = frame_case(*fragments(TEXT, MSG, [10]), expect=[("reply", 11)])
CASES["5.4-text-two-fragments-bytewise"] = Case(fragments(TEXT, MSG, [10]), [("reply", 11)], "bytewise")
CASES["5.5-binary-many-fragments"] = frame_case(
    *fragments(BINARY, BMSG, [1, 1, 3, 5, 8]), expect=[("reply", 12)]
)
CASES["5.6-ping-between-fragments"] = frame_case(
    fragments(TEXT, MSG, [10])[0], client_frame(PING, b"mid"), fragments(TEXT, MSG, [10])[1],
    expect=[("pong", b"mid"), ("reply", 11)],
)  # fmt: skip
CASES["5.7-ping-between-fragments-bytewise"] = Case(
    [fragments(TEXT, MSG, [10])[0], client_frame(PING, b"mid"), fragments(TEXT, MSG, [10])[1]],
    [("pong", b"mid"), ("reply", 11)],
    "bytewise",
)
CASES["5.8-pong-between-fragments"] = frame_case(
    fragments(BINARY, BMSG, [4])[0], client_frame(PONG, b"x"), fragments(BINARY, BMSG, [4])[1],
    expect=[("reply", 12)],
)  # fmt: skip
CASES["5.9-continuation-first-fin"] = frame_case(client_frame(CONT, b"stray"), expect=[("close", 1002)])
CASES["5.10-continuation-first"] = frame_case(
    client_frame(CONT, b"stray", fin=False), ping_msg(1), expect=[("close", 1002)]
)
CASES["5.12-continuation-after-a-whole-message"] = Case(
    [ping_msg(13), client_frame(CONT, b"late")], [("reply", 13), ("close", 1002)], "frames"
)
CASES["5.15-continuation-after-the-final-one"] = frame_case(
    *fragments(TEXT, MSG, [10]),
    client_frame(CONT, b"more", fin=False),
    expect=[("reply", 11), ("close", 1002)],
)
CASES["5.18-new-message-inside-a-fragmented-one"] = frame_case(
    client_frame(TEXT, b'{"t":', fin=False), client_frame(TEXT, b'"ping"}'), expect=[("close", 1002)]
)
CASES["5.18-binary-inside-text"] = frame_case(
    client_frame(TEXT, b'{"t":', fin=False), client_frame(BINARY, b"x"), expect=[("close", 1002)]
)
CASES["5.19-fragments-and-pings"] = frame_case(
    *[
        frame
        for i, part in enumerate(fragments(TEXT, MSG, [3, 3, 3, 3]))
        for frame in (part, client_frame(PING, b"%d" % i))
    ],
    expect=[("pong", b"0"), ("pong", b"1"), ("pong", b"2"), ("pong", b"3"), ("reply", 11), ("pong", b"4")],
)
CASES["5.20-empty-fragments"] = frame_case(
    client_frame(BINARY, b"", fin=False), client_frame(CONT, b"", fin=False), client_frame(CONT, BMSG),
    expect=[("reply", 12)],
)  # fmt: skip
CASES["5-fragmented-close"] = frame_case(
    client_frame(CLOSE, struct.pack("!H", 1000), fin=False), expect=[("close", 1002)]
)

# 6 UTF-8: valid text whole and cut at every byte; invalid sequences whole and fragmented
for i, text in enumerate(VALID_UTF8):
    data = json_text(text)
    CASES[f"6-valid-{i}"] = frame_case(client_frame(TEXT, data), expect=[("reply", 6)])
    CASES[f"6-valid-{i}-every-byte-a-fragment"] = frame_case(
        *fragments(TEXT, data, [1] * (len(data) - 1)), expect=[("reply", 6)]
    )
CASES["6-valid-split-4-byte-char-bytewise"] = Case(
    fragments(TEXT, json_text("😀"), [len(b'{"t":"ping","sent":6,"note":"') + 2]), [("reply", 6)], "bytewise"
)
CASES["6.1-empty-fragments"] = frame_case(
    client_frame(TEXT, b"", fin=False), client_frame(CONT, b"", fin=False), client_frame(CONT, b""),
    expect=[("any",)],
)  # fmt: skip
for name, bad in INVALID_UTF8.items():
    data = json_text(bad)
    CASES[f"6-invalid-{name}"] = frame_case(client_frame(TEXT, data), expect=[("close", 1007)])
    CASES[f"6-invalid-{name}-every-byte-a-fragment"] = frame_case(
        *fragments(TEXT, data, [1] * (len(data) - 1)), expect=[("close", 1007)]
    )
# 6.4 fail fast: the bad first fragment is refused before the message ends (the rest never comes)
CASES["6.4-fail-fast-on-a-fragment"] = frame_case(
    client_frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80", fin=False),
    expect=[("close", 1007)],
)
CASES["6-invalid-in-binary-is-fine"] = frame_case(
    client_frame(BINARY, b"\xff\xfe\xed\xa0\x80"), expect=[("any",)]
)

# 7 close handling
CASES["7.1.1-close-empty"] = frame_case(close(), expect=[("close", None)])
CASES["7.1.2-close-twice"] = frame_case(close(1000), close(1000), expect=[("close", 1000)])
CASES["7.1.3-ping-after-close"] = frame_case(
    close(1000), client_frame(PING, b"late"), expect=[("close", 1000)]
)
CASES["7.1.4-text-after-close"] = frame_case(close(1000), ping_msg(1, text=True), expect=[("close", 1000)])
CASES["7.1.5-close-between-fragments"] = frame_case(
    fragments(TEXT, MSG, [10])[0], close(1000), fragments(TEXT, MSG, [10])[1], expect=[("close", 1000)]
)
CASES["7.1.6-close-after-many-messages"] = frame_case(
    *(ping_msg(i) for i in range(5)), close(1000), expect=[*(("reply", i) for i in range(5)), ("close", 1000)]
)
CASES["7.3.2-close-one-byte"] = frame_case(client_frame(CLOSE, b"\x03"), expect=[("close", 1002)])
CASES["7.3.4-close-reason"] = frame_case(close(1000, b"Hello World!"), expect=[("close", 1000)])
CASES["7.3.5-close-reason-123"] = frame_case(close(1000, b"*" * 123), expect=[("close", 1000)])
CASES["7.3.6-close-reason-124"] = frame_case(close(1000, b"*" * 124), expect=[("close", 1002)])
CASES["7.5.1-close-reason-not-utf8"] = frame_case(
    close(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"), expect=[("close", 1007)]
)
CASES["7.5-close-reason-utf8"] = frame_case(close(4000, "κόσμε".encode()), expect=[("close", 4000)])
for code in VALID_CODES:
    CASES[f"7.7-close-{code}"] = frame_case(close(code), expect=[("close", code)])
for code in INVALID_CODES:
    CASES[f"7.9-close-{code}"] = frame_case(close(code), expect=[("close", 1002)])

# 9 limits: the node's message size, and lengths refused before their payload
# (the rest of the payload is not sent: the node refuses at the header, and would reset a socket
# closed with unread bytes before the client could read the close frame)
CASES["9-text-over-the-limit"] = frame_case(
    client_frame(TEXT, b"x" * (MAX + 1))[:100], expect=[("close", 1009)]
)
CASES["9-fragments-over-the-limit"] = frame_case(
    fragments(BINARY, b"x" * (MAX + 10), [MAX // 2])[0],
    fragments(BINARY, b"x" * (MAX + 10), [MAX // 2])[1][:100],
    expect=[("close", 1009)],
)
CASES["9-length-2^63-header-only"] = frame_case(
    struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 63) + b"mask", expect=[("close", 1009)]
)
CASES["9-length-2^64-1-header-only"] = frame_case(
    struct.pack("!BBQ", 0x82, 0x80 | 127, (1 << 64) - 1) + b"mask", expect=[("close", 1009)]
)
CASES["9-at-the-limit"] = frame_case(
    client_frame(BINARY, app_ping(14, text=False, size=MAX)), expect=[("reply", 14)]
)

# every frame takes a token of the message rate (20/s, BURST at once): floods end in 4003
CASES["rate-ping-flood"] = frame_case(
    *(client_frame(PING, b"f") for _ in range(2 * BURST)), expect=[("flood", 4003)]
)
CASES["rate-pong-flood"] = frame_case(
    *(client_frame(PONG, b"") for _ in range(2 * BURST)), expect=[("flood", 4003)]
)
CASES["rate-empty-continuation-flood"] = frame_case(
    client_frame(BINARY, b"", fin=False),
    *(client_frame(CONT, b"", fin=False) for _ in range(2 * BURST)),
    expect=[("flood", 4003)],
)


# ---- running a case ---------------------------------------------------------------------


async def write(sock: RawSocket, case: Case) -> None:
    stream = b"".join(case.send)
    if case.writes == "whole":
        sock.send(stream)
    elif case.writes == "frames":
        for frame in case.send:
            sock.send(frame)
            await sock.writer.drain()
            await asyncio.sleep(0.005)
    elif case.writes == "chunks":
        for i in range(0, len(stream), 997):
            sock.send(stream[i : i + 997])
            await sock.writer.drain()
    else:
        assert case.writes == "bytewise"
        for i in range(len(stream)):
            sock.send(stream[i : i + 1])
            await sock.writer.drain()
    await sock.writer.drain()


def decode_reply(opcode: int, payload: bytes) -> dict[str, object]:
    msg = json.loads(payload) if opcode == TEXT else msgpack.unpackb(payload)
    assert isinstance(msg, dict)
    return msg


async def check(sock: RawSocket, expect: list[tuple[object, ...]]) -> None:
    for step in expect:
        what = step[0]
        if what == "flood":  # pongs for the burst, ARENA_MAX_VIOLATIONS rate_limited errors, the close
            pongs = errors = 0
            for _ in range(2 * BURST + 20):  # the server sends fewer: BURST pongs, 10 errors, the close
                opcode, payload = await sock.frame()
                if opcode == CLOSE:
                    break
                if opcode == PONG:
                    pongs += 1
                else:
                    assert decode_reply(opcode, payload)["code"] == "rate_limited"
                    errors += 1
            assert opcode == CLOSE and struct.unpack("!H", payload[:2])[0] == step[1]
            # ARENA_MAX_VIOLATIONS errors; pongs for the burst (and a token more if a read was late)
            assert errors == 10 and pongs <= BURST + 1
            assert await sock.eof()
            return
        opcode, payload = await sock.frame()
        if what == "pong":
            assert (opcode, payload) == (PONG, step[1])
        elif what == "reply":
            assert opcode in (TEXT, BINARY), (opcode, payload)
            reply = decode_reply(opcode, payload)
            assert reply["t"] == "pong" and reply["echo"] == step[1], reply
        elif what == "any":
            assert opcode in (TEXT, BINARY), (opcode, payload)
        else:
            assert what == "close" and opcode == CLOSE, (opcode, payload)
            if step[1] is None:
                assert payload == b""  # an empty close is echoed empty: 1005 is never sent
            else:
                assert len(payload) >= 2 and struct.unpack("!H", payload[:2])[0] == step[1], payload
                payload[2:].decode()  # the reason is UTF-8
            assert await sock.eof()  # the server hangs up, with nothing after its close frame
            return
    # No close expected: the socket is still in step, and closes cleanly.
    sock.send(close(1000, b"done"))
    opcode, payload = await sock.frame()
    assert (opcode, payload[:2]) == (CLOSE, struct.pack("!H", 1000)), (opcode, payload)
    assert await sock.eof()


@pytest.mark.parametrize("name", list(CASES))
async def test_case(wsnode: RunningNode, name: str) -> None:
    case = CASES[name]
    sock = await RawSocket.open(wsnode)
    try:
        await write(sock, case)
        await check(sock, case.expect)
    finally:
        await shut(sock)


async def shut(sock: RawSocket) -> None:
    sock.shut()
    try:
        await sock.writer.wait_closed()
    except ConnectionError:
        pass


async def test_the_server_close_handshake(wsnode: RunningNode) -> None:
    """The server closes first (here: too many bad messages, 4002); a bad close reply changes
    nothing: no second close frame, the server just hangs up."""
    sock = await RawSocket.open(wsnode)
    sock.send(b"".join(client_frame(BINARY, b"\xc1") for _ in range(10)))
    for _ in range(11):  # ten errors, the close
        opcode, payload = await sock.frame()
        if opcode == CLOSE:
            break
        assert decode_reply(opcode, payload)["code"] == "bad_message"
    assert opcode == CLOSE and struct.unpack("!H", payload[:2])[0] == 4002
    sock.send(client_frame(CLOSE, b"\x03"))  # a 1-byte close in reply
    assert await sock.eof()
    await shut(sock)


async def test_every_socket_is_gone_afterwards(wsnode: RunningNode) -> None:
    gate = wsnode.runner.app[GATE_KEY]
    for _ in range(100):
        if wsnode.node.connection_count == 0 and gate.open == 0:
            break
        await asyncio.sleep(0.05)
    assert wsnode.node.connection_count == 0 and gate.open == 0
