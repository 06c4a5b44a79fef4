"""The node's settings from the environment, and their bounds."""

import pytest

from gameserver.settings import LimitSettings, RaceSettings


def test_the_input_cadence_is_read_and_bounded() -> None:
    assert RaceSettings.from_env({}).input_cadence_ms == 250
    assert RaceSettings.from_env({"ARENA_RACE_INPUT_CADENCE_MS": "500"}).input_cadence_ms == 500
    assert RaceSettings.from_env({"ARENA_RACE_INPUT_CADENCE_MS": "0"}).input_cadence_ms == 0  # no hint
    for bad in ("-1", "2001"):
        with pytest.raises(ValueError, match="ARENA_RACE_INPUT_CADENCE_MS"):
            RaceSettings.from_env({"ARENA_RACE_INPUT_CADENCE_MS": bad})


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
