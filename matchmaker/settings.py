"""Matchmaker settings: frozen sections read from ``ARENA_*`` variables, checked once at startup."""

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
from arena.tickets import MATCHABLE_RACE_TYPES
from matchmaker.pairing import PairingRules


def _default_id() -> str:
    return f"mm-{socket.gethostname()}-{os.getpid()}"


def parse_list(raw: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_neighbours(raw: str) -> dict[str, tuple[str, ...]]:
    """``"eu:us,eu:ap,us:eu"`` -> ``{"eu": ("us", "ap"), "us": ("eu",)}``, in the order given."""
    out: dict[str, list[str]] = {}
    for pair in parse_list(raw):
        region, sep, neighbour = pair.partition(":")
        if not sep or not region.strip() or not neighbour.strip():
            raise SettingsError(f"ARENA_MM_NEIGHBOURS: {pair!r} is not region:neighbour")
        out.setdefault(region.strip(), []).append(neighbour.strip())
    return {region: tuple(ns) for region, ns in out.items()}


@dataclass(frozen=True, slots=True)
class MatchmakerSettings:
    matchmaker_id: str = field(default_factory=_default_id)  # ARENA_MM_ID: claim owner, in logs
    host: str = "127.0.0.1"  # ARENA_MM_HOST: /healthz /readyz /metrics listen address
    port: int = 8200  # ARENA_MM_PORT
    race_types: tuple[str, ...] = ("quick", "standard", "marathon")  # ARENA_MM_RACE_TYPES (comma list)
    regions: tuple[str, ...] = ("local",)  # ARENA_MM_REGIONS (comma list): the queues served
    # ARENA_MM_NEIGHBOURS: "eu:us,us:eu" - where a ticket may go after neighbour_wait_s, in order.
    neighbours: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    min_players: int = 2  # ARENA_MM_MIN_PLAYERS: smallest race after the fallback wait
    max_players: int = 5  # ARENA_MM_MAX_PLAYERS: at most the nodes' ARENA_RACE_MAX_PLAYERS
    base_window: float = 100.0  # ARENA_MM_BASE_WINDOW: rating difference allowed at once
    widen_per_s: float = 25.0  # ARENA_MM_WIDEN_PER_S: the window grows this much per second waited
    max_window: float = 800.0  # ARENA_MM_MAX_WINDOW: the window never grows past this
    fallback_wait_s: float = 3.0  # ARENA_MM_FALLBACK_WAIT_S: from here a race may start with min players
    neighbour_wait_s: float = 6.0  # ARENA_MM_NEIGHBOUR_WAIT_S: from here a neighbouring region is offered
    max_wait_s: float = 15.0  # ARENA_MM_MAX_WAIT_S: from here a ticket gets a race even alone
    poll_interval_s: float = 0.1  # ARENA_MM_POLL_INTERVAL_S: sleep when a pass found nothing to do
    claim_ttl_s: float = 10.0  # ARENA_MM_CLAIM_TTL_S: a claim not completed by then is reaped
    reap_interval_s: float = 1.0  # ARENA_MM_REAP_INTERVAL_S: how often dead claims are looked for
    pool_size: int = 1000  # ARENA_MM_POOL_SIZE: oldest tickets of a queue considered per pass
    neighbour_pool_size: int = 200  # ARENA_MM_NEIGHBOUR_POOL_SIZE: same, from each neighbour queue
    node_timeout_s: float = 2.0  # ARENA_MM_NODE_TIMEOUT_S: one seat reservation request
    node_attempts: int = 3  # ARENA_MM_NODE_ATTEMPTS: nodes tried per race before giving up
    node_stale_ms: int = 3000  # ARENA_MM_NODE_STALE_MS: a node silent this long counts as dead
    max_inflight: int = 8  # ARENA_MM_MAX_INFLIGHT: claimed batches being placed at once
    redis: RedisSettings = field(default_factory=RedisSettings)
    secrets: SecretSettings = field(default_factory=SecretSettings)  # ARENA_ADMIN_TOKEN for nodes
    log: LogSettings = field(default_factory=LogSettings)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        unknown = set(self.race_types) - MATCHABLE_RACE_TYPES
        if not self.race_types or unknown:
            raise SettingsError(f"ARENA_MM_RACE_TYPES must name some of {sorted(MATCHABLE_RACE_TYPES)}")
        if not self.regions:
            raise SettingsError("ARENA_MM_REGIONS must name at least one region")
        for region, ns in self.neighbours.items():
            if region not in self.regions or not set(ns) <= set(self.regions) or region in ns:
                raise SettingsError(
                    f"ARENA_MM_NEIGHBOURS: {region}:{ns} must pair two different served regions"
                )
        if not 1 <= self.min_players <= self.max_players:
            raise SettingsError("need 1 <= ARENA_MM_MIN_PLAYERS <= ARENA_MM_MAX_PLAYERS")
        if not 0 <= self.fallback_wait_s <= self.neighbour_wait_s <= self.max_wait_s:
            raise SettingsError("need fallback wait <= neighbour wait <= max wait")
        if not 1 <= self.pool_size <= 4000 or not 0 <= self.neighbour_pool_size <= 4000:
            raise SettingsError("pool sizes must be at most 4000 (one script reads them)")
        # A claim must outlive every node attempt, or a slow placement would be reaped mid-way.
        if self.claim_ttl_s <= self.node_timeout_s * self.node_attempts + 1.0:
            raise SettingsError("ARENA_MM_CLAIM_TTL_S must exceed node timeout x attempts + 1 s")

    def rules(self) -> PairingRules:
        return PairingRules(
            min_players=self.min_players,
            max_players=self.max_players,
            base_window=self.base_window,
            widen_per_s=self.widen_per_s,
            max_window=self.max_window,
            fallback_wait_ms=int(self.fallback_wait_s * 1000),
            neighbour_wait_ms=int(self.neighbour_wait_s * 1000),
            max_wait_ms=int(self.max_wait_s * 1000),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MatchmakerSettings:
        d = cls()
        return cls(
            matchmaker_id=env_str(env, "ARENA_MM_ID", d.matchmaker_id),
            host=env_str(env, "ARENA_MM_HOST", d.host),
            port=env_int(env, "ARENA_MM_PORT", d.port),
            race_types=parse_list(env_str(env, "ARENA_MM_RACE_TYPES", ",".join(d.race_types))),
            regions=parse_list(env_str(env, "ARENA_MM_REGIONS", ",".join(d.regions))),
            neighbours=parse_neighbours(env_str(env, "ARENA_MM_NEIGHBOURS", "")),
            min_players=env_int(env, "ARENA_MM_MIN_PLAYERS", d.min_players),
            max_players=env_int(env, "ARENA_MM_MAX_PLAYERS", d.max_players),
            base_window=env_float(env, "ARENA_MM_BASE_WINDOW", d.base_window),
            widen_per_s=env_float(env, "ARENA_MM_WIDEN_PER_S", d.widen_per_s),
            max_window=env_float(env, "ARENA_MM_MAX_WINDOW", d.max_window),
            fallback_wait_s=env_float(env, "ARENA_MM_FALLBACK_WAIT_S", d.fallback_wait_s),
            neighbour_wait_s=env_float(env, "ARENA_MM_NEIGHBOUR_WAIT_S", d.neighbour_wait_s),
            max_wait_s=env_float(env, "ARENA_MM_MAX_WAIT_S", d.max_wait_s),
            poll_interval_s=env_float(env, "ARENA_MM_POLL_INTERVAL_S", d.poll_interval_s),
            claim_ttl_s=env_float(env, "ARENA_MM_CLAIM_TTL_S", d.claim_ttl_s),
            reap_interval_s=env_float(env, "ARENA_MM_REAP_INTERVAL_S", d.reap_interval_s),
            pool_size=env_int(env, "ARENA_MM_POOL_SIZE", d.pool_size),
            neighbour_pool_size=env_int(env, "ARENA_MM_NEIGHBOUR_POOL_SIZE", d.neighbour_pool_size),
            node_timeout_s=env_float(env, "ARENA_MM_NODE_TIMEOUT_S", d.node_timeout_s),
            node_attempts=env_int(env, "ARENA_MM_NODE_ATTEMPTS", d.node_attempts),
            node_stale_ms=env_int(env, "ARENA_MM_NODE_STALE_MS", d.node_stale_ms),
            max_inflight=env_int(env, "ARENA_MM_MAX_INFLIGHT", d.max_inflight),
            redis=RedisSettings.from_env(env),
            secrets=SecretSettings.from_env(env, token_secret=False),  # places races: admin token only
            log=LogSettings.from_env(env),
        )
