"""Leaderboard pages kept for a moment: the top N is what every visitor asks for.

``GET /v1/leaderboards/{race_type}/{timeframe}?limit=N`` answers the same few pages to everyone;
each lobby keeps the answer's JSON text of each (race type, timeframe, limit) for ``ttl_s``
(``ARENA_LOBBY_BOARD_CACHE_MS``, 1000 by default; 0 = off), so a board read costs a dictionary
lookup instead of two Redis round trips and the encoding (issue 19).

**Staleness bound:** a page is at most ``ttl_s`` older than Redis (boards change when
persistence writes a result; a new day's or week's board shows up at most ``ttl_s`` late).
Entries are bounded by what the route accepts: race types x 3 timeframes x 100 limits, a few
kB each. A player's own rank (``/players/{id}``) is not cached: it is one player's, not shared.
Several requests that miss at once each read Redis (no single flight): the misses of one
expiry are at most the requests in flight, and each is as cheap as an uncached read.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter


class BoardCache:
    """Pages by (race type, timeframe, limit); ``ttl_s`` 0 keeps nothing."""

    def __init__(
        self, ttl_s: float, registry: CollectorRegistry, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._pages: dict[tuple[str, str, int], tuple[float, str]] = {}
        lookups = Counter(
            "arena_lobby_board_cache_lookups_total",
            "Leaderboard page reads, by result (hit: answered from memory; miss: read from Redis)",
            ["result"],
            registry=registry,
        )
        self._hit, self._miss = lookups.labels("hit"), lookups.labels("miss")

    def now(self) -> float:
        return self._clock()

    def get(self, race_type: str, timeframe: str, limit: int) -> str | None:
        """The page's JSON text if read within ``ttl_s``, else None (read it and ``put`` it)."""
        if self.ttl_s <= 0:
            return None
        entry = self._pages.get((race_type, timeframe, limit))
        if entry is None or self._clock() >= entry[0]:
            self._miss.inc()
            return None
        self._hit.inc()
        return entry[1]

    def put(self, race_type: str, timeframe: str, limit: int, text: str, read_at: float) -> None:
        """Keep ``text``, read from Redis at ``read_at`` (``now()`` before the read), until ``ttl_s``
        after that instant: the bound counts from the read, not from when it returned."""
        if self.ttl_s > 0:
            self._pages[(race_type, timeframe, limit)] = (read_at + self.ttl_s, text)


BOARD_CACHE_KEY = web.AppKey("board_cache", BoardCache)
