"""Reading request input: a JSON object body and its fields, query numbers, player names.

Every helper raises ``ApiError`` 400 with a reason naming the field, so each request body
dataclass parses itself in a few explicit lines.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from arena.codec import load_json
from lobby.errors import bad_request

NAME_MAX = 32  # the same bound nodes and tickets apply


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 400 ``bad_json`` or ``bad_body`` otherwise."""
    raw = await request.read()
    if not raw:
        raise bad_request("bad_json", "body must be a JSON object")
    try:
        data = load_json(raw)
    except ValueError:  # includes undecodable bytes
        raise bad_request("bad_json", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad_request("bad_body", "body must be a JSON object")
    return data


def opt_str(data: dict[str, Any], name: str, *, max_len: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"bad_{name}", f"{name} must be a string")
    if len(value) > max_len:
        raise bad_request(f"bad_{name}", f"{name} must be at most {max_len} characters")
    return value


def req_str(data: dict[str, Any], name: str, *, max_len: int) -> str:
    value = opt_str(data, name, max_len=max_len)
    if value is None or value == "":
        raise bad_request(f"bad_{name}", f"{name} is required")
    return value


def player_name(data: dict[str, Any]) -> str:
    """A display name: 1 to 32 printable characters, ends trimmed."""
    name = req_str(data, "name", max_len=256).strip()
    if not 1 <= len(name) <= NAME_MAX or not name.isprintable():
        raise bad_request("bad_name", f"name must be 1 to {NAME_MAX} printable characters")
    return name


def query_wait(request: web.Request, max_s: float) -> float:
    """``?wait=SECONDS`` for long-polls: absent is 0, more than ``max_s`` is cut to it."""
    raw = request.query.get("wait")
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise bad_request("bad_wait", "wait must be a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise bad_request("bad_wait", "wait must be a number of seconds >= 0")
    return min(value, max_s)


def query_int(request: web.Request, name: str) -> int | None:
    """An integer query parameter; None when absent. Present but empty or not a number: 400."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"bad_{name}", f"{name} must be an integer") from None
