"""Lean load generator for node benchmarks: thousands of protocol-following players per process."""

from benchmarks.loadgen.admin import AdminClient
from benchmarks.loadgen.swarm import JoinFailed, Player, RaceGroup, RaceSeats, Swarm, WindowStats, percentile

__all__ = [
    "AdminClient",
    "JoinFailed",
    "Player",
    "RaceGroup",
    "RaceSeats",
    "Swarm",
    "WindowStats",
    "percentile",
]
