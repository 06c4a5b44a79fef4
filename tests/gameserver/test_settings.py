"""The node's settings from the environment, and their bounds."""

import pytest

from gameserver.settings import LimitSettings, NodeSettings, RaceSettings


def test_the_input_cadence_is_read_and_bounded() -> None:
    assert RaceSettings.from_env({}).input_cadence_ms == 250
    assert RaceSettings.from_env({"ARENA_RACE_INPUT_CADENCE_MS": "500"}).input_cadence_ms == 500
    assert RaceSettings.from_env({"ARENA_RACE_INPUT_CADENCE_MS": "0"}).input_cadence_ms == 0  # no hint
    for bad in ("-1", "2001"):
        with pytest.raises(ValueError, match="ARENA_RACE_INPUT_CADENCE_MS"):
            RaceSettings.from_env({"ARENA_RACE_INPUT_CADENCE_MS": bad})


def test_the_results_write_phase_batches_and_redis_pool_are_read_and_bounded() -> None:
    dev = {"ARENA_ENV": "development"}  # development secrets are fine here
    d = NodeSettings.from_env(dev)
    assert (d.results_write_s, d.redis.max_connections, d.redis.pool_timeout_s) == (10.0, 100, 5.0)
    assert (d.outbox.batch_max, d.outbox.batch_bytes, d.outbox.retry_cap_s) == (100, 4 << 20, 2.0)
    s = NodeSettings.from_env(
        dev
        | {
            "ARENA_NODE_RESULTS_WRITE_S": "3",
            "ARENA_REDIS_MAX_CONNECTIONS": "8",
            "ARENA_REDIS_POOL_TIMEOUT_S": "1.5",
            "ARENA_OUTBOX_BATCH_MAX": "250",
            "ARENA_OUTBOX_BATCH_BYTES": "1048576",
            "ARENA_OUTBOX_RETRY_CAP_S": "0.5",
        }
    )
    assert (s.results_write_s, s.redis.max_connections, s.redis.pool_timeout_s) == (3.0, 8, 1.5)
    assert (s.outbox.batch_max, s.outbox.batch_bytes, s.outbox.retry_cap_s) == (250, 1 << 20, 0.5)
    for name, bad in (
        ("ARENA_NODE_RESULTS_WRITE_S", "0"),
        ("ARENA_NODE_RESULTS_WRITE_S", "301"),
        ("ARENA_REDIS_MAX_CONNECTIONS", "0"),
        ("ARENA_REDIS_MAX_CONNECTIONS", "10001"),
        ("ARENA_REDIS_POOL_TIMEOUT_S", "0"),
        ("ARENA_OUTBOX_BATCH_MAX", "0"),
        ("ARENA_OUTBOX_BATCH_MAX", "1001"),
        ("ARENA_OUTBOX_BATCH_BYTES", "1024"),
        ("ARENA_OUTBOX_RETRY_CAP_S", "0.01"),
        ("ARENA_OUTBOX_RETRY_CAP_S", "31"),
    ):
        with pytest.raises(ValueError, match=name):
            NodeSettings.from_env(dev | {name: bad})


def test_the_request_deadlines_are_read_and_bounded() -> None:
    limits = LimitSettings.from_env({})
    assert (limits.request_head_timeout_s, limits.request_body_timeout_s) == (20.0, 10.0)
    limits = LimitSettings.from_env(
        {"ARENA_REQUEST_HEAD_TIMEOUT_S": "5", "ARENA_REQUEST_BODY_TIMEOUT_S": "2.5"}
    )
    assert (limits.request_head_timeout_s, limits.request_body_timeout_s) == (5.0, 2.5)
    for name in ("ARENA_REQUEST_HEAD_TIMEOUT_S", "ARENA_REQUEST_BODY_TIMEOUT_S"):
        for bad in ("0", "-1", "301"):
            with pytest.raises(ValueError, match=name):
                LimitSettings.from_env({name: bad})


def test_checkpoints_are_on_by_default_and_their_interval_is_bounded() -> None:
    d = RaceSettings.from_env({})
    assert (d.checkpoint, d.checkpoint_ms) == (True, 2000)
    s = RaceSettings.from_env({"ARENA_RACE_CHECKPOINT": "0", "ARENA_RACE_CHECKPOINT_MS": "250"})
    assert (s.checkpoint, s.checkpoint_ms) == (False, 250)
    for bad in ("99", "10001"):
        with pytest.raises(ValueError):
            RaceSettings.from_env({"ARENA_RACE_CHECKPOINT_MS": bad})


def test_adoption_is_on_by_default_and_can_be_turned_off() -> None:
    assert RaceSettings.from_env({}).adopt is True
    assert RaceSettings.from_env({"ARENA_RACE_ADOPT": "0"}).adopt is False


def test_the_fair_play_arrival_settings_are_read_and_bounded() -> None:
    base = {"ARENA_ENV": "development"}
    default = NodeSettings.from_env(base).fairplay
    assert (default.arrival_tolerance_ms, default.held_back_batches) == (1000, 2)
    env = base | {"ARENA_FAIRPLAY_ARRIVAL_TOLERANCE_MS": "600", "ARENA_FAIRPLAY_HELD_BACK_BATCHES": "3"}
    read = NodeSettings.from_env(env).fairplay
    assert (read.arrival_tolerance_ms, read.held_back_batches) == (600, 3)
    bad_values = (("ARENA_FAIRPLAY_ARRIVAL_TOLERANCE_MS", "-1"), ("ARENA_FAIRPLAY_HELD_BACK_BATCHES", "0"))
    for name, bad in bad_values:
        with pytest.raises(ValueError, match=name):
            NodeSettings.from_env(base | {name: bad})
