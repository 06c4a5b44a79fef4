"""The node's settings from the environment, and their bounds."""

import pytest

from gameserver.settings import RaceSettings


def test_the_input_cadence_is_read_and_bounded() -> None:
    assert RaceSettings.from_env({}).input_cadence_ms == 250
    assert RaceSettings.from_env({"ARENA_RACE_INPUT_CADENCE_MS": "500"}).input_cadence_ms == 500
    assert RaceSettings.from_env({"ARENA_RACE_INPUT_CADENCE_MS": "0"}).input_cadence_ms == 0  # no hint
    for bad in ("-1", "2001"):
        with pytest.raises(ValueError, match="ARENA_RACE_INPUT_CADENCE_MS"):
            RaceSettings.from_env({"ARENA_RACE_INPUT_CADENCE_MS": bad})
