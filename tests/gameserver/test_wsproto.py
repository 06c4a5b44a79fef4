"""The client-frame parser: what RFC 6455 requires of a server, on hand-built frames."""

import os
import struct

import pytest

from gameserver.wsproto import FrameError, FrameReader, Opcode, WsClose, parse_close, unmask


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    """A frame as a browser sends it: masked with a random key."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = bytes((first, (0x80 if masked else 0) | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", first, (0x80 if masked else 0) | 127, n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Sink:
    def __init__(self, limit: int = 1024) -> None:
        self.got: list[tuple[Opcode, bytes | str]] = []
        self.reader = FrameReader(limit, lambda op, data: self.got.append((op, data)))


def test_unmask_is_the_xor_with_the_repeated_key() -> None:
    key = b"\x01\x02\x03\x04"
    for n in (0, 1, 3, 4, 5, 130, 4099):
        data = os.urandom(n)
        assert unmask(data, key) == bytes(b ^ key[i % 4] for i, b in enumerate(data))


def test_several_frames_in_one_read_and_one_frame_over_many_reads() -> None:
    sink = Sink(limit=100_000)
    stream = (
        client_frame(0x2, b"\x81\xa1t")
        + client_frame(0x1, "héllo".encode())
        + client_frame(0x2, b"x" * 70_000)
    )
    sink.reader.feed(stream[:3])
    assert sink.got == []
    for i in range(3, len(stream), 997):  # every split point pattern, including inside headers
        sink.reader.feed(stream[i : i + 997])
    assert sink.got == [(Opcode.BINARY, b"\x81\xa1t"), (Opcode.TEXT, "héllo"), (Opcode.BINARY, b"x" * 70_000)]


def test_fragments_are_joined_and_control_frames_may_come_between() -> None:
    sink = Sink()
    sink.reader.feed(
        client_frame(0x1, b"ab", fin=False)
        + client_frame(0x9, b"ping!")
        + client_frame(0x0, b"cd", fin=False)
        + client_frame(0x0, b"ef")
    )
    assert sink.got == [(Opcode.PING, b"ping!"), (Opcode.TEXT, "abcdef")]


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (client_frame(0x2, b"data", masked=False), WsClose.PROTOCOL_ERROR),
        (client_frame(0x2, b"data", rsv=0x40), WsClose.PROTOCOL_ERROR),  # compression never negotiated
        (client_frame(0x3, b"data"), WsClose.PROTOCOL_ERROR),  # reserved opcode
        (client_frame(0x0, b"data"), WsClose.PROTOCOL_ERROR),  # continuation of nothing
        (client_frame(0x1, b"a", fin=False) + client_frame(0x1, b"b"), WsClose.PROTOCOL_ERROR),
        (client_frame(0x9, b"p", fin=False), WsClose.PROTOCOL_ERROR),  # fragmented control frame
        (client_frame(0x9, b"p" * 126), WsClose.PROTOCOL_ERROR),  # control frame too long
        (client_frame(0x1, b"\xff\xfe"), WsClose.INVALID_DATA),
        (client_frame(0x2, b"x" * 1025), WsClose.MESSAGE_TOO_BIG),
        (client_frame(0x2, b"x" * 600, fin=False) + client_frame(0x0, b"x" * 600), WsClose.MESSAGE_TOO_BIG),
    ],
)
def test_broken_frames_are_refused_with_the_rfc_close_code(frames: bytes, code: WsClose) -> None:
    sink = Sink()
    with pytest.raises(FrameError) as caught:
        sink.reader.feed(frames)
    assert caught.value.code is code and caught.value.reason


def test_an_oversized_length_is_refused_before_the_payload_arrives() -> None:
    sink = Sink()
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 40) + b"mask"
    with pytest.raises(FrameError) as caught:
        sink.reader.feed(header)
    assert caught.value.code is WsClose.MESSAGE_TOO_BIG


def test_close_payloads() -> None:
    assert parse_close(b"") == (1005, "")
    assert parse_close(struct.pack("!H", 4001) + b"bye") == (4001, "bye")
