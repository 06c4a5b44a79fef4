"""Who arrives when: a scenario turned into per-worker lists of arrivals (pure, seeded)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from simulators.swarm.scenario import Scenario, TypingMix

__all__ = ["Arrival", "WorkerPlan", "plan_arrivals", "split_by_worker"]


@dataclass(frozen=True, slots=True)
class Arrival:
    index: int  # 0..players-1, unique across workers
    at_s: float  # seconds after the run's start
    race_type: str
    region: str
    rating: float
    seed: int  # the bot's own random stream (typing profile, keystrokes)


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """Everything one worker process needs; written as JSON for the worker to read."""

    worker: int
    lobby_url: str
    t0: float  # time.monotonic() of the run's start: system-wide on Linux, shared by all workers
    stop_at: float  # time.monotonic() past which the worker gives up on everything
    typing: TypingMix
    redis_url: str | None  # when set, bots' ratings are seeded before they queue
    arrivals: list[Arrival] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerPlan:
        return cls(
            worker=int(data["worker"]),
            lobby_url=str(data["lobby_url"]),
            t0=float(data["t0"]),
            stop_at=float(data["stop_at"]),
            typing=TypingMix(**data["typing"]),
            redis_url=data.get("redis_url"),
            arrivals=[Arrival(**a) for a in data["arrivals"]],
        )


def plan_arrivals(scenario: Scenario) -> list[Arrival]:
    """Poisson arrivals at the scenario's rate, each with a race type, region and rating drawn
    from the scenario's weights; arrivals past the duration are dropped (the run is bounded)."""
    rng = random.Random(scenario.seed)
    types, type_weights = zip(*scenario.race_mix.items(), strict=True)
    regions, region_weights = zip(*scenario.regions.items(), strict=True)
    arrivals: list[Arrival] = []
    at = 0.0
    for index in range(scenario.players):
        at += rng.expovariate(scenario.arrival_rate)
        if at >= scenario.duration_s:
            break
        rating = (
            rng.gauss(scenario.rating.mean, scenario.rating.sd)
            if scenario.rating.sd
            else scenario.rating.mean
        )
        arrivals.append(
            Arrival(
                index=index,
                at_s=round(at, 4),
                race_type=rng.choices(types, type_weights)[0],
                region=rng.choices(regions, region_weights)[0],
                rating=round(min(4000.0, max(100.0, rating)), 1),
                seed=rng.getrandbits(63),
            )
        )
    return arrivals


def split_by_worker(arrivals: list[Arrival], workers: int) -> list[list[Arrival]]:
    """Round robin: every worker gets the same arrival rate, so room-mates often live in
    different processes (which is what the cross-process latency merge is for)."""
    return [arrivals[w::workers] for w in range(workers)]
