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
    SettingsError,
    env_bool,
    env_float,
    env_int,
    env_optional_int,
    env_str,
)
from gameserver.fairplay import FairPlayLimits
from gameserver.roundtrip import RoundTripLimits
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
    # ARENA_RACE_CHECKPOINT: the owner keeps each race's checkpoint in Redis (its definition and
    # every acknowledged input, appended in the tick's existing round trip; gameserver/checkpoint.py)
    # and finalises the checkpointed races of dead nodes of its region (gameserver/reaper.py).
    checkpoint: bool = True
    # ARENA_RACE_CHECKPOINT_MS: a race's new journal entries are appended at most this often (and
    # only when it has some), so a checkpoint is at most this + one tick behind what the race applied.
    # Each append is one command in the tick's round trip: ≈ 42 µs of the node's CPU for a race of 5
    # typing for 1 s, most of it per command, so fewer appends cost less (docs/PERFORMANCE.md).
    # 2 s by default: at 1 s the appends cost about 12 % of a node's CPU, over the 10 % budget; at 2 s
    # about 7 %. 100 to 10000.
    checkpoint_ms: int = 2000
    # ARENA_RACE_CHECKPOINT_BACKLOG_KB: a race's journal not yet appended (encoded, waiting for a
    # tick whose bounds let it through) is kept up to this much; past it, as in a saturated node
    # whose appends fall ever further behind, the race's backlog is dropped and its checkpoint is
    # frozen at the last entry Redis holds (a consistent, older state: an adopter replays that,
    # the players resend the rest) until the race ends. Bounds the memory a node that cannot keep
    # up spends on checkpoints (races x this); counted in arena_gameserver_checkpoints_frozen_total,
    # said once by ``checkpoints_frozen``. A race of 5 typing for 15 minutes journals ≈ 200 KB.
    # 16 to 65536.
    checkpoint_backlog_kb: int = 256
    # ARENA_RACE_ADOPT: with checkpoints on, a live node that finds a dead node's running race adopts
    # it (rebuilds it from its checkpoint and runs it on for its players, who reconnect) instead of
    # finalising it as aborted (gameserver/reaper.py, docs/ARCHITECTURE.md "Adoption"). Off: aborted.
    adopt: bool = True
    quick_limit_s: float = 120.0  # ARENA_RACE_QUICK_LIMIT_S: time limit of a quick race
    standard_limit_s: float = 300.0  # ARENA_RACE_STANDARD_LIMIT_S
    marathon_limit_s: float = 900.0  # ARENA_RACE_MARATHON_LIMIT_S
    custom_min_chars: int = 20  # ARENA_RACE_CUSTOM_MIN_CHARS: custom text bounds
    custom_max_chars: int = 2000  # ARENA_RACE_CUSTOM_MAX_CHARS
    custom_limit_s_per_char: float = 0.6  # time limit of a custom race per character (100 cpm floor)
    # A finish may claim to be at most (the send interval + half the round trip), and never more
    # than this, before it arrived (gameserver.race.Race._judged_finish_ms).
    max_finish_hold_ms: int = 1000
    ping_interval_s: float = 3.0  # ARENA_RACE_PING_INTERVAL_S: server pings to measure latency
    # ARENA_RACE_MAX_RTT_MS: the largest round trip latency compensation believes, so at most half
    # of it comes off a judged finish; round trips are measured from the server's own pings only.
    round_trips: RoundTripLimits = field(default_factory=RoundTripLimits)
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
        if not 100 <= self.checkpoint_ms <= 10_000:
            raise ValueError("ARENA_RACE_CHECKPOINT_MS must be between 100 and 10000")
        if not 16 <= self.checkpoint_backlog_kb <= 65_536:
            raise ValueError("ARENA_RACE_CHECKPOINT_BACKLOG_KB must be between 16 and 65536")
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
            checkpoint=env_bool(env, "ARENA_RACE_CHECKPOINT", d.checkpoint),
            checkpoint_ms=env_int(env, "ARENA_RACE_CHECKPOINT_MS", d.checkpoint_ms),
            checkpoint_backlog_kb=env_int(env, "ARENA_RACE_CHECKPOINT_BACKLOG_KB", d.checkpoint_backlog_kb),
            adopt=env_bool(env, "ARENA_RACE_ADOPT", d.adopt),
            quick_limit_s=env_float(env, "ARENA_RACE_QUICK_LIMIT_S", d.quick_limit_s),
            standard_limit_s=env_float(env, "ARENA_RACE_STANDARD_LIMIT_S", d.standard_limit_s),
            marathon_limit_s=env_float(env, "ARENA_RACE_MARATHON_LIMIT_S", d.marathon_limit_s),
            custom_min_chars=env_int(env, "ARENA_RACE_CUSTOM_MIN_CHARS", d.custom_min_chars),
            custom_max_chars=env_int(env, "ARENA_RACE_CUSTOM_MAX_CHARS", d.custom_max_chars),
            ping_interval_s=env_float(env, "ARENA_RACE_PING_INTERVAL_S", d.ping_interval_s),
            round_trips=RoundTripLimits(max_ms=env_int(env, "ARENA_RACE_MAX_RTT_MS", d.round_trips.max_ms)),
        )


@dataclass(frozen=True, slots=True)
class LimitSettings:
    max_frame_bytes: int = 8192  # ARENA_MAX_FRAME_BYTES: larger frames close with 1009
    max_msgs_per_s: int = 20  # ARENA_MAX_MSGS_PER_S: sustained message rate per connection
    burst_msgs: int = 40  # ARENA_BURST_MSGS: token-bucket depth above the sustained rate
    max_keys_per_msg: int = 64  # ARENA_MAX_KEYS_PER_MSG
    max_violations: int = 10  # ARENA_MAX_VIOLATIONS: bad or rate-limited messages before a close
    hello_timeout_s: float = 10.0  # ARENA_HELLO_TIMEOUT_S: a socket must say hello within this
    # ARENA_MAX_CONNECTIONS: open TCP connections of any kind (an HTTP request or upgrade in progress,
    # a socket before or after hello); a WebSocket upgrade past it gets 503 (see gameserver.listener).
    max_connections: int = 20000
    keepalive_s: float = 30.0  # ARENA_KEEPALIVE_S: a silent socket is pinged, and dropped after twice this
    max_send_buffer_bytes: int = 1 << 20  # ARENA_MAX_SEND_BUFFER_BYTES: a reader this far behind is dropped
    close_timeout_s: float = 2.0  # ARENA_CLOSE_TIMEOUT_S: wait this long for the client's close reply
    # ARENA_REQUEST_HEAD_TIMEOUT_S: an HTTP connection must deliver a whole request head (request line
    # and headers) within this of opening or of its previous response, else it is closed; so is an idle
    # keep-alive connection. Above the 15 s keep-alive of aiohttp clients (the matchmaker's), so they
    # always give up an idle connection first and never send on one being closed.
    request_head_timeout_s: float = 20.0
    # ARENA_REQUEST_BODY_TIMEOUT_S: a request body must arrive within this of its head (408, closed).
    request_body_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name, value in (
            ("ARENA_REQUEST_HEAD_TIMEOUT_S", self.request_head_timeout_s),
            ("ARENA_REQUEST_BODY_TIMEOUT_S", self.request_body_timeout_s),
        ):
            if not 0.05 <= value <= 300:
                raise ValueError(f"{name} must be between 0.05 and 300 seconds")

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
            request_head_timeout_s=env_float(env, "ARENA_REQUEST_HEAD_TIMEOUT_S", d.request_head_timeout_s),
            request_body_timeout_s=env_float(env, "ARENA_REQUEST_BODY_TIMEOUT_S", d.request_body_timeout_s),
        )


ADMIN_PORT_OFFSET = 1000  # the admin listener's default port: the players' port + this


@dataclass(frozen=True, slots=True)
class MemorySettings:
    # ARENA_NODE_GC_FULL_S: a full garbage collection this often (0: never). The node freezes its
    # start-up heap and raises the collector's thresholds (``gameserver.__main__``), so without it
    # the oldest generation is in practice never collected: a reference cycle that lived through
    # two young collections would stay for good (``gameserver.memory``). Costs a walk of the objects
    # created since start-up: about 1 ms per 10,000, ≈ 250 per player.
    gc_full_s: float = 300.0
    # ARENA_NODE_HEAP_STATS_S: count the heap's objects of a few types this often into
    # ``arena_gameserver_python_objects`` (0: off, the default). Same walk as a full collection,
    # for soak runs and investigations (benchmarks/soak.py turns it on).
    heap_stats_s: float = 0.0
    # ARENA_NODE_MALLOC_TRIM: after each scheduled full collection, hand the C heap's free pages
    # back to the system (glibc's malloc_trim(0); nothing where the C library has none). Without it
    # a node keeps the pages a load left free after the load ends. Costs ≈ 0.05 ms with
    # little to return, 12 ms to return 83 MB (measured in-process, docs/PERFORMANCE.md).
    malloc_trim: bool = True
    # ARENA_NODE_IDLE_COLLECT_S: once the node has held no race and no socket for this long after
    # a load, one full collection and trim, as the scheduled one does (0: off). Without it a node
    # that went idle keeps what the load left free until the next scheduled collection (up to
    # ARENA_NODE_GC_FULL_S). Once per idle spell: a node with nothing to do does nothing.
    idle_collect_s: float = 10.0
    # ARENA_NODE_WARM_REDIS_CONNECTIONS: Redis connections the node opens at start-up, before it
    # registers (0: none; at most ARENA_REDIS_MAX_CONNECTIONS). A connection opened at a load's
    # peak lives on in the pool and keeps the memory pages it was allocated in from going back
    # after the load (docs/PERFORMANCE.md, "Memory over time"); soaks saw 3 in use per node, and up
    # to 10 on a node slowed down (pipelines wait longer, so more are in flight).
    warm_redis_connections: int = 8

    def __post_init__(self) -> None:
        if self.gc_full_s != 0 and not 10 <= self.gc_full_s <= 86_400:
            raise ValueError("ARENA_NODE_GC_FULL_S must be 0 (never) or between 10 and 86400")
        if self.idle_collect_s != 0 and not 1 <= self.idle_collect_s <= 86_400:
            raise ValueError("ARENA_NODE_IDLE_COLLECT_S must be 0 (off) or between 1 and 86400")
        if not 0 <= self.warm_redis_connections <= 1000:
            raise ValueError("ARENA_NODE_WARM_REDIS_CONNECTIONS must be between 0 and 1000")
        if self.heap_stats_s != 0 and not 5 <= self.heap_stats_s <= 86_400:
            raise ValueError("ARENA_NODE_HEAP_STATS_S must be 0 (off) or between 5 and 86400")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MemorySettings:
        d = cls()
        return cls(
            gc_full_s=env_float(env, "ARENA_NODE_GC_FULL_S", d.gc_full_s),
            heap_stats_s=env_float(env, "ARENA_NODE_HEAP_STATS_S", d.heap_stats_s),
            malloc_trim=env_bool(env, "ARENA_NODE_MALLOC_TRIM", d.malloc_trim),
            idle_collect_s=env_float(env, "ARENA_NODE_IDLE_COLLECT_S", d.idle_collect_s),
            warm_redis_connections=env_int(
                env, "ARENA_NODE_WARM_REDIS_CONNECTIONS", d.warm_redis_connections
            ),
        )


@dataclass(frozen=True, slots=True)
class NodeSettings:
    node_id: NodeId = NodeId(socket.gethostname())  # ARENA_NODE_ID
    # The players' listener: /ws, and /healthz and /readyz (where a load balancer or a kubelet
    # probe looks). Nothing else: /admin/* and /metrics answer 404 here.
    host: str = "127.0.0.1"  # ARENA_NODE_HOST: listen address
    port: int = 8100  # ARENA_NODE_PORT
    public_url: str = ""  # ARENA_NODE_PUBLIC_URL: ws URL players use; default ws://host:port/ws
    http_public_url: str = ""  # ARENA_NODE_HTTP_URL: the players' listener over HTTP; default http://host:port
    # The admin listener: /admin/* (admin bearer token), /metrics, /healthz, /readyz. Internal:
    # never published to players (no Service, Ingress or nginx route to it).
    # ARENA_NODE_ADMIN_HOST: its address; loopback by default. In a pod, the pod IP (or 0.0.0.0)
    # with a NetworkPolicy that admits only matchmakers, the lobby, the director, operators and
    # Prometheus.
    admin_host: str = "127.0.0.1"
    # ARENA_NODE_ADMIN_PORT: unset = ARENA_NODE_PORT + 1000 (9100 by default); 0 = a free port
    # picked at start (the registry carries the one bound; tests).
    admin_port: int | None = None
    # ARENA_NODE_ADMIN_URL: how matchmakers, the lobby, the director and ops.admin reach the admin
    # listener (published in the registry); default http://admin_host:admin port.
    admin_public_url: str = ""
    region: str = "local"  # ARENA_NODE_REGION
    heartbeat_s: float = 1.0  # ARENA_NODE_HEARTBEAT_S: registry heartbeat; dead after 3 missed
    capacity: int = 10000  # ARENA_NODE_CAPACITY: players this node accepts
    # ARENA_NODE_FULL_LAG_MS: admission control (gameserver/admission.py). A node whose loop lag
    # (a tick overrunning by its own work included) reaches this in two heartbeats in a row says
    # it is full: its registry entry's state is "full" (placement skips it) and admin race
    # creation answers 503 node_full; it takes races again after three heartbeats under half of
    # it. 0: off. 50 to 60000.
    full_lag_ms: int = 500
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
    # ARENA_NODE_DRAIN_MOVE: a SIGTERM drain hands the node's running races to live nodes of its
    # region (with checkpoints and adoption on) instead of waiting for them to end, so a rolling
    # update does not wait for a marathon (gameserver/mover.py). Off by default: races end here.
    drain_move: bool = False
    # ARENA_NODE_DRAIN_MOVE_WAIT_S: how long a moving race waits for a live node to adopt it; one
    # nobody adopted by then is taken back and runs on here, as in a drain without move (1 to 120).
    drain_move_wait_s: float = 10.0
    redis: RedisSettings = field(default_factory=RedisSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)  # ARENA_OUTBOX_*: results in batches
    secrets: SecretSettings = field(default_factory=SecretSettings)
    log: LogSettings = field(default_factory=LogSettings)
    race: RaceSettings = field(default_factory=RaceSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    scoring: ScoringLimits = field(default_factory=ScoringLimits)
    fairplay: FairPlayLimits = field(default_factory=FairPlayLimits)
    memory: MemorySettings = field(default_factory=MemorySettings)

    @property
    def ws_url(self) -> str:
        return self.public_url or f"ws://{self.host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return self.http_public_url or f"http://{self.host}:{self.port}"

    @property
    def admin_listen_port(self) -> int:
        """The admin listener's port: ``admin_port``, else the players' port + 1000 (0: any free one)."""
        return self.port + ADMIN_PORT_OFFSET if self.admin_port is None else self.admin_port

    @property
    def admin_url(self) -> str:
        return self.admin_public_url or f"http://{self.admin_host}:{self.admin_listen_port}"

    def __post_init__(self) -> None:
        if not 0 <= self.admin_listen_port <= 65535:
            raise SettingsError(
                f"ARENA_NODE_ADMIN_PORT must be 0 to 65535 (unset: ARENA_NODE_PORT + {ADMIN_PORT_OFFSET}, "
                f"here {self.admin_listen_port}: set it)"
            )
        if self.admin_listen_port == self.port != 0:
            raise SettingsError("ARENA_NODE_ADMIN_PORT must differ from ARENA_NODE_PORT (players' listener)")
        if not 0.5 <= self.results_write_s <= 300:
            raise SettingsError("ARENA_NODE_RESULTS_WRITE_S must be between 0.5 and 300")
        if self.full_lag_ms != 0 and not 50 <= self.full_lag_ms <= 60_000:
            raise SettingsError("ARENA_NODE_FULL_LAG_MS must be 0 (off) or between 50 and 60000")
        if not 1 <= self.drain_move_wait_s <= 120:
            raise SettingsError("ARENA_NODE_DRAIN_MOVE_WAIT_S must be between 1 and 120")
        if self.drain_move and not (self.race.checkpoint and self.race.adopt):
            raise SettingsError("ARENA_NODE_DRAIN_MOVE needs ARENA_RACE_CHECKPOINT and ARENA_RACE_ADOPT on")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NodeSettings:
        d = cls()
        return cls(
            node_id=NodeId(env_str(env, "ARENA_NODE_ID", d.node_id)),
            host=env_str(env, "ARENA_NODE_HOST", d.host),
            port=env_int(env, "ARENA_NODE_PORT", d.port),
            public_url=env_str(env, "ARENA_NODE_PUBLIC_URL", d.public_url),
            http_public_url=env_str(env, "ARENA_NODE_HTTP_URL", d.http_public_url),
            admin_host=env_str(env, "ARENA_NODE_ADMIN_HOST", d.admin_host),
            admin_port=env_optional_int(env, "ARENA_NODE_ADMIN_PORT"),
            admin_public_url=env_str(env, "ARENA_NODE_ADMIN_URL", d.admin_public_url),
            region=env_str(env, "ARENA_NODE_REGION", d.region),
            heartbeat_s=env_float(env, "ARENA_NODE_HEARTBEAT_S", d.heartbeat_s),
            capacity=env_int(env, "ARENA_NODE_CAPACITY", d.capacity),
            full_lag_ms=env_int(env, "ARENA_NODE_FULL_LAG_MS", d.full_lag_ms),
            shutdown_grace_s=env_float(env, "ARENA_NODE_SHUTDOWN_GRACE_S", d.shutdown_grace_s),
            results_write_s=env_float(env, "ARENA_NODE_RESULTS_WRITE_S", d.results_write_s),
            drain_move=env_bool(env, "ARENA_NODE_DRAIN_MOVE", d.drain_move),
            drain_move_wait_s=env_float(env, "ARENA_NODE_DRAIN_MOVE_WAIT_S", d.drain_move_wait_s),
            redis=RedisSettings.from_env(env),
            outbox=OutboxSettings.from_env(env),
            secrets=SecretSettings.from_env(env),
            log=LogSettings.from_env(env),
            race=RaceSettings.from_env(env),
            limits=LimitSettings.from_env(env),
            fairplay=FairPlayLimits(
                max_wpm=env_float(env, "ARENA_FAIRPLAY_MAX_WPM", FairPlayLimits().max_wpm),
                arrival_tolerance_ms=env_int(
                    env, "ARENA_FAIRPLAY_ARRIVAL_TOLERANCE_MS", FairPlayLimits().arrival_tolerance_ms
                ),
                held_back_batches=env_int(
                    env, "ARENA_FAIRPLAY_HELD_BACK_BATCHES", FairPlayLimits().held_back_batches
                ),
            ),
            memory=MemorySettings.from_env(env),
        )
