"""``POST /v1/private-races/{code}/ghosts``: the host adds a ghost to a private race before it starts.

The body names the ghost as ``POST /v1/ghost-races`` does: a racer of a past race, the host's
personal best, or a day's daily challenge leader (``lobby.ghosts.chosen_ghost``).

The ghost is checked like any ghost (lobby/ghosts.py: a clean, finished result of a passage the
corpus has) and kept in the race's hash (field ``ghosts``, a JSON list of ``GhostRef``) by one
Lua script, so it cannot slip in after the start froze the race. The race then runs on the
ghosts' passage: every ghost must come from a race of the private race's type on the same
passage, at most ``MAX_GHOSTS`` of them; a custom race has no ghosts (its text is the host's).
At the start the logs are read again from PostgreSQL and travel to the node with the seats.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from arena import keys
from arena.redisutil import as_text
from gameserver.ghost import MAX_GHOSTS
from lobby.auth import require_player
from lobby.bodies import read_object
from lobby.context import Lobby, lobby_of
from lobby.errors import ApiError
from lobby.ghosts import GHOST_METRICS_KEY, chosen_ghost, ghost_source
from lobby.private_race_routes import _race, _respond
from lobby.private_races import GhostRef, normalise_code

# KEYS[1] race. ARGV[1] host id, [2] ghost (GhostRef JSON), [3] its race type, [4] its passage id,
# [5] max ghosts, [6] channel. Returns 'ok' or why not.
_ADD = """
local d = redis.call('HMGET', KEYS[1], 'state', 'host_id', 'race_type', 'ghosts')
if not d[1] then return 'not_found' end
if d[2] ~= ARGV[1] then return 'not_host' end
if d[1] ~= 'open' then return 'not_open' end
if d[3] == 'custom' then return 'custom' end
if d[3] ~= ARGV[3] then return 'race_type' end
local ghosts = cjson.decode(d[4] or '[]')
local new = cjson.decode(ARGV[2])
for _, g in ipairs(ghosts) do
  if g[1] == new[1] and g[2] == new[2] then return 'ok' end
  if g[5] ~= ARGV[4] then return 'passage' end
end
if #ghosts >= tonumber(ARGV[5]) then return 'full' end
ghosts[#ghosts + 1] = new
redis.call('HSET', KEYS[1], 'ghosts', cjson.encode(ghosts))
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('PUBLISH', ARGV[6], 'ghost')
return 'ok'
"""

_REFUSALS = {
    "not_found": (404, "private_race_not_found", "no private race with this code (codes expire)"),
    "not_host": (403, "not_host", "only the host can add ghosts"),
    "not_open": (409, "race_started", "this race has already started"),
    "custom": (409, "ghost_custom_race", "a custom race has no ghosts: its text is the host's own"),
    "race_type": (409, "ghost_race_type", "the ghost's race must be of this race's type"),
    "passage": (409, "ghost_passage_mismatch", "every ghost must come from a race on the same passage"),
    "full": (409, "ghosts_full", f"a race has at most {MAX_GHOSTS} ghosts"),
}

async def add_ghost(request: web.Request) -> web.Response:
    """Body ``{race_id, player_id}``, ``{"best": true}`` or ``{"daily": day}``: that clean result
    becomes one of the race's ghosts."""
    lobby = lobby_of(request)
    player = require_player(request)
    code = normalise_code(request.match_info["code"])
    if code is None:
        raise ApiError(*_REFUSALS["not_found"])
    data = await read_object(request)
    counter = request.app[GHOST_METRICS_KEY].private
    source = ghost_source(data)
    try:
        await _add(lobby, code, player.player_id, data)
    except ApiError:
        counter.labels("refused", source).inc()
        raise
    counter.labels("added", source).inc()
    return await _respond(lobby, await _race(lobby, code), player.player_id)


async def _add(lobby: Lobby, code: str, host_id: str, data: dict[str, Any]) -> None:
    # The same three ways to name a ghost as POST /v1/ghost-races (the page offers all three).
    ghost = await chosen_ghost(lobby, host_id, data)
    ref = GhostRef(ghost.race_id, ghost.player_id, ghost.name, ghost.wpm, ghost.passage_id)
    script = lobby.redis.register_script(_ADD)
    outcome = as_text(
        await script(
            keys=[keys.private_race(code)],
            args=[
                host_id,
                json.dumps(ref.to_json()),
                ghost.race_type,
                ghost.passage_id,
                MAX_GHOSTS,
                keys.private_race_events(code),
            ],
        )
    )
    if outcome != "ok":
        raise ApiError(*_REFUSALS.get(outcome, (500, "internal", f"unexpected outcome {outcome!r}")))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/private-races/{code}/ghosts", add_ghost)
