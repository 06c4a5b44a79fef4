"""JSON errors: every failure the lobby answers is ``{"error": code, "reason": text}``.

Handlers raise ``ApiError``; the lobby's middleware (``lobby.middlewares``) turns it, aiohttp's own
HTTP errors (unknown route, wrong method, body too large) and anything unexpected into JSON with
``error_response``. Never an HTML page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

# Codes for aiohttp's own errors, by status.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An error answer: status, a stable code for programs, a reason for people."""

    def __init__(
        self,
        status: int,
        code: str,
        reason: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {reason}")
        self.status = status
        self.code = code
        self.reason = reason
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> web.Response:
        return json_error(self.status, self.code, self.reason, headers=self.headers, extra=self.extra)


def json_error(
    status: int,
    code: str,
    reason: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> web.Response:
    body = {"error": code, "reason": reason, **(extra or {})}
    return web.json_response(body, status=status, headers=headers)


def bad_request(code: str, reason: str) -> ApiError:
    return ApiError(400, code, reason)


def error_response(request: web.Request, exc: Exception) -> web.Response:
    """The JSON answer for what a handler raised (``lobby.middlewares`` calls this in its
    ``except``): our ``ApiError``, aiohttp's HTTP errors, Redis down (503) or anything else
    (500, logged). Re-raises an ``HTTPException`` under 400 (a redirect is not an error)."""
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        code = _HTTP_CODES.get(exc.status, "http_error")
        return json_error(exc.status, code, exc.reason, headers=headers)
    if isinstance(exc, RedisError):
        log.warning("redis_unavailable", path=request.path, error=str(exc))
        return json_error(
            503, "unavailable", "storage is unavailable, retry shortly", headers={"Retry-After": "2"}
        )
    log.exception("request_failed", method=request.method, path=request.path)  # in the caller's except
    return json_error(500, "internal", "internal error")
