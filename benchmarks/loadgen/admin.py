"""Races with reserved seats, made on a node's admin listener (set-up only, not the hot path)."""

from __future__ import annotations

from typing import Any

import aiohttp

from benchmarks.loadgen.swarm import RaceSeats

__all__ = ["AdminClient"]


class AdminClient:
    def __init__(
        self, admin_url: str, admin_token: str, *, race_type: str = "marathon", test_mode: str | None = None
    ) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.race_type = race_type
        self.test_mode = test_mode  # a typing test's mode (arena/typing_tests.py): one seat each
        self._headers = {"Authorization": f"Bearer {admin_token}"}
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AdminClient:
        self._http = aiohttp.ClientSession(headers=self._headers, connector=aiohttp.TCPConnector(limit=32))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def create_race(self, names: list[str]) -> RaceSeats:
        assert self._http is not None, "use AdminClient as an async context manager"
        body: dict[str, Any] = {"race_type": self.race_type, "players": [{"name": n} for n in names]}
        if self.test_mode is not None:
            body["test_mode"] = self.test_mode
        async with self._http.post(f"{self.admin_url}/admin/races", json=body) as resp:
            data: dict[str, Any] = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"creating a race failed: HTTP {resp.status} {data}")
        seats = [(s["player_id"], s["player_token"], s["ticket"]) for s in data["seats"]]
        return RaceSeats(race_id=data["race_id"], seats=seats)

    async def get_text(self, path: str) -> str:
        assert self._http is not None
        async with self._http.get(f"{self.admin_url}{path}") as resp:
            return await resp.text()
