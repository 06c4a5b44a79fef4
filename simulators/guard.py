"""Where simulated load may go: loopback only (a workplace rule, not a technical limit)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["NotLoopbackError", "is_loopback_url", "require_loopback"]

_ALLOWED_SCHEMES = frozenset({"http", "https", "ws", "wss"})


class NotLoopbackError(ValueError):
    """A URL that would send simulated load off this machine."""


def is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in _ALLOWED_SCHEMES or not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # any other host name
        return False


def require_loopback(url: str) -> str:
    """Return ``url`` if it points at this machine (127.0.0.0/8, ::1, localhost), else raise."""
    if not is_loopback_url(url):
        raise NotLoopbackError(
            f"refusing {url!r}: simulated players may only connect to loopback "
            "(127.0.0.1, ::1 or localhost) over http(s) or ws(s)"
        )
    return url
