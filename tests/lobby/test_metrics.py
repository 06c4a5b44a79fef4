"""The lobby's request metrics, counted in plain numbers and read at scrape time (no server)."""

from __future__ import annotations

from prometheus_client import generate_latest

from lobby.metrics import REQUEST_BUCKETS, LobbyMetrics


def test_requests_are_counted_by_route_method_and_status() -> None:
    metrics = LobbyMetrics()
    for _ in range(3):
        metrics.answered("/v1/presence", "POST", 202, 0.002)
    metrics.answered("/v1/presence", "POST", 429, 0.001)
    metrics.answered("unmatched", "GET", 404, 0.001)
    sample = metrics.registry.get_sample_value
    labels = {"route": "/v1/presence", "method": "POST"}
    assert sample("arena_lobby_requests_total", {**labels, "status": "202"}) == 3
    assert sample("arena_lobby_requests_total", {**labels, "status": "429"}) == 1
    assert sample("arena_lobby_requests_total", {"route": "unmatched", "method": "GET", "status": "404"}) == 1
    assert sample("arena_lobby_requests_total", {**labels, "status": "500"}) is None


def test_durations_fall_in_prometheus_buckets() -> None:
    metrics = LobbyMetrics()
    # A duration equal to a bound counts in that bound's bucket (le: less or equal), as
    # prometheus_client's Histogram does; one above the last bound only in +Inf.
    for seconds in (0.0005, 0.001, 0.0011, 0.01, 31.0):
        metrics.answered("/v1/presence", "POST", 202, seconds)

    def bucket(le: str) -> float | None:
        return metrics.registry.get_sample_value(
            "arena_lobby_request_duration_seconds_bucket", {"route": "/v1/presence", "le": le}
        )

    assert bucket("0.001") == 2
    assert bucket("0.0025") == 3
    assert bucket("0.005") == 3
    assert bucket("0.01") == 4
    assert bucket("30.0") == 4
    assert bucket("+Inf") == 5
    route = {"route": "/v1/presence"}
    count = metrics.registry.get_sample_value("arena_lobby_request_duration_seconds_count", route)
    total = metrics.registry.get_sample_value("arena_lobby_request_duration_seconds_sum", route)
    assert count == 5
    assert total is not None and abs(total - 31.0126) < 1e-9
    text = generate_latest(metrics.registry).decode()
    assert text.count("arena_lobby_request_duration_seconds_bucket{le=") == len(REQUEST_BUCKETS) + 1


def test_heartbeats_counter() -> None:
    metrics = LobbyMetrics()
    assert metrics.registry.get_sample_value("arena_lobby_presence_heartbeats_total") == 0
    metrics.presence_heartbeats.inc()
    metrics.presence_heartbeats.inc(2)
    assert metrics.registry.get_sample_value("arena_lobby_presence_heartbeats_total") == 3
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE arena_lobby_presence_heartbeats_total counter" in text
