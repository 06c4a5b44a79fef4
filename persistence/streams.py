"""Housekeeping shared by the stream consumers: group creation, trimming, forgetting consumers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

log = structlog.get_logger(__name__)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def create_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create the group if missing; it starts at the stream's beginning, so nothing is skipped."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
        log.info("consumer_group_created", stream=stream, group=group)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@dataclass(frozen=True, slots=True)
class GroupState:
    pending: int  # delivered, not acknowledged
    lag: int | None  # not yet delivered (None when Redis cannot tell)


async def tidy(
    redis: aioredis.Redis, stream: str, group: str, *, me: str, trim: bool, prune_idle_ms: int
) -> GroupState | None:
    """Trim what every group has acknowledged, forget long-idle consumers with nothing pending.

    Everything before a group's oldest pending entry (or up to its last delivered one) is
    done for that group; the stream is trimmed to the lowest such point over all groups, so a
    second reader (the tournament director reads the outbox too) never loses an entry.
    """
    groups: list[dict[str, Any]] = await redis.xinfo_groups(stream)
    floor: str | None = None
    mine: GroupState | None = None
    for g in groups:
        name, pending = text(g["name"]), int(g["pending"])
        if name == group:
            lag = g.get("lag")
            mine = GroupState(pending, None if lag is None else int(lag))
            await _prune(redis, stream, group, me, prune_idle_ms)
        low = text(g["last-delivered-id"])
        if pending:
            low = text((await redis.xpending(stream, name))["min"])
        floor = low if floor is None else min(floor, low, key=id_key)
    if trim and floor is not None and floor != "0-0":
        await redis.xtrim(stream, minid=floor, approximate=True)
    return mine


async def _prune(redis: aioredis.Redis, stream: str, group: str, me: str, idle_ms: int) -> None:
    for c in await redis.xinfo_consumers(stream, group):
        name = text(c["name"])
        if name != me and int(c["pending"]) == 0 and int(c["idle"]) > idle_ms:
            await redis.xgroup_delconsumer(stream, group, name)
            log.info("consumer_pruned", stream=stream, consumer=name)
