"""Reading a process's settings at start-up: a bad one is one clear error line and exit 2.

Every ``__main__`` reads its settings through ``load_settings``, so a missing or unusable
setting (``arena.settings.SettingsError``, or a section's own ``ValueError``: a production secret
that is missing, the public development default or short; a malformed number) never starts a
process and never ends it in a traceback. The line is logged as the process would log (JSON
with ``ARENA_LOG_JSON=1``): event ``settings_invalid``, ``error`` naming the variable, never a
secret's value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import structlog

from arena.logs import configure_logging
from arena.settings import LogSettings, SettingsError, environ

EXIT_BAD_SETTINGS = 2
T = TypeVar("T")


def load_settings(read: Callable[[Mapping[str, str]], T], env: Mapping[str, str] | None = None) -> T:
    """``read(env)`` (a settings class's ``from_env``); on ``SettingsError`` (or a ``ValueError``
    some section's own checks raise) log it and exit 2."""
    env = environ() if env is None else env
    try:
        return read(env)
    except ValueError as exc:  # SettingsError is one
        try:
            log_settings = LogSettings.from_env(env)
        except SettingsError:  # the log settings themselves are bad: the readable default
            log_settings = LogSettings()
        configure_logging(log_settings)
        # A fresh logger: a module-level one caches its first configuration (and its stderr).
        structlog.get_logger(__name__).error("settings_invalid", error=str(exc))
        raise SystemExit(EXIT_BAD_SETTINGS) from None
