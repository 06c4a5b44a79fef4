"""The lobby's garbage collector settings: the start-up heap frozen, the young threshold raised,
every pause timed (lobby/collector.py, issue 19)."""

import gc
from collections.abc import Iterator

import pytest

from arena.settings import SettingsError
from lobby import collector
from lobby.metrics import LobbyMetrics
from lobby.settings import LobbySettings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was: unfrozen, its thresholds back."""
    thresholds = gc.get_threshold()
    yield None
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_freezes_the_heap_and_sets_the_young_threshold(restored_gc: None) -> None:
    gc.unfreeze()
    collector.tune(freeze=True, young=12_345)
    assert gc.get_freeze_count() > 1000  # this process's modules, at least
    assert gc.get_threshold() == (12_345, 10, 10)


def test_tune_without_freeze_leaves_the_heap_walked(restored_gc: None) -> None:
    gc.unfreeze()
    collector.tune(freeze=False, young=700)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (700, 10, 10)


def test_garbage_collections_are_timed() -> None:
    metrics = LobbyMetrics()
    metrics.watch_gc()
    try:
        gc.collect(0)
        count = metrics.registry.get_sample_value("arena_lobby_gc_pause_seconds_count", {"generation": "0"})
        assert count is not None and count >= 1
    finally:
        gc.callbacks.pop()


def test_gc_settings_from_env() -> None:
    d = LobbySettings()
    assert d.gc_freeze and d.gc_young == 50_000
    dev = {"ARENA_ENV": "development"}  # no token secret needed
    s = LobbySettings.from_env({**dev, "ARENA_LOBBY_GC_FREEZE": "false", "ARENA_LOBBY_GC_YOUNG": "2000"})
    assert not s.gc_freeze and s.gc_young == 2000
    for bad in (
        {"ARENA_LOBBY_GC_YOUNG": "50"},
        {"ARENA_LOBBY_GC_YOUNG": "2000000"},
        {"ARENA_LOBBY_GC_FREEZE": "maybe"},
    ):
        with pytest.raises(SettingsError):
            LobbySettings.from_env({**dev, **bad})  # refused for the gc setting, not secrets
