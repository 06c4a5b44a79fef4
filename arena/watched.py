"""Which races are watched from outside their owner node, in one sorted set (``races:watched``).

Watchers (a node relaying a race to its spectators, the lobby's tournament live page) mark
their races with an expiry and refresh it well within; the owner asks about all its races in
one ``ZMSCORE`` a second and publishes progress frames only for the watched ones. One command
per node per second, however many races it owns, instead of one per race.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from arena import keys

WATCHED_TTL_S = 10  # a mark lasts this long; watchers refresh every few seconds


async def mark(redis: Any, race_ids: Iterable[str], now_ms: int) -> None:
    """Say these races are watched until ``now_ms`` + the TTL (one ZADD; nothing if none)."""
    until = now_ms + WATCHED_TTL_S * 1000
    mapping = dict.fromkeys(race_ids, until)
    if mapping:
        await redis.zadd(keys.WATCHED_RACES, mapping)


def ask(pipe: Any, race_ids: Sequence[str], now_ms: int) -> None:
    """Queue the question (one ZMSCORE) and the clean-up of expired marks; read with ``answer``."""
    pipe.zremrangebyscore(keys.WATCHED_RACES, "-inf", now_ms)
    if race_ids:
        pipe.zmscore(keys.WATCHED_RACES, list(race_ids))


def answer(replies: Sequence[Any], race_ids: Sequence[str], now_ms: int) -> list[bool]:
    """Per race, watched or not, from the replies of what ``ask`` queued (in order)."""
    if not race_ids:
        return []
    scores = replies[-1]
    return [score is not None and score > now_ms for score in scores]
