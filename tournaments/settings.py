"""Tournament settings: the director process and the API the lobby mounts, from ``ARENA_*``.

The race timings (``ARENA_RACE_*``) are the nodes' own settings, read here too: the director
needs them to know when a heat's race must have reported.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from arena.settings import (
    LogSettings,
    RedisSettings,
    SecretSettings,
    SettingsError,
    env_float,
    env_int,
    env_str,
)
from gameserver.settings import RaceSettings
from tournaments.model import SpecLimits


def _default_id() -> str:
    return f"td-{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class DirectorSettings:
    # ARENA_TOURNAMENT_DIRECTOR_ID: lease owner and outbox consumer name, unique per process
    director_id: str = field(default_factory=_default_id)
    host: str = "127.0.0.1"  # ARENA_TOURNAMENT_HOST: /healthz /readyz /metrics listen address
    port: int = 8400  # ARENA_TOURNAMENT_PORT
    tick_s: float = 0.2  # ARENA_TOURNAMENT_TICK_S: how often the leader looks at every live tournament
    lease_ttl_s: float = 3.0  # ARENA_TOURNAMENT_LEASE_TTL_S: a dead leader is replaced within about this
    lease_renew_s: float = 1.0  # ARENA_TOURNAMENT_LEASE_RENEW_S: the leader renews (standbys try) this often
    min_players: int = 2  # ARENA_TOURNAMENT_MIN_PLAYERS: fewer at the start cancels the tournament
    instant_sweep_s: float = 2.0  # ARENA_TOURNAMENT_INSTANT_SWEEP_S: look for full instant ones missed
    node_stale_ms: int = 3000  # ARENA_TOURNAMENT_NODE_STALE_MS: a node silent this long is dead
    node_timeout_s: float = 2.0  # ARENA_TOURNAMENT_NODE_TIMEOUT_S: one race creation request
    node_attempts: int = 3  # ARENA_TOURNAMENT_NODE_ATTEMPTS: nodes tried per placement
    placement_timeout_s: float = 60.0  # ARENA_TOURNAMENT_PLACEMENT_TIMEOUT_S: unplaceable that long: settled
    heat_margin_s: float = 30.0  # ARENA_TOURNAMENT_HEAT_MARGIN_S: beyond wait + countdown + time limit
    dead_node_grace_s: float = 3.0  # ARENA_TOURNAMENT_DEAD_NODE_GRACE_S: wait for an ended race's record
    # ARENA_TOURNAMENT_ADOPTION_WAIT_S: a heat whose node died waits this long for a live node to
    # adopt its race (gameserver/adoption.py: three missed heartbeats, then a reaper round) before
    # it is re-run; the players then rejoin the adopted race.
    adoption_wait_s: float = 10.0
    max_reruns: int = 1  # ARENA_TOURNAMENT_MAX_RERUNS: re-runs of a heat whose node died, then settled
    claim_idle_ms: int = 2000  # ARENA_TOURNAMENT_CLAIM_IDLE_MS: results pending this long are re-taken
    intake_block_ms: int = 200  # ARENA_TOURNAMENT_INTAKE_BLOCK_MS: wait for new outbox entries
    retain_s: int = 7 * 86400  # ARENA_TOURNAMENT_RETAIN_S: a finished tournament's keys expire after this
    redis: RedisSettings = field(default_factory=RedisSettings)
    secrets: SecretSettings = field(default_factory=SecretSettings)  # the nodes' admin token
    log: LogSettings = field(default_factory=LogSettings)
    race: RaceSettings = field(default_factory=RaceSettings)

    def __post_init__(self) -> None:
        if not 0 < self.lease_renew_s < self.lease_ttl_s / 2:
            raise SettingsError("need 0 < ARENA_TOURNAMENT_LEASE_RENEW_S < ARENA_TOURNAMENT_LEASE_TTL_S / 2")
        if self.tick_s <= 0 or self.min_players < 2 or self.max_reruns < 0:
            raise SettingsError("need TICK_S > 0, MIN_PLAYERS >= 2 and MAX_RERUNS >= 0")
        if self.node_attempts < 1 or self.node_timeout_s <= 0:
            raise SettingsError("need ARENA_TOURNAMENT_NODE_ATTEMPTS >= 1 and NODE_TIMEOUT_S > 0")
        if not 0 <= self.adoption_wait_s <= 600:
            raise SettingsError("ARENA_TOURNAMENT_ADOPTION_WAIT_S must be between 0 and 600")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DirectorSettings:
        d = cls()
        p = "ARENA_TOURNAMENT_"
        return cls(
            director_id=env_str(env, p + "DIRECTOR_ID", d.director_id),
            host=env_str(env, p + "HOST", d.host),
            port=env_int(env, p + "PORT", d.port),
            tick_s=env_float(env, p + "TICK_S", d.tick_s),
            lease_ttl_s=env_float(env, p + "LEASE_TTL_S", d.lease_ttl_s),
            lease_renew_s=env_float(env, p + "LEASE_RENEW_S", d.lease_renew_s),
            min_players=env_int(env, p + "MIN_PLAYERS", d.min_players),
            instant_sweep_s=env_float(env, p + "INSTANT_SWEEP_S", d.instant_sweep_s),
            node_stale_ms=env_int(env, p + "NODE_STALE_MS", d.node_stale_ms),
            node_timeout_s=env_float(env, p + "NODE_TIMEOUT_S", d.node_timeout_s),
            node_attempts=env_int(env, p + "NODE_ATTEMPTS", d.node_attempts),
            placement_timeout_s=env_float(env, p + "PLACEMENT_TIMEOUT_S", d.placement_timeout_s),
            heat_margin_s=env_float(env, p + "HEAT_MARGIN_S", d.heat_margin_s),
            dead_node_grace_s=env_float(env, p + "DEAD_NODE_GRACE_S", d.dead_node_grace_s),
            adoption_wait_s=env_float(env, p + "ADOPTION_WAIT_S", d.adoption_wait_s),
            max_reruns=env_int(env, p + "MAX_RERUNS", d.max_reruns),
            claim_idle_ms=env_int(env, p + "CLAIM_IDLE_MS", d.claim_idle_ms),
            intake_block_ms=env_int(env, p + "INTAKE_BLOCK_MS", d.intake_block_ms),
            retain_s=env_int(env, p + "RETAIN_S", d.retain_s),
            redis=RedisSettings.from_env(env),
            secrets=SecretSettings.from_env(env, token_secret=False),  # places heats: admin token only
            log=LogSettings.from_env(env),
            race=RaceSettings.from_env(env),
        )


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The tournament routes the lobby mounts (``tournaments.api.setup``)."""

    default_region: str = "local"  # ARENA_TOURNAMENT_REGION: where heats are placed unless the spec says
    max_players: int = 1024  # ARENA_TOURNAMENT_MAX_PLAYERS: the largest tournament one may create
    max_heat_size: int = 5  # ARENA_RACE_MAX_PLAYERS (shared with nodes): a heat is one race
    custom_min_chars: int = 20  # ARENA_RACE_CUSTOM_MIN_CHARS (shared with nodes)
    custom_max_chars: int = 2000  # ARENA_RACE_CUSTOM_MAX_CHARS (shared with nodes)
    long_poll_max_s: float = 25.0  # ARENA_TOURNAMENT_LONG_POLL_MAX_S: a ?wait= longer than this is cut
    page_max: int = 100  # ARENA_TOURNAMENT_PAGE_MAX: the largest listing page
    live_queue: int = 256  # ARENA_TOURNAMENT_LIVE_QUEUE: messages queued per live socket (see live.py)
    live_max_sockets: int = 10_000  # ARENA_TOURNAMENT_LIVE_MAX_SOCKETS: live sockets per process
    redis: RedisSettings = field(default_factory=RedisSettings)
    secrets: SecretSettings = field(default_factory=SecretSettings)  # the player token secret

    def limits(self) -> SpecLimits:
        return SpecLimits(
            max_players=self.max_players,
            max_heat_size=self.max_heat_size,
            custom_min_chars=self.custom_min_chars,
            custom_max_chars=self.custom_max_chars,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiSettings:
        d = cls()
        p = "ARENA_TOURNAMENT_"
        return cls(
            default_region=env_str(env, p + "REGION", d.default_region),
            max_players=env_int(env, p + "MAX_PLAYERS", d.max_players),
            max_heat_size=env_int(env, "ARENA_RACE_MAX_PLAYERS", d.max_heat_size),
            custom_min_chars=env_int(env, "ARENA_RACE_CUSTOM_MIN_CHARS", d.custom_min_chars),
            custom_max_chars=env_int(env, "ARENA_RACE_CUSTOM_MAX_CHARS", d.custom_max_chars),
            long_poll_max_s=env_float(env, p + "LONG_POLL_MAX_S", d.long_poll_max_s),
            page_max=env_int(env, p + "PAGE_MAX", d.page_max),
            live_queue=env_int(env, p + "LIVE_QUEUE", d.live_queue),
            live_max_sockets=env_int(env, p + "LIVE_MAX_SOCKETS", d.live_max_sockets),
            redis=RedisSettings.from_env(env),
            secrets=SecretSettings.from_env(env, admin_token=False),  # reads player tokens only
        )
