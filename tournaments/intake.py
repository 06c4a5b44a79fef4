"""Heat results from the outbox stream, read with the director's own consumer group.

Nodes append every finished or aborted race to ``{outbox}:matches`` (persistence reads it
with its group). The director reads the same stream with the group ``tournaments``: each
entry of kind ``heat`` is decoded and handed to ``apply`` (idempotent on the race id), then
acknowledged; an operator's rejection of a heat result held for review (kind
``review_decision``, ``python -m ops.review reject``) is handed to ``reject`` (docs/TOURNAMENTS.md,
"Results held for review"); any other entry is acknowledged at once, so persistence can trim the stream.

A failed ``apply`` leaves the entry pending; entries pending longer than ``claim_idle_ms``
(ours after a failure, or a dead director's) are claimed (``XAUTOCLAIM``) and handled again.
The group is created at id 0, so heat results appended before the first director ever ran
are still read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from arena import keys
from arena.redisutil import as_text
from arena.results import MatchRecord
from persistence.review import REVIEW_KIND, ReviewDecisionRecord, ReviewState

log = structlog.get_logger(__name__)

GROUP = "tournaments"
BATCH = 100
CLAIM_EVERY_S = 1.0
MAX_CLAIM_ROUNDS = 10  # per pass, so new entries are read in between
RETRY_DELAY_S = 0.5

Apply = Callable[[MatchRecord, str], Awaitable[str]]  # (record, entry id) -> outcome
Reject = Callable[[str, str, str], Awaitable[str]]  # (tournament id, race id, player id) -> outcome


async def ensure_group(redis: aioredis.Redis) -> None:
    try:
        await redis.xgroup_create(keys.OUTBOX_STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class ResultIntake:
    def __init__(
        self,
        redis: aioredis.Redis,
        consumer: str,
        apply: Apply,
        *,
        block_ms: int,
        claim_idle_ms: int,
        on_outcome: Callable[[str], None] | None = None,
        reject: Reject | None = None,
    ) -> None:
        self._redis = redis
        self._reject = reject
        self.consumer = consumer
        self._apply = apply
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._on_outcome = on_outcome

    async def run(self, stopping: asyncio.Event) -> None:
        """Until ``stopping`` is set (or cancelled: redis-py may swallow a cancel, so the flag
        is what ends it, ``arena.tasks``): new entries as they come; every second, entries
        pending too long (a dead director's, or ours whose apply failed) are claimed again."""
        await ensure_group(self._redis)
        loop = asyncio.get_running_loop()
        claimed_at = 0.0
        while not stopping.is_set():
            try:
                if loop.time() - claimed_at >= CLAIM_EVERY_S:
                    claimed_at = loop.time()
                    await self._handle(await self._claim())
                await self._handle(await self._read())
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                log.warning("intake_redis_failed", error=str(exc))
                await asyncio.sleep(RETRY_DELAY_S)

    async def _read(self) -> list[tuple[str, dict[bytes, bytes]]]:
        reply: Any = await self._redis.xreadgroup(
            GROUP, self.consumer, {keys.OUTBOX_STREAM: ">"}, count=BATCH, block=self._block_ms
        )
        if not reply:
            return []
        _, rows = reply[0]
        return [(as_text(entry_id), fields) for entry_id, fields in rows if fields]

    async def _claim(self) -> list[tuple[str, dict[bytes, bytes]]]:
        """Entries pending longer than ``claim_idle_ms``, whoever held them, now ours."""
        entries: list[tuple[str, dict[bytes, bytes]]] = []
        cursor = "0-0"
        for _ in range(MAX_CLAIM_ROUNDS):
            reply: Any = await self._redis.xautoclaim(
                keys.OUTBOX_STREAM, GROUP, self.consumer, self._claim_idle_ms, start_id=cursor, count=BATCH
            )
            cursor = as_text(reply[0])
            entries += [(as_text(entry_id), fields) for entry_id, fields in reply[1] if fields]
            if cursor == "0-0":
                break
        if entries:
            log.info("intake_claimed", entries=len(entries))
        return entries

    async def _handle(self, entries: list[tuple[str, dict[bytes, bytes]]]) -> None:
        """Apply heat records and acknowledge them; a failed one stays pending (claimed later)."""
        done: list[str] = []
        for entry_id, fields in entries:
            if fields.get(b"kind") == REVIEW_KIND.encode() and self._reject is not None:
                if await self._rejection(entry_id, fields):
                    done.append(entry_id)
                continue
            if fields.get(b"kind") != b"heat":
                done.append(entry_id)
                continue
            try:
                record = MatchRecord.from_bytes(fields[b"data"])
            except Exception as exc:  # not ours to repair: persistence dead-letters it
                log.warning("intake_undecodable", entry_id=entry_id, error=repr(exc))
                self._count("bad")
                done.append(entry_id)
                continue
            try:
                self._count(await self._apply(record, entry_id))
                done.append(entry_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("intake_apply_failed", entry_id=entry_id, race_id=record.match_id)
        if done:
            await self._redis.xack(keys.OUTBOX_STREAM, GROUP, *done)

    async def _rejection(self, entry_id: str, fields: dict[bytes, bytes]) -> bool:
        """A review decision: a rejected heat result goes to ``reject``. True: acknowledge it."""
        assert self._reject is not None
        try:
            raw = msgpack.unpackb(fields[b"data"])
            decision = ReviewDecisionRecord(**raw)
        except Exception as exc:  # not ours to repair: persistence dead-letters it
            log.warning("intake_undecodable", entry_id=entry_id, error=repr(exc))
            self._count("bad")
            return True
        if decision.decision != ReviewState.REJECTED or decision.tournament_id is None:
            return True  # a release changes no bracket: the result already counted
        try:
            self._count(await self._reject(decision.tournament_id, decision.race_id, decision.player_id))
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("intake_reject_failed", entry_id=entry_id, race_id=decision.race_id)
            return False

    def _count(self, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)
