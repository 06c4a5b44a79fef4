"""The cross-node fan-out benchmark: its frame matching, and one tiny real run."""

from pathlib import Path

from benchmarks.cross_node_fanout import (
    Reference,
    Spectator,
    added_latencies,
    format_result,
    parse_args,
    run,
)
from ops.services import RedisServer


def _spectator(race: str, seen: list[tuple[bytes, float]]) -> Spectator:
    return Spectator(race_id=race, ws=None, seen=seen)  # type: ignore[arg-type]


def test_relay_latency_is_matched_by_frame_bytes() -> None:
    # When the first player of race r1 on the owner node got each frame.
    reference = Reference(
        first_seen={b"f1": 1.000, b"f2": 1.100, b"f3": 9.5}, by_race={"r1": {b"f1", b"f2", b"f3"}}
    )
    spectators = [
        _spectator("r1", [(b"f1", 1.002), (b"f2", 1.105), (b"zz", 1.2)]),
        _spectator("r1", [(b"f1", 1.004)]),  # missed f2 (f3 is too close to the end to count)
    ]
    latencies, lost, unmatched = added_latencies(spectators, reference, window_end=10.0)
    assert sorted(round(x, 3) for x in latencies) == [2.0, 4.0, 5.0]
    assert (lost, unmatched) == (1, 1)


async def test_a_tiny_real_run(redis_server: RedisServer, tmp_path: Path) -> None:
    args = parse_args(["--races", "2", "--spectators", "1", "--window", "2", "--warmup", "2"])
    result = await run(args, redis_server, tmp_path)
    assert result.remote_spectators == 2 and result.players == 10
    assert result.owner_frames_per_s > 0 and result.relayed_frames_per_s > 0
    assert result.added_latency_ms.count > 0 and result.unmatched == 0
    assert set(result.processes) == {"a", "b", "redis"}
    assert "added latency" in format_result(result)
