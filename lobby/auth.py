"""Who a player is: accounts (scrypt hashes in Redis) and the player a request carries.

The HTTP side lives in handler modules that read the running lobby: ``lobby.auth_routes``
(``POST /v1/guests``, ``/v1/players``, ``/v1/sessions``) and ``lobby.middlewares`` (the
middleware that verifies ``Authorization`` and sets what ``current_player`` reads). This
module imports nothing of ``lobby.context``, so ``Lobby`` can name ``AccountStore`` plainly.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from aiohttp import web

from arena import keys
from arena.bearer import CHALLENGE
from arena.clock import now_ms
from arena.ids import PlayerId, new_player_id
from arena.redisutil import text_map
from arena.tokens import PlayerToken, TokenError
from lobby.errors import ApiError

log = structlog.get_logger(__name__)

PLAYER_KEY = web.RequestKey("player", PlayerToken)
AUTH_ERROR_KEY = web.RequestKey("auth_error", TokenError)

PASSWORD_MIN = 8
PASSWORD_MAX = 256
_SCRYPT_R = 8
_SCRYPT_P = 1
_HASHES_AT_ONCE = 4  # each scrypt holds 128 * n * r bytes (16 MiB by default): bound the total

# KEYS[1] account hash. ARGV: field/value pairs. Returns 0 if the name is taken.
_REGISTER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


# ---- passwords (pure) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PasswordHash:
    salt: bytes
    digest: bytes
    n: int  # scrypt parameters are stored with the hash, so the cost can change later
    r: int
    p: int


def hash_password(password: str, *, n: int, salt: bytes | None = None) -> PasswordHash:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, _SCRYPT_R, _SCRYPT_P)
    return PasswordHash(salt=salt, digest=digest, n=n, r=_SCRYPT_R, p=_SCRYPT_P)


def check_password(password: str, stored: PasswordHash) -> bool:
    digest = _scrypt(password, stored.salt, stored.n, stored.r, stored.p)
    return hmac.compare_digest(digest, stored.digest)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    maxmem = 256 * n * r * p + (1 << 20)  # OpenSSL needs ~128 * n * r * p; the default cap is 32 MiB
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=32)


# ---- accounts in Redis -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    player_id: PlayerId
    name: str


class NameTaken(Exception):
    pass


class AccountStore:
    """Named players: ``account:{name}`` hashes keyed by the case-folded name."""

    def __init__(self, redis: aioredis.Redis, *, scrypt_n: int) -> None:
        self._redis = redis
        self._scrypt_n = scrypt_n
        self._register = redis.register_script(_REGISTER)
        self._slots = asyncio.Semaphore(_HASHES_AT_ONCE)
        # Unknown names are checked against this, so a miss costs what a hit costs.
        self._dummy = hash_password("not a real password", n=scrypt_n)

    async def register(self, name: str, password: str) -> Account:
        hashed = await self._hash(password)
        account = Account(new_player_id(), name)
        fields: dict[str, str | int] = {
            "player_id": account.player_id,
            "name": name,
            "salt": hashed.salt.hex(),
            "hash": hashed.digest.hex(),
            "n": hashed.n,
            "r": hashed.r,
            "p": hashed.p,
            "created_at": now_ms(),
        }
        args = [item for pair in fields.items() for item in pair]
        if not int(await self._register(keys=[keys.account(name.casefold())], args=args)):
            raise NameTaken(name)
        log.info("player_registered", player_id=account.player_id)
        return account

    async def login(self, name: str, password: str) -> Account | None:
        raw = await self._redis.hgetall(keys.account(name.casefold()))
        d = text_map(raw)
        stored = _stored_hash(d) if d else None
        ok = await self._check(password, stored or self._dummy)
        if stored is None or not ok:
            return None
        return Account(PlayerId(d["player_id"]), d["name"])

    async def _hash(self, password: str) -> PasswordHash:
        async with self._slots:
            return await asyncio.to_thread(hash_password, password, n=self._scrypt_n)

    async def _check(self, password: str, stored: PasswordHash) -> bool:
        async with self._slots:
            return await asyncio.to_thread(check_password, password, stored)


def _stored_hash(d: dict[str, str]) -> PasswordHash | None:
    try:
        return PasswordHash(
            salt=bytes.fromhex(d["salt"]),
            digest=bytes.fromhex(d["hash"]),
            n=int(d["n"]),
            r=int(d["r"]),
            p=int(d["p"]),
        )
    except (KeyError, ValueError):
        log.warning("account_unreadable", player_id=d.get("player_id"))
        return None


# ---- the player a request carries (set by lobby.middlewares.authenticate) ---------


def current_player(request: web.Request) -> PlayerToken | None:
    # request.get() is untyped; the key lookup keeps the RequestKey's type
    if PLAYER_KEY in request:
        return request[PLAYER_KEY]
    return None


def require_player(request: web.Request) -> PlayerToken:
    player = current_player(request)
    if player is not None:
        return player
    error: TokenError | None = request.get(AUTH_ERROR_KEY, None)
    headers = {"WWW-Authenticate": CHALLENGE}
    if error is None:
        raise ApiError(401, "unauthorized", "Authorization: Bearer <token> is required", headers=headers)
    if error.expired:
        raise ApiError(401, "token_expired", "the token expired; get a new one", headers=headers)
    raise ApiError(401, "bad_token", str(error), headers=headers)
