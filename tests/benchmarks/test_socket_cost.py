"""The socket-cost benchmark's round, small: it measures what it says (real node, real sockets)."""

from benchmarks.socket_cost import one_round


async def test_a_round_holds_every_socket_and_counts_what_each_keeps(redis_url: str) -> None:
    result = await one_round(redis_url, sockets=40, concurrency=10)
    assert result["held"] and result["all_gone_after_close"], result
    assert result["upgrades_per_s"] > 0 and result["cpu_us_per_upgrade"] > 0
    # An open socket keeps the node's own objects only (≈ 54 pymalloc blocks); aiohttp's request,
    # protocol and tasks were ≈ 110 more (benchmarks/socket_cost.py, docs/PERFORMANCE.md).
    assert 10 < result["blocks_per_socket"] < 110, result
