"""Placing a race on a gameserver node: pick a node by load, reserve the seats.

Used by the matchmaker (formed races), the lobby (private races) and the tournament director
(heats).

``NodePlacer`` reads live nodes from the registry (cached briefly), prefers the node with
the most free seats, never a draining or dead one, and asks it over its admin API to create
the race (``POST /admin/races`` on its admin listener, ``NodeInfo.admin_url``). A node that
answers 503 (draining) or does not answer is avoided for a while and the next one is tried.
Reserved seats expire on the node: a player who never comes is simply not waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import structlog

from arena.registry import NodeInfo, NodeRegistry
from arena.settings import SecretSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SeatRequest:
    player_id: str
    name: str


@dataclass(frozen=True, slots=True)
class ReservedSeat:
    player_token: str
    join_ticket: str


@dataclass(frozen=True, slots=True)
class Placed:
    race_id: str
    node_id: str
    url: str  # the node's WebSocket URL
    region: str
    seats: dict[str, ReservedSeat]  # by player id
    text: str = ""  # a typing test's text (the node answers it for tests only)


class Placer(Protocol):
    async def place(
        self,
        race_type: str,
        regions: Sequence[str],
        players: Sequence[SeatRequest],
        *,
        custom_text: str | None = None,
        heat: dict[str, Any] | None = None,
        passage_id: str | None = None,
        ghosts: Sequence[dict[str, Any]] = (),
        daily: str | None = None,
    ) -> Placed | None:
        """Create the race in the first of ``regions`` that has room; None if none could."""
        ...


class NodePlacer:
    """Reserves seats on real nodes through their admin endpoint."""

    def __init__(
        self,
        registry: NodeRegistry,
        http: aiohttp.ClientSession,
        admin_token: str,
        *,
        timeout_s: float = 2.0,
        attempts: int = 3,
        refresh_s: float = 0.5,
        avoid_s: float = 5.0,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        """``on_failure(reason)`` is told of every failed attempt (for the caller's metrics)."""
        self._registry = registry
        self._http = http
        self._headers = {"Authorization": f"Bearer {admin_token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._attempts = attempts
        self._refresh_s = refresh_s
        self._avoid_s = avoid_s
        self._on_failure = on_failure
        self._nodes: list[NodeInfo] = []
        self._nodes_at = -float("inf")
        self._refresh_lock = asyncio.Lock()
        self._reserved: dict[str, int] = {}  # seats we reserved since the last refresh, per node
        self._avoid_until: dict[str, float] = {}  # node id -> loop time

    async def place(
        self,
        race_type: str,
        regions: Sequence[str],
        players: Sequence[SeatRequest],
        *,
        custom_text: str | None = None,
        heat: dict[str, Any] | None = None,
        passage_id: str | None = None,
        ghosts: Sequence[dict[str, Any]] = (),
        daily: str | None = None,
        test_mode: str | None = None,
    ) -> Placed | None:
        """Create the race in the first of ``regions`` that has room; None if none could.

        ``custom_text``: a custom race's passage; ``heat``: {tournament_id, round, heat};
        ``passage_id``: this passage of the corpus; ``ghosts``: keystroke logs to race against
        (``gameserver.ghost``: {name, keys, key_times, race_id, player_id}); ``daily``: the day
        (YYYY-MM-DD) of the daily challenge this race is an attempt at; ``test_mode``: a typing
        test's mode (``arena.typing_tests``; one player).
        """
        body: dict[str, Any] = {
            "race_type": race_type,
            "players": [{"id": p.player_id, "name": p.name} for p in players],
        }
        if custom_text is not None:
            body["custom_text"] = custom_text
        if test_mode is not None:
            body["test_mode"] = test_mode
        if heat is not None:
            body["heat"] = heat
        if passage_id is not None:
            body["passage_id"] = passage_id
        if ghosts:
            body["ghosts"] = list(ghosts)
        if daily is not None:
            body["daily"] = daily
        tried = 0
        for region in regions:
            for node in await self._candidates(region, len(players)):
                if tried >= self._attempts:
                    return None
                tried += 1
                placed = await self._reserve(node, body, len(players))
                if placed is not None:
                    return placed
        if tried == 0:
            self._failed("no_node")
        return None

    async def _candidates(self, region: str, seats: int) -> list[NodeInfo]:
        """Accepting nodes of the region with room, most free seats first."""
        await self._refresh()
        now = asyncio.get_running_loop().time()
        usable = [
            n
            for n in self._nodes
            if n.region == region
            and n.accepting
            and self._avoid_until.get(n.node_id, 0.0) <= now
            and self._free(n) >= seats
        ]
        return sorted(usable, key=lambda n: (-self._free(n), n.node_id))

    def _free(self, node: NodeInfo) -> int:
        return node.free_seats - self._reserved.get(node.node_id, 0)

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._nodes_at < self._refresh_s:
            return
        async with self._refresh_lock:
            if loop.time() - self._nodes_at < self._refresh_s:
                return  # another caller refreshed while we waited
            try:
                self._nodes = await self._registry.live_nodes()
                self._reserved.clear()  # the nodes' own figures now include our reservations
            except Exception as exc:  # Redis hiccup: keep the last view a little longer
                log.warning("node_registry_read_failed", error=str(exc))
            self._nodes_at = loop.time()

    async def _reserve(self, node: NodeInfo, body: dict[str, Any], seats: int) -> Placed | None:
        url = f"{node.admin_url.rstrip('/')}/admin/races"
        try:
            async with self._http.post(url, json=body, headers=self._headers, timeout=self._timeout) as resp:
                if resp.status == 201:
                    data = await resp.json()
                    self._reserved[node.node_id] = self._reserved.get(node.node_id, 0) + seats
                    return _parse(data, node)
                detail = (await resp.text())[:200]
                reason = "refused"
                if resp.status == 503:  # draining, or full (its loop lags: gameserver/admission.py)
                    reason = "full" if '"node_full"' in detail else "draining"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason, detail = "unreachable", repr(exc)
        except (ValueError, KeyError, TypeError) as exc:  # a 201 we cannot read: its seats just expire
            reason, detail = "bad_answer", repr(exc)
        self._avoid(node, reason)
        log.warning("placement_failed", node_id=node.node_id, reason=reason, detail=detail)
        return None

    def _avoid(self, node: NodeInfo, reason: str) -> None:
        self._avoid_until[node.node_id] = asyncio.get_running_loop().time() + self._avoid_s
        self._failed(reason)

    def _failed(self, reason: str) -> None:
        if self._on_failure is not None:
            self._on_failure(reason)


def _parse(data: Any, node: NodeInfo) -> Placed:
    seats = {
        str(s["player_id"]): ReservedSeat(player_token=str(s["player_token"]), join_ticket=str(s["ticket"]))
        for s in data["seats"]
    }
    return Placed(
        race_id=str(data["race_id"]),
        node_id=str(data["node_id"]),
        url=str(data["url"]),
        region=node.region,
        seats=seats,
        text=str(data.get("text", "")),
    )


class PlacementSettings(Protocol):
    """What a placing service's settings say about reaching nodes (matchmaker, director)."""

    @property
    def node_stale_ms(self) -> int: ...
    @property
    def node_timeout_s(self) -> float: ...
    @property
    def node_attempts(self) -> int: ...
    @property
    def secrets(self) -> SecretSettings: ...


def node_placer(
    redis: Any, http: aiohttp.ClientSession, settings: PlacementSettings, failures: Any
) -> NodePlacer:
    """A ``NodePlacer`` on the live registry, counting failed attempts in ``failures`` (a
    Prometheus counter labelled by reason)."""
    return NodePlacer(
        NodeRegistry(redis, stale_after_ms=settings.node_stale_ms),
        http,
        settings.secrets.admin_token,
        timeout_s=settings.node_timeout_s,
        attempts=settings.node_attempts,
        on_failure=lambda reason: failures.labels(reason).inc(),
    )
