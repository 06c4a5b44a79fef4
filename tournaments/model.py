"""Tournaments as data: what a creator asks for, the lifecycle states, and the heats. No I/O.

A tournament is ``registering`` from its creation, ``running`` from its start (a scheduled
one at its start time, an instant one once full) and ``finished`` after its last round; one
that cannot start (too few players) is ``cancelled``.

A heat is one seat group of one round. It is ``pending`` until the director reserves a race
for it; ``placing`` while the director asks a node (the intent is recorded first, with the
attempt number); ``placed`` once the race exists and the players can get their seats; then
``finished`` (every race of the heat reported) or ``settled`` (decided without a complete
result: a bye, a dead node, a timeout - see docs/TOURNAMENTS.md). A heat of the points rule
goes back to ``pending`` between its races, and a heat whose node died goes back to
``pending`` for its re-run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from arena.protocol import RaceType
from tournaments.bracket import Advancement, BracketRules, Entrant, Standing, round_sizes


class TournamentKind(StrEnum):
    SCHEDULED = "scheduled"  # starts at ``starts_at``; registration closes then
    INSTANT = "instant"  # starts as soon as it is full


class Visibility(StrEnum):
    PUBLIC = "public"  # listed; anyone may register
    PRIVATE = "private"  # not listed; registering needs the invite code


class TournamentState(StrEnum):
    REGISTERING = "registering"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class HeatState(StrEnum):
    PENDING = "pending"
    PLACING = "placing"
    PLACED = "placed"
    FINISHED = "finished"
    SETTLED = "settled"


class InvalidTransition(RuntimeError):
    """A lifecycle step the current state does not allow."""


_TOURNAMENT_TRANSITIONS: dict[TournamentState, frozenset[TournamentState]] = {
    TournamentState.REGISTERING: frozenset({TournamentState.RUNNING, TournamentState.CANCELLED}),
    TournamentState.RUNNING: frozenset({TournamentState.FINISHED}),
    TournamentState.FINISHED: frozenset(),
    TournamentState.CANCELLED: frozenset(),
}

_HEAT_TRANSITIONS: dict[HeatState, frozenset[HeatState]] = {
    HeatState.PENDING: frozenset({HeatState.PLACING, HeatState.SETTLED}),
    # placing -> placing: a new director takes over an attempt whose outcome it cannot know
    HeatState.PLACING: frozenset({HeatState.PLACING, HeatState.PENDING, HeatState.PLACED, HeatState.SETTLED}),
    # placed -> pending: the next race of a points heat, or the re-run of a heat whose node died
    HeatState.PLACED: frozenset({HeatState.PENDING, HeatState.FINISHED, HeatState.SETTLED}),
    HeatState.FINISHED: frozenset(),
    HeatState.SETTLED: frozenset(),
}


def check_tournament_transition(frm: TournamentState, to: TournamentState) -> None:
    if to not in _TOURNAMENT_TRANSITIONS[frm]:
        raise InvalidTransition(f"tournament: {frm} -> {to} is not allowed")


def check_heat_transition(frm: HeatState, to: HeatState) -> None:
    if to not in _HEAT_TRANSITIONS[frm]:
        raise InvalidTransition(f"heat: {frm} -> {to} is not allowed")


class SpecError(ValueError):
    """A tournament spec that cannot be run; ``code`` names the field for API errors."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SpecLimits:
    """Bounds the API enforces on what a creator may ask (settings)."""

    max_players: int = 1024
    max_heat_size: int = 5  # the nodes' ARENA_RACE_MAX_PLAYERS: a heat is one race
    max_races_per_round: int = 5
    max_prizes: int = 32
    max_schedule_ahead_ms: int = 30 * 86_400_000
    custom_min_chars: int = 20
    custom_max_chars: int = 2000


@dataclass(frozen=True, slots=True)
class TournamentSpec:
    """What a creator asks for. ``max_rounds`` bounds the rounds; the bracket may need fewer."""

    name: str
    kind: TournamentKind
    visibility: Visibility
    race_type: str
    max_players: int
    heat_size: int
    rule: Advancement
    advance: int  # players per heat who go on
    races_per_round: int  # 1 for top_k; N races per heat for points
    max_rounds: int
    prizes: tuple[str, ...] = ()
    starts_at: int | None = None  # ms; scheduled tournaments only
    custom_text: str | None = None  # custom race type only
    region: str = "local"

    def rules(self) -> BracketRules:
        return BracketRules(
            heat_size=self.heat_size,
            advance=self.advance,
            rule=self.rule,
            races_per_round=self.races_per_round,
            max_rounds=self.max_rounds,
        )

    def validate(self, limits: SpecLimits, now: int) -> None:
        """Raise ``SpecError`` naming the first field that cannot work."""
        if not 1 <= len(self.name) <= 64 or not self.name.isprintable():
            raise SpecError("bad_name", "name must be 1 to 64 printable characters")
        if self.race_type not in {t.value for t in RaceType}:
            raise SpecError("bad_race_type", f"race_type must be one of {[t.value for t in RaceType]}")
        if (self.race_type == RaceType.CUSTOM.value) != (self.custom_text is not None):
            raise SpecError("bad_custom_text", "custom_text is required for, and only for, race_type custom")
        if self.kind is TournamentKind.SCHEDULED:
            if self.starts_at is None or not now < self.starts_at <= now + limits.max_schedule_ahead_ms:
                raise SpecError("bad_starts_at", "a scheduled tournament needs starts_at (ms) in the future")
        elif self.starts_at is not None:
            raise SpecError("bad_starts_at", "an instant tournament starts when full: no starts_at")
        if not 2 <= self.max_players <= limits.max_players:
            raise SpecError("bad_max_players", f"max_players must be 2 to {limits.max_players}")
        if not 2 <= self.heat_size <= limits.max_heat_size:
            raise SpecError("bad_heat_size", f"heat_size must be 2 to {limits.max_heat_size}")
        if not 1 <= self.advance < self.heat_size:
            raise SpecError("bad_advance", "advance must be at least 1 and below heat_size")
        if self.rule is Advancement.TOP_K and self.races_per_round != 1:
            raise SpecError("bad_races_per_round", "the top_k rule plays one race per heat")
        if not 1 <= self.races_per_round <= limits.max_races_per_round:
            raise SpecError(
                "bad_races_per_round", f"races_per_round must be 1 to {limits.max_races_per_round}"
            )
        if not 1 <= self.max_rounds <= 10:
            raise SpecError("bad_rounds", "rounds must be 1 to 10")
        sizes = round_sizes(self.max_players, self.rules())
        if sizes[-1] > self.heat_size:
            raise SpecError(
                "bad_rounds",
                f"{self.max_players} players need more than {self.max_rounds} rounds with these rules",
            )
        if len(self.prizes) > limits.max_prizes or not all(1 <= len(p) <= 64 for p in self.prizes):
            raise SpecError("bad_prizes", f"prizes: at most {limits.max_prizes}, each 1 to 64 characters")


def rounds_needed(players: int, rules: BracketRules) -> int:
    return len(round_sizes(players, rules))


@dataclass(frozen=True, slots=True)
class Tournament:
    """A tournament as stored (``tournament:{id}:state``)."""

    id: str
    spec: TournamentSpec
    state: TournamentState
    version: int  # bumps on every change of this hash (registrations included)
    created_at: int
    created_by: str
    players: int  # registered
    round: int = 0  # current round (0 before the first)
    rounds_planned: int = 0  # at the start, for the players who registered
    started_at: int | None = None
    finished_at: int | None = None
    entrants: tuple[Entrant, ...] = ()  # seed order, fixed at the start
    invite_code: str | None = None
    reason: str = ""  # why it was cancelled

    @property
    def seeds(self) -> dict[str, int]:
        return {e.player_id: i for i, e in enumerate(self.entrants, start=1)}


@dataclass(frozen=True, slots=True)
class Seat:
    player_token: str
    ticket: str


@dataclass(frozen=True, slots=True)
class RaceResult:
    """One player's result in one race of a heat, as kept in the heat."""

    player_id: str
    place: int | None
    wpm: float
    valid: bool


@dataclass(frozen=True, slots=True)
class Heat:
    """One heat as stored (``tournament:{id}:heat:{round}:{heat}``)."""

    tournament_id: str
    round_no: int
    heat_no: int
    state: HeatState
    version: int  # bumps on every change: each write is a compare-and-set on it
    members: tuple[Entrant, ...]
    race_no: int = 0  # the race of the heat being played (points rule: 0..races_per_round-1)
    attempt: int = 0  # placement attempts so far (a new race id each)
    placing_epoch: int = 0  # the director epoch that recorded the current attempt
    race_id: str | None = None
    node_id: str | None = None
    url: str | None = None  # the node's WebSocket URL
    seats: dict[str, Seat] = field(default_factory=dict)
    placed_at: int | None = None
    deadline_at: int | None = None  # ms: a race not reported by then is looked into
    reruns: int = 0  # re-runs after a dead node
    failures: int = 0  # placement failures in a row
    failing_since: int | None = None
    races: tuple[tuple[RaceResult, ...], ...] = ()  # every race of the heat reported so far
    race_ids: tuple[str, ...] = ()  # the races that count, in order
    present: frozenset[str] = frozenset()  # players who joined at least one of those races
    standings: tuple[Standing, ...] = ()
    advancers: tuple[str, ...] = ()
    no_shows: tuple[str, ...] = ()
    reason: str = ""  # why it was settled
    finished_at: int | None = None
    result_lag_ms: int | None = None  # last result: from its outbox append to the standings update

    @property
    def done(self) -> bool:
        return self.state in (HeatState.FINISHED, HeatState.SETTLED)

    @property
    def heat_id(self) -> str:
        """Deterministic, so a retry can recognise a heat already created."""
        return f"{self.tournament_id}-r{self.round_no}-h{self.heat_no}"
