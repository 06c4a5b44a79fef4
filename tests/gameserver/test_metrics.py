"""Hot counts reach Prometheus when the tick publishes them, not before."""

from arena.protocol import MsgType
from gameserver.metrics import NodeMetrics


def _value(metrics: NodeMetrics, name: str, kind: MsgType) -> float | None:
    return metrics.registry.get_sample_value(name, {"type": kind.value})


def test_counts_are_published_once() -> None:
    metrics = NodeMetrics()
    for _ in range(3):
        metrics.message_in(MsgType.INPUT)
    metrics.frames_sent(MsgType.PROGRESS, 4)
    assert _value(metrics, "arena_gameserver_messages_in_total", MsgType.INPUT) == 0
    metrics.publish()
    metrics.publish()  # nothing new: nothing added twice
    assert _value(metrics, "arena_gameserver_messages_in_total", MsgType.INPUT) == 3
    assert _value(metrics, "arena_gameserver_frames_out_total", MsgType.PROGRESS) == 4


def test_garbage_collections_are_timed() -> None:
    import gc

    metrics = NodeMetrics()
    metrics.watch_gc()
    try:
        gc.collect(0)
        name = "arena_gameserver_gc_pause_seconds_count"
        count = metrics.registry.get_sample_value(name, {"generation": "0"})
        assert count is not None and count >= 1
    finally:
        gc.callbacks.pop()
