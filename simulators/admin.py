"""Creating races through a node's admin endpoint (``POST /admin/races``), on the node's admin
listener (``ARENA_NODE_ADMIN_HOST``/``PORT``; the players' listener answers 404 there)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from simulators.guard import require_loopback

__all__ = ["AdminError", "CreatedRace", "SeatTokens", "create_race"]


class AdminError(RuntimeError):
    """The node refused to create a race, or answered with something unexpected.

    ``status`` is the HTTP status (None: the answer did not parse) and ``code`` the error code
    of the body (``draining``); ``retryable`` says whether asking again later may succeed.
    """

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def retryable(self) -> bool:
        """5xx (503 ``draining``, a node restarting behind a proxy) and 429; not 4xx."""
        return self.status is not None and (self.status >= 500 or self.status == 429)

    @property
    def kind(self) -> str:
        """A short bounded label for reports: ``503_draining``."""
        return f"{self.status}_{self.code}" if self.code else str(self.status)


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
    node_admin_url: str,
    admin_token: str,
    names: list[str],
    *,
    race_type: str = "quick",
    custom_text: str | None = None,
    passage_id: str | None = None,
) -> CreatedRace:
    """Create a race with one reserved seat per name; returns each seat's tokens."""
    base = require_loopback(node_admin_url).rstrip("/")
    body: dict[str, Any] = {"race_type": race_type, "players": [{"name": n} for n in names]}
    if custom_text is not None:
        body["custom_text"] = custom_text
    if passage_id is not None:
        body["passage_id"] = passage_id
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with session.post(f"{base}/admin/races", json=body, headers=headers) as resp:
        text = await resp.text()
        if resp.status != 201:
            raise AdminError(
                f"POST /admin/races answered {resp.status}: {text[:300]}", resp.status, _error_code(text)
            )
        data = await resp.json(content_type=None)
    return _parse(data)


def _error_code(text: str) -> str:
    """The ``error`` field of a JSON error body, if it has one (a bounded label)."""
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    code = data.get("error") if isinstance(data, dict) else None
    return code[:40] if isinstance(code, str) and code.isidentifier() else ""


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
