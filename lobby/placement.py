"""Placing a private race on a node: the accepting node of the region with the most free seats.

Same protocol as the matchmaker's ``NodePlacer`` (``POST {http_url}/admin/races`` with the admin
token, 201 with the seats' tokens), plus the ``custom_text`` a private race may carry, which
``NodePlacer`` does not send. A node that refuses or does not answer is skipped for the next
one, up to ``attempts`` nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from arena.registry import NodeInfo
from lobby.nodes import NodeWatch

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SeatRequest:
    player_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Seat:
    player_token: str
    ticket: str  # the join ticket


@dataclass(frozen=True, slots=True)
class PlacedRace:
    race_id: str
    node_id: str
    url: str  # the node's WebSocket URL
    region: str
    seats: dict[str, Seat]  # by player id


class RacePlacer:
    def __init__(
        self,
        nodes: NodeWatch,
        http: aiohttp.ClientSession,
        admin_token: str,
        *,
        timeout_s: float = 2.0,
        attempts: int = 3,
    ) -> None:
        self._nodes = nodes
        self._http = http
        self._headers = {"Authorization": f"Bearer {admin_token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._attempts = attempts

    async def place(
        self, race_type: str, region: str, players: Sequence[SeatRequest], *, custom_text: str | None = None
    ) -> PlacedRace | None:
        """Create the race on a node of ``region``; None if no node could take it."""
        candidates = [
            n for n in await self._nodes.live(region) if n.accepting and n.free_seats >= len(players)
        ]
        candidates.sort(key=lambda n: (-n.free_seats, n.node_id))
        for node in candidates[: self._attempts]:
            placed = await self._create(node, race_type, players, custom_text)
            if placed is not None:
                return placed
        if candidates:
            self._nodes.forget()  # what we knew was wrong: read the registry afresh next time
        log.warning("private_race_unplaced", region=region, candidates=len(candidates))
        return None

    async def _create(
        self, node: NodeInfo, race_type: str, players: Sequence[SeatRequest], custom_text: str | None
    ) -> PlacedRace | None:
        body: dict[str, Any] = {
            "race_type": race_type,
            "players": [{"id": p.player_id, "name": p.name} for p in players],
        }
        if custom_text is not None:
            body["custom_text"] = custom_text
        url = f"{node.http_url.rstrip('/')}/admin/races"
        try:
            async with self._http.post(url, json=body, headers=self._headers, timeout=self._timeout) as resp:
                if resp.status == 201:
                    return _parse(await resp.json(), node)
                detail = (await resp.text())[:200]
                log.warning("node_refused_race", node_id=node.node_id, status=resp.status, detail=detail)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("node_unreachable", node_id=node.node_id, error=repr(exc))
        except (ValueError, KeyError, TypeError) as exc:  # a 201 we cannot read: its seats just expire
            log.warning("node_bad_answer", node_id=node.node_id, error=repr(exc))
        return None


def _parse(data: Any, node: NodeInfo) -> PlacedRace:
    seats = {str(s["player_id"]): Seat(str(s["player_token"]), str(s["ticket"])) for s in data["seats"]}
    return PlacedRace(
        race_id=str(data["race_id"]),
        node_id=str(data["node_id"]),
        url=str(data["url"]),
        region=node.region,
        seats=seats,
    )
