"""The parts of a running lobby, built by ``app.build_app`` and read by every handler."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

# The parts' modules import nothing of this one (the handler modules do): plain imports, no
# cycle (tests/lobby/test_imports.py).
from arena.events import ChannelEvents
from arena.placement import NodePlacer
from arena.rating import RatingStore
from arena.tickets import TicketStore
from arena.tokens import PlayerTokenCache, TokenSigner
from lobby.auth import AccountStore
from lobby.metrics import LobbyMetrics
from lobby.nodes import NodeWatch
from lobby.presence import PresenceBatcher
from lobby.private_races import PrivateRaceStore
from lobby.ratelimit import RateLimiter
from lobby.settings import LobbySettings


@dataclass(frozen=True, slots=True)
class Lobby:
    settings: LobbySettings
    metrics: LobbyMetrics
    signer: TokenSigner
    player_tokens: PlayerTokenCache  # verify_player through a cache of verified tokens
    redis: aioredis.Redis
    accounts: AccountStore
    limiter: RateLimiter
    tickets: TicketStore
    ratings: RatingStore
    nodes: NodeWatch
    placer: NodePlacer
    events: ChannelEvents
    private_races: PrivateRaceStore
    presence: PresenceBatcher
    pool: asyncpg.Pool  # race history (opens connections on demand: the lobby starts without it)


LOBBY_KEY = web.AppKey("lobby", Lobby)


def lobby_of(request: web.Request) -> Lobby:
    return request.app[LOBBY_KEY]
