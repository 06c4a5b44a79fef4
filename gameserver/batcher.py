"""When each race's next progress frame is due: once per window after its first unsent input.

A race is queued by the input that makes it dirty and leaves ``window_ms`` later, carrying
every input that arrived meanwhile. Deadlines fall where inputs fall, so races spread over
time by themselves: no tick writes every race at once, and an idle race costs nothing.
Deadlines are kept in slots of ``slot_ms``; the node's flusher takes the due slots.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class Queueable(Protocol):
    progress_queued: bool


Q = TypeVar("Q", bound=Queueable)


class ProgressBatcher(Generic[Q]):
    def __init__(self, window_ms: int, slot_ms: int = 5) -> None:
        if window_ms < 0 or slot_ms <= 0:
            raise ValueError("window_ms must be >= 0 and slot_ms > 0")
        self.window_ms = window_ms
        self.slot_ms = slot_ms
        self._slots: dict[int, list[Q]] = {}
        self._next_slot: int | None = None  # the earliest slot not yet taken

    def __len__(self) -> int:
        return sum(len(v) for v in self._slots.values())

    def queue(self, item: Q, now_ms: int) -> None:
        """Due ``window_ms`` from now, unless it is queued already (then the earlier deadline holds)."""
        if item.progress_queued:
            return
        item.progress_queued = True
        slot = (now_ms + self.window_ms) // self.slot_ms
        bucket = self._slots.get(slot)
        if bucket is None:
            self._slots[slot] = [item]
            if self._next_slot is None or slot < self._next_slot:
                self._next_slot = slot
        else:
            bucket.append(item)

    def take_due(self, now_ms: int) -> list[Q]:
        """Everything due at ``now_ms``, oldest first; each is unqueued."""
        if self._next_slot is None:
            return []
        current = now_ms // self.slot_ms
        if self._next_slot > current:
            return []
        due: list[Q] = []
        for slot in sorted(s for s in self._slots if s <= current):
            due.extend(self._slots.pop(slot))
        self._next_slot = min(self._slots) if self._slots else None
        for item in due:
            item.progress_queued = False
        return due
