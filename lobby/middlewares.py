"""The lobby's one request middleware, which reads the running lobby (``lobby.context``).

It does, in this order, what four middlewares did (outermost first): metrics (route, method, final
status, duration), JSON errors (``lobby.errors.error_response``), the bearer token, then the rate
limits (against the IP, and the player when known). One coroutine frame instead of four (plus
aiohttp's wrapper per layer) and the token's player passed on in a local: the heartbeat is the
lobby's hottest path (issue 19). The stores it uses (``lobby.auth``, ``lobby.ratelimit``) import
nothing of ``lobby.context``.
"""

from __future__ import annotations

import time

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from arena.bearer import BearerError, bearer_token
from arena.tokens import PlayerToken, TokenError
from lobby.auth import AUTH_ERROR_KEY, PLAYER_KEY
from lobby.context import Lobby, lobby_of
from lobby.errors import error_response
from lobby.metrics import LobbyMetrics
from lobby.ratelimit import Verdict

LIMITED_PREFIX = "/v1/"  # health, readiness and metrics are never limited


def lobby_middleware(metrics: LobbyMetrics) -> Middleware:
    """The middleware of a lobby app whose request metrics go to ``metrics``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500  # a request cancelled mid-way (its client left) counts as before: 500
        try:
            try:
                player = authenticate(request)
                response: web.StreamResponse | None = None
                if request.path.startswith(LIMITED_PREFIX):
                    lobby = lobby_of(request)
                    limiter = lobby.limiter
                    ip, player_id = rate_subjects(request, lobby, player)
                    if limiter.batched:  # counted in memory (lobby/ratelimit.py): no await
                        verdict = limiter.check_local(ip, player_id)
                    else:
                        verdict = await limiter.check(ip, player_id)
                    if not verdict.allowed:
                        response = refusal(lobby, verdict)
                if response is None:
                    response = await handler(request)
            except Exception as exc:  # ApiError, aiohttp's HTTP errors, Redis, anything: JSON
                response = error_response(request, exc)  # re-raises redirects (not errors)
            status = response.status
            return response
        except web.HTTPException as exc:  # a redirect
            status = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"  # bounded: a template
            metrics.answered(route, request.method, status, time.perf_counter() - started)

    return middleware


def authenticate(request: web.Request) -> PlayerToken | None:
    """Verify a bearer token if one is sent; handlers that need a player call ``require_player``.

    A bad token is only remembered here, not refused: the rate limiter counts the request
    against the IP first, so a flood of forged tokens is limited like any other flood.
    """
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        return None
    try:
        player = lobby_of(request).player_tokens.verify_player(bearer_token(header))
    except BearerError as exc:  # not exactly 'Bearer <token>' (arena.bearer)
        request[AUTH_ERROR_KEY] = TokenError(str(exc))
        return None
    except TokenError as exc:
        request[AUTH_ERROR_KEY] = exc
        return None
    request[PLAYER_KEY] = player
    return player


def rate_subjects(request: web.Request, lobby: Lobby, player: PlayerToken | None) -> tuple[str, str | None]:
    """Who a request counts against: its client IP and its player (None without a valid token)."""
    # The peer address is read only when the per-IP limit is on (a socket lookup per request).
    ip = client_ip(request, lobby.settings.trusted_proxy_header) if lobby.limiter.per_ip > 0 else ""
    return ip, player.player_id if player is not None else None


def refusal(lobby: Lobby, verdict: Verdict) -> web.Response:
    """The 429 answer of a refused request, counted by scope."""
    lobby.metrics.rate_limited.labels(verdict.scope or "ip").inc()
    return lobby.limiter.refusal(verdict)


def client_ip(request: web.Request, trusted_header: str) -> str:
    """The client's address: the trusted proxy header's last entry if configured, else the peer."""
    if trusted_header:
        value = request.headers.get(trusted_header, "")
        last = value.rsplit(",", 1)[-1].strip()
        if last:
            return last[:64]
    return request.remote or "unknown"
