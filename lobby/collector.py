"""The lobby process's cyclic garbage collector: the start-up heap frozen, young objects
collected less often (``ARENA_LOBBY_GC_FREEZE``, ``ARENA_LOBBY_GC_YOUNG``).

Why (issue 19): a full collection walked every object the lobby holds, most of them made at
start-up (modules, routes, the OpenAPI-checked schemas): ~31 ms of CPU in the lobby under load,
every few seconds, and every request in flight waited behind it. Frozen, those objects are
never walked again (Python's ``gc.freeze``) and a full collection takes ~1-2 ms. The young
generation's threshold (Python's default: 700 allocations) is raised so that a request's
short-lived objects mostly die before a collection looks at them; the older generations keep
Python's ratios (10, 10), so cycles made after start-up are still collected on their own.
Pauses are timed in ``arena_lobby_gc_pause_seconds`` (``LobbyMetrics.watch_gc``).

Call ``tune`` once, in ``__main__``, after start-up: the collector is process-wide.
"""

from __future__ import annotations

import gc

import structlog

log = structlog.get_logger(__name__)

OLDER_RATIOS = (10, 10)  # Python's defaults for generations 1 and 2


def tune(freeze: bool, young: int) -> None:
    """Freeze what start-up made (after collecting its garbage) and set the young threshold."""
    if freeze:
        gc.collect()  # garbage frozen now would never be freed
        gc.freeze()
    gc.set_threshold(young, *OLDER_RATIOS)
    log.debug("gc_tuned", frozen=gc.get_freeze_count(), thresholds=gc.get_threshold())
