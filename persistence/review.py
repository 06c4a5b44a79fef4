"""Held for review: which stored results wait for an operator before they are ranked.

A valid finish at or above ``ARENA_REVIEW_WPM`` (``ReadSideSettings.review_wpm``, 200 by default)
is possible but rare: persistence stores it with ``review_state`` 'held' and leaves it off the
leaderboards (docs/FAIRPLAY.md, "Held for review"). Decided here, at ingestion, so a node's hot
path is untouched. Pure: no I/O.
"""

from __future__ import annotations

from enum import StrEnum

from arena.results import ParticipantRecord
from persistence.leaderboards import counts_for_ranking


class ReviewState(StrEnum):
    CLEAR = "clear"  # never needed a review
    HELD = "held"  # waits for an operator; not ranked
    RELEASED = "released"  # an operator accepted it; ranked
    REJECTED = "rejected"  # an operator refused it; never ranked


def review_state(p: ParticipantRecord, review_wpm: float) -> ReviewState:
    """Only a result that would be ranked can be held: an invalid or unfinished one is never ranked."""
    if counts_for_ranking(p) and p.wpm >= review_wpm:
        return ReviewState.HELD
    return ReviewState.CLEAR
