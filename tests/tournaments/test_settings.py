"""The director's settings: what the adoption of a dead node's heat race may cost in waiting."""

import pytest

from arena.settings import SettingsError
from tournaments.settings import DirectorSettings

DEV = {"ARENA_ENV": "development"}  # the development secrets: only the settings under test matter


def test_the_director_waits_for_an_adoption_within_bounds() -> None:
    assert DirectorSettings.from_env(DEV).adoption_wait_s == 10.0
    zero = DirectorSettings.from_env(DEV | {"ARENA_TOURNAMENT_ADOPTION_WAIT_S": "0"})
    assert zero.adoption_wait_s == 0.0
    for bad in ("-1", "601"):
        with pytest.raises(SettingsError, match="ADOPTION_WAIT_S"):
            DirectorSettings.from_env(DEV | {"ARENA_TOURNAMENT_ADOPTION_WAIT_S": bad})
