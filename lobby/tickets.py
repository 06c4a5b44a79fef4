"""Matchmaking tickets over HTTP: create, read (long-poll), cancel.

The store is ``arena.tickets.TicketStore`` (the matchmaker completes tickets there). This
module adds what only the front door knows: who the player is, their rating, one live
ticket per player, ownership, and whether a matched race's node is still alive.

States shown to players: ``queued`` (queued or being placed), ``matched`` (with the
assignment), ``cancelled``, and ``node_lost``: matched, but the node died before the race
ended, so the player should create a new ticket.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import structlog
from aiohttp import web

from arena import keys
from arena.rating import RatingStore
from arena.redisbatch import Command, run_batch
from arena.redisutil import as_text
from arena.tickets import LIVE_STATES, MATCHABLE_RACE_TYPES, QueueFull, Ticket, TicketLive, TicketState
from arena.tickets import TicketRequest as StoreRequest
from arena.tokens import PlayerToken
from lobby.auth import require_player
from lobby.bodies import opt_str, query_wait, read_object, req_str
from lobby.context import Lobby, lobby_of
from lobby.errors import ApiError, bad_request
from lobby.nodes import NODE_LOST_REASON, AssignmentView

log = structlog.get_logger(__name__)

CREATE_LOCK_MS = 5000  # one ticket creation per player at a time; the lock outlives any creation


@dataclass(frozen=True, slots=True)
class TicketRequest:
    race_type: str
    region: str
    language: str | None

    @classmethod
    def parse(cls, data: dict[str, Any], regions: tuple[str, ...]) -> TicketRequest:
        race_type = req_str(data, "race_type", max_len=32)
        if race_type not in MATCHABLE_RACE_TYPES:
            raise bad_request("bad_race_type", f"race_type must be one of {sorted(MATCHABLE_RACE_TYPES)}")
        region = req_str(data, "region", max_len=32)
        if region not in regions:
            raise bad_request("unknown_region", f"region must be one of {list(regions)}")
        language = opt_str(data, "language", max_len=16)
        return cls(race_type=race_type, region=region, language=language or None)


@dataclass(frozen=True, slots=True)
class TicketView:
    ticket_id: str
    state: str  # queued | matched | cancelled | node_lost
    race_type: str
    region: str
    language: str | None
    created_at: int  # ms
    expected_wait_s: float | None  # None while the queue has no recent figures
    assignment: AssignmentView | None = None
    reason: str | None = None  # why, for node_lost


async def ticket_view(lobby: Lobby, ticket: Ticket) -> TicketView:
    state = TicketState.QUEUED.value if ticket.state in LIVE_STATES else ticket.state.value
    assignment = None
    reason = None
    if ticket.assignment is not None:
        a = ticket.assignment
        where = await lobby.nodes.follow(a.node_id, a.race_id)
        node_id, url = (where.moved_to.node_id, where.moved_to.url) if where.moved_to else (a.node_id, a.url)
        # Moved: the same tokens, at the adopter (it honours a ticket naming the dead node).
        assignment = AssignmentView(a.race_id, node_id, url, a.player_token, a.join_ticket, a.region)
        if where.moved_to is not None:
            lobby.metrics.assignments_moved.labels("ticket").inc()
        if where.lost:
            state, reason = "node_lost", NODE_LOST_REASON
            lobby.metrics.node_lost.labels("ticket").inc()
    return TicketView(
        ticket_id=ticket.id,
        state=state,
        race_type=ticket.race_type,
        region=ticket.region,
        language=ticket.language,
        created_at=ticket.created_at,
        expected_wait_s=ticket.expected_wait_s,
        assignment=assignment,
        reason=reason,
    )


async def _owned_ticket(lobby: Lobby, player: PlayerToken, ticket_id: str) -> Ticket:
    """The ticket if it exists and is the caller's; someone else's looks the same as none."""
    ticket = await lobby.tickets.get(ticket_id)
    if ticket is None or ticket.player_id != player.player_id:
        raise ApiError(404, "ticket_not_found", "no such ticket")
    return ticket


async def create_ticket(request: web.Request) -> web.Response:
    """Three round trips (issue 19; there were six or seven): take the player's creation lock
    and read their previous ticket id and rating in one batch; create (the script also refuses
    when the previous ticket, in the same queue, is still live); record the new ticket and drop
    the lock in one batch. The player's keys and the queue's are in different hash slots, so
    the two sides cannot be one script."""
    lobby = lobby_of(request)
    player = require_player(request)
    body = TicketRequest.parse(await read_object(request), lobby.settings.regions)
    pid = player.player_id
    lock = keys.player_ticket_lock(pid)
    locked, previous, rating = await run_batch(
        lobby.redis,
        [
            ("SET", lock, "1", "NX", "PX", CREATE_LOCK_MS),
            ("GET", keys.player_ticket(pid)),
            RatingStore.read_command(pid),
        ],
    )
    if locked is None:
        raise ApiError(409, "already_queued", "a ticket is being created for this player")
    unlock: list[Command] = [("DEL", lock)]
    try:
        wanted = StoreRequest(
            pid, player.name, body.race_type, body.region, RatingStore.decode(rating).rating, body.language
        )
        ticket = await lobby.tickets.create_unless_live(wanted, as_text(previous) if previous else None)
        unlock.insert(0, ("SET", keys.player_ticket(pid), ticket.id, "EX", lobby.tickets.ticket_ttl_s))
    except TicketLive as exc:
        raise ApiError(
            409,
            "already_queued",
            "this player already has a queued ticket; cancel it first",
            extra={"ticket_id": exc.ticket_id},
        ) from None
    except QueueFull:
        raise ApiError(
            503, "queue_full", "the queue is full; retry shortly", headers={"Retry-After": "5"}
        ) from None
    except ValueError as exc:  # the store's own validation (language format, say)
        raise bad_request("bad_ticket", str(exc)) from None
    finally:
        await run_batch(lobby.redis, unlock)
    lobby.metrics.tickets_created.labels(body.race_type).inc()
    log.debug("ticket_created", ticket_id=ticket.id, player_id=pid, race_type=body.race_type)
    view = await ticket_view(lobby, ticket)
    return web.json_response(asdict(view), status=201, headers={"Location": f"/v1/tickets/{ticket.id}"})


async def get_ticket(request: web.Request) -> web.Response:
    lobby = lobby_of(request)
    player = require_player(request)
    wait_s = query_wait(request, lobby.settings.long_poll_max_s)
    ticket = await _owned_ticket(lobby, player, request.match_info["ticket_id"])
    if wait_s > 0 and ticket.state in LIVE_STATES:
        ticket = await lobby.tickets.wait(ticket.id, wait_s) or ticket
    return web.json_response(asdict(await ticket_view(lobby, ticket)))


async def cancel_ticket(request: web.Request) -> web.Response:
    """One round trip: the cancel script checks the owner itself."""
    lobby = lobby_of(request)
    player = require_player(request)
    ticket_id = request.match_info["ticket_id"]
    after = await lobby.tickets.cancel(ticket_id, owner=player.player_id)
    if after is None:
        raise ApiError(404, "ticket_not_found", "no such ticket")
    view = await ticket_view(lobby, after)
    if after.state is TicketState.MATCHED:
        raise ApiError(
            409,
            "already_matched",
            "the ticket was matched before it could be cancelled",
            extra={"ticket": asdict(view)},
        )
    log.debug("ticket_cancelled", ticket_id=after.id, player_id=player.player_id)
    return web.json_response(asdict(view))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/tickets", create_ticket)
    router.add_get("/v1/tickets/{ticket_id}", get_ticket)
    router.add_delete("/v1/tickets/{ticket_id}", cancel_ticket)
