"""Reading settings from the environment, and the sections every process shares.

Each process defines its own frozen settings dataclass with a ``from_env()``; the helpers
here make those short and give one clear error for a bad value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """A setting in the environment has a value that cannot be used."""


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, default)


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be a boolean, got {raw!r}")


def environ() -> Mapping[str, str]:
    return os.environ


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str = "redis://127.0.0.1:6379/0"  # ARENA_REDIS_URL
    # ARENA_REDIS_MAX_CONNECTIONS: the process's Redis connections at most (1 to 10,000). A
    # command that finds them all busy waits for one (``pool_timeout_s``) instead of failing,
    # so a burst of work queues on the pool rather than opening a connection per task.
    max_connections: int = 100  # redis-py's own cap, but a full pool makes a command wait, not fail
    # ARENA_REDIS_POOL_TIMEOUT_S: how long a command waits for a free connection before it fails
    # with a ConnectionError, which callers treat like Redis being unreachable (0.1 to 60).
    pool_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_connections <= 10_000:
            raise SettingsError("ARENA_REDIS_MAX_CONNECTIONS must be between 1 and 10000")
        if not 0.1 <= self.pool_timeout_s <= 60:
            raise SettingsError("ARENA_REDIS_POOL_TIMEOUT_S must be between 0.1 and 60")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RedisSettings:
        d = cls()
        return cls(
            url=env_str(env, "ARENA_REDIS_URL", d.url),
            max_connections=env_int(env, "ARENA_REDIS_MAX_CONNECTIONS", d.max_connections),
            pool_timeout_s=env_float(env, "ARENA_REDIS_POOL_TIMEOUT_S", d.pool_timeout_s),
        )


@dataclass(frozen=True, slots=True)
class LogSettings:
    json: bool = False  # ARENA_LOG_JSON: JSON lines in production, console in development
    level: str = "info"  # ARENA_LOG_LEVEL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LogSettings:
        d = cls()
        return cls(
            json=env_bool(env, "ARENA_LOG_JSON", d.json),
            level=env_str(env, "ARENA_LOG_LEVEL", d.level).lower(),
        )


@dataclass(frozen=True, slots=True)
class SecretSettings:
    token_secret: bytes = b"dev-secret-change-me-please"  # ARENA_TOKEN_SECRET (shared by lobby and nodes)
    admin_token: str = "dev-admin-token"  # ARENA_ADMIN_TOKEN (bearer token of admin endpoints)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SecretSettings:
        d = cls()
        return cls(
            token_secret=env_str(env, "ARENA_TOKEN_SECRET", d.token_secret.decode()).encode(),
            admin_token=env_str(env, "ARENA_ADMIN_TOKEN", d.admin_token),
        )
