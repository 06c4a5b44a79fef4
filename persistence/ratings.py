"""Ratings from the outbox: applied again here, in case the node that ran the race could not.

A node rates a race as it ends (``arena/rating.py``, once per match id, marked in Redis) and
relies on persistence to apply every stored match again, so a node that failed or died
first only delays the new ratings. Almost always the marker is already there: one pipelined
``EXISTS`` per match is then all this costs. Aborted races are not rated.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
import structlog

from arena import keys
from arena.rating import RatingStore
from arena.results import MatchRecord
from persistence.errors import Dependency, DependencyDown

log = structlog.get_logger(__name__)


class RatingCatchUp:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._store = RatingStore(redis)

    async def apply(self, records: Sequence[MatchRecord]) -> int:
        """Rate the finished matches no node has rated; returns how many this call rated."""
        finished = [r for r in records if r.state == "finished"]
        if not finished:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for r in finished:
                pipe.exists(keys.rating_applied(r.match_id))
            rated = await pipe.execute()
        applied = 0
        for record, done in zip(finished, rated, strict=True):
            if done:
                continue
            try:
                changes = await self._store.apply_record(record)
            except RuntimeError as exc:  # players' ratings kept moving under us: try the batch again
                raise DependencyDown(Dependency.REDIS, str(exc)) from exc
            if changes:
                applied += 1
                log.info("ratings_caught_up", race_id=record.match_id, players=len(changes))
        return applied
