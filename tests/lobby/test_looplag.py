"""The loop-lag probe: a loop held by blocking work shows up as lag; it stops cleanly."""

import asyncio
import time

from lobby.looplag import LoopLagProbe
from lobby.metrics import LobbyMetrics


async def test_a_held_loop_is_measured_and_the_probe_stops() -> None:
    metrics = LobbyMetrics()
    probe = LoopLagProbe(metrics.loop_lag_seconds, interval_s=0.005)
    await probe.start()
    assert probe.running
    await asyncio.sleep(0.02)  # the probe is asleep, due in under 5 ms
    time.sleep(0.06)  # noqa: ASYNC251  # the point: blocking work holds the loop 60 ms
    await asyncio.sleep(0.02)
    await probe.stop()
    assert not probe.running
    registry = metrics.registry
    count = registry.get_sample_value("arena_lobby_loop_lag_seconds_count")
    late = registry.get_sample_value("arena_lobby_loop_lag_seconds_bucket", {"le": "0.025"})
    assert count is not None and late is not None
    assert count - late >= 1  # one wake-up at least 25 ms late: the held loop
    assert registry.get_sample_value("arena_lobby_loop_lag_seconds_sum") >= 0.04  # type: ignore[operator]
