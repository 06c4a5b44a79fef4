"""Presence over HTTP: ``POST /v1/presence`` (a heartbeat) and ``GET /v1/presence/online``.

The beats are batched in memory and written by ``lobby.presence.PresenceBatcher``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from lobby.auth import require_player
from lobby.bodies import read_object, req_str
from lobby.context import lobby_of
from lobby.errors import bad_request


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    region: str

    @classmethod
    def parse(cls, data: dict[str, Any], regions: tuple[str, ...]) -> HeartbeatRequest:
        region = req_str(data, "region", max_len=32)
        if region not in regions:
            raise bad_request("unknown_region", f"region must be one of {list(regions)}")
        return cls(region=region)


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    accepted: bool  # False: the lobby is overloaded and dropped it; just beat again later
    interval_s: int  # when to beat next
    ttl_s: int  # online until this long after the last beat


@dataclass(frozen=True, slots=True)
class OnlineResponse:
    regions: dict[str, int]
    total: int
    ttl_s: int  # "online" means a heartbeat within this many seconds


async def heartbeat(request: web.Request) -> web.Response:
    lobby = lobby_of(request)
    player = require_player(request)
    body = HeartbeatRequest.parse(await read_object(request), lobby.settings.regions)
    accepted = lobby.presence.beat(player.player_id, body.region)
    settings = lobby.settings
    body_bytes = _answer_body(accepted, settings.heartbeat_interval_s, settings.presence_ttl_s)
    return web.Response(body=body_bytes, status=202, content_type="application/json", charset="utf-8")


@functools.lru_cache(maxsize=8)
def _answer_body(accepted: bool, interval_s: int, ttl_s: int) -> bytes:
    """The JSON of an answer: one of two, so encoded once each, not per heartbeat (keyed by plain
    values: hashing them is cheaper than building and hashing a ``HeartbeatResponse``)."""
    return json.dumps(asdict(HeartbeatResponse(accepted, interval_s, ttl_s))).encode()


async def online(request: web.Request) -> web.Response:
    lobby = lobby_of(request)
    counts = await lobby.presence.online()
    answer = OnlineResponse(counts, sum(counts.values()), lobby.settings.presence_ttl_s)
    return web.json_response(asdict(answer))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/presence", heartbeat)
    router.add_get("/v1/presence/online", online)
