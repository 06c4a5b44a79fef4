"""Lobby settings: one frozen section read from ``ARENA_LOBBY_*`` variables, checked once at startup."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from arena.settings import (
    LogSettings,
    RedisSettings,
    SecretSettings,
    SettingsError,
    env_bool,
    env_float,
    env_int,
    env_str,
)
from persistence.settings import PostgresSettings, ReadSideSettings
from tournaments.settings import ApiSettings


def parse_list(raw: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class LobbySettings:
    host: str = "127.0.0.1"  # ARENA_LOBBY_HOST: listen address
    port: int = 8000  # ARENA_LOBBY_PORT
    token_ttl_s: int = 86400  # ARENA_LOBBY_TOKEN_TTL_S: lifetime of a player token (guest or named)
    # ARENA_LOBBY_TOKEN_CACHE: verified player tokens kept (arena.tokens.PlayerTokenCache, ~0.5 KB
    # each); a token seen again skips its HMAC. Hits need it to hold every player who calls this
    # lobby within one heartbeat interval. 0 = off.
    token_cache: int = 100_000
    # ARENA_LOBBY_TOKEN_CACHE_IDLE_S: a cached token unused this long is dropped, so the cache
    # follows the players active lately (a heartbeat every 60 s keeps a player in). 10 to 86,400.
    token_cache_idle_s: float = 300.0
    # ARENA_LOBBY_REPLAY_CACHE_BYTES: encoded replays kept per lobby (JSON and gzip, least recently
    # used out first); a marathon of 5 is about 250 kB. 0 = off.
    replay_cache_bytes: int = 32 * 1024 * 1024
    # ARENA_LOBBY_BOARD_CACHE_MS: a leaderboard page (top N) is answered from memory for this long
    # after it was read from Redis: its staleness bound (lobby/boardcache.py). 0 = off.
    board_cache_ms: int = 1000
    # ARENA_LOBBY_RATE_PER_PLAYER: requests per window per player (the seeds: 100 a minute); 0 = off
    rate_per_player: int = 100
    rate_per_ip: int = 1000  # ARENA_LOBBY_RATE_PER_IP: requests per window per client IP; 0 = off
    rate_window_s: int = 60  # ARENA_LOBBY_RATE_WINDOW_S: the fixed window the limits count in
    # ARENA_LOBBY_RATE_SYNC_MS: requests are counted in memory and added to the shared Redis counters
    # this often (lobby/ratelimit.py: several lobbies may let a subject exceed its limit by what it
    # sends them within one period); 0 = one Redis round trip per request.
    rate_sync_ms: int = 100
    login_attempts: int = 10  # ARENA_LOBBY_LOGIN_ATTEMPTS: log-ins per name per window (guessing); 0 = off
    # ARENA_LOBBY_TRUSTED_PROXY_HEADER: e.g. "X-Forwarded-For"; read the client IP from it (its last
    # entry, the one our own proxy appended). Empty = off: the socket's peer address is used.
    trusted_proxy_header: str = ""
    long_poll_max_s: float = 25.0  # ARENA_LOBBY_LONG_POLL_MAX_S: a ?wait= longer than this is cut
    # ARENA_LOBBY_SHUTDOWN_GRACE_S: on SIGTERM, requests in flight get this long to answer, then
    # are cut; the default lets the longest long-poll (long_poll_max_s) answer.
    shutdown_grace_s: float = 26.0
    presence_ttl_s: int = 300  # ARENA_LOBBY_PRESENCE_TTL_S: online until this long after a heartbeat
    presence_flush_s: float = 1.0  # ARENA_LOBBY_PRESENCE_FLUSH_S: buffered heartbeats go to Redis this often
    presence_max_buffer: int = 200_000  # ARENA_LOBBY_PRESENCE_MAX_BUFFER: players buffered; more are dropped
    heartbeat_interval_s: int = 120  # ARENA_LOBBY_HEARTBEAT_INTERVAL_S: what clients are told to use
    regions: tuple[str, ...] = ("local",)  # ARENA_LOBBY_REGIONS (comma list): the regions offered
    node_stale_ms: int = 3000  # ARENA_LOBBY_NODE_STALE_MS: a node silent this long counts as dead
    node_refresh_s: float = 0.5  # ARENA_LOBBY_NODE_REFRESH_S: the live node list is cached this long
    node_timeout_s: float = 2.0  # ARENA_LOBBY_NODE_TIMEOUT_S: one race creation request to a node
    node_attempts: int = 3  # ARENA_LOBBY_NODE_ATTEMPTS: nodes tried per private race
    invite_ttl_s: int = 1800  # ARENA_LOBBY_INVITE_TTL_S: a private race code lives this long
    private_max_players: int = 5  # ARENA_RACE_MAX_PLAYERS (shared with nodes): seats of a private race
    custom_min_chars: int = 20  # ARENA_RACE_CUSTOM_MIN_CHARS (shared with nodes)
    custom_max_chars: int = 2000  # ARENA_RACE_CUSTOM_MAX_CHARS (shared with nodes)
    scrypt_n: int = 2**14  # ARENA_LOBBY_SCRYPT_N: password hashing cost (a power of two)
    # ARENA_LOBBY_GC_FREEZE: after start-up, freeze the heap so full collections skip it (~31 ms
    # -> ~2 ms each, lobby/collector.py).
    gc_freeze: bool = True
    # ARENA_LOBBY_GC_YOUNG: allocations between young-generation collections (Python's default
    # 700); 100 to 1,000,000.
    gc_young: int = 50_000
    redis: RedisSettings = field(default_factory=RedisSettings)
    secrets: SecretSettings = field(default_factory=SecretSettings)  # token secret, node admin token
    log: LogSettings = field(default_factory=LogSettings)
    tournaments: ApiSettings = field(default_factory=ApiSettings)  # the /v1/tournaments routes
    postgres: PostgresSettings = field(default_factory=PostgresSettings)  # race history (ARENA_POSTGRES_*)
    read_side: ReadSideSettings = field(default_factory=ReadSideSettings)  # boards and recent results

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        if not self.regions:
            raise SettingsError("ARENA_LOBBY_REGIONS must name at least one region")
        if self.token_ttl_s < 60:
            raise SettingsError("ARENA_LOBBY_TOKEN_TTL_S must be at least 60")
        if not 10.0 <= self.token_cache_idle_s <= 86_400.0:
            raise SettingsError("ARENA_LOBBY_TOKEN_CACHE_IDLE_S must be between 10 and 86400")
        if not 0 <= self.token_cache <= 10_000_000:
            raise SettingsError("ARENA_LOBBY_TOKEN_CACHE must be between 0 and 10000000")
        if not 0 <= self.replay_cache_bytes <= 16 * 1024**3:
            raise SettingsError("ARENA_LOBBY_REPLAY_CACHE_BYTES must be between 0 and 17179869184")
        if not 0 <= self.board_cache_ms <= 60_000:
            raise SettingsError("ARENA_LOBBY_BOARD_CACHE_MS must be between 0 and 60000")
        if min(self.rate_per_player, self.rate_per_ip, self.login_attempts) < 0 or self.rate_window_s < 1:
            raise SettingsError("rate limits must be >= 0 and ARENA_LOBBY_RATE_WINDOW_S >= 1")
        if not 0 <= self.rate_sync_ms <= 10_000:
            raise SettingsError("ARENA_LOBBY_RATE_SYNC_MS must be between 0 and 10000")
        if not 0 <= self.long_poll_max_s <= 120:
            raise SettingsError("ARENA_LOBBY_LONG_POLL_MAX_S must be between 0 and 120")
        if self.shutdown_grace_s < 0:
            raise SettingsError("ARENA_LOBBY_SHUTDOWN_GRACE_S must be >= 0")
        if self.presence_flush_s <= 0 or self.presence_ttl_s <= self.presence_flush_s:
            raise SettingsError("need 0 < ARENA_LOBBY_PRESENCE_FLUSH_S < ARENA_LOBBY_PRESENCE_TTL_S")
        if not 0 < self.heartbeat_interval_s < self.presence_ttl_s:
            raise SettingsError("need 0 < ARENA_LOBBY_HEARTBEAT_INTERVAL_S < ARENA_LOBBY_PRESENCE_TTL_S")
        if self.presence_max_buffer < 1:
            raise SettingsError("ARENA_LOBBY_PRESENCE_MAX_BUFFER must be at least 1")
        if self.invite_ttl_s < 10 or self.private_max_players < 1:
            raise SettingsError("need ARENA_LOBBY_INVITE_TTL_S >= 10 and ARENA_RACE_MAX_PLAYERS >= 1")
        if not 1 <= self.custom_min_chars <= self.custom_max_chars:
            raise SettingsError("need 1 <= ARENA_RACE_CUSTOM_MIN_CHARS <= ARENA_RACE_CUSTOM_MAX_CHARS")
        if self.scrypt_n < 2 or self.scrypt_n & (self.scrypt_n - 1):
            raise SettingsError("ARENA_LOBBY_SCRYPT_N must be a power of two")
        if not 100 <= self.gc_young <= 1_000_000:
            raise SettingsError("ARENA_LOBBY_GC_YOUNG must be between 100 and 1000000")
        if self.node_attempts < 1 or self.node_timeout_s <= 0:
            raise SettingsError("need ARENA_LOBBY_NODE_ATTEMPTS >= 1 and ARENA_LOBBY_NODE_TIMEOUT_S > 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LobbySettings:
        d = cls()
        return cls(
            host=env_str(env, "ARENA_LOBBY_HOST", d.host),
            port=env_int(env, "ARENA_LOBBY_PORT", d.port),
            token_ttl_s=env_int(env, "ARENA_LOBBY_TOKEN_TTL_S", d.token_ttl_s),
            token_cache=env_int(env, "ARENA_LOBBY_TOKEN_CACHE", d.token_cache),
            token_cache_idle_s=env_float(env, "ARENA_LOBBY_TOKEN_CACHE_IDLE_S", d.token_cache_idle_s),
            replay_cache_bytes=env_int(env, "ARENA_LOBBY_REPLAY_CACHE_BYTES", d.replay_cache_bytes),
            board_cache_ms=env_int(env, "ARENA_LOBBY_BOARD_CACHE_MS", d.board_cache_ms),
            rate_per_player=env_int(env, "ARENA_LOBBY_RATE_PER_PLAYER", d.rate_per_player),
            rate_per_ip=env_int(env, "ARENA_LOBBY_RATE_PER_IP", d.rate_per_ip),
            rate_window_s=env_int(env, "ARENA_LOBBY_RATE_WINDOW_S", d.rate_window_s),
            rate_sync_ms=env_int(env, "ARENA_LOBBY_RATE_SYNC_MS", d.rate_sync_ms),
            login_attempts=env_int(env, "ARENA_LOBBY_LOGIN_ATTEMPTS", d.login_attempts),
            trusted_proxy_header=env_str(env, "ARENA_LOBBY_TRUSTED_PROXY_HEADER", d.trusted_proxy_header),
            long_poll_max_s=env_float(env, "ARENA_LOBBY_LONG_POLL_MAX_S", d.long_poll_max_s),
            shutdown_grace_s=env_float(env, "ARENA_LOBBY_SHUTDOWN_GRACE_S", d.shutdown_grace_s),
            presence_ttl_s=env_int(env, "ARENA_LOBBY_PRESENCE_TTL_S", d.presence_ttl_s),
            presence_flush_s=env_float(env, "ARENA_LOBBY_PRESENCE_FLUSH_S", d.presence_flush_s),
            presence_max_buffer=env_int(env, "ARENA_LOBBY_PRESENCE_MAX_BUFFER", d.presence_max_buffer),
            heartbeat_interval_s=env_int(env, "ARENA_LOBBY_HEARTBEAT_INTERVAL_S", d.heartbeat_interval_s),
            regions=parse_list(env_str(env, "ARENA_LOBBY_REGIONS", ",".join(d.regions))),
            node_stale_ms=env_int(env, "ARENA_LOBBY_NODE_STALE_MS", d.node_stale_ms),
            node_refresh_s=env_float(env, "ARENA_LOBBY_NODE_REFRESH_S", d.node_refresh_s),
            node_timeout_s=env_float(env, "ARENA_LOBBY_NODE_TIMEOUT_S", d.node_timeout_s),
            node_attempts=env_int(env, "ARENA_LOBBY_NODE_ATTEMPTS", d.node_attempts),
            invite_ttl_s=env_int(env, "ARENA_LOBBY_INVITE_TTL_S", d.invite_ttl_s),
            private_max_players=env_int(env, "ARENA_RACE_MAX_PLAYERS", d.private_max_players),
            custom_min_chars=env_int(env, "ARENA_RACE_CUSTOM_MIN_CHARS", d.custom_min_chars),
            custom_max_chars=env_int(env, "ARENA_RACE_CUSTOM_MAX_CHARS", d.custom_max_chars),
            scrypt_n=env_int(env, "ARENA_LOBBY_SCRYPT_N", d.scrypt_n),
            gc_freeze=env_bool(env, "ARENA_LOBBY_GC_FREEZE", d.gc_freeze),
            gc_young=env_int(env, "ARENA_LOBBY_GC_YOUNG", d.gc_young),
            redis=RedisSettings.from_env(env),
            secrets=SecretSettings.from_env(env),
            tournaments=ApiSettings.from_env(env),
            postgres=PostgresSettings.from_env(env),
            read_side=ReadSideSettings.from_env(env),
            log=LogSettings.from_env(env),
        )
