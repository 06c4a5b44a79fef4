"""Progress batching: one frame per race per window, sent when the window closes."""

from dataclasses import dataclass

import pytest

from gameserver.batcher import ProgressBatcher


@dataclass(eq=False)
class Item:
    name: str
    progress_queued: bool = False


def test_a_race_is_due_one_window_after_its_first_input() -> None:
    batcher: ProgressBatcher[Item] = ProgressBatcher(window_ms=50, slot_ms=5)
    a = Item("a")
    batcher.queue(a, now_ms=1000)
    batcher.queue(a, now_ms=1030)  # already queued: the first deadline holds
    assert len(batcher) == 1
    assert batcher.take_due(1049) == []
    assert batcher.take_due(1050) == [a]
    assert not a.progress_queued and batcher.take_due(2000) == []


def test_due_items_come_oldest_first_and_later_ones_wait() -> None:
    batcher: ProgressBatcher[Item] = ProgressBatcher(window_ms=20, slot_ms=5)
    a, b, c = Item("a"), Item("b"), Item("c")
    batcher.queue(b, now_ms=110)
    batcher.queue(a, now_ms=100)
    batcher.queue(c, now_ms=200)
    assert batcher.take_due(135) == [a, b]
    assert batcher.take_due(219) == []
    assert batcher.take_due(220) == [c]
    batcher.queue(a, now_ms=300)  # taken items can be queued again
    assert batcher.take_due(320) == [a]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ProgressBatcher(window_ms=-1)
    with pytest.raises(ValueError):
        ProgressBatcher(window_ms=10, slot_ms=0)
