"""Signed, expiring tokens: who a player is, and which seat on which node they hold.

Format: ``v1.<base64url(JSON payload)>.<base64url(HMAC-SHA256(secret, "v1." + payload))>``.
The payload's ``k`` says the kind, so a player token can never be used as a join ticket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from arena.ids import NodeId, PlayerId, RaceId

_VERSION = "v1"


class TokenKind(StrEnum):
    PLAYER = "player"
    JOIN = "join"


class TokenError(ValueError):
    """The token cannot be used; ``expired`` tells an old token from a bad one."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class PlayerToken:
    player_id: PlayerId
    name: str
    guest: bool
    expires_at: int  # unix seconds


@dataclass(frozen=True, slots=True)
class JoinTicket:
    player_id: PlayerId
    name: str
    race_id: RaceId
    node_id: NodeId
    expires_at: int  # unix seconds


class TokenSigner:
    """Signs and verifies tokens with one shared secret (a setting, never in code)."""

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("token secret must be at least 16 bytes")
        self._secret = secret
        self._clock = clock

    def sign_player(self, player_id: PlayerId, name: str, *, ttl_s: int, guest: bool) -> str:
        exp = int(self._clock()) + ttl_s
        return self._sign({"k": TokenKind.PLAYER.value, "p": player_id, "n": name, "g": guest, "e": exp})

    def sign_join(
        self, player_id: PlayerId, name: str, race_id: RaceId, node_id: NodeId, *, ttl_s: int
    ) -> str:
        exp = int(self._clock()) + ttl_s
        payload = {"k": TokenKind.JOIN.value, "p": player_id, "n": name, "r": race_id, "o": node_id, "e": exp}
        return self._sign(payload)

    def verify_player(self, token: str) -> PlayerToken:
        data = self._verify(token, TokenKind.PLAYER)
        return PlayerToken(
            player_id=PlayerId(_field(data, "p", str)),
            name=_field(data, "n", str),
            guest=_field(data, "g", bool),
            expires_at=_field(data, "e", int),
        )

    def verify_join(self, token: str) -> JoinTicket:
        data = self._verify(token, TokenKind.JOIN)
        return JoinTicket(
            player_id=PlayerId(_field(data, "p", str)),
            name=_field(data, "n", str),
            race_id=RaceId(_field(data, "r", str)),
            node_id=NodeId(_field(data, "o", str)),
            expires_at=_field(data, "e", int),
        )

    def _sign(self, payload: dict[str, Any]) -> str:
        body = _b64encode(json.dumps(payload, separators=(",", ":")).encode())
        signed = f"{_VERSION}.{body}"
        return f"{signed}.{_b64encode(self._mac(signed))}"

    def _verify(self, token: str, kind: TokenKind) -> dict[str, Any]:
        if not isinstance(token, str) or len(token) > 2048:
            raise TokenError("malformed token")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            raise TokenError("malformed token")
        try:
            mac = _b64decode(parts[2])
        except ValueError:
            raise TokenError("malformed token") from None
        if not hmac.compare_digest(mac, self._mac(f"{parts[0]}.{parts[1]}")):
            raise TokenError("bad token signature")
        try:
            data = json.loads(_b64decode(parts[1]))
        except ValueError:
            raise TokenError("malformed token") from None
        if not isinstance(data, dict) or data.get("k") != kind.value:
            raise TokenError(f"not a {kind.value} token")
        if _field(data, "e", int) < self._clock():
            raise TokenError("token expired", expired=True)
        return data

    def _mac(self, signed: str) -> bytes:
        return hmac.new(self._secret, signed.encode(), hashlib.sha256).digest()


def _field(data: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TokenError("malformed token")
    return value


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("bad base64") from exc
