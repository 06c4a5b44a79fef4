"""Placement: a new account's results count on the boards once there is enough evidence.

The letter-pair rule (persistence/pairs.py) judges a player only once their races pool 1,000
intervals of repeated letter pairs: about 3-7 short races. Before that, a letter-blind bot or a
replayed recording at a human speed would be ranked, under every new account. So, as ranked games
and typing sites do with a placement period, a valid finish of a player with no ranked result yet
(``players.ranked_races`` 0), stored while their evidence is still short, is 'provisional': in the
history and on Kafka as usual, on no board and not in the personal-best history. The result that
completes the evidence settles them all (docs/FAIRPLAY.md, "Placement"):

- the rule passes: the player's provisional results of the last ``ARENA_REVIEW_PROVISIONAL_MAX_S``
  are released, as persistence's own review decisions (``review_decisions.placed_by``: that race),
  which flow through the outbox like an operator's release (boards, recent results, Kafka);
- the rule fails: they are held, reason ``pairs_history`` (or ``pairs_population``: the
  agreement rule of persistence/pair_population.py), for an operator.

Ratings are not held: a node rates a race as it ends, provisional or not. Pure: no I/O (the
store applies the steps in the batch's transaction, persistence/store.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from persistence.review import MAX_REASON, HoldReason, ReviewDecisionRecord, ReviewState


class Settle(StrEnum):
    """What becomes of the player's provisional results."""

    RELEASE = "release"  # the evidence is complete and the letter-pair rule passed
    HOLD = "hold"  # the rule failed: held, reason pairs_history


@dataclass(frozen=True, slots=True)
class Step:
    """One new result's review state, and what it settles."""

    state: ReviewState
    reason: HoldReason | None = None
    settle: Settle | None = None


def step(rule: HoldReason | None, pairs_held: bool, short: bool, placing: bool) -> Step:
    """The review state of a ranked result (a valid finish).

    ``rule``: why the WPM rules hold it (persistence/review.py hold_reason), None if they do not;
    ``pairs_held``: the player's letter-pair evidence holds it; ``short``: that evidence, with this
    result counted, is still short of the rule's intervals; ``placing``: the player is in placement
    (placement on, no ranked result stored yet).
    """
    reason = rule or (HoldReason.PAIRS_HISTORY if pairs_held else None)
    state = ReviewState.CLEAR if reason is None else ReviewState.HELD
    if not placing:
        return Step(state, reason)
    if pairs_held:
        return Step(state, reason, Settle.HOLD)
    if short:
        # A WPM hold wins: an operator looks at it anyway.
        return Step(state, reason) if reason else Step(ReviewState.PROVISIONAL)
    return Step(state, reason, Settle.RELEASE)


def placement_reason(by_race: str, operator: bool = False) -> str:
    why = "an operator released race" if operator else "letter-pair evidence complete at race"
    return f"placement: {why} {by_race}"[:MAX_REASON]


def placement_decision(
    race_id: str, player_id: str, by_race: str, decided_at: int, *, operator: bool = False
) -> ReviewDecisionRecord:
    """Persistence's own release of a provisional result (carried by the outbox like an operator's):
    the player's evidence completed and passed at ``by_race``, or an operator released that race."""
    reason = placement_reason(by_race, operator)
    return ReviewDecisionRecord.of(race_id, player_id, ReviewState.RELEASED.value, reason, decided_at)
