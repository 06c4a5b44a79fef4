"""Reading ``Authorization: Bearer <token>``, strictly, for every endpoint that takes a token.

The one accepted form is the scheme ``Bearer`` (any case, RFC 7235 section 2.1), exactly one
space, then a token68 (RFC 6750 section 2.1: letters, digits, ``-._~+/``, then optional ``=``
padding). Anything else is refused, never guessed at: a raw token without the scheme, another
scheme (``Basic``), extra or missing spaces, a second value, characters outside token68, a
token longer than ``MAX_TOKEN_CHARS``.

``admin_refusal`` checks an admin token, compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
import re

MAX_TOKEN_CHARS = 4096  # player tokens are ~250 characters, admin tokens a few dozen
CHALLENGE = 'Bearer realm="arena"'  # the WWW-Authenticate value of a 401

_BEARER = re.compile(r"(?i:bearer) ([A-Za-z0-9\-._~+/]+=*)", re.ASCII)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*", re.ASCII)


class BearerError(ValueError):
    """No usable bearer token; ``missing`` tells an absent header from a malformed one."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.missing = missing


def is_token68(value: str) -> bool:
    """Whether ``value`` can be sent as a bearer token at all (settings check their tokens with it)."""
    return len(value) <= MAX_TOKEN_CHARS and _TOKEN68.fullmatch(value) is not None


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization`` header value; ``BearerError`` if absent or not exactly
    ``Bearer <token68>``."""
    if header is None:
        raise BearerError("Authorization: Bearer <token> is required", missing=True)
    match = _BEARER.fullmatch(header) if len(header) <= MAX_TOKEN_CHARS + 7 else None
    if match is None:
        raise BearerError("Authorization must be exactly 'Bearer <token>'")
    return match.group(1)


def admin_refusal(header: str | None, expected: str) -> str | None:
    """None if the header is exactly ``Bearer <expected>`` (compared in constant time), else the
    reason to refuse it with."""
    try:
        given = bearer_token(header)
    except BearerError as exc:
        return "the admin bearer token is required" if exc.missing else str(exc)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return "wrong admin token"
    return None
