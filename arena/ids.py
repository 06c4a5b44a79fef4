"""Typed identifiers, so a race id is never passed where a player id belongs."""

from __future__ import annotations

import secrets
from typing import NewType

RaceId = NewType("RaceId", str)
PlayerId = NewType("PlayerId", str)
NodeId = NewType("NodeId", str)


def new_race_id() -> RaceId:
    """A short random id; 16 hex chars is plenty for uniqueness and stays cheap on the wire."""
    return RaceId("r" + secrets.token_hex(8))


def new_player_id() -> PlayerId:
    return PlayerId("p" + secrets.token_hex(8))
