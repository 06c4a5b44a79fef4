"""Signed, expiring tokens: who a player is, and which seat on which node they hold.

Format: ``v1.<base64url(JSON payload)>.<base64url(HMAC-SHA256(secret, "v1." + payload))>``.
The payload's ``k`` says the kind, so a player token can never be used as a join ticket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from collections import OrderedDict
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
        player = self.verify_player_signature(token)
        if self.expired(player.expires_at):
            raise TokenError("token expired", expired=True)
        return player

    def verify_player_signature(self, token: str) -> PlayerToken:
        """Everything ``verify_player`` checks but the expiry (``PlayerTokenCache`` checks it per use)."""
        data = self._verify(token, TokenKind.PLAYER, check_expiry=False)
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

    def expired(self, expires_at: int) -> bool:
        return expires_at < self._clock()

    def _sign(self, payload: dict[str, Any]) -> str:
        body = _b64encode(json.dumps(payload, separators=(",", ":")).encode())
        signed = f"{_VERSION}.{body}"
        return f"{signed}.{_b64encode(self._mac(signed))}"

    def _verify(self, token: str, kind: TokenKind, *, check_expiry: bool = True) -> dict[str, Any]:
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
        if check_expiry and _field(data, "e", int) < self._clock():
            raise TokenError("token expired", expired=True)
        return data

    def _mac(self, signed: str) -> bytes:
        return hmac.new(self._secret, signed.encode(), hashlib.sha256).digest()


class PlayerTokenCache:
    """Player tokens already verified, so a token seen again costs a lookup instead of an HMAC,
    two base64 decodings and a ``json.loads`` (~9 % of a heartbeat's CPU, issue 19).

    - Only tokens whose signature, kind and fields verified are stored (a bad token raises and
      is never cached), keyed by the exact token string: a changed byte is a different key.
    - The expiry is checked on every use, against the same clock, so a cached token stops
      working at the same second an uncached one would.
    - Bounded twice: at most ``max_size`` entries (least recently used out first; 0 = off), and
      an entry unused for ``idle_s`` seconds is dropped (oldest first, a few per call), so the
      cache holds the players active lately, not every player the lobby ever saw: a churning
      population kept the lobby's memory climbing toward the size bound (issue 21's soak).
    - No timing oracle: a lookup compares strings only when their hashes are equal, and str
      hashes are SipHash with a per-process random key, so a forged token cannot be steered
      next to a cached one; a miss takes the constant-time ``hmac.compare_digest`` path.
    """

    PRUNE_PER_CALL = 8  # idle entries dropped per call at most: a call's cost stays bounded

    def __init__(
        self,
        signer: TokenSigner,
        *,
        max_size: int,
        idle_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._signer = signer
        self._max_size = max_size
        self._idle_s = idle_s
        self._clock = clock
        # token -> (player, last use); order = least recently used first.
        self._entries: OrderedDict[str, tuple[PlayerToken, float]] = OrderedDict()
        self._hits = self._misses = 0
        # No entry can be idle before this time: the oldest entry's last use + idle_s, known at the
        # last prune (the oldest only gets younger: uses move entries to the end with a later time).
        # A hit skips the prune's walk until then (~1 of ~2 us per hit, issue 19).
        self._prune_at = -math.inf

    def verify_player(self, token: str) -> PlayerToken:
        player = self._cached(token) if self._max_size > 0 else self._signer.verify_player_signature(token)
        if self._signer.expired(player.expires_at):
            raise TokenError("token expired", expired=True)
        return player

    def _cached(self, token: str) -> PlayerToken:
        now = self._clock()
        entries = self._entries
        hit = entries.get(token)
        if hit is not None:
            self._hits += 1
            player = hit[0]
            entries.move_to_end(token)
        else:
            player = self._signer.verify_player_signature(token)  # raises: never cached
            self._misses += 1
            if len(entries) >= self._max_size:
                entries.popitem(last=False)
        entries[token] = (player, now)
        if now >= self._prune_at:
            self._prune(now)
        return player

    def _prune(self, now: float) -> None:
        entries = self._entries
        for _ in range(self.PRUNE_PER_CALL):
            oldest = next(iter(entries.values()), None)
            if oldest is None:
                self._prune_at = now + self._idle_s
                return
            if now - oldest[1] < self._idle_s:
                self._prune_at = oldest[1] + self._idle_s
                return
            entries.popitem(last=False)
        # The budget is spent with idle entries maybe left: _prune_at stays due, the next call goes on.

    def stats(self) -> tuple[int, int, int]:
        """(hits, misses, entries) since start; all 0 when the cache is off."""
        return (self._hits, self._misses, len(self._entries))


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
