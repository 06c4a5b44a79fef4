"""Creating races through a node's admin endpoint (``POST /admin/races``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from simulators.guard import require_loopback

__all__ = ["AdminError", "CreatedRace", "SeatTokens", "create_race"]


class AdminError(RuntimeError):
    """The node refused to create a race, or answered with something unexpected."""


@dataclass(frozen=True, slots=True)
class SeatTokens:
    player_id: str
    name: str
    player_token: str
    ticket: str


@dataclass(frozen=True, slots=True)
class CreatedRace:
    race_id: str
    node_id: str
    url: str  # the ws URL players connect to
    race_type: str
    passage_id: str
    seats: list[SeatTokens]


async def create_race(
    session: aiohttp.ClientSession,
    node_http_url: str,
    admin_token: str,
    names: list[str],
    *,
    race_type: str = "quick",
    custom_text: str | None = None,
    passage_id: str | None = None,
) -> CreatedRace:
    """Create a race with one reserved seat per name; returns each seat's tokens."""
    base = require_loopback(node_http_url).rstrip("/")
    body: dict[str, Any] = {"race_type": race_type, "players": [{"name": n} for n in names]}
    if custom_text is not None:
        body["custom_text"] = custom_text
    if passage_id is not None:
        body["passage_id"] = passage_id
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with session.post(f"{base}/admin/races", json=body, headers=headers) as resp:
        text = await resp.text()
        if resp.status != 201:
            raise AdminError(f"POST /admin/races answered {resp.status}: {text[:300]}")
        data = await resp.json(content_type=None)
    return _parse(data)


def _parse(data: Any) -> CreatedRace:
    try:
        seats = [
            SeatTokens(
                player_id=str(s["player_id"]),
                name=str(s["name"]),
                player_token=str(s["player_token"]),
                ticket=str(s["ticket"]),
            )
            for s in data["seats"]
        ]
        return CreatedRace(
            race_id=str(data["race_id"]),
            node_id=str(data["node_id"]),
            url=require_loopback(str(data["url"])),
            race_type=str(data["race_type"]),
            passage_id=str(data["passage_id"]),
            seats=seats,
        )
    except (KeyError, TypeError) as exc:
        raise AdminError(f"unexpected answer from /admin/races: {exc!r}") from None
