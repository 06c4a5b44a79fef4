"""Reading settings from the environment, and the sections every process shares.

Each process defines its own frozen settings dataclass with a ``from_env()``; the helpers
here make those short and give one clear error for a bad value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from arena.bearer import MAX_TOKEN_CHARS, is_token68


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


def env_optional_int(env: Mapping[str, str], name: str) -> int | None:
    """An integer, or None when unset or empty (the setting's default is derived from others)."""
    raw = env.get(name)
    return None if raw is None or raw == "" else env_int(env, name, 0)


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


CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


@dataclass(frozen=True, slots=True)
class RedisSettings:
    # ARENA_REDIS_URL: one Redis (redis://, rediss://, unix://), or a Redis Cluster through any of
    # its nodes: redis+cluster://host:port (rediss+cluster:// with TLS), docs/DEPLOY.md.
    url: str = "redis://127.0.0.1:6379/0"
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

    @property
    def cluster(self) -> bool:
        """A Redis Cluster URL: processes use redis-py's cluster client (arena/redisutil.py)."""
        return self.url.startswith(CLUSTER_SCHEMES)

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


class Environment(StrEnum):
    """``ARENA_ENV``: production unless development is asked for, explicitly."""

    PRODUCTION = "production"
    DEVELOPMENT = "development"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Environment:
        raw = env.get("ARENA_ENV", "").strip().lower()
        if raw == "":
            return cls.PRODUCTION
        try:
            return cls(raw)
        except ValueError:
            raise SettingsError(
                f"ARENA_ENV must be 'production' (the default) or 'development', got {raw!r}"
            ) from None


# The public development values: accepted only with ARENA_ENV=development.
DEV_TOKEN_SECRET = b"dev-secret-change-me-please"
DEV_ADMIN_TOKEN = "dev-admin-token"
TOKEN_SECRET_MIN_BYTES = 32  # outside development: an HMAC-SHA256 key of at least 256 bits
ADMIN_TOKEN_MIN_CHARS = 24
DEV_TOKEN_SECRET_MIN_BYTES = 16  # what arena.tokens.TokenSigner takes at all
_MAKE_ONE = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True, slots=True)
class SecretSettings:
    """The shared secrets. Built directly (tests) nothing is checked; ``from_env`` (processes)
    refuses, outside ``ARENA_ENV=development``, a secret or token that is missing, the public
    development default, or short, naming the variable (never its value)."""

    # ARENA_TOKEN_SECRET: HMAC key of player tokens and join tickets, shared by the lobby and the
    # nodes; at least TOKEN_SECRET_MIN_BYTES (32) bytes outside development.
    token_secret: bytes = DEV_TOKEN_SECRET
    # ARENA_ADMIN_TOKEN: bearer token of the nodes' admin endpoints (nodes check it; the lobby,
    # matchmakers, the tournament director and ops.admin send it); token68 characters (letters,
    # digits, -._~+/ then optional =), at least ADMIN_TOKEN_MIN_CHARS (24) outside development.
    admin_token: str = DEV_ADMIN_TOKEN

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, token_secret: bool = True, admin_token: bool = True
    ) -> SecretSettings:
        """``token_secret`` / ``admin_token``: whether this process uses that value, so checks it
        (one it does not use keeps the development default and is never checked)."""
        production = Environment.from_env(env) is Environment.PRODUCTION
        secret = env.get("ARENA_TOKEN_SECRET", "")
        admin = env.get("ARENA_ADMIN_TOKEN", "")
        if token_secret and production:
            check_token_secret(secret.encode())
        elif token_secret and secret and len(secret.encode()) < DEV_TOKEN_SECRET_MIN_BYTES:
            raise SettingsError(
                f"ARENA_TOKEN_SECRET is {len(secret.encode())} bytes: even in development it needs "
                f"{DEV_TOKEN_SECRET_MIN_BYTES} (unset, the development default is used)"
            )
        if admin_token and admin and not is_token68(admin):
            raise SettingsError(
                "ARENA_ADMIN_TOKEN must be one bearer token68 word (letters, digits, -._~+/ then optional "
                f"=, at most {MAX_TOKEN_CHARS}); {_MAKE_ONE}"
            )
        if admin_token and production:
            check_admin_token(admin)
            if token_secret and admin.encode() == secret.encode():  # the token travels in headers
                raise SettingsError("ARENA_ADMIN_TOKEN must differ from ARENA_TOKEN_SECRET")
        return cls(
            token_secret=secret.encode() if secret else DEV_TOKEN_SECRET,
            admin_token=admin or DEV_ADMIN_TOKEN,
        )


def check_token_secret(secret: bytes) -> None:
    """Refuse a token secret production cannot use (missing, the development default, short)."""
    _check("ARENA_TOKEN_SECRET", len(secret), secret == DEV_TOKEN_SECRET, TOKEN_SECRET_MIN_BYTES, "bytes")


def check_admin_token(token: str) -> None:
    """Refuse an admin token production cannot use (missing, the development default, short)."""
    _check("ARENA_ADMIN_TOKEN", len(token), token == DEV_ADMIN_TOKEN, ADMIN_TOKEN_MIN_CHARS, "characters")


def _check(name: str, length: int, is_default: bool, minimum: int, unit: str) -> None:
    if length == 0:
        problem = "is not set"
    elif is_default:
        problem = "is the public development default"
    elif length < minimum:
        problem = f"is {length} {unit}, shorter than {minimum}"
    else:
        return
    raise SettingsError(
        f"{name} {problem}: outside ARENA_ENV=development it must be a random value of at least "
        f"{minimum} {unit}; {_MAKE_ONE}"
    )
