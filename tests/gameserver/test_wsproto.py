"""The client-frame parser: what RFC 6455 requires of a server, on hand-built frames."""

import os
import struct

import pytest

from gameserver.wsproto import (
    FrameError,
    FrameReader,
    Opcode,
    WsClose,
    check_close,
    parse_close,
    unmask,
    valid_close_code,
)


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
        # lengths not in their shortest form: 5 in two bytes, 300 in eight
        (struct.pack("!BBH", 0x82, 0x80 | 126, 5) + b"mask" + b"12345", WsClose.PROTOCOL_ERROR),
        (struct.pack("!BBQ", 0x82, 0x80 | 127, 300) + b"mask" + b"x" * 300, WsClose.PROTOCOL_ERROR),
        # a character cut between fragments that the next one does not finish
        (client_frame(0x1, b"\xc3", fin=False) + client_frame(0x0, b"a"), WsClose.INVALID_DATA),
        (client_frame(0x1, b"\xc3"), WsClose.INVALID_DATA),  # a character cut at the end of the message
        (client_frame(0x1, b"ok\xc0\xaf", fin=False), WsClose.INVALID_DATA),  # fails before the last fragment
        (client_frame(0x8, b"\x03"), WsClose.PROTOCOL_ERROR),  # a 1-byte close body
        (client_frame(0x8, struct.pack("!H", 1000) + b"\xff"), WsClose.INVALID_DATA),  # reason not UTF-8
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


def test_a_continuation_taking_its_message_over_the_limit_is_refused_at_its_header() -> None:
    sink = Sink(limit=1000)
    sink.reader.feed(client_frame(0x2, b"x" * 600, fin=False))
    with pytest.raises(FrameError) as caught:
        sink.reader.feed(client_frame(0x0, b"x" * 401)[:8])  # header and mask only
    assert caught.value.code is WsClose.MESSAGE_TOO_BIG


def test_close_payloads() -> None:
    assert parse_close(b"") == (1005, "")
    assert parse_close(struct.pack("!H", 4001) + b"bye") == (4001, "bye")


def test_text_split_inside_a_character_across_fragments() -> None:
    sink = Sink()
    data = "aé€😀z".encode()
    frames = b"".join(
        client_frame(0x1 if i == 0 else 0x0, data[i : i + 1], fin=i == len(data) - 1)
        for i in range(len(data))
    )
    for i in range(len(frames)):  # one byte per read as well
        sink.reader.feed(frames[i : i + 1])
    assert sink.got == [(Opcode.TEXT, "aé€😀z")]


@pytest.mark.parametrize("code", [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_close_codes_a_peer_may_not_send_are_protocol_errors(code: int) -> None:
    assert not valid_close_code(code)
    sink = Sink()
    with pytest.raises(FrameError) as caught:
        sink.reader.feed(client_frame(0x8, struct.pack("!H", code) + b"why"))
    assert caught.value.code is WsClose.PROTOCOL_ERROR and str(code) in caught.value.reason
    assert sink.got == []


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
)
def test_valid_close_codes_pass_and_nothing_after_the_close_is_read(code: int) -> None:
    sink = Sink()
    close = client_frame(0x8, struct.pack("!H", code) + "ciao ✓".encode())
    sink.reader.feed(close + client_frame(0x9, b"late") + b"\xff garbage that is never parsed")
    assert sink.got == [(Opcode.CLOSE, close_payload := struct.pack("!H", code) + "ciao ✓".encode())]
    assert parse_close(close_payload) == (code, "ciao ✓")
    check_close(b"")  # no body at all is allowed too (1005 on our side, never sent)


class Admission:
    """A rate limit that admits ``budget`` frames, then refuses every other one."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.refused: list[Opcode] = []
        self.got: list[tuple[Opcode, bytes | str]] = []
        self.reader = FrameReader(
            1024, lambda op, data: self.got.append((op, data)), self.admit, self.refused.append
        )

    def admit(self) -> bool:
        self.budget -= 1
        return self.budget >= 0


def test_every_frame_takes_a_token_control_frames_and_continuations_included() -> None:
    gate = Admission(budget=5)
    gate.reader.feed(
        client_frame(0x9, b"1")  # ping: token 1
        + client_frame(0xA, b"")  # pong: 2
        + client_frame(0x2, b"a", fin=False)  # 3
        + client_frame(0x0, b"", fin=False)  # an empty continuation: 4
        + client_frame(0x0, b"b")  # 5: the message is whole
        + client_frame(0x9, b"2")  # refused
        + client_frame(0x1, b"c", fin=False)  # refused: the whole message goes
        + client_frame(0x0, b"d")  # part of the dropped message: refused again, nothing delivered
        + client_frame(0x8, struct.pack("!H", 1000))  # a close is always honoured
    )
    assert gate.got == [
        (Opcode.PING, b"1"),
        (Opcode.PONG, b""),
        (Opcode.BINARY, b"ab"),
        (Opcode.CLOSE, b"\x03\xe8"),
    ]
    assert gate.refused == [Opcode.PING, Opcode.TEXT, Opcode.CONTINUATION]


def test_a_message_refused_midway_is_dropped_whole_and_framing_still_checked() -> None:
    gate = Admission(budget=1)
    gate.reader.feed(
        client_frame(0x2, b"a", fin=False) + client_frame(0x0, b"b", fin=False) + client_frame(0x0, b"c")
    )
    assert gate.got == [] and gate.refused == [Opcode.CONTINUATION, Opcode.CONTINUATION]
    gate.budget = 10
    gate.reader.feed(client_frame(0x2, b"next"))
    assert gate.got == [(Opcode.BINARY, b"next")]
    with pytest.raises(FrameError) as caught:  # refused or not, a stray continuation is still 1002
        gate.reader.feed(client_frame(0x0, b"stray"))
    assert caught.value.code is WsClose.PROTOCOL_ERROR
