"""Secrets from the environment: production (the default) refuses what anyone could know or guess."""

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from arena.settings import (
    ADMIN_TOKEN_MIN_CHARS,
    DEV_ADMIN_TOKEN,
    DEV_TOKEN_SECRET,
    TOKEN_SECRET_MIN_BYTES,
    Environment,
    SecretSettings,
    SettingsError,
)
from arena.startup import EXIT_BAD_SETTINGS, load_settings

SECRET = "s" * TOKEN_SECRET_MIN_BYTES
ADMIN = "a" * ADMIN_TOKEN_MIN_CHARS
GOOD = {"ARENA_TOKEN_SECRET": SECRET, "ARENA_ADMIN_TOKEN": ADMIN}
DEV_SECRET = DEV_TOKEN_SECRET.decode()


def test_production_unless_development_is_explicit() -> None:
    assert Environment.from_env({}) is Environment.PRODUCTION
    assert Environment.from_env({"ARENA_ENV": ""}) is Environment.PRODUCTION
    assert Environment.from_env({"ARENA_ENV": "production"}) is Environment.PRODUCTION
    assert Environment.from_env({"ARENA_ENV": " Development "}) is Environment.DEVELOPMENT
    for bad in ("dev", "prod", "staging", "1"):
        with pytest.raises(SettingsError, match="ARENA_ENV must be"):
            Environment.from_env({"ARENA_ENV": bad})


def test_production_takes_good_secrets() -> None:
    s = SecretSettings.from_env(GOOD)
    assert s.token_secret == SECRET.encode() and s.admin_token == ADMIN


@pytest.mark.parametrize(
    ("env", "variable", "problem"),
    [
        ({}, "ARENA_TOKEN_SECRET", "is not set"),
        ({"ARENA_ADMIN_TOKEN": ADMIN}, "ARENA_TOKEN_SECRET", "is not set"),
        ({**GOOD, "ARENA_TOKEN_SECRET": ""}, "ARENA_TOKEN_SECRET", "is not set"),
        ({**GOOD, "ARENA_TOKEN_SECRET": DEV_SECRET}, "ARENA_TOKEN_SECRET", "development default"),
        ({**GOOD, "ARENA_TOKEN_SECRET": SECRET[:-1]}, "ARENA_TOKEN_SECRET", "is 31 bytes, shorter than 32"),
        ({"ARENA_TOKEN_SECRET": SECRET}, "ARENA_ADMIN_TOKEN", "is not set"),
        ({**GOOD, "ARENA_ADMIN_TOKEN": DEV_ADMIN_TOKEN}, "ARENA_ADMIN_TOKEN", "development default"),
        ({**GOOD, "ARENA_ADMIN_TOKEN": ADMIN[:-1]}, "ARENA_ADMIN_TOKEN", "is 23 characters, shorter than 24"),
        ({**GOOD, "ARENA_ADMIN_TOKEN": SECRET}, "ARENA_ADMIN_TOKEN", "must differ from ARENA_TOKEN_SECRET"),
        ({**GOOD, "ARENA_ADMIN_TOKEN": "a" * 30 + " b"}, "ARENA_ADMIN_TOKEN", "bearer token68"),
    ],
)
def test_production_refuses_missing_default_short_and_unsendable_secrets(
    env: dict[str, str], variable: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        SecretSettings.from_env(env)
    message = str(caught.value)
    assert message.startswith(variable) and problem in message, message
    assert "\n" not in message
    for value in env.values():  # a secret's value is never repeated in an error (logs are read widely)
        assert len(value) < 8 or value not in message


def test_a_multibyte_secret_is_measured_in_bytes() -> None:
    SecretSettings.from_env({**GOOD, "ARENA_TOKEN_SECRET": "é" * 16})  # 32 bytes in UTF-8
    with pytest.raises(SettingsError, match="ARENA_TOKEN_SECRET is 30 bytes"):
        SecretSettings.from_env({**GOOD, "ARENA_TOKEN_SECRET": "é" * 15})


def test_a_process_checks_only_what_it_uses() -> None:
    placer = SecretSettings.from_env({"ARENA_ADMIN_TOKEN": ADMIN}, token_secret=False)  # matchmaker, director
    assert placer.admin_token == ADMIN
    reader = SecretSettings.from_env({"ARENA_TOKEN_SECRET": SECRET}, admin_token=False)  # tournament API
    assert reader.token_secret == SECRET.encode()
    with pytest.raises(SettingsError, match="ARENA_ADMIN_TOKEN is not set"):
        SecretSettings.from_env({"ARENA_TOKEN_SECRET": SECRET}, token_secret=False)


def test_development_allows_the_defaults_but_not_an_unsendable_token() -> None:
    dev = {"ARENA_ENV": "development"}
    s = SecretSettings.from_env(dev)
    assert (s.token_secret, s.admin_token) == (DEV_TOKEN_SECRET, DEV_ADMIN_TOKEN)
    assert SecretSettings.from_env(dev | {"ARENA_ADMIN_TOKEN": "short"}).admin_token == "short"
    with pytest.raises(SettingsError, match="ARENA_ADMIN_TOKEN must be one bearer token68 word"):
        SecretSettings.from_env(dev | {"ARENA_ADMIN_TOKEN": "two words"})
    assert SecretSettings.from_env(dev | {"ARENA_TOKEN_SECRET": "s" * 16}).token_secret == b"s" * 16
    with pytest.raises(SettingsError, match="ARENA_TOKEN_SECRET is 15 bytes: even in development"):
        SecretSettings.from_env(dev | {"ARENA_TOKEN_SECRET": "s" * 15})  # TokenSigner would refuse it


def test_settings_built_directly_are_not_checked() -> None:
    """Fixtures build settings themselves: only reading the environment checks."""
    assert SecretSettings(token_secret=b"test-secret-0123456789", admin_token="t").admin_token == "t"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """``load_settings`` configures logging as a process would: put the test session's back."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_load_settings_logs_one_json_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, restored_logging: None
) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with pytest.raises(SystemExit) as caught:
        load_settings(SecretSettings.from_env, {"ARENA_LOG_JSON": "1"})
    assert caught.value.code == EXIT_BAD_SETTINGS == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    assert event["event"] == "settings_invalid" and event["level"] == "error"
    assert event["error"].startswith("ARENA_TOKEN_SECRET is not set")


def test_load_settings_returns_good_settings() -> None:
    assert load_settings(SecretSettings.from_env, GOOD).admin_token == ADMIN
