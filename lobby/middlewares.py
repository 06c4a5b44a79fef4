"""The lobby's own request middlewares, which read the running lobby (``lobby.context``).

``app.build_app`` orders them, outermost first: metrics, JSON errors (``lobby.errors``), then
``auth_middleware`` (reads the bearer token) and ``rate_limit_middleware`` (counts against
the IP, and the player when known). The stores they use (``lobby.auth``, ``lobby.ratelimit``)
import nothing of ``lobby.context``.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from arena.bearer import BearerError, bearer_token
from arena.tokens import TokenError
from lobby.auth import AUTH_ERROR_KEY, PLAYER_KEY, current_player
from lobby.context import lobby_of

LIMITED_PREFIX = "/v1/"  # health, readiness and metrics are never limited


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Verify a bearer token if one is sent; handlers that need a player call ``require_player``.

    A bad token is only remembered here, not refused: the rate limiter counts the request
    against the IP first, so a flood of forged tokens is limited like any other flood.
    """
    header = request.headers.get("Authorization")
    if header is not None:
        try:
            request[PLAYER_KEY] = lobby_of(request).player_tokens.verify_player(bearer_token(header))
        except BearerError as exc:  # not exactly 'Bearer <token>' (arena.bearer)
            request[AUTH_ERROR_KEY] = TokenError(str(exc))
        except TokenError as exc:
            request[AUTH_ERROR_KEY] = exc
    return await handler(request)


def client_ip(request: web.Request, trusted_header: str) -> str:
    """The client's address: the trusted proxy header's last entry if configured, else the peer."""
    if trusted_header:
        value = request.headers.get(trusted_header, "")
        last = value.rsplit(",", 1)[-1].strip()
        if last:
            return last[:64]
    return request.remote or "unknown"


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(LIMITED_PREFIX):
        return await handler(request)
    lobby = lobby_of(request)
    player = current_player(request)
    ip = client_ip(request, lobby.settings.trusted_proxy_header)
    verdict = await lobby.limiter.check(ip, player.player_id if player else None)
    if verdict.allowed:
        return await handler(request)
    lobby.metrics.rate_limited.labels(verdict.scope or "ip").inc()
    return lobby.limiter.refusal(verdict)
