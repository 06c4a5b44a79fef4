"""Wire protocol v1: every message type, error code and close code, defined once.

A message on the wire is a map whose key ``t`` names its type; the other keys are the
fields of the dataclass below with the same names. ``arena.codec`` turns these
dataclasses into msgpack (binary frames) or JSON (text frames) and back.
All instants are wall-clock milliseconds since the Unix epoch; key times are
milliseconds since the race's start instant. See docs/PROTOCOL.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Annotated, ClassVar

PROTOCOL_VERSION = 1
BACKSPACE = "\b"


# ---- bounds checked when a client message is decoded (docs/PROTOCOL.md, "Field ranges") ------


@dataclass(frozen=True, slots=True)
class Range:
    """An integer field's inclusive bounds; the codec refuses anything outside them."""

    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class MaxLen:
    """A string field's longest accepted length, in characters."""

    chars: int


MAX_SAFE_INT = 2**53 - 1  # JavaScript's largest exact integer: every client can hold it
MAX_SEQ = 2**31 - 1  # one input per 250 ms would take 17 years to get there
MAX_KEY_TIME_MS = 2**31 - 1  # ms since the start: 24 days, longer than any race
MAX_TOKEN_CHARS = 2048  # signed tokens and tickets are a few hundred characters
MAX_KEYS_CHARS = 1024  # a hard ceiling; ARENA_MAX_KEYS_PER_MSG is the real (smaller) limit

Instant = Annotated[int, Range(0, MAX_SAFE_INT)]  # a wall-clock ms a client echoes or reports
Seq = Annotated[int, Range(0, MAX_SEQ)]
KeyTime = Annotated[int, Range(0, MAX_KEY_TIME_MS)]
Token = Annotated[str, MaxLen(MAX_TOKEN_CHARS)]


class MsgType(StrEnum):
    HELLO = "hello"
    WELCOME = "welcome"
    PING = "ping"
    PONG = "pong"
    JOIN = "join"
    JOINED = "joined"
    ROSTER = "roster"
    COUNTDOWN = "countdown"
    START = "start"
    INPUT = "input"
    PROGRESS = "progress"
    FINISH = "finish"
    RESULTS = "results"
    LEAVE = "leave"
    ERROR = "error"
    REDIRECT = "redirect"
    SPECTATE = "spectate"
    WATCHING = "watching"


class RaceType(StrEnum):
    QUICK = "quick"
    STANDARD = "standard"
    MARATHON = "marathon"
    CUSTOM = "custom"


class RaceState(StrEnum):
    WAITING = "waiting"
    COUNTDOWN = "countdown"
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"


class PlayerStatus(StrEnum):
    RACING = "racing"
    FINISHED = "finished"
    DNF = "dnf"


class ErrorCode(StrEnum):
    BAD_MESSAGE = "bad_message"  # not decodable, unknown type, wrong field types
    NOT_AUTHENTICATED = "not_authenticated"  # anything but hello/ping before hello
    BAD_TOKEN = "bad_token"  # forged, malformed or wrong kind of token
    TOKEN_EXPIRED = "token_expired"
    ALREADY_JOINED = "already_joined"
    NOT_JOINED = "not_joined"
    RACE_NOT_FOUND = "race_not_found"
    RACE_FULL = "race_full"
    RACE_OVER = "race_over"
    NOT_RUNNING = "not_running"  # input before the start or after the end
    TOO_MANY_KEYS = "too_many_keys"
    RATE_LIMITED = "rate_limited"
    DRAINING = "draining"
    WRONG_NODE = "wrong_node"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    """WebSocket close codes. 1000-1011 are RFC 6455's; 4000-4999 are ours."""

    NORMAL = 1000
    GOING_AWAY = 1001  # node shutting down
    PROTOCOL_ERROR = 1002  # broken WebSocket framing (unmasked, reserved bits, bad fragments)
    INVALID_DATA = 1007  # a text frame that is not UTF-8
    MESSAGE_TOO_BIG = 1009  # frame over the size limit
    INTERNAL_ERROR = 1011  # the server failed on this socket's message or on its race
    BAD_TOKEN = 4001  # forged, malformed or expired token or ticket
    PROTOCOL_ABUSE = 4002  # too many malformed messages
    FLOOD = 4003  # message rate limit exceeded repeatedly
    RACE_NOT_FOUND = 4004
    REDIRECT = 4005  # the race lives on another node; a redirect message precedes it
    RACE_FULL = 4006
    HELLO_TIMEOUT = 4008  # no hello within the allowed time
    REPLACED = 4009  # the same player connected again elsewhere
    RACE_OVER = 4010  # the race ended and results were sent
    TOO_SLOW = 4011  # the socket fell too far behind reading (it is dropped without a close frame)
    RACE_MOVED = 4012  # a draining node handed the race to another node: rejoin, the ticket is redirected


@dataclass(slots=True)
class Message:
    """Base of every message; ``TYPE`` is the ``t`` value on the wire."""

    TYPE: ClassVar[MsgType]


# ---- client to server -------------------------------------------------------------


@dataclass(slots=True)
class Hello(Message):
    TYPE: ClassVar[MsgType] = MsgType.HELLO
    token: Token
    client: Annotated[str, MaxLen(128)] = ""


@dataclass(slots=True)
class Ping(Message):
    """Either side may ping; the peer answers with a pong echoing ``sent``."""

    TYPE: ClassVar[MsgType] = MsgType.PING
    sent: Instant


@dataclass(slots=True)
class Pong(Message):
    TYPE: ClassVar[MsgType] = MsgType.PONG
    echo: Instant  # the ping's ``sent``: round trip = now - echo
    time: Instant  # the answerer's clock when answering: clock offset estimate


@dataclass(slots=True)
class Join(Message):
    TYPE: ClassVar[MsgType] = MsgType.JOIN
    ticket: Token


@dataclass(slots=True)
class Input(Message):
    """Keys typed since the last input: one char per keystroke, ``\\b`` is backspace."""

    TYPE: ClassVar[MsgType] = MsgType.INPUT
    seq: Seq
    keys: Annotated[str, MaxLen(MAX_KEYS_CHARS)]
    times: list[KeyTime]  # ms since race start, one per key


@dataclass(slots=True)
class Leave(Message):
    """Leave the race (a racer becomes DNF) or stop watching it (a spectator)."""

    TYPE: ClassVar[MsgType] = MsgType.LEAVE


@dataclass(slots=True)
class Spectate(Message):
    """Watch a live race from any node; spectators receive the race's broadcasts only."""

    TYPE: ClassVar[MsgType] = MsgType.SPECTATE
    race_id: Annotated[str, MaxLen(64)]


# ---- server to client -------------------------------------------------------------


@dataclass(slots=True)
class Welcome(Message):
    TYPE: ClassVar[MsgType] = MsgType.WELCOME
    player_id: str
    name: str
    node_id: str
    server_time: int
    protocol: int = PROTOCOL_VERSION
    max_keys: int = 64  # keys per input message
    max_rate: int = 20  # messages per second


@dataclass(slots=True)
class PlayerInfo:
    id: str
    name: str
    connected: bool
    status: str
    position: int
    wpm: float
    place: int | None = None
    ghost: bool = False  # a stored keystroke log the race replays (a ghost race), not a player


@dataclass(slots=True)
class ResumeState:
    """What the server holds of this player's typing, so a reconnecting client can resume."""

    position: int
    error_run: int
    seq: int
    status: str


@dataclass(slots=True)
class Joined(Message):
    TYPE: ClassVar[MsgType] = MsgType.JOINED
    race_id: str
    race_type: str
    passage_id: str
    passage: str
    state: str
    players: list[PlayerInfo]
    server_time: int
    start_at: int | None
    ends_at: int | None
    you: ResumeState
    # Send inputs at start_at + input_offset_ms + k * input_every_ms (server time; every n-th of
    # these instants is fine). Room-mates then share frames; 0 means no hint.
    input_every_ms: int = 0
    input_offset_ms: int = 0


@dataclass(slots=True)
class Watching(Message):
    """Snapshot for a spectator; the race's roster, countdown, progress and results follow."""

    TYPE: ClassVar[MsgType] = MsgType.WATCHING
    race_id: str
    race_type: str
    passage_id: str
    passage: str
    state: str
    players: list[PlayerInfo]
    server_time: int
    start_at: int | None
    ends_at: int | None
    node_id: str


@dataclass(slots=True)
class Roster(Message):
    """Who is in the race; sent when someone joins, drops, returns or leaves."""

    TYPE: ClassVar[MsgType] = MsgType.ROSTER
    players: list[PlayerInfo]


@dataclass(slots=True)
class Countdown(Message):
    TYPE: ClassVar[MsgType] = MsgType.COUNTDOWN
    start_at: int
    server_time: int


@dataclass(slots=True)
class Start(Message):
    TYPE: ClassVar[MsgType] = MsgType.START
    start_at: int
    ends_at: int
    server_time: int


@dataclass(slots=True)
class Progress(Message):
    """Batched positions of every player: rows of [player_id, position, wpm, place, seq].

    ``place`` is 0 while racing; ``seq`` is the last input sequence the server applied for
    that player, so a client can measure its own input-to-broadcast latency.
    """

    TYPE: ClassVar[MsgType] = MsgType.PROGRESS
    server_time: int
    players: list[list[str | int | float]]


@dataclass(slots=True)
class Finish(Message):
    TYPE: ClassVar[MsgType] = MsgType.FINISH
    player_id: str
    place: int | None
    wpm: float
    accuracy: float
    elapsed_ms: int
    flags: list[str]


@dataclass(slots=True)
class ResultRow:
    player_id: str
    name: str
    place: int | None  # None for DNF and flagged results: they are never ranked
    status: str
    wpm: float
    raw_wpm: float
    accuracy: float
    consistency: float
    elapsed_ms: int
    position: int
    flags: list[str] = field(default_factory=list)
    ghost: bool = False  # a ghost's result: shown, never stored


@dataclass(slots=True)
class Results(Message):
    TYPE: ClassVar[MsgType] = MsgType.RESULTS
    race_id: str
    state: str
    results: list[ResultRow]
    reason: str = ""


@dataclass(slots=True)
class Error(Message):
    TYPE: ClassVar[MsgType] = MsgType.ERROR
    code: str
    reason: str


@dataclass(slots=True)
class Redirect(Message):
    TYPE: ClassVar[MsgType] = MsgType.REDIRECT
    url: str
    node_id: str
    race_id: str


CLIENT_MESSAGES: dict[str, type[Message]] = {
    m.TYPE.value: m for m in (Hello, Ping, Pong, Join, Input, Leave, Spectate)
}
SERVER_MESSAGES: dict[str, type[Message]] = {
    m.TYPE.value: m
    for m in (
        Welcome,
        Ping,
        Pong,
        Joined,
        Watching,
        Roster,
        Countdown,
        Start,
        Progress,
        Finish,
        Results,
        Error,
        Redirect,
    )
}
