"""A swarm scenario: who arrives, when, for which race, from a TOML file.

Parsed with ``tomllib`` into frozen dataclasses; every mistake is a ``ScenarioError`` that
names the offending key, so a typo in a scenario fails before anything starts.

    [swarm]
    name = "small"
    players = 200          # total bots: the run never starts more
    arrival_rate = 20.0    # bots per second (Poisson arrivals)
    duration_s = 60        # arrivals happen within this window
    drain_s = 60           # then races get this long to finish; the run stops at duration + drain
    workers = 2            # bot processes
    seed = 1

    [race_mix]             # race type -> weight
    quick = 0.8
    standard = 0.2

    [regions]              # region -> weight
    local = 1.0

    [rating]               # seeded into Redis when the run is given --redis-url
    mean = 1500
    sd = 300

    [typing]
    mean_wpm = 60
    sd_wpm = 22
    send_interval_ms = 200
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MATCHABLE_RACE_TYPES",
    "RatingSpread",
    "Scenario",
    "ScenarioError",
    "TypingMix",
    "load_scenario",
    "parse_scenario",
]

MATCHABLE_RACE_TYPES = frozenset({"quick", "standard", "marathon"})  # custom races are private only
_SECTIONS = frozenset({"swarm", "race_mix", "regions", "rating", "typing"})
_SWARM_KEYS = frozenset({"name", "players", "arrival_rate", "duration_s", "drain_s", "workers", "seed"})
_RATING_KEYS = frozenset({"mean", "sd"})
_TYPING_KEYS = frozenset({"mean_wpm", "sd_wpm", "send_interval_ms"})
MAX_PLAYERS = 100_000
MAX_DURATION_S = 3600.0
MAX_WORKERS = 64


class ScenarioError(ValueError):
    """A scenario that cannot run; the message names the key."""


@dataclass(frozen=True, slots=True)
class RatingSpread:
    mean: float = 1500.0
    sd: float = 0.0  # 0: every bot is a new player (1500)


@dataclass(frozen=True, slots=True)
class TypingMix:
    mean_wpm: float = 60.0
    sd_wpm: float = 22.0
    send_interval_ms: int = 200


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    players: int
    arrival_rate: float  # bots per second
    duration_s: float  # arrivals happen in [0, duration_s)
    drain_s: float  # then races may finish; everything stops at duration_s + drain_s
    workers: int
    seed: int
    race_mix: dict[str, float]  # weights, as given
    regions: dict[str, float]
    rating: RatingSpread
    typing: TypingMix

    @property
    def limit_s(self) -> float:
        """The whole run's hard limit, from its start."""
        return self.duration_s + self.drain_s


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return parse_scenario(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from exc


def parse_scenario(data: dict[str, Any]) -> Scenario:
    _no_unknown("top level", data, _SECTIONS)
    swarm = _table(data, "swarm", required=True)
    _no_unknown("[swarm]", swarm, _SWARM_KEYS)
    rating = _table(data, "rating")
    _no_unknown("[rating]", rating, _RATING_KEYS)
    typing = _table(data, "typing")
    _no_unknown("[typing]", typing, _TYPING_KEYS)
    name = swarm.get("name", "swarm")
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError("swarm.name must be a non-empty string")
    return Scenario(
        name=name.strip(),
        players=_int(swarm, "swarm.players", "players", low=1, high=MAX_PLAYERS),
        arrival_rate=_number(swarm, "swarm.arrival_rate", "arrival_rate", low=0.01, high=100_000.0),
        duration_s=_number(swarm, "swarm.duration_s", "duration_s", low=1.0, high=MAX_DURATION_S),
        drain_s=_number(swarm, "swarm.drain_s", "drain_s", low=0.0, high=MAX_DURATION_S, default=60.0),
        workers=_int(swarm, "swarm.workers", "workers", low=1, high=MAX_WORKERS, default=1),
        seed=_int(swarm, "swarm.seed", "seed", low=0, high=2**63 - 1, default=1),
        race_mix=_weights(data, "race_mix", default={"quick": 1.0}, allowed=MATCHABLE_RACE_TYPES),
        regions=_weights(data, "regions", default={"local": 1.0}, allowed=None),
        rating=RatingSpread(
            mean=_number(rating, "rating.mean", "mean", low=0.0, high=5000.0, default=1500.0),
            sd=_number(rating, "rating.sd", "sd", low=0.0, high=2000.0, default=0.0),
        ),
        typing=TypingMix(
            mean_wpm=_number(typing, "typing.mean_wpm", "mean_wpm", low=15.0, high=160.0, default=60.0),
            sd_wpm=_number(typing, "typing.sd_wpm", "sd_wpm", low=0.0, high=100.0, default=22.0),
            send_interval_ms=_int(
                typing, "typing.send_interval_ms", "send_interval_ms", low=50, high=2000, default=200
            ),
        ),
    )


# ---- helpers: each names the key it complains about ---------------------------------


def _no_unknown(where: str, table: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def _table(data: dict[str, Any], name: str, *, required: bool = False) -> dict[str, Any]:
    if name not in data:
        if required:
            raise ScenarioError(f"missing table [{name}]")
        return {}
    table = data[name]
    if not isinstance(table, dict):
        raise ScenarioError(f"[{name}] must be a table")
    return table


_MISSING: Any = object()


def _number(
    table: dict[str, Any], label: str, key: str, *, low: float, high: float, default: float = _MISSING
) -> float:
    value = table.get(key, default)
    if value is _MISSING:
        raise ScenarioError(f"{label} is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{label} must be a number, not {value!r}")
    if not low <= value <= high:
        raise ScenarioError(f"{label} must be in [{low:g}, {high:g}], not {value!r}")
    return float(value)


def _int(table: dict[str, Any], label: str, key: str, *, low: int, high: int, default: int = _MISSING) -> int:
    value = table.get(key, default)
    if value is _MISSING:
        raise ScenarioError(f"{label} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{label} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ScenarioError(f"{label} must be in [{low}, {high}], not {value!r}")
    return value


def _weights(
    data: dict[str, Any], name: str, *, default: dict[str, float], allowed: frozenset[str] | None
) -> dict[str, float]:
    table = _table(data, name)
    if not table:
        return dict(default)
    weights: dict[str, float] = {}
    for key in table:
        if allowed is not None and key not in allowed:
            raise ScenarioError(f"{name}.{key}: unknown; expected one of {sorted(allowed)}")
        weights[key] = _number(table, f"{name}.{key}", key, low=0.0, high=1e9)
    if sum(weights.values()) <= 0:
        raise ScenarioError(f"[{name}]: the weights must not all be 0")
    return weights
