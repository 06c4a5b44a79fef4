"""Matchmaker settings from the environment, and the checks that stop a bad configuration."""

import pytest

from arena.settings import SettingsError
from matchmaker.settings import MatchmakerSettings, parse_neighbours


def test_from_env_reads_every_section() -> None:
    s = MatchmakerSettings.from_env(
        {
            "ARENA_MM_ID": "mm-7",
            "ARENA_MM_REGIONS": "eu, us ,ap",
            "ARENA_MM_NEIGHBOURS": "eu:us,eu:ap,us:eu",
            "ARENA_MM_RACE_TYPES": "quick,standard",
            "ARENA_MM_MIN_PLAYERS": "3",
            "ARENA_MM_FALLBACK_WAIT_S": "2.5",
            "ARENA_REDIS_URL": "redis://127.0.0.1:6390/0",
            "ARENA_ADMIN_TOKEN": "tok",
            "ARENA_ENV": "development",  # a short admin token is fine there
        }
    )
    assert s.matchmaker_id == "mm-7" and s.regions == ("eu", "us", "ap")
    assert s.neighbours == {"eu": ("us", "ap"), "us": ("eu",)}
    assert s.race_types == ("quick", "standard") and s.min_players == 3
    assert s.rules().fallback_wait_ms == 2500 and s.rules().min_players == 3
    assert s.redis.url.endswith(":6390/0") and s.secrets.admin_token == "tok"


@pytest.mark.parametrize(
    "env",
    [
        {"ARENA_MM_RACE_TYPES": "custom"},
        {"ARENA_MM_REGIONS": ""},
        {"ARENA_MM_REGIONS": "eu", "ARENA_MM_NEIGHBOURS": "eu:us"},
        {"ARENA_MM_MIN_PLAYERS": "6"},
        {"ARENA_MM_FALLBACK_WAIT_S": "20"},
        {"ARENA_MM_POOL_SIZE": "5000"},
        {"ARENA_MM_CLAIM_TTL_S": "3"},
        {"ARENA_MM_MAX_PLAYERS": "five"},
    ],
)
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        MatchmakerSettings.from_env({"ARENA_ENV": "development", **env})  # refused for env, not secrets


def test_neighbours_syntax() -> None:
    with pytest.raises(SettingsError):
        parse_neighbours("eu-us")
