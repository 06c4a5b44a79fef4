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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RedisSettings:
        return cls(url=env_str(env, "ARENA_REDIS_URL", cls().url))


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
