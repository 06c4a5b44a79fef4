"""Undoing a rejected result's rating change, once (docs/FAIRPLAY.md, "Rejected").

A node rates a race as it ends (``arena/rating.py``), before persistence holds a result for
review, so a result an operator later rejects has already moved ratings. The rule is the one
chess sites apply to a cheat's games (Lichess refunds the points its opponents lost; nobody
is charged for a win over the cheat):

- the rejected player's **gain** from that race is taken back (a loss is left: a cheat is not
  paid back);
- every other rated player of that race gets back what the rejected player cost them: the
  race is rated again from the stored "before" ratings with the rejected player left out (as
  if flagged), and a player who would have ended higher gets the difference; nobody loses
  points (a win over the cheat is kept).

Only the rating moves; deviation and volatility stay as they are now (later races have moved
them since). The corrections are applied to the current ratings in one Redis script, once per
rejected result (marker ``{rating}:rejected:{race}:{player}``, kept for good), with a change entry on
``{rating}:changes`` (match id ``{race}:{player}:review``) so ``rating_history`` shows them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import redis.asyncio as aioredis
import structlog

from arena import keys
from arena.clock import now_ms
from arena.rating import Placing, Rating, rate_race
from persistence.review import review_match_id

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected result and what its race did to ratings (from ``rating_history``)."""

    race_id: str
    player_id: str
    ranking: list[Placing]  # every participant of the race, as the node rated it
    before: dict[str, Rating]  # players the race rated: their ratings before it...
    after: dict[str, Rating]  # ...and right after it


def corrections(r: Rejection) -> dict[str, float]:
    """Rating points to add to each player's current rating (only players with a change)."""
    out: dict[str, float] = {}
    own = r.before.get(r.player_id), r.after.get(r.player_id)
    if own[0] is not None and own[1] is not None and own[1].rating > own[0].rating:
        out[r.player_id] = own[0].rating - own[1].rating
    without = [replace(p, valid=False) if p.player_id == r.player_id else p for p in r.ranking]
    fair = rate_race(r.before, without)
    for pid, after in r.after.items():
        if pid == r.player_id:
            continue
        # A player the race did not rate without the cheat (its only opponent) goes back to before.
        target = fair.get(pid, r.before.get(pid, after))
        if target.rating > after.rating:
            out[pid] = target.rating - after.rating
    return out


# KEYS[1] marker, KEYS[2] change stream, KEYS[3..] player hashes; ARGV[1] change match id,
# ARGV[2] unused, ARGV[3] now ms, then one correction per player hash. A player with no stored
# rating is skipped. Returns -1: already applied; else how many ratings moved. The marker never
# expires (rejections are rare, a few bytes each): a decision re-delivered however late is
# never applied twice.
_UNDO = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local changes = {}
for i = 3, #KEYS do
  local cur = redis.call('HMGET', KEYS[i], 'r', 'rd', 'vol')
  if cur[1] then
    local r = tonumber(cur[1])
    local after = r + tonumber(ARGV[i + 1])
    redis.call('HSET', KEYS[i], 'r', string.format('%.17g', after), 'updated_at', ARGV[3])
    redis.call('HINCRBY', KEYS[i], 'v', 1)
    local rd, vol = tonumber(cur[2]), tonumber(cur[3])
    changes[#changes + 1] = {player_id = string.sub(KEYS[i], #'{rating}:player:' + 1),
                             before = {r, rd, vol}, after = {after, rd, vol}}
  end
end
redis.call('SET', KEYS[1], '1')
if #changes > 0 then
  redis.call('XADD', KEYS[2], '*', 'match_id', ARGV[1], 'at', ARGV[3], 'changes', cjson.encode(changes))
end
return #changes
"""


class RatingUndo:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._undo = redis.register_script(_UNDO)

    async def apply(self, rejections: Sequence[Rejection]) -> int:
        """Apply each rejection's corrections once; returns how many ratings this call moved."""
        moved = 0
        for r in rejections:
            fix = corrections(r)
            if not fix:
                continue
            ids = sorted(fix)
            amounts = [repr(fix[pid]) for pid in ids]
            n = int(
                await self._undo(
                    keys=[
                        keys.rating_rejected(r.race_id, r.player_id),
                        keys.RATING_CHANGES_STREAM,
                        *(keys.player_rating(pid) for pid in ids),
                    ],
                    args=[review_match_id(r.race_id, r.player_id), 0, now_ms(), *amounts],
                )
            )
            if n > 0:
                moved += n
                log.info(
                    "rejected_rating_undone",
                    race_id=r.race_id,
                    player_id=r.player_id,
                    corrections=json.dumps({pid: round(fix[pid], 2) for pid in ids}),
                )
        return moved
