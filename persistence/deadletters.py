"""The dead-letter stream ``{outbox}:dead``: outbox entries that failed ``max_deliveries`` times.

Burying copies the entry (its ``id``, ``kind`` and ``data``) with the reason, the delivery
count, the time and the consumer into the dead stream and acknowledges the original, in one
script, so an entry is never in both places or in neither. Replaying appends the original
fields to the outbox again (a new entry, a fresh delivery count) and deletes the dead
letter, also in one script. Replays are safe to repeat: storage is idempotent on match id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis

from arena import keys
from arena.clock import now_ms
from persistence.entries import Entry

# KEYS[1] outbox, KEYS[2] dead; ARGV: group, entry id, then the dead letter's fields.
_BURY = """
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local dead_id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return dead_id
"""

# KEYS[1] dead, KEYS[2] outbox; ARGV[1] dead letter id. Returns the new outbox entry id or false.
_REPLAY = """
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return false end
local f = found[1][2]
local by_name = {}
for i = 1, #f, 2 do by_name[f[i]] = f[i + 1] end
local new_id = redis.call('XADD', KEYS[2], '*', 'id', by_name['id'] or '', 'kind', by_name['kind'] or '',
  'data', by_name['data'] or '')
redis.call('XDEL', KEYS[1], ARGV[1])
return new_id
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dead_id: str
    entry_id: str  # the original outbox entry
    match_id: str
    kind: str
    reason: str
    deliveries: int
    failed_at: int  # ms
    consumer: str
    data: bytes

    @classmethod
    def from_fields(cls, dead_id: str, fields: dict[bytes, bytes]) -> DeadLetter:
        def text(name: str) -> str:
            return fields.get(name.encode(), b"").decode("utf-8", "replace")

        return cls(
            dead_id=dead_id,
            entry_id=text("entry_id"),
            match_id=text("id"),
            kind=text("kind"),
            reason=text("reason"),
            deliveries=int(text("deliveries") or 0),
            failed_at=int(text("failed_at") or 0),
            consumer=text("consumer"),
            data=fields.get(b"data", b""),
        )


class DeadLetters:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._bury = redis.register_script(_BURY)
        self._replay = redis.register_script(_REPLAY)

    async def bury(self, entry: Entry, *, group: str, consumer: str, reason: str) -> str:
        """Move one pending entry to the dead-letter stream; returns the dead letter's id."""
        fields: list[bytes | str | int] = [
            "entry_id", entry.entry_id,
            "id", entry.fields.get(b"id", b""),
            "kind", entry.fields.get(b"kind", b""),
            "data", entry.fields.get(b"data", b""),
            "reason", reason,
            "deliveries", entry.deliveries,
            "failed_at", now_ms(),
            "consumer", consumer,
        ]  # fmt: skip
        dead_id = await self._bury(
            keys=[keys.OUTBOX_STREAM, keys.DEAD_STREAM], args=[group, entry.entry_id, *fields]
        )
        return _text(dead_id)

    async def read(self, count: int = 100, after: str = "-") -> list[DeadLetter]:
        """Oldest first; ``after`` is an exclusive start id for paging (``-``: from the start)."""
        start = after if after == "-" else f"({after}"
        rows = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self._redis.xrange(keys.DEAD_STREAM, min=start, max="+", count=count),
        )
        return [DeadLetter.from_fields(_text(dead_id), fields) for dead_id, fields in rows]

    async def count(self) -> int:
        return int(await self._redis.xlen(keys.DEAD_STREAM))

    async def replay(self, dead_id: str) -> str | None:
        """Put one dead letter back on the outbox; returns its new entry id, None if unknown."""
        new_id = await self._replay(keys=[keys.DEAD_STREAM, keys.OUTBOX_STREAM], args=[dead_id])
        return None if new_id is None else _text(new_id)

    async def drop(self, dead_id: str) -> bool:
        """Delete one dead letter for good."""
        return bool(await self._redis.xdel(keys.DEAD_STREAM, dead_id))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
