"""A player's last results, cached in Redis: ``user:{id}:recent_races``.

A sorted set scored by the race's end time (ms); each member is the result summary packed
with msgpack in a fixed field order, so the same result always makes the same member and
adding it twice changes nothing. One script adds, trims to the newest ``keep`` and refreshes the TTL.

A set recreated after expiry holds only what arrived since, so it is not trusted unless it
holds ``keep`` results or carries the ``~complete`` marker (score -inf), which the read side
adds after filling it from PostgreSQL with everything the player has (fewer than ``keep``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from arena import keys
from arena.redisutil import execute_loading
from arena.results import MatchRecord
from persistence.settings import ReadSideSettings

COMPLETE = b"~complete"

# KEYS[1] the set; ARGV: score/member pairs. Keep and TTL are baked in (one script per setting):
# one call per result sits on the hot path, and every argument costs client time.
# KEYS[1] the set; ARGV[1] score, ARGV[2] the member as it was, ARGV[3] as it is now. Only a
# member still there is replaced: a re-delivered decision, or a set that lost it, changes nothing.
_SWAP = """
if redis.call('ZREM', KEYS[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
end
"""

_ADD = """
for i = 1, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -{keep} - 1)
redis.call('EXPIRE', KEYS[1], {ttl})
"""


@dataclass(frozen=True, slots=True)
class RecentResult:
    """One line of a player's history; built the same way from a record or a database row."""

    race_id: str
    kind: str
    race_type: str
    ended_at: int  # ms
    players: int
    place: int | None
    status: str
    valid: bool
    wpm: float
    accuracy: float
    # persistence/review.py: clear | provisional | held | released | rejected. A rejected result has no place.
    review: str = "clear"

    def member(self) -> bytes:
        """msgpack of the fields in order: the same result always packs to the same bytes.

        ``review`` only when not clear, so a clear result packs as it did before the field existed.
        """
        fields: list[object] = [
            self.race_id, self.kind, self.race_type, self.ended_at, self.players, self.place,
            self.status, self.valid, self.wpm, self.accuracy,
        ]  # fmt: skip
        if self.review != "clear":
            fields.append(self.review)
        packed: bytes = msgpack.packb(fields)
        return packed

    @classmethod
    def from_member(cls, raw: bytes) -> RecentResult:
        return cls(*msgpack.unpackb(raw))


def record_results(
    record: MatchRecord, review: Mapping[tuple[str, str], str] | None = None
) -> list[tuple[str, RecentResult]]:
    """(player id, result) for every participant, finished or not; ``review``: (race, player) ->
    review state of the results not clear (the store's ``WriteResult.unranked``)."""
    states = review or {}
    return [
        (
            p.player_id,
            RecentResult(
                race_id=record.match_id,
                kind=record.kind,
                race_type=record.race_type,
                ended_at=record.ended_at,
                players=len(record.participants),
                place=shown_place(p.place, states.get((record.match_id, p.player_id), "clear")),
                status=p.status,
                valid=p.valid,
                wpm=float(p.wpm),
                accuracy=float(p.accuracy),
                review=states.get((record.match_id, p.player_id), "clear"),
            ),
        )
        for p in record.participants
    ]


def shown_place(place: int | None, review: str) -> int | None:
    """A rejected result is no win: shown without a place, like a flagged one (the other racers
    keep the places they had; docs/FAIRPLAY.md, "Rejected")."""
    return None if review == "rejected" else place


class RecentCache:
    def __init__(self, redis: aioredis.Redis, settings: ReadSideSettings) -> None:
        self._redis = redis
        self._add = redis.register_script(
            _ADD.format(keep=int(settings.recent_keep), ttl=int(settings.recent_ttl_s))
        )
        self._swap = redis.register_script(_SWAP)

    async def apply(self, records: Sequence[MatchRecord]) -> None:
        """Add every participant's result of these records (idempotent)."""
        await execute_loading(self._redis, lambda pipe: self.queue(pipe, records), [self._add])

    @property
    def script(self) -> AsyncScript:
        return self._add

    @property
    def swap_script(self) -> AsyncScript:
        return self._swap

    def queue_swaps(self, pipe: Pipeline, swaps: Sequence[tuple[str, RecentResult, RecentResult]]) -> None:
        """(player, before, after): a result whose review state changed, replaced where cached."""
        scripts = getattr(pipe, "scripts", None)  # a cluster pipeline has none: see queue()
        if scripts is not None:
            scripts.add(self._swap)
        for player_id, before, after in swaps:
            pipe.evalsha(
                self._swap.sha, 1, keys.recent_races(player_id), b"%d" % after.ended_at,
                before.member(), after.member(),
            )  # fmt: skip

    def queue(
        self,
        pipe: Pipeline,
        records: Sequence[MatchRecord],
        review: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        """Queue the updates on a pipeline the caller executes."""
        # Loaded first if Redis lost it (what Script.__call__ does); redis-py types it for sync only.
        # A cluster pipeline has no such set: its callers use arena.redisutil.execute_loading.
        scripts = getattr(pipe, "scripts", None)
        if scripts is not None:
            scripts.add(self._add)
        sha = self._add.sha
        for r in records:
            for player_id, result in record_results(r, review):
                # One call per player, each touching one key: valid on Redis Cluster. Bytes
                # arguments skip redis-py's per-argument encoding.
                pipe.evalsha(sha, 1, keys.recent_races(player_id), b"%d" % result.ended_at, result.member())

    async def fill(self, player_id: str, results: Sequence[RecentResult], complete: bool) -> None:
        """Store what PostgreSQL returned; ``complete`` when that is everything the player has."""
        args: list[bytes] = [b"-inf", COMPLETE] if complete else []
        for r in results:
            args += [b"%d" % r.ended_at, r.member()]
        await self._add(keys=[keys.recent_races(player_id)], args=args)

    async def read(self, player_id: str, limit: int) -> list[RecentResult] | None:
        """The newest ``limit`` results, or None when the cache cannot answer for sure."""
        raw = cast(list[bytes], await self._redis.zrevrange(keys.recent_races(player_id), 0, limit))
        complete = COMPLETE in raw
        results = [RecentResult.from_member(m) for m in raw if m != COMPLETE]
        if len(results) >= limit:
            return results[:limit]
        return results if complete else None
