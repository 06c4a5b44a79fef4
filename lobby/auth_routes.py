"""Accounts over HTTP: guest and named player tokens.

- ``POST /v1/guests {name}``: a guest token, nothing stored.
- ``POST /v1/players {name, password}``: register a named player (``lobby.auth.AccountStore``).
- ``POST /v1/sessions {name, password}``: log in.

All three answer ``{player_id, name, guest, token, expires_at}``. Tokens are the shared
``arena.tokens`` player tokens, so nodes accept them in ``hello`` as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from arena.ids import PlayerId, new_player_id
from lobby.auth import PASSWORD_MAX, PASSWORD_MIN, NameTaken
from lobby.bodies import player_name, read_object, req_str
from lobby.context import lobby_of
from lobby.errors import ApiError, bad_request


@dataclass(frozen=True, slots=True)
class GuestRequest:
    name: str

    @classmethod
    def parse(cls, data: dict[str, Any]) -> GuestRequest:
        return cls(name=player_name(data))


@dataclass(frozen=True, slots=True)
class CredentialsRequest:
    name: str
    password: str

    @classmethod
    def parse(cls, data: dict[str, Any]) -> CredentialsRequest:
        name = player_name(data)
        password = req_str(data, "password", max_len=PASSWORD_MAX)
        return cls(name=name, password=password)


@dataclass(frozen=True, slots=True)
class SessionResponse:
    player_id: str
    name: str
    guest: bool
    token: str
    expires_at: int  # unix seconds


def _session(request: web.Request, player_id: PlayerId, name: str, *, guest: bool) -> SessionResponse:
    lobby = lobby_of(request)
    token = lobby.signer.sign_player(player_id, name, ttl_s=lobby.settings.token_ttl_s, guest=guest)
    verified = lobby.signer.verify_player(token)
    return SessionResponse(player_id, name, guest, token, verified.expires_at)


async def create_guest(request: web.Request) -> web.Response:
    body = GuestRequest.parse(await read_object(request))
    session = _session(request, new_player_id(), body.name, guest=True)
    return web.json_response(asdict(session), status=201)


async def register(request: web.Request) -> web.Response:
    body = CredentialsRequest.parse(await read_object(request))
    if len(body.password) < PASSWORD_MIN:
        raise bad_request("bad_password", f"password must be at least {PASSWORD_MIN} characters")
    try:
        account = await lobby_of(request).accounts.register(body.name, body.password)
    except NameTaken:
        raise ApiError(409, "name_taken", "a player with this name exists; log in or pick another") from None
    session = _session(request, account.player_id, account.name, guest=False)
    return web.json_response(asdict(session), status=201)


async def login(request: web.Request) -> web.Response:
    lobby = lobby_of(request)
    body = CredentialsRequest.parse(await read_object(request))
    if lobby.settings.login_attempts > 0:  # password guessing: the IP limit alone allows 1,000 a minute
        verdict = await lobby.limiter.count([("login", body.name.casefold(), lobby.settings.login_attempts)])
        if not verdict.allowed:
            lobby.metrics.rate_limited.labels("login").inc()
            return lobby.limiter.refusal(verdict)
    account = await lobby.accounts.login(body.name, body.password)
    if account is None:
        raise ApiError(401, "bad_credentials", "unknown name or wrong password")
    session = _session(request, account.player_id, account.name, guest=False)
    return web.json_response(asdict(session))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/guests", create_guest)
    router.add_post("/v1/players", register)
    router.add_post("/v1/sessions", login)
