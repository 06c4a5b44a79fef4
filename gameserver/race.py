"""One race: its lifecycle, its racers, and the server's judgement of their typing.

Pure state and rules, no I/O: every method takes ``now`` (wall-clock ms) and records
what must be told to the players in ``outgoing``; the node's I/O layer sends those,
broadcasts progress when ``dirty``, and writes the outbox when ``ended``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from arena.ids import NodeId, PlayerId, RaceId
from arena.protocol import (
    Countdown,
    Finish,
    Message,
    PlayerInfo,
    PlayerStatus,
    RaceState,
    RaceType,
    ResultRow,
    ResumeState,
    Roster,
    Start,
)
from arena.results import MatchRecord, ParticipantRecord
from arena.typing_tests import TypingMode, TypingTestRecord
from gameserver.arrivals import ArrivalLog
from gameserver.fairplay import DEFAULT_FAIRPLAY_LIMITS, FairPlayLimits, Flag, assess, check_batch
from gameserver.ghost import GhostFeed, GhostLog
from gameserver.journal import Journal
from gameserver.passages import Passage
from gameserver.roundtrip import RoundTrips
from gameserver.scoring import Score, ScoringLimits, TypingState, score
from gameserver.settings import RaceSettings


class InvalidTransition(RuntimeError):
    """A lifecycle step that the current state does not allow."""


class SeatError(Exception):
    """A player cannot take a seat in this race; ``code`` is the protocol error code."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


_TRANSITIONS: dict[RaceState, frozenset[RaceState]] = {
    RaceState.WAITING: frozenset({RaceState.COUNTDOWN, RaceState.ABORTED}),
    RaceState.COUNTDOWN: frozenset({RaceState.RUNNING, RaceState.ABORTED}),
    RaceState.RUNNING: frozenset({RaceState.FINISHED, RaceState.ABORTED}),
    RaceState.FINISHED: frozenset(),
    RaceState.ABORTED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class HeatTag:
    """Marks a race as a tournament heat; the outbox record carries it."""

    tournament_id: str
    round_no: int
    heat_no: int


class InputOutcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # a resent batch the server already has (after a reconnect)
    FINISHED = "finished"  # this batch completed the passage


@dataclass(slots=True)
class Racer:
    id: PlayerId
    name: str
    typing: TypingState
    joined_at: int
    status: PlayerStatus = PlayerStatus.RACING
    connected: bool = True
    ghost: bool = False  # a stored log replayed by the race (gameserver/ghost.py), not a player
    disconnected_at: int | None = None
    seq: int = 0  # last applied input sequence number
    finish_elapsed_ms: int | None = None  # server-judged time to finish
    finished_at: int | None = None
    flags: set[Flag] = field(default_factory=set)
    score: Score | None = None
    round_trips: RoundTrips = field(default_factory=RoundTrips)  # from the server's own pings only
    # When its batches arrived, against what they claim (gameserver.arrivals).
    arrivals: ArrivalLog = field(default_factory=lambda: ArrivalLog(DEFAULT_FAIRPLAY_LIMITS))

    @property
    def rtt_ms(self) -> float | None:
        """The round trip latency compensation uses (``gameserver.roundtrip``)."""
        return self.round_trips.estimate_ms

    @property
    def done(self) -> bool:
        return self.status is not PlayerStatus.RACING

    def live_wpm(self, elapsed_ms: int) -> float:
        if self.score is not None:
            return self.score.wpm
        if elapsed_ms <= 0:
            return 0.0
        # One decimal, without round(): this runs for every row of every progress frame.
        return int(self.typing.position * 120_000 / elapsed_ms + 0.5) / 10


class Race:
    def __init__(
        self,
        race_id: RaceId,
        node_id: NodeId,
        race_type: RaceType,
        passage: Passage,
        seats: set[PlayerId],
        now: int,
        settings: RaceSettings,
        scoring: ScoringLimits,
        fairplay: FairPlayLimits,
        heat: HeatTag | None = None,
        input_offset_ms: int = 0,
        ghosts: tuple[GhostLog, ...] = (),
        daily: str | None = None,
        test: TypingMode | None = None,
    ) -> None:
        self.id = race_id
        self.test = test  # a typing test (solo; its result is a TypingTestRecord), or None
        self.input_offset_ms = input_offset_ms  # this race's send instants (settings.input_cadence_ms)
        self.heat = heat
        self.daily = daily  # an attempt at this day's daily challenge (YYYY-MM-DD): its record says so
        self.node_id = node_id
        self.race_type = race_type
        self.passage = passage
        self.seats = seats  # reserved players; nobody else may join
        self.created_at = now
        # How long the race had no node (adopted after its node died, gameserver/adoption.py):
        # the wait for its players runs that much longer.
        self.outage_ms = 0
        self.settings = settings
        self.scoring = scoring
        self.fairplay = fairplay
        self.state = RaceState.WAITING
        self.ended = False  # finished or aborted; kept by ``transition``
        self.start_at: int | None = None
        self.ends_at: int | None = None
        self.ended_at: int | None = None
        self.end_reason = ""
        self.racers: dict[PlayerId, Racer] = {}
        self.outgoing: list[Message] = []  # to every socket of the race, in order
        self.dirty = False  # progress changed since the last broadcast
        self.first_unsent_input_ms: int | None = None  # for input-to-broadcast latency
        # Players whose progress changed since the last broadcast, when only typing changed it:
        # a frame whose only news is a player's own typing need not be sent to that player.
        self.typed_since_broadcast: set[PlayerId] = set()
        self._other_change = False  # a start or a DNF changed the picture for everyone
        self._valid_finishers = 0
        self._settled = 0  # racers finished or DNF: everyone is done when it reaches len(racers)
        self._absent: set[PlayerId] = set()  # racers whose socket went: the grace clock runs
        self.started = False
        self.version = 0  # bumps on every state or roster change: the mirror follows it
        # Someone's position moved since the mirror last got the roster (gameserver/mirror.py).
        self.unmirrored_progress = False
        self._places_cache: dict[PlayerId, int] | None = None
        # What a checkpoint needs to replay the race (gameserver/checkpoint.py), oldest first:
        # ("j", player, name, at), ("c", at, start_at, ends_at), ("i", player, seq, at, keys, times, rtt_ms),
        # ("l", player, at), each packed as it comes (gameserver/journal.py: no input's decoded
        # objects kept until the append). None: not journalled (no checkpoints). The node's ticks take it.
        self.journal: Journal | None = None
        # Ghosts race from the start; the definition carries them, so they are not journalled.
        self.ghosts: dict[PlayerId, GhostFeed] = {}
        for g in ghosts:
            self.ghosts[g.id] = GhostFeed(g)
            self.racers[g.id] = Racer(
                id=g.id, name=g.name, typing=TypingState(passage.text, scoring), joined_at=now, ghost=True
            )

    # ---- lifecycle ---------------------------------------------------------------

    def transition(self, to: RaceState) -> None:
        if to not in _TRANSITIONS[self.state]:
            raise InvalidTransition(f"race {self.id}: {self.state} -> {to} is not allowed")
        self.state = to
        self.version += 1
        # A plain attribute: the tick and every input ask, and a property costs a call each time.
        self.ended = to in (RaceState.FINISHED, RaceState.ABORTED)

    def time_limit_ms(self) -> int:
        s = self.settings
        if self.test is not None and self.test.seconds is not None:
            return self.test.seconds * 1000  # a time mode ends at its time, by definition
        limits = {
            RaceType.QUICK: s.quick_limit_s,
            RaceType.STANDARD: s.standard_limit_s,
            RaceType.MARATHON: s.marathon_limit_s,
        }
        seconds = limits.get(self.race_type)
        if seconds is None:
            seconds = max(60.0, len(self.passage.text) * s.custom_limit_s_per_char)
        return int(seconds * 1000)

    def advance(self, now: int) -> None:
        """Apply every deadline due at ``now``: start, countdown end, time limit, grace."""
        if self.ended:
            return
        self._expire_grace(now)
        waited_ms = now - self.created_at - self.outage_ms
        if self.state is RaceState.WAITING and waited_ms >= self.settings.wait_timeout_s * 1000:
            if len(self.racers) == len(self.ghosts):
                self.abort(now, "nobody joined")
                return
            self.begin_countdown(now)
        if self.state is RaceState.COUNTDOWN and self.start_at is not None and now >= self.start_at:
            self._begin_running()
        if self.state is RaceState.RUNNING:
            if self.ghosts:
                self._feed_ghosts(now)
            if self.ends_at is not None and now >= self.ends_at:
                if self.test is not None and self.test.seconds is not None:
                    self._time_up(now)
                    return
                self._end(now, "time limit reached")
            elif self._everyone_done():
                self._end(now, "")

    def begin_countdown(self, now: int, start_at: int | None = None, ends_at: int | None = None) -> None:
        """Start the countdown now (the race filled, or the wait ran out); a replay passes the
        instants the owner had set, whatever this node's settings say."""
        self.transition(RaceState.COUNTDOWN)
        self.start_at = now + int(self.settings.countdown_s * 1000) if start_at is None else start_at
        self.ends_at = self.start_at + self.time_limit_ms() if ends_at is None else ends_at
        if self.journal is not None:
            self.journal.append(("c", now, self.start_at, self.ends_at))
        self.outgoing.append(Countdown(start_at=self.start_at, server_time=now))

    def _begin_running(self) -> None:
        assert self.start_at is not None and self.ends_at is not None
        self.transition(RaceState.RUNNING)
        self.started = True
        self.outgoing.append(Start(start_at=self.start_at, ends_at=self.ends_at, server_time=self.start_at))
        self.dirty = True
        self._other_change = True

    def abort(self, now: int, reason: str, *, judge_logs: bool = True) -> None:
        """End the race without a normal finish (nobody came, node shutting down).

        ``judge_logs=False`` (a stopping node) skips fair play's whole-log checks of the racers it
        leaves unfinished: an aborted race is never rated, ranked or raced as a ghost, so those
        checks decide nothing, and on a loaded node's stop they cost more than writing the
        results (1-3 ms a racer with thousands of keys). The arrival evidence still flags."""
        if self.ended:
            return
        for racer in self.racers.values():
            if not racer.done:
                self._settle_dnf(racer, judge_log=judge_logs)
        self.transition(RaceState.ABORTED)
        self.ended_at = now
        self.end_reason = reason

    def _end(self, now: int, reason: str) -> None:
        for racer in self.racers.values():
            if not racer.done:
                self._settle_dnf(racer)
        self.transition(RaceState.FINISHED)
        self.ended_at = now
        self.end_reason = reason

    def _time_up(self, now: int) -> None:
        """A time mode's end: whoever typed finishes, scored over the whole time (not their
        last key): a test typed for 15 s is 15 s of typing, pauses included."""
        assert self.test is not None and self.test.seconds is not None
        duration = self.test.seconds * 1000
        for racer in self.racers.values():
            if racer.done or not racer.typing.typed_chars:
                continue
            self._settle_finish(racer, now, elapsed=duration)
            self.dirty = True
            self._other_change = True
        self._end(now, "time up")

    def _everyone_done(self) -> bool:
        # Counted as racers settle, so the tick asks it of every race for nothing.
        if self.ghosts:  # the players end the race: nobody waits for a ghost
            humans = [r for r in self.racers.values() if not r.ghost]
            return bool(humans) and all(r.done for r in humans)
        return bool(self.racers) and self._settled == len(self.racers)

    # ---- seats and connections ---------------------------------------------------

    def join(self, player_id: PlayerId, name: str, now: int) -> tuple[Racer, bool]:
        """Seat a player, or find them again; returns (racer, resumed)."""
        racer = self.racers.get(player_id)
        if racer is not None:
            racer.connected = True
            racer.disconnected_at = None
            self._absent.discard(player_id)
            if self.start_at is not None and now > self.start_at:
                # What the client resends now is late by the outage, not held back.
                racer.arrivals.resumed(now - self.start_at, racer.typing.correct_keystrokes)
            self._roster_changed(now)
            return racer, True
        if self.ended:
            raise SeatError("race_over", "the race is over")
        if self.state is not RaceState.WAITING:
            raise SeatError("race_over", "the race has already started")
        if player_id not in self.seats:
            raise SeatError("race_full", "no seat is reserved for this player")
        if len(self.racers) - len(self.ghosts) >= self.settings.max_players:
            raise SeatError("race_full", "the race is full")
        racer = Racer(
            id=player_id,
            name=name,
            typing=TypingState(self.passage.text, self.scoring),
            joined_at=now,
            round_trips=RoundTrips(self.settings.round_trips),
            arrivals=ArrivalLog(self.fairplay),
        )
        self.racers[player_id] = racer
        if self.journal is not None:
            self.journal.append(("j", player_id, name, now))
        self._roster_changed(now)
        if len(self.racers) - len(self.ghosts) >= min(len(self.seats), self.settings.max_players):
            self.begin_countdown(now)
        return racer, False

    def disconnect(self, racer: Racer, now: int) -> None:
        if not racer.connected:
            return
        racer.connected = False
        racer.disconnected_at = now
        self._absent.add(racer.id)
        self._roster_changed(now)

    def leave(self, racer: Racer, now: int) -> None:
        """The player gave up: DNF at once."""
        racer.connected = False
        racer.disconnected_at = racer.disconnected_at or now
        if not racer.done:
            if self.journal is not None:
                self.journal.append(("l", racer.id, now))
            self._settle_dnf(racer)
        self._roster_changed(now)
        self.advance(now)

    def _expire_grace(self, now: int) -> None:
        if not self._absent:
            return
        grace_ms = self.settings.grace_s * 1000
        for player_id in list(self._absent):
            racer = self.racers[player_id]
            if racer.done or racer.disconnected_at is None:
                self._absent.discard(player_id)
            elif now - racer.disconnected_at >= grace_ms:
                self._absent.discard(player_id)
                self._settle_dnf(racer)
                self._roster_changed(now)

    def _roster_changed(self, now: int) -> None:
        self.version += 1
        self.outgoing.append(Roster(players=self.player_infos(now)))  # live WPM, not zeros

    # ---- typing ------------------------------------------------------------------

    def apply_input(self, racer: Racer, seq: int, keys: str, times: list[int], now: int) -> InputOutcome:
        """Replay a batch of keys. The caller checked the race is running and the sizes."""
        if seq <= racer.seq:
            return InputOutcome.DUPLICATE
        racer.seq = seq
        if racer.done:
            return InputOutcome.DUPLICATE
        assert self.start_at is not None
        rtt_ms = racer.round_trips.estimate_ms
        if self.journal is not None:  # the round trip too: a finish is judged with it
            self.journal.append(("i", racer.id, seq, now, keys, times, rtt_ms))
        server_elapsed = now - self.start_at
        problem = check_batch(times, racer.typing.last_time_ms, server_elapsed, self.fairplay)
        if problem is not None:
            racer.flags.add(problem)
        before = racer.typing.position
        racer.typing.apply(keys, times)
        s = self.settings
        window = racer.arrivals.window_ms(s.input_cadence_ms, rtt_ms, s.round_trips.max_ms)
        racer.arrivals.record(times, server_elapsed, window, racer.typing.correct_keystrokes)
        if racer.typing.position != before or racer.typing.finished:
            self.dirty = True
            self.unmirrored_progress = True  # one store per input: nothing measurable
            self.typed_since_broadcast.add(racer.id)
            if self.first_unsent_input_ms is None:
                self.first_unsent_input_ms = now
        if racer.typing.finished:
            self._settle_finish(racer, now)
            return InputOutcome.FINISHED
        return InputOutcome.APPLIED

    def _judged_finish_ms(self, racer: Racer, now: int) -> int:
        """Server-authoritative finish time, compensated by the player's latency.

        The key's client offset is trusted only inside [arrival - hold, arrival], where arrival
        is the server's receive time less half the measured round trip, and hold is what an
        honest client needs: its send interval (it may wait that long to send the finishing key)
        plus half the round trip (its clock lags the server's by that much), at most
        ``max_finish_hold_ms``. So the judged finish is never earlier than the receive time less
        the round trip less the send interval, and a client can neither hold keys back to look
        faster nor claim a key it had not yet sent.
        """
        assert self.start_at is not None
        one_way = int((racer.rtt_ms or 0.0) / 2)
        arrival = now - self.start_at - one_way
        claimed = racer.typing.finish_time_ms
        if claimed is None:
            return max(arrival, 1)
        send_ms = max(self.settings.input_cadence_ms, self.fairplay.max_send_interval_ms)
        lower = arrival - min(self.settings.max_finish_hold_ms, send_ms + one_way)
        return max(1, min(max(claimed, lower), arrival))

    def _settle_finish(self, racer: Racer, now: int, elapsed: int | None = None) -> None:
        """``elapsed``: what the result is over (a time mode's whole time); else the judged finish."""
        if elapsed is None:
            elapsed = self._judged_finish_ms(racer, now)
        racer.finish_elapsed_ms = elapsed
        racer.finished_at = now
        racer.status = PlayerStatus.FINISHED
        self._settled += 1
        self._places_cache = None
        racer.score = score(racer.typing, elapsed)
        racer.flags |= assess(racer.typing, racer.score, self.fairplay)
        racer.flags |= racer.arrivals.flags()
        place: int | None = None
        if not racer.flags:
            self._valid_finishers += 1
            place = self._valid_finishers
        self.outgoing.append(
            Finish(
                player_id=racer.id,
                place=place,
                wpm=racer.score.wpm,
                accuracy=racer.score.accuracy,
                elapsed_ms=elapsed,
                flags=sorted(f.value for f in racer.flags),
            )
        )

    def _settle_dnf(self, racer: Racer, *, judge_log: bool = True) -> None:
        racer.status = PlayerStatus.DNF
        self._settled += 1
        self._places_cache = None
        racer.score = score(racer.typing, max(racer.typing.last_time_ms, 0))
        if not racer.ghost:  # a ghost's log was judged when it was raced
            if judge_log:
                racer.flags |= assess(racer.typing, racer.score, self.fairplay)
            racer.flags |= racer.arrivals.flags()
        self.dirty = True
        self._other_change = True

    def _feed_ghosts(self, now: int) -> None:
        """Give each ghost the keys its log typed by now on the race clock (gameserver/ghost.py)."""
        assert self.start_at is not None
        elapsed = now - self.start_at
        for ghost_id, feed in self.ghosts.items():
            racer = self.racers[ghost_id]
            due = None if racer.done else feed.due(elapsed)
            if due is None:
                continue
            before = racer.typing.position
            racer.typing.apply(*due)
            if racer.typing.position != before or racer.typing.finished:
                self.dirty = True
                self.unmirrored_progress = True
                self._other_change = True  # news for every player, not one's own typing
            if racer.typing.finished:
                self._settle_ghost_finish(racer)

    def _settle_ghost_finish(self, racer: Racer) -> None:
        # The log's own finishing key time: it was judged when it was raced, so no fair play here.
        elapsed = max(1, racer.typing.finish_time_ms or 0)
        racer.finish_elapsed_ms = elapsed
        racer.finished_at = (self.start_at or 0) + elapsed
        racer.status = PlayerStatus.FINISHED
        self._settled += 1
        self._places_cache = None
        racer.score = score(racer.typing, elapsed)
        self._valid_finishers += 1
        self.outgoing.append(
            Finish(
                player_id=racer.id,
                place=self._valid_finishers,
                wpm=racer.score.wpm,
                accuracy=racer.score.accuracy,
                elapsed_ms=elapsed,
                flags=[],
            )
        )

    # ---- views -------------------------------------------------------------------

    def elapsed_ms(self, now: int) -> int:
        return 0 if self.start_at is None else max(0, now - self.start_at)

    def player_infos(self, now: int | None = None) -> list[PlayerInfo]:
        elapsed = self.elapsed_ms(now) if now is not None else 0
        places = self._places()
        return [
            PlayerInfo(
                id=r.id,
                name=r.name,
                connected=r.connected,
                status=r.status.value,
                position=r.typing.position,
                wpm=r.live_wpm(elapsed),
                place=places.get(r.id),
                ghost=r.ghost,
            )
            for r in self.racers.values()
        ]

    def roster_rows(self, now: int) -> list[list[str | int | float | bool | None]]:
        """``player_infos`` as rows ``[id, name, connected, status, position, wpm, place, ghost]``, built
        without the dataclasses: the race mirror's live writes call it once a second per race."""
        elapsed = self.elapsed_ms(now)
        places = self._places()
        return [
            [
                r.id,
                r.name,
                r.connected,
                r.status.value,
                r.typing.position,
                r.live_wpm(elapsed),
                places.get(r.id),
                r.ghost,
            ]
            for r in self.racers.values()
        ]

    def resume_state(self, racer: Racer) -> ResumeState:
        return ResumeState(
            position=racer.typing.position,
            error_run=racer.typing.error_run,
            seq=racer.seq,
            status=racer.status.value,
        )

    def everyone_typed(self) -> bool:
        """Every racer still typing has news since the last frame: nobody left to wait for.

        Clients that follow the input cadence send together, so a race's frame can leave as
        soon as the last of them arrives instead of a window later.
        """
        waiting_for = len(self.racers) - self._settled - len(self._absent)
        if self.ghosts:  # a ghost never sends: its keys come with the tick
            waiting_for -= sum(1 for g in self.ghosts if not self.racers[g].done)
        return len(self.typed_since_broadcast) >= waiting_for

    def take_changes(self) -> PlayerId | None:
        """Mark progress as broadcast; returns the player whose own typing was the only news."""
        sole = None
        if len(self.typed_since_broadcast) == 1 and not self._other_change:
            sole = next(iter(self.typed_since_broadcast))
        self.dirty = False
        self._other_change = False
        self.typed_since_broadcast.clear()
        return sole

    def progress_rows(self, now: int) -> list[list[str | int | float]]:
        elapsed = self.elapsed_ms(now)
        places = self._places()
        return [
            [r.id, r.typing.position, r.live_wpm(elapsed), places.get(r.id) or 0, r.seq]
            for r in self.racers.values()
        ]

    def ranking(self) -> list[Racer]:
        """Final order: valid finishers by time (then WPM), flagged finishers, then DNFs."""

        def key(r: Racer) -> tuple[int, int, float, str]:
            wpm_ = r.score.wpm if r.score else 0.0
            if r.status is PlayerStatus.FINISHED and not r.flags:
                return (0, r.finish_elapsed_ms or 0, -wpm_, r.id)
            if r.status is PlayerStatus.FINISHED:
                return (1, r.finish_elapsed_ms or 0, -wpm_, r.id)
            return (2, -r.typing.position, -wpm_, r.id)

        return sorted(self.racers.values(), key=key)

    def _places(self) -> dict[PlayerId, int]:
        """Places of valid finishers, by judged finish time (authoritative at the end).

        Cached: every progress frame asks, and places only change when someone finishes or drops.
        """
        if self._places_cache is None:
            self._places_cache = self._rank_finishers(self.racers.values())
        return self._places_cache

    @staticmethod
    def _rank_finishers(racers: Iterable[Racer]) -> dict[PlayerId, int]:
        finishers = [r for r in racers if r.status is PlayerStatus.FINISHED and not r.flags]
        finishers.sort(key=lambda r: (r.finish_elapsed_ms or 0, -(r.score.wpm if r.score else 0.0), r.id))
        return {r.id: i for i, r in enumerate(finishers, start=1)}

    def result_rows(self) -> list[ResultRow]:
        places = self._places()
        rows = []
        for r in self.ranking():
            s = r.score or score(r.typing, 0)
            rows.append(
                ResultRow(
                    player_id=r.id,
                    name=r.name,
                    place=places.get(r.id),
                    status=r.status.value,
                    wpm=s.wpm,
                    raw_wpm=s.raw_wpm,
                    accuracy=s.accuracy,
                    consistency=s.consistency,
                    elapsed_ms=s.elapsed_ms,
                    position=r.typing.position,
                    flags=sorted(f.value for f in r.flags),
                    ghost=r.ghost,
                )
            )
        return rows

    def outbox_record(self) -> MatchRecord | TypingTestRecord:
        """What the results writer appends: a typing test's own record, else the match."""
        return self.match_record() if self.test is None else self.test_record()

    def test_record(self) -> TypingTestRecord:
        """A typing test's result: its one player (a seat nobody took: an empty DNF)."""
        assert self.test is not None and self.ended and self.ended_at is not None
        racer = next(iter(self.racers.values()), None)
        typing = racer.typing if racer is not None else TypingState(self.passage.text, self.scoring)
        s = (racer.score if racer is not None else None) or score(typing, 0)
        flags = sorted(f.value for f in racer.flags) if racer is not None else []
        generated = self.passage.id == self.id  # words drawn for this test carry its id
        return TypingTestRecord(
            match_id=self.id,
            node_id=self.node_id,
            mode=self.test.name,
            content_id=self.id if generated else self.passage.id,
            passage_chars=len(self.passage.text),
            state=self.state.value,
            reason=self.end_reason,
            player_id=racer.id if racer is not None else next(iter(sorted(self.seats)), ""),
            name=racer.name if racer is not None else "",
            status=racer.status.value if racer is not None else PlayerStatus.DNF.value,
            valid=not flags,
            flags=flags,
            wpm=s.wpm,
            raw_wpm=s.raw_wpm,
            accuracy=s.accuracy,
            consistency=s.consistency,
            correct_chars=s.correct_chars,
            typed_chars=s.typed_chars,
            errors=s.errors,
            elapsed_ms=s.elapsed_ms,
            created_at=self.created_at,
            started_at=self.start_at if self.started else None,
            ended_at=self.ended_at,
            keys=typing.log_keys(),
            key_times=typing.log_times(),
        )

    def match_record(self) -> MatchRecord:
        assert self.ended and self.ended_at is not None
        # Ghosts are shown, never stored: the record (results, ratings, history) is the players'
        # alone, placed among themselves.
        if self.ghosts:
            places = self._rank_finishers(r for r in self.racers.values() if not r.ghost)
        else:
            places = self._places()
        participants = []
        for r in self.ranking():
            if r.ghost:
                continue
            s = r.score or score(r.typing, 0)
            participants.append(
                ParticipantRecord(
                    player_id=r.id,
                    name=r.name,
                    place=places.get(r.id),
                    status=r.status.value,
                    valid=not r.flags,
                    flags=sorted(f.value for f in r.flags),
                    wpm=s.wpm,
                    raw_wpm=s.raw_wpm,
                    accuracy=s.accuracy,
                    consistency=s.consistency,
                    correct_chars=s.correct_chars,
                    typed_chars=s.typed_chars,
                    errors=s.errors,
                    elapsed_ms=s.elapsed_ms,
                    joined_at=r.joined_at,
                    finished_at=r.finished_at,
                    keys=r.typing.log_keys(),
                    key_times=r.typing.log_times(),
                )
            )
        return MatchRecord(
            match_id=self.id,
            kind="heat" if self.heat else "race",
            node_id=self.node_id,
            race_type=self.race_type.value,
            passage_id=self.passage.id,
            passage_chars=len(self.passage.text),
            state=self.state.value,
            reason=self.end_reason,
            created_at=self.created_at,
            started_at=self.start_at if self.started else None,
            ended_at=self.ended_at,
            participants=participants,
            tournament_id=self.heat.tournament_id if self.heat else None,
            round_no=self.heat.round_no if self.heat else None,
            heat_no=self.heat.heat_no if self.heat else None,
            daily=self.daily,
        )
