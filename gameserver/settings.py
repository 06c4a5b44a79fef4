"""Gameserver node settings: one frozen section per concern, read from ``ARENA_*`` variables."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from arena.ids import NodeId
from arena.outbox import OutboxSettings
from arena.settings import (
    LogSettings,
    RedisSettings,
    SecretSettings,
    env_float,
    env_int,
    env_str,
)
from gameserver.fairplay import FairPlayLimits
from gameserver.scoring import ScoringLimits


@dataclass(frozen=True, slots=True)
class RaceSettings:
    max_players: int = 5  # ARENA_RACE_MAX_PLAYERS
    countdown_s: float = 5.0  # ARENA_RACE_COUNTDOWN_S: countdown length once the race fills
    wait_timeout_s: float = 20.0  # ARENA_RACE_WAIT_TIMEOUT_S: start with whoever came after this
    grace_s: float = 15.0  # ARENA_RACE_GRACE_S: a dropped player may come back within this
    tick_hz: float = 10.0  # ARENA_RACE_TICK_HZ: lifecycle tick (deadlines, pings, mirrors, idle frames)
    # ARENA_RACE_PROGRESS_WINDOW_MS: a race's progress frame leaves at most this long after the first
    # input it carries, so inputs arriving together share one frame (at most 1000/window per second).
    progress_window_ms: int = 50
    # ARENA_RACE_INPUT_CADENCE_MS: the instants a race's clients are asked to send their inputs at
    # (every this many ms from the race's own offset; 0: no hint). Room-mates sending together
    # share one progress frame: the frames a race costs follow the cadence, not the player count.
    input_cadence_ms: int = 250
    # ARENA_RACE_LIVE_MIRROR_MS: a running race's live figures (each racer's position and WPM) go
    # to its Redis mirror at most this often, and only if someone moved since the last write: one
    # HSET in the tick's existing round trip. The lobby's live races list and other nodes'
    # spectators read them. 0: off (the mirror changes on state and roster changes only).
    # Cost at 1 s: ≈ 0.5 % of a node's core and 200 Redis commands/s per 1,000 typing players.
    live_mirror_ms: int = 1000
    quick_limit_s: float = 120.0  # ARENA_RACE_QUICK_LIMIT_S: time limit of a quick race
    standard_limit_s: float = 300.0  # ARENA_RACE_STANDARD_LIMIT_S
    marathon_limit_s: float = 900.0  # ARENA_RACE_MARATHON_LIMIT_S
    custom_min_chars: int = 20  # ARENA_RACE_CUSTOM_MIN_CHARS: custom text bounds
    custom_max_chars: int = 2000  # ARENA_RACE_CUSTOM_MAX_CHARS
    custom_limit_s_per_char: float = 0.6  # time limit of a custom race per character (100 cpm floor)
    max_finish_hold_ms: int = 1000  # a finish may claim to be at most this much before it arrived
    ping_interval_s: float = 3.0  # ARENA_RACE_PING_INTERVAL_S: server pings to measure latency
    finished_linger_s: float = 30.0  # a finished race stays in memory this long for late resumes

    @property
    def longest_race_s(self) -> float:
        """The longest a race created now can last on its own: the wait for its players, the
        countdown, then the longest time limit (a custom race of the longest text). A drain ends
        within this; a SIGTERM grace (``NodeSettings.shutdown_grace_s``) this long aborts nothing."""
        custom = max(60.0, self.custom_max_chars * self.custom_limit_s_per_char)  # as Race.time_limit_ms
        limit = max(self.quick_limit_s, self.standard_limit_s, self.marathon_limit_s, custom)
        return self.wait_timeout_s + self.countdown_s + limit

    def __post_init__(self) -> None:
        if not 0 <= self.input_cadence_ms <= 2000:
            raise ValueError("ARENA_RACE_INPUT_CADENCE_MS must be between 0 (no hint) and 2000")
        if self.live_mirror_ms != 0 and not 200 <= self.live_mirror_ms <= 60_000:
            raise ValueError("ARENA_RACE_LIVE_MIRROR_MS must be 0 (off) or between 200 and 60000")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RaceSettings:
        d = cls()
        return cls(
            max_players=env_int(env, "ARENA_RACE_MAX_PLAYERS", d.max_players),
            countdown_s=env_float(env, "ARENA_RACE_COUNTDOWN_S", d.countdown_s),
            wait_timeout_s=env_float(env, "ARENA_RACE_WAIT_TIMEOUT_S", d.wait_timeout_s),
            grace_s=env_float(env, "ARENA_RACE_GRACE_S", d.grace_s),
            tick_hz=env_float(env, "ARENA_RACE_TICK_HZ", d.tick_hz),
            progress_window_ms=env_int(env, "ARENA_RACE_PROGRESS_WINDOW_MS", d.progress_window_ms),
            input_cadence_ms=env_int(env, "ARENA_RACE_INPUT_CADENCE_MS", d.input_cadence_ms),
            live_mirror_ms=env_int(env, "ARENA_RACE_LIVE_MIRROR_MS", d.live_mirror_ms),
            quick_limit_s=env_float(env, "ARENA_RACE_QUICK_LIMIT_S", d.quick_limit_s),
            standard_limit_s=env_float(env, "ARENA_RACE_STANDARD_LIMIT_S", d.standard_limit_s),
            marathon_limit_s=env_float(env, "ARENA_RACE_MARATHON_LIMIT_S", d.marathon_limit_s),
            custom_min_chars=env_int(env, "ARENA_RACE_CUSTOM_MIN_CHARS", d.custom_min_chars),
            custom_max_chars=env_int(env, "ARENA_RACE_CUSTOM_MAX_CHARS", d.custom_max_chars),
            ping_interval_s=env_float(env, "ARENA_RACE_PING_INTERVAL_S", d.ping_interval_s),
        )


@dataclass(frozen=True, slots=True)
class LimitSettings:
    max_frame_bytes: int = 8192  # ARENA_MAX_FRAME_BYTES: larger frames close with 1009
    max_msgs_per_s: int = 20  # ARENA_MAX_MSGS_PER_S: sustained message rate per connection
    burst_msgs: int = 40  # ARENA_BURST_MSGS: token-bucket depth above the sustained rate
    max_keys_per_msg: int = 64  # ARENA_MAX_KEYS_PER_MSG
    max_violations: int = 10  # ARENA_MAX_VIOLATIONS: bad or rate-limited messages before a close
    hello_timeout_s: float = 10.0  # ARENA_HELLO_TIMEOUT_S: a socket must say hello within this
    max_connections: int = 20000  # ARENA_MAX_CONNECTIONS: further sockets are refused with 503
    keepalive_s: float = 30.0  # ARENA_KEEPALIVE_S: a silent socket is pinged, and dropped after twice this
    max_send_buffer_bytes: int = 1 << 20  # ARENA_MAX_SEND_BUFFER_BYTES: a reader this far behind is dropped
    close_timeout_s: float = 2.0  # ARENA_CLOSE_TIMEOUT_S: wait this long for the client's close reply

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LimitSettings:
        d = cls()
        return cls(
            max_frame_bytes=env_int(env, "ARENA_MAX_FRAME_BYTES", d.max_frame_bytes),
            max_msgs_per_s=env_int(env, "ARENA_MAX_MSGS_PER_S", d.max_msgs_per_s),
            burst_msgs=env_int(env, "ARENA_BURST_MSGS", d.burst_msgs),
            max_keys_per_msg=env_int(env, "ARENA_MAX_KEYS_PER_MSG", d.max_keys_per_msg),
            max_violations=env_int(env, "ARENA_MAX_VIOLATIONS", d.max_violations),
            hello_timeout_s=env_float(env, "ARENA_HELLO_TIMEOUT_S", d.hello_timeout_s),
            max_connections=env_int(env, "ARENA_MAX_CONNECTIONS", d.max_connections),
            keepalive_s=env_float(env, "ARENA_KEEPALIVE_S", d.keepalive_s),
            max_send_buffer_bytes=env_int(env, "ARENA_MAX_SEND_BUFFER_BYTES", d.max_send_buffer_bytes),
            close_timeout_s=env_float(env, "ARENA_CLOSE_TIMEOUT_S", d.close_timeout_s),
        )


@dataclass(frozen=True, slots=True)
class NodeSettings:
    node_id: NodeId = NodeId(socket.gethostname())  # ARENA_NODE_ID
    host: str = "127.0.0.1"  # ARENA_NODE_HOST: listen address
    port: int = 8100  # ARENA_NODE_PORT
    public_url: str = ""  # ARENA_NODE_PUBLIC_URL: ws URL players use; default ws://host:port/ws
    http_public_url: str = ""  # ARENA_NODE_HTTP_URL: admin/control URL; default http://host:port
    region: str = "local"  # ARENA_NODE_REGION
    heartbeat_s: float = 1.0  # ARENA_NODE_HEARTBEAT_S: registry heartbeat; dead after 3 missed
    capacity: int = 10000  # ARENA_NODE_CAPACITY: players this node accepts
    # ARENA_NODE_SHUTDOWN_GRACE_S: after SIGTERM (or SIGINT) the node drains for at most this long,
    # then aborts the races still running (aborted results to the outbox, counted in the drain
    # report). An admin drain, even with exit, has no such bound: races end on their own time.
    # No race is ever aborted if this is at least ``race.longest_race_s`` (1225 s with the default
    # race settings, custom races of 2000 characters being the longest). Kubernetes: set
    # terminationGracePeriodSeconds to at least this + ARENA_NODE_RESULTS_WRITE_S + 15 (the
    # sockets close and the node's tasks stop within about 10 s after the write phase), or the
    # kubelet's SIGKILL loses the results still in memory.
    # The default (30 s) is for development.
    shutdown_grace_s: float = 30.0
    # ARENA_NODE_RESULTS_WRITE_S: once the grace is over (or the node stops for any reason), the
    # time it reserves for writing the results still owed (aborted races and any just ended) to
    # the outbox, in batches (``outbox``), before it closes its sockets (0.5 to 300 s). Results
    # still unwritten then are logged by race id (``results_unwritten_at_stop``, one line) and
    # the process exits 1. Measured on a shared 2-core machine: 1,000–2,000 results a second,
    # 2,000 races in 1–2.5 s (docs/PERFORMANCE.md), so 10 s is several times what a full node needs.
    results_write_s: float = 10.0
    redis: RedisSettings = field(default_factory=RedisSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)  # ARENA_OUTBOX_*: results in batches
    secrets: SecretSettings = field(default_factory=SecretSettings)
    log: LogSettings = field(default_factory=LogSettings)
    race: RaceSettings = field(default_factory=RaceSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    scoring: ScoringLimits = field(default_factory=ScoringLimits)
    fairplay: FairPlayLimits = field(default_factory=FairPlayLimits)

    def __post_init__(self) -> None:
        if not 0.5 <= self.results_write_s <= 300:
            raise ValueError("ARENA_NODE_RESULTS_WRITE_S must be between 0.5 and 300")

    @property
    def ws_url(self) -> str:
        return self.public_url or f"ws://{self.host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return self.http_public_url or f"http://{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NodeSettings:
        d = cls()
        return cls(
            node_id=NodeId(env_str(env, "ARENA_NODE_ID", d.node_id)),
            host=env_str(env, "ARENA_NODE_HOST", d.host),
            port=env_int(env, "ARENA_NODE_PORT", d.port),
            public_url=env_str(env, "ARENA_NODE_PUBLIC_URL", d.public_url),
            http_public_url=env_str(env, "ARENA_NODE_HTTP_URL", d.http_public_url),
            region=env_str(env, "ARENA_NODE_REGION", d.region),
            heartbeat_s=env_float(env, "ARENA_NODE_HEARTBEAT_S", d.heartbeat_s),
            capacity=env_int(env, "ARENA_NODE_CAPACITY", d.capacity),
            shutdown_grace_s=env_float(env, "ARENA_NODE_SHUTDOWN_GRACE_S", d.shutdown_grace_s),
            results_write_s=env_float(env, "ARENA_NODE_RESULTS_WRITE_S", d.results_write_s),
            redis=RedisSettings.from_env(env),
            outbox=OutboxSettings.from_env(env),
            secrets=SecretSettings.from_env(env),
            log=LogSettings.from_env(env),
            race=RaceSettings.from_env(env),
            limits=LimitSettings.from_env(env),
            fairplay=FairPlayLimits(
                max_wpm=env_float(env, "ARENA_FAIRPLAY_MAX_WPM", FairPlayLimits().max_wpm)
            ),
        )
