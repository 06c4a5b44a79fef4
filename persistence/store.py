"""Writes matches to PostgreSQL in batches, exactly once per race id.

One transaction per batch: insert the races with ``ON CONFLICT DO NOTHING RETURNING``, then
write players, results (COPY) and tournament standings for the races that were new. A
re-delivered match therefore inserts nothing, and nothing is counted twice. Rows are sorted
by key so concurrent consumers take row locks in the same order.

Tournaments' final results ride in the same transaction, the same way: the
``tournament_finals`` row (keyed by the final's match id) is inserted ``ON CONFLICT DO
NOTHING RETURNING``, and only a new one finishes the ``tournaments`` row and writes the
entrants' ``tournament_results``.

Results held for review (persistence/review.py) are decided in the same transaction, from the
review rules and the players' stored history (``players.best_wpm``, ``ranked_races``); an
operator's review decision is stored there too, once per result.

Monthly result partitions are created before the transaction, on first sight of a month
(``ensure_results_partition``), because creating one locks the parent table.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from arena.clock import now_ms
from arena.rating import Placing, Rating
from arena.results import MatchRecord, ParticipantRecord, TournamentFinalRecord
from arena.typing_tests import TypingTestRecord
from persistence import keylog, placement, test_results
from persistence.errors import Dependency, DependencyDown, describe, postgres_rejects_data
from persistence.leaderboards import counts_for_ranking
from persistence.placement import Settle, placement_decision
from persistence.rejection import Rejection
from persistence.review import (
    DECISIONS,
    DecidedResult,
    History,
    HoldReason,
    ReleasedResult,
    ReviewDecisionRecord,
    ReviewState,
    hold_reason,
)
from persistence.settings import ReadSideSettings
from persistence.times import opt_datetime, to_datetime, to_ms

log = structlog.get_logger(__name__)

_INSERT_RACES = """
INSERT INTO races (race_id, kind, race_type, state, reason, node_id, passage_id, passage_chars, players,
                   tournament_id, round_no, heat_no, created_at, started_at, ended_at, record_version, daily)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::int[], $9::smallint[], $10::text[], $11::int[], $12::int[], $13::timestamptz[],
                     $14::timestamptz[], $15::timestamptz[], $16::smallint[], $17::date[])
ON CONFLICT (race_id) DO NOTHING
RETURNING race_id
"""

_UPSERT_PLAYERS = """
INSERT INTO players AS p (player_id, name, races, first_seen_at, last_seen_at, best_wpm, ranked_races)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::timestamptz[], $6::float8[],
                     $7::int[])
ON CONFLICT (player_id) DO UPDATE SET
    name = CASE WHEN excluded.last_seen_at >= p.last_seen_at THEN excluded.name ELSE p.name END,
    races = p.races + excluded.races,
    first_seen_at = least(p.first_seen_at, excluded.first_seen_at),
    last_seen_at = greatest(p.last_seen_at, excluded.last_seen_at),
    best_wpm = greatest(p.best_wpm, excluded.best_wpm),
    ranked_races = p.ranked_races + excluded.ranked_races
"""

# Outside the batch transaction: a heat's race row references its tournament. Also inside it,
# before a final's row (the tournament is missing when no heat was raced; a rejected final
# then leaves nothing behind).
_ENSURE_TOURNAMENTS = """
INSERT INTO tournaments (tournament_id, race_type, created_at, updated_at)
SELECT t, rt, c, c FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(t, rt, c)
ON CONFLICT (tournament_id) DO NOTHING
"""

_UPDATE_TOURNAMENTS = """
UPDATE tournaments AS t SET
    heats = t.heats + u.heats,
    rounds = greatest(t.rounds, u.rounds),
    updated_at = greatest(t.updated_at, u.updated_at)
FROM unnest($1::text[], $2::int[], $3::int[], $4::timestamptz[])
    AS u(tournament_id, heats, rounds, updated_at)
WHERE t.tournament_id = u.tournament_id
"""

_UPSERT_STANDINGS = """
INSERT INTO tournament_participants AS tp (tournament_id, player_id, name, heats, finished, best_wpm,
                                           best_accuracy, last_round, joined_at, updated_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::float8[], $7::float8[],
                     $8::int[], $9::timestamptz[], $10::timestamptz[])
ON CONFLICT (tournament_id, player_id) DO UPDATE SET
    name = excluded.name,
    heats = tp.heats + excluded.heats,
    finished = tp.finished + excluded.finished,
    best_accuracy = CASE WHEN (excluded.best_wpm, excluded.best_accuracy) > (tp.best_wpm, tp.best_accuracy)
                         THEN excluded.best_accuracy ELSE tp.best_accuracy END,
    best_wpm = greatest(tp.best_wpm, excluded.best_wpm),
    last_round = greatest(tp.last_round, excluded.last_round),
    joined_at = least(tp.joined_at, excluded.joined_at),
    updated_at = greatest(tp.updated_at, excluded.updated_at)
"""

_INSERT_FINALS = """
INSERT INTO tournament_finals (match_id, tournament_id, state, entrants, heat_races, settled_heats,
                               record_version)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::jsonb[], $6::jsonb[], $7::smallint[])
ON CONFLICT (match_id) DO NOTHING
RETURNING match_id
"""

_FINISH_TOURNAMENTS = """
UPDATE tournaments AS t SET
    status = u.status,
    name = u.name,
    race_type = u.race_type,
    tournament_type = u.tournament_type,
    visibility = u.visibility,
    rule = u.rule,
    heat_size = u.heat_size,
    advance = u.advance,
    races_per_round = u.races_per_round,
    rounds = greatest(t.rounds, u.rounds),
    created_at = least(t.created_at, u.created_at),
    started_at = u.started_at,
    ended_at = u.ended_at,
    updated_at = greatest(t.updated_at, u.ended_at)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[],
            $9::int[], $10::int[], $11::int[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[])
    AS u(tournament_id, status, name, race_type, tournament_type, visibility, rule, heat_size, advance,
         races_per_round, rounds, created_at, started_at, ended_at)
WHERE t.tournament_id = u.tournament_id
"""

_INSERT_RESULTS = """
INSERT INTO tournament_results (tournament_id, player_id, rank, name, seed, rating, last_round, prize)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::int[], $6::float8[], $7::int[],
                     $8::text[])
"""

# Review decisions (persistence/review.py): the decision row is the idempotency key; only a new
# one moves its result out of 'held'. Released results are read back every time (a re-delivered
# decision offers its result to the boards again: the offer is idempotent, a lost one is not).
_INSERT_DECISIONS = """
INSERT INTO review_decisions (race_id, player_id, decision, reason, decided_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
ON CONFLICT (race_id, player_id) DO NOTHING
RETURNING race_id, player_id, decision
"""

_APPLY_DECISIONS = """
UPDATE race_participants AS p SET review_state = u.decision
FROM unnest($1::text[], $2::text[], $3::text[]) AS u(race_id, player_id, decision)
WHERE p.race_id = u.race_id AND p.player_id = u.player_id AND p.review_state = 'held'
RETURNING p.race_id, p.player_id, p.wpm, p.review_state, p.created_at
"""

# A rejected heat result leaves its player's tournament standing: recounted from the heats
# stored, without the rejected ones (the table's rows are sums over the heats).
_RECOUNT_STANDINGS = """
WITH u AS (SELECT * FROM unnest($1::text[], $2::text[]) AS u(tournament_id, player_id)),
c AS (
    SELECT u.tournament_id, u.player_id, p.wpm, p.accuracy
    FROM u JOIN races r ON r.tournament_id = u.tournament_id
    JOIN race_participants p
        ON p.race_id = r.race_id AND p.created_at = r.ended_at AND p.player_id = u.player_id
    WHERE p.valid AND p.status = 'finished' AND p.review_state <> 'rejected'
),
s AS (
    SELECT u.tournament_id, u.player_id, count(c.wpm)::int AS finished,
           coalesce(max(c.wpm), 0) AS best_wpm,
           coalesce((array_agg(c.accuracy ORDER BY c.wpm DESC, c.accuracy DESC)
                     FILTER (WHERE c.wpm IS NOT NULL))[1], 0) AS best_accuracy
    FROM u LEFT JOIN c ON c.tournament_id = u.tournament_id AND c.player_id = u.player_id
    GROUP BY u.tournament_id, u.player_id
)
UPDATE tournament_participants AS tp
SET finished = s.finished, best_wpm = s.best_wpm, best_accuracy = s.best_accuracy
FROM s WHERE tp.tournament_id = s.tournament_id AND tp.player_id = s.player_id
"""

# Every decided result of the batch, read back each time (a re-delivered decision repeats its
# read-side work; that work is idempotent, a lost one is not): the recent-results cache swaps
# its held entry, a rejection's rating change is undone (persistence/rejection.py).
_DECIDED = """
SELECT p.race_id, p.player_id, p.name, r.kind, r.race_type, p.created_at, r.players, p.place, p.status,
       p.valid, p.wpm, p.accuracy, p.review_state, r.daily, d.placed_by
FROM unnest($1::text[], $2::text[]) AS u(race_id, player_id)
JOIN race_participants p ON p.race_id = u.race_id AND p.player_id = u.player_id
JOIN races r ON r.race_id = p.race_id
LEFT JOIN review_decisions d ON d.race_id = p.race_id AND d.player_id = p.player_id
WHERE p.review_state = ANY($3::text[])
"""
_RANKINGS = """
SELECT p.race_id, p.player_id, p.place, p.status, p.valid
FROM races r JOIN race_participants p ON p.race_id = r.race_id AND p.created_at = r.ended_at
WHERE r.race_id = ANY($1::text[])
ORDER BY p.race_id, p.player_id
"""
_RATED = """
SELECT h.race_id, h.player_id, h.rating_before, h.rd_before, h.volatility_before,
       h.rating_after, h.rd_after, h.volatility_after
FROM unnest($1::text[], $2::text[]) AS u(player_id, race_id)
JOIN rating_history h ON h.player_id = u.player_id AND h.race_id = u.race_id
"""

# The personal-best rule's history (players.best_wpm, ranked_races; migration 0004).
_HISTORY = "SELECT player_id, best_wpm, ranked_races FROM players WHERE player_id = ANY($1::text[])"
_ADD_HISTORY = """
UPDATE players AS p SET best_wpm = greatest(p.best_wpm, u.best), ranked_races = p.ranked_races + u.n
FROM unnest($1::text[], $2::float8[], $3::int[]) AS u(player_id, best, n)
WHERE p.player_id = u.player_id
"""
# Review states of re-delivered races' results, as the first delivery (and decisions since) left
# them, whose history this one cannot see again: off the boards unless released, and so marked in
# recent results.
_UNRANKED = """
SELECT race_id, player_id, review_state FROM race_participants
WHERE race_id = ANY($1::text[]) AND created_at = ANY($2::timestamptz[])
  AND review_state IN ('provisional', 'held', 'released', 'rejected')
"""

# Placement (persistence/placement.py): a player's provisional results of the window, settled by
# the result that completed their letter-pair evidence, in the batch's transaction.
_RELEASE_PROVISIONAL = """
UPDATE race_participants AS p SET review_state = 'released'
FROM unnest($1::text[], $2::timestamptz[]) AS u(player_id, since)
WHERE p.player_id = u.player_id AND p.review_state = 'provisional' AND p.created_at >= u.since
RETURNING p.race_id, p.player_id, p.wpm
"""
_HOLD_PROVISIONAL = """
UPDATE race_participants AS p SET review_state = 'held', review_reason = u.why
FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS u(player_id, since, why)
WHERE p.player_id = u.player_id AND p.review_state = 'provisional' AND p.created_at >= u.since
RETURNING p.race_id, p.player_id
"""
# Persistence's own decisions (placed_by: the race that completed the evidence). A decision
# already there (none should be) is left as it is.
_INSERT_PLACEMENTS = """
INSERT INTO review_decisions (race_id, player_id, decision, reason, decided_at, placed_by)
SELECT u.race_id, u.player_id, 'released', u.reason, u.decided_at, u.placed_by
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
    AS u(race_id, player_id, reason, decided_at, placed_by)
ON CONFLICT (race_id, player_id) DO NOTHING
"""
# A re-delivered race: the placement decisions it made, to append to the outbox again (a kill
# between the commit and the append would lose them otherwise; the append is idempotent).
_PLACED_BY = """
SELECT race_id, player_id, reason, decided_at, placed_by FROM review_decisions
WHERE placed_by = ANY($1::text[]) AND decision = 'released'
"""


# Where each record field is stored (the tests check that none is forgotten).
RACE_FIELDS = (
    "match_id", "kind", "race_type", "state", "reason", "node_id", "passage_id", "passage_chars",
    "participants", "tournament_id", "round_no", "heat_no", "created_at", "started_at", "ended_at", "version",
    "daily",
)  # fmt: skip
PARTICIPANT_FIELDS = (
    "player_id", "name", "place", "status", "valid", "flags", "wpm", "raw_wpm", "accuracy", "consistency",
    "correct_chars", "typed_chars", "errors", "elapsed_ms", "joined_at", "finished_at", "keys", "key_times",
)  # fmt: skip

FINAL_FIELDS = (
    "match_id", "tournament_id", "name", "race_type", "tournament_type", "visibility", "rule", "heat_size",
    "advance", "races_per_round", "rounds", "created_at", "started_at", "ended_at", "standings",
    "heat_races", "settled_heats", "kind", "state", "version",
)  # fmt: skip
STANDING_FIELDS = ("rank", "player_id", "name", "seed", "rating", "last_round", "prize")

PARTICIPANT_COLUMNS = (
    "race_id", "player_id", "created_at", "name", "place", "status", "valid", "flags", "wpm", "raw_wpm",
    "accuracy", "consistency", "correct_chars", "typed_chars", "errors", "elapsed_ms", "joined_at",
    "finished_at", "keylog", "review_reason", "review_state",
)  # fmt: skip

# The review state stays last (row[-1]), its reason (HoldReason, None unless held) before it.
ParticipantRow = tuple[
    str, str, datetime, str, int | None, str, bool, list[str], float, float, float, float,
    int, int, int, int, datetime | None, datetime | None, bytes, str | None, str,
]  # fmt: skip


def participant_rows(record: MatchRecord) -> list[ParticipantRow]:
    """Every row 'clear': the review state is decided in the transaction, with the players' history."""
    ended = to_datetime(record.ended_at)
    return [participant_row(record.match_id, ended, p) for p in record.participants]


def participant_row(match_id: str, ended: datetime, p: ParticipantRecord) -> ParticipantRow:
    return (
        match_id, p.player_id, ended, p.name, p.place, p.status, p.valid,
        p.flags, float(p.wpm), float(p.raw_wpm), float(p.accuracy), float(p.consistency), p.correct_chars,
        p.typed_chars, p.errors, p.elapsed_ms, opt_datetime(p.joined_at), opt_datetime(p.finished_at),
        keylog.encode(p.keys, p.key_times), None, ReviewState.CLEAR.value,
    )  # fmt: skip


@dataclass(slots=True)
class WriteResult:
    inserted: set[str] = field(default_factory=set)  # match ids this call stored (finals included)
    rejected: dict[str, str] = field(default_factory=dict)  # match id -> why PostgreSQL refused it
    participant_rows: int = 0
    released: list[ReleasedResult] = field(default_factory=list)  # to offer to the boards
    held: int = 0  # result rows this call stored 'held' for review
    held_pairs: int = 0  # of which held by the pooled letter-pair evidence (persistence/pair_store.py)
    held_by_reason: dict[str, int] = field(default_factory=dict)  # HoldReason -> rows stored held
    # (race, player) -> review state when not clear: kept off the boards unless released, marked
    # in recent results
    unranked: dict[tuple[str, str], str] = field(default_factory=dict)
    decided: dict[str, int] = field(default_factory=dict)  # new review decisions, by decision
    decided_results: list[DecidedResult] = field(default_factory=list)  # released or rejected, as stored
    rejections: list[Rejection] = field(default_factory=list)  # rating changes to undo
    provisional: int = 0  # result rows this call stored 'provisional' (placement)
    # Placement releases made (or, for a re-delivered race, made before) by this batch's races:
    # to append to the outbox, which carries them like an operator's decisions.
    placed: list[ReviewDecisionRecord] = field(default_factory=list)
    placement_released: int = 0  # provisional rows this call released (the letter-pair rule passed)
    placement_held: int = 0  # provisional rows this call held (the letter-pair rule failed)

    def add(self, one: WriteResult) -> None:
        """Sum another call's result into this one (a batch written one record at a time)."""
        self.inserted |= one.inserted
        self.rejected |= one.rejected
        self.participant_rows += one.participant_rows
        self.released += one.released
        self.held += one.held
        self.held_pairs += one.held_pairs
        for reason, n in one.held_by_reason.items():
            self.held_by_reason[reason] = self.held_by_reason.get(reason, 0) + n
        self.unranked |= one.unranked
        self.decided_results += one.decided_results
        self.rejections += one.rejections
        for decision, n in one.decided.items():
            self.decided[decision] = self.decided.get(decision, 0) + n
        self.provisional += one.provisional
        self.placed += one.placed
        self.placement_released += one.placement_released
        self.placement_held += one.placement_held


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool, *, review: ReadSideSettings | None = None) -> None:
        self._pool = pool
        self._review = review or ReadSideSettings()  # the review_* rules: which results are held
        self._months: set[date] = set()  # partitions known to exist
        self._test_months: set[date] = set()  # test_results partitions known to exist
        self._months_lock = asyncio.Lock()  # workers of one process share this store

    async def write(
        self,
        records: Sequence[MatchRecord | TournamentFinalRecord | ReviewDecisionRecord | TypingTestRecord],
        holds: Collection[tuple[str, str]] = frozenset(),
        short: Collection[tuple[str, str]] = frozenset(),
        population: Collection[tuple[str, str]] = frozenset(),
    ) -> WriteResult:
        """Store a batch; a record PostgreSQL refuses is isolated and reported, not raised.

        ``holds``: (race, player) of valid finishes to store held whatever the other rules say
        (the pooled letter-pair evidence, persistence/pair_store.py); ``short``: those whose
        player's evidence is still short (placement, persistence/placement.py); ``population``: those
        of ``holds`` that its agreement with other players' held (reason ``pairs_population``).

        Raises ``DependencyDown`` when PostgreSQL cannot be reached (nothing is lost: the
        transaction either committed or not, and a retry is idempotent).
        """
        unique = sorted({r.match_id: r for r in reversed(records)}.values(), key=lambda r: r.match_id)
        try:
            return await self._write(unique, holds, short, population)
        except Exception as exc:
            if not postgres_rejects_data(exc):
                raise DependencyDown(Dependency.POSTGRES, exc) from exc
            if len(unique) == 1:
                return WriteResult(rejected={unique[0].match_id: describe(exc)})
            log.warning("batch_rejected_isolating", matches=len(unique), error=describe(exc))
        # Some record is bad: write one at a time to find it and keep the others.
        result = WriteResult()
        for record in unique:
            result.add(await self.write([record], holds, short, population))
        return result

    async def ensure_months(self, days: Sequence[date]) -> None:
        months = {d.replace(day=1) for d in days} - self._months
        if not months:
            return
        async with self._months_lock, self._pool.acquire() as conn:
            for month in sorted(months - self._months):
                await conn.execute("SELECT ensure_results_partition($1)", month)
                self._months.add(month)

    async def ensure_test_months(self, records: Sequence[TypingTestRecord]) -> None:
        """The test_results partitions of these tests' months, and of each next month."""
        months = test_results.months_of(records) - self._test_months
        if not months:
            return
        async with self._months_lock, self._pool.acquire() as conn:
            for month in sorted(months - self._test_months):
                await conn.execute("SELECT ensure_test_results_partition($1)", month)
                self._test_months.add(month)

    async def _write(
        self,
        batch: Sequence[MatchRecord | TournamentFinalRecord | ReviewDecisionRecord | TypingTestRecord],
        holds: Collection[tuple[str, str]] = frozenset(),
        short: Collection[tuple[str, str]] = frozenset(),
        population: Collection[tuple[str, str]] = frozenset(),
    ) -> WriteResult:
        records = [r for r in batch if isinstance(r, MatchRecord)]
        tests = [r for r in batch if isinstance(r, TypingTestRecord)]
        await self.ensure_test_months(tests)
        finals = [r for r in batch if isinstance(r, TournamentFinalRecord)]
        decisions = [r for r in batch if isinstance(r, ReviewDecisionRecord)]
        released: list[ReleasedResult] = []
        decided: dict[str, int] = {}
        read_back = _ReadBack()
        settled = _Settled()
        placed_before: list[ReviewDecisionRecord] = []
        await self.ensure_months([to_datetime(r.ended_at).date() for r in records])
        heats = [r for r in records if r.tournament_id is not None]
        # Built before the transaction: it is CPU work (the keystroke logs), and a record whose
        # values cannot be converted fails here, before anything is sent.
        prepared = {r.match_id: participant_rows(r) for r in records}
        async with self._pool.acquire() as conn:
            if heats:
                await self._ensure_tournaments(conn, heats)
            async with conn.transaction():
                inserted: set[str] = set()
                if records:
                    rows = await conn.fetch(_INSERT_RACES, *_race_columns(records))
                    inserted = {row["race_id"] for row in rows}
                new = [r for r in records if r.match_id in inserted]
                settles: dict[str, _Settle] = {}
                if new:
                    settles = await self._decide_review(conn, new, prepared, holds, short, population)
                participants = [row for r in new for row in prepared[r.match_id]]
                if new:
                    await conn.execute(_UPSERT_PLAYERS, *_player_columns(new, _added_history(new, prepared)))
                    await conn.copy_records_to_table(
                        "race_participants", records=participants, columns=PARTICIPANT_COLUMNS
                    )
                    new_heats = [r for r in new if r.tournament_id is not None]
                    if new_heats:
                        await conn.execute(_UPDATE_TOURNAMENTS, *_tournament_columns(new_heats))
                        await conn.execute(_UPSERT_STANDINGS, *_standing_columns(new_heats))
                if settles:
                    settled = await _settle(conn, settles, self._review.review_provisional_max_s)
                if finals:
                    inserted |= await self._write_finals(conn, finals)
                if tests:
                    inserted |= await test_results.insert(conn, tests)
                if decisions:
                    new_decisions, read_back, by_operator = await self._write_decisions(conn, decisions)
                    settled.add(by_operator)
                    released = read_back.released
                    inserted |= new_decisions
                    for d in decisions:
                        if d.match_id in new_decisions:
                            decided[d.decision] = decided.get(d.decision, 0) + 1
                            log.info(
                                "review_decision_stored",
                                race_id=d.race_id,
                                player_id=d.player_id,
                                decision=d.decision,
                            )
                # New races: their states are in hand. Re-delivered ones (rare): read back.
                unranked = {(row[0], row[1]): row[-1] for row in participants if row[-1] != ReviewState.CLEAR}
                again = [r for r in records if r.match_id not in inserted]
                if again:
                    rows = await conn.fetch(
                        _UNRANKED,
                        [r.match_id for r in again],
                        sorted({to_datetime(r.ended_at) for r in again}),
                    )
                    unranked |= {(row["race_id"], row["player_id"]): row["review_state"] for row in rows}
                # Placement releases this batch made before (a re-delivered race, or an operator's
                # release re-delivered), for the outbox again: a kill may have lost the append.
                placers = [r.match_id for r in again]
                placers += [d.race_id for d in decisions if d.match_id not in inserted]
                if placers:
                    placed_before = [
                        ReviewDecisionRecord.of(row["race_id"], row["player_id"], ReviewState.RELEASED.value,
                                                row["reason"], to_ms(row["decided_at"]))
                        for row in await conn.fetch(_PLACED_BY, placers)
                    ]  # fmt: skip
        held = [row for row in participants if row[-1] == "held"]
        provisional = [row for row in participants if row[-1] == ReviewState.PROVISIONAL]
        for row in provisional:
            log.debug("result_provisional", race_id=row[0], player_id=row[1], wpm=row[8])
        held_pairs = 0
        by_reason: dict[str, int] = {}
        for row in held:  # rare by design: one line each, for the operator's attention
            held_pairs += row[-2] in (HoldReason.PAIRS_HISTORY, HoldReason.PAIRS_POPULATION)
            by_reason[str(row[-2])] = by_reason.get(str(row[-2]), 0) + 1
            log.info("result_held_for_review", race_id=row[0], player_id=row[1], wpm=row[8], reason=row[-2])
        return WriteResult(
            inserted=inserted,
            participant_rows=len(participants),
            released=released,
            held=len(held),
            held_pairs=held_pairs,
            held_by_reason=by_reason,
            decided=decided,
            unranked=unranked,
            decided_results=read_back.decided + settled.held,
            rejections=read_back.rejections,
            provisional=len(provisional),
            placed=settled.placed + placed_before,
            placement_released=len(settled.placed),
            placement_held=len(settled.held),
        )

    async def _decide_review(
        self,
        conn: PoolConnectionProxy,
        new: Sequence[MatchRecord],
        prepared: dict[str, list[ParticipantRow]],
        holds: Collection[tuple[str, str]] = frozenset(),
        short: Collection[tuple[str, str]] = frozenset(),
        population: Collection[tuple[str, str]] = frozenset(),
    ) -> dict[str, _Settle]:
        """Set each new row's review state from the rules and the players' stored history; returns
        what placement settles, per player (the first result that settles counts).

        In race-end order, so a player's earlier result in the same batch counts as history.
        Two workers storing the same player's races at once may each miss the other's: the
        history is a guide for the personal-best rule, not a ledger.
        """
        players = sorted({p.player_id for r in new for p in r.participants})
        rows = await conn.fetch(_HISTORY, players)
        history = {row["player_id"]: History(row["best_wpm"], row["ranked_races"]) for row in rows}
        settles: dict[str, _Settle] = {}
        for r in sorted(new, key=lambda r: (r.ended_at, r.match_id)):
            decided = []
            for p, row in zip(r.participants, prepared[r.match_id], strict=True):
                reason = hold_reason(p, self._review, history.get(p.player_id))
                state = ReviewState.CLEAR if reason is None else ReviewState.HELD
                if counts_for_ranking(p):
                    placing = (
                        self._review.placement
                        and history.get(p.player_id, History()).races == 0
                        and p.player_id not in settles
                    )
                    key = (r.match_id, p.player_id)
                    s = placement.step(reason, key in holds, key in short, placing)
                    state, reason = s.state, s.reason
                    if reason is HoldReason.PAIRS_HISTORY and key in population:
                        reason = HoldReason.PAIRS_POPULATION  # the other letter-pair rule
                    if s.settle is not None:
                        why = HoldReason.PAIRS_POPULATION if key in population else HoldReason.PAIRS_HISTORY
                        settles[p.player_id] = _Settle(s.settle, r.match_id, to_datetime(r.ended_at), why=why)
                if state is ReviewState.CLEAR and counts_for_ranking(p):
                    history[p.player_id] = history.get(p.player_id, History()).plus(p.wpm)
                decided.append((*row[:-2], None if reason is None else reason.value, state.value))
            prepared[r.match_id] = decided
        return settles

    async def _write_decisions(
        self, conn: PoolConnectionProxy, decisions: Sequence[ReviewDecisionRecord]
    ) -> tuple[set[str], _ReadBack, _Settled]:
        """Inside the batch's transaction: the decisions that were new, every decided result, and
        what an operator's release settled: the player's provisional results (placement), released
        with it (the operator has looked at the player; they are ranked from now on, so placement
        would never settle them otherwise)."""
        settled = _Settled()
        rows = await conn.fetch(
            _INSERT_DECISIONS,
            [d.race_id for d in decisions],
            [d.player_id for d in decisions],
            [d.decision for d in decisions],
            [d.reason for d in decisions],
            [to_datetime(d.decided_at) for d in decisions],
        )
        if rows:
            changed = await conn.fetch(
                _APPLY_DECISIONS,
                [r["race_id"] for r in rows],
                [r["player_id"] for r in rows],
                [r["decision"] for r in rows],
            )
            # A released result is part of the player's history from now on.
            added: dict[str, History] = {}
            for c in changed:
                if c["review_state"] == ReviewState.RELEASED:
                    added[c["player_id"]] = added.get(c["player_id"], History()).plus(c["wpm"])
            if added:
                ids = sorted(added)
                await conn.execute(
                    _ADD_HISTORY, ids, [added[i].best_wpm for i in ids], [added[i].races for i in ids]
                )
                max_s = self._review.review_provisional_max_s
                if max_s:
                    settles: dict[str, _Settle] = {}
                    for c in sorted(changed, key=lambda c: (c["created_at"], c["race_id"])):
                        if c["review_state"] == ReviewState.RELEASED:
                            settles.setdefault(
                                c["player_id"], _Settle(Settle.RELEASE, c["race_id"], c["created_at"], True)
                            )
                    settled = await _settle(conn, settles, max_s)
            tournaments = {d.race_id: d.tournament_id for d in decisions if d.tournament_id}
            recount = sorted(
                {
                    (tournaments[c["race_id"]], c["player_id"])
                    for c in changed
                    if c["review_state"] == ReviewState.REJECTED and c["race_id"] in tournaments
                }
            )
            if recount:
                await conn.execute(_RECOUNT_STANDINGS, [t for t, _ in recount], [p for _, p in recount])
        new = {(r["race_id"], r["player_id"]) for r in rows}
        inserted = {d.match_id for d in decisions if (d.race_id, d.player_id) in new}
        return inserted, await _read_back(conn, decisions), settled

    async def _write_finals(
        self, conn: PoolConnectionProxy, finals: Sequence[TournamentFinalRecord]
    ) -> set[str]:
        """Inside the batch's transaction: the finals that were new, their tournaments and results."""
        finals = sorted({f.tournament_id: f for f in finals}.values(), key=lambda f: f.tournament_id)
        await conn.execute(
            _ENSURE_TOURNAMENTS,
            [f.tournament_id for f in finals],
            [f.race_type for f in finals],
            [to_datetime(f.created_at) for f in finals],
        )
        rows = await conn.fetch(_INSERT_FINALS, *_final_columns(finals))
        inserted = {row["match_id"] for row in rows}
        new = [f for f in finals if f.match_id in inserted]
        if new:
            await conn.execute(_FINISH_TOURNAMENTS, *_finish_columns(new))
            await conn.execute(_INSERT_RESULTS, *_result_columns(new))
        return inserted

    async def _ensure_tournaments(self, conn: PoolConnectionProxy, heats: Sequence[MatchRecord]) -> None:
        first: dict[str, MatchRecord] = {}
        for r in heats:
            assert r.tournament_id is not None
            first.setdefault(r.tournament_id, r)
        ids = sorted(first)
        await conn.execute(
            _ENSURE_TOURNAMENTS,
            ids,
            [first[t].race_type for t in ids],
            [to_datetime(first[t].created_at) for t in ids],
        )


def _race_columns(records: Sequence[MatchRecord]) -> list[Sequence[object]]:
    return [
        [r.match_id for r in records],
        [r.kind for r in records],
        [r.race_type for r in records],
        [r.state for r in records],
        [r.reason for r in records],
        [r.node_id for r in records],
        [r.passage_id for r in records],
        [r.passage_chars for r in records],
        [len(r.participants) for r in records],
        [r.tournament_id for r in records],
        [r.round_no for r in records],
        [r.heat_no for r in records],
        [to_datetime(r.created_at) for r in records],
        [opt_datetime(r.started_at) for r in records],
        [to_datetime(r.ended_at) for r in records],
        [r.version for r in records],
        [date.fromisoformat(r.daily) if r.daily else None for r in records],
    ]


def _added_history(
    new: Sequence[MatchRecord], prepared: dict[str, list[ParticipantRow]]
) -> dict[str, History]:
    """Per player, the batch's ranked finishes stored clear: the personal-best rule's history."""
    added: dict[str, History] = {}
    for r in new:
        for p, row in zip(r.participants, prepared[r.match_id], strict=True):
            if row[-1] == ReviewState.CLEAR and counts_for_ranking(p):
                added[p.player_id] = added.get(p.player_id, History()).plus(p.wpm)
    return added


def _player_columns(records: Sequence[MatchRecord], added: dict[str, History]) -> list[Sequence[object]]:
    """One row per player (a statement may touch a row once), latest name wins; then the history."""
    seen: dict[str, tuple[str, int, datetime, datetime]] = {}
    for r in records:
        at = to_datetime(r.ended_at)
        for p in r.participants:
            name, races, first, last = seen.get(p.player_id, (p.name, 0, at, at))
            if at >= last:
                name = p.name
            seen[p.player_id] = (name, races + 1, min(first, at), max(last, at))
    ids = sorted(seen)
    none = History()
    return [
        ids,
        *([seen[i][k] for i in ids] for k in range(4)),
        [added.get(i, none).best_wpm for i in ids],
        [added.get(i, none).races for i in ids],
    ]


def _tournament_columns(heats: Sequence[MatchRecord]) -> list[Sequence[object]]:
    agg: dict[str, tuple[int, int, datetime]] = {}
    for r in heats:
        assert r.tournament_id is not None
        n, rounds, updated = agg.get(r.tournament_id, (0, 0, to_datetime(r.ended_at)))
        agg[r.tournament_id] = (n + 1, max(rounds, r.round_no or 0), max(updated, to_datetime(r.ended_at)))
    ids = sorted(agg)
    return [ids, *([agg[i][k] for i in ids] for k in range(3))]


@dataclass(slots=True)
class _Standing:
    name: str
    joined_at: datetime
    updated_at: datetime
    last_round: int | None
    heats: int = 0
    finished: int = 0
    best_wpm: float = 0.0
    best_accuracy: float = 0.0


def _standing_columns(heats: Sequence[MatchRecord]) -> list[Sequence[object]]:
    agg: dict[tuple[str, str], _Standing] = {}
    for r in sorted(heats, key=lambda r: r.ended_at):
        assert r.tournament_id is not None
        at = to_datetime(r.ended_at)
        for p in r.participants:
            s = agg.setdefault((r.tournament_id, p.player_id), _Standing(p.name, at, at, r.round_no))
            s.name, s.updated_at, s.last_round = p.name, at, r.round_no
            s.heats += 1
            if counts_for_ranking(p):
                s.finished += 1
                if (p.wpm, p.accuracy) > (s.best_wpm, s.best_accuracy):
                    s.best_wpm, s.best_accuracy = float(p.wpm), float(p.accuracy)
    keys = sorted(agg)
    rows = [agg[k] for k in keys]
    return [
        [k[0] for k in keys],
        [k[1] for k in keys],
        [s.name for s in rows],
        [s.heats for s in rows],
        [s.finished for s in rows],
        [s.best_wpm for s in rows],
        [s.best_accuracy for s in rows],
        [s.last_round for s in rows],
        [s.joined_at for s in rows],
        [s.updated_at for s in rows],
    ]


def _final_columns(finals: Sequence[TournamentFinalRecord]) -> list[Sequence[object]]:
    return [
        [f.match_id for f in finals],
        [f.tournament_id for f in finals],
        [f.state for f in finals],
        [len(f.standings) for f in finals],
        [
            _json([[h.round_no, h.heat_no, h.race_no, h.race_id] for h in f.heat_races], _HEAT_RACE)
            for f in finals
        ],
        [_json([[s.round_no, s.heat_no, s.reason] for s in f.settled_heats], _SETTLED) for f in finals],
        [f.version for f in finals],
    ]


_HEAT_RACE = ("round_no", "heat_no", "race_no", "race_id")
_SETTLED = ("round_no", "heat_no", "reason")


def _json(rows: Sequence[Sequence[object]], names: Sequence[str]) -> str:
    return json.dumps([dict(zip(names, row, strict=True)) for row in rows], separators=(",", ":"))


def _finish_columns(finals: Sequence[TournamentFinalRecord]) -> list[Sequence[object]]:
    return [
        [f.tournament_id for f in finals],
        [f.state for f in finals],
        [f.name for f in finals],
        [f.race_type for f in finals],
        [f.tournament_type for f in finals],
        [f.visibility for f in finals],
        [f.rule for f in finals],
        [f.heat_size for f in finals],
        [f.advance for f in finals],
        [f.races_per_round for f in finals],
        [f.rounds for f in finals],
        [to_datetime(f.created_at) for f in finals],
        [to_datetime(f.started_at) for f in finals],
        [to_datetime(f.ended_at) for f in finals],
    ]


def _result_columns(finals: Sequence[TournamentFinalRecord]) -> list[Sequence[object]]:
    rows = sorted(
        ((f.tournament_id, s.player_id, s) for f in finals for s in f.standings), key=lambda row: row[:2]
    )
    return [
        [t for t, _, _ in rows],
        [p for _, p, _ in rows],
        [s.rank for _, _, s in rows],
        [s.name for _, _, s in rows],
        [s.seed for _, _, s in rows],
        [float(s.rating) for _, _, s in rows],
        [s.last_round for _, _, s in rows],
        [s.prize for _, _, s in rows],
    ]


@dataclass(frozen=True, slots=True)
class _Settle:
    """Placement settles a player's provisional results: how, by which race, when it ended."""

    how: Settle
    by_race: str
    at: datetime
    operator: bool = False  # by an operator's release of that race, not by the evidence
    why: str = "pairs_history"  # a hold's reason: the letter-pair rule that held (HoldReason)


@dataclass(slots=True)
class _Settled:
    placed: list[ReviewDecisionRecord] = field(default_factory=list)  # released: to the outbox
    held: list[DecidedResult] = field(default_factory=list)  # held: their recent-results lines

    def add(self, other: _Settled) -> None:
        self.placed += other.placed
        self.held += other.held


async def _settle(conn: PoolConnectionProxy, settles: dict[str, _Settle], max_s: int) -> _Settled:
    """Inside the batch's transaction: release or hold each player's provisional results of the
    window (the settling result's end minus ``max_s``). A release is stored as persistence's own
    decision and counts in the personal-best history, as an operator's release does."""
    window = timedelta(seconds=max_s)
    out = _Settled()
    now = now_ms()
    for how in Settle:
        ids = sorted(p for p, s in settles.items() if s.how is how)
        if not ids:
            continue
        since = [settles[p].at - window for p in ids]
        if how is Settle.RELEASE:
            rows = await conn.fetch(_RELEASE_PROVISIONAL, ids, since)
            if not rows:
                continue
            out.placed = [
                placement_decision(r["race_id"], r["player_id"], settles[r["player_id"]].by_race, now,
                                   operator=settles[r["player_id"]].operator)
                for r in sorted(rows, key=lambda r: (r["player_id"], r["race_id"]))
            ]  # fmt: skip
            await conn.execute(
                _INSERT_PLACEMENTS,
                [d.race_id for d in out.placed],
                [d.player_id for d in out.placed],
                [d.reason for d in out.placed],
                [to_datetime(d.decided_at) for d in out.placed],
                [settles[d.player_id].by_race for d in out.placed],
            )
            added: dict[str, History] = {}
            for r in rows:
                added[r["player_id"]] = added.get(r["player_id"], History()).plus(r["wpm"])
            players = sorted(added)
            await conn.execute(
                _ADD_HISTORY, players, [added[i].best_wpm for i in players], [added[i].races for i in players]
            )
        else:
            rows = await conn.fetch(_HOLD_PROVISIONAL, ids, since, [settles[p].why for p in ids])
            if not rows:
                continue
            races, players = [r["race_id"] for r in rows], [r["player_id"] for r in rows]
            back = await conn.fetch(_DECIDED, races, players, [ReviewState.HELD.value])
            out.held = [replace(DecidedResult.of_row(b), placed=True) for b in back]
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["player_id"]] = counts.get(r["player_id"], 0) + 1
        for player, n in counts.items():
            log.info(
                "placement_released" if how is Settle.RELEASE else "placement_held",
                player_id=player,
                results=n,
                by_race=settles[player].by_race,
            )
    return out


@dataclass(slots=True)
class _ReadBack:
    released: list[ReleasedResult] = field(default_factory=list)
    decided: list[DecidedResult] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


async def _read_back(conn: PoolConnectionProxy, decisions: Sequence[ReviewDecisionRecord]) -> _ReadBack:
    """The batch's decided results as stored, and what each rejection's race did to ratings."""
    rows = await conn.fetch(
        _DECIDED, [d.race_id for d in decisions], [d.player_id for d in decisions], list(DECISIONS)
    )
    # Only what a decision of the batch says: a contrary one (refused at insertion) does nothing.
    said = {(d.race_id, d.player_id, d.decision) for d in decisions}
    decided = [
        DecidedResult.of_row(row)
        for row in rows
        if (row["race_id"], row["player_id"], row["review_state"]) in said
    ]
    released = [
        ReleasedResult(d.race_type, d.race_id, d.player_id, d.name, d.wpm, d.accuracy, d.created_at, d.daily)
        for d in decided
        if d.review == ReviewState.RELEASED and d.valid and d.status == "finished"
    ]
    rejected = [d for d in decided if d.review == ReviewState.REJECTED]
    if not rejected:
        return _ReadBack(released, decided)
    placings: dict[str, list[Placing]] = {}
    for row in await conn.fetch(_RANKINGS, sorted({d.race_id for d in rejected})):
        place = row["place"] if row["status"] == "finished" else None
        placings.setdefault(row["race_id"], []).append(Placing(row["player_id"], place, row["valid"]))
    pairs = [(p.player_id, race_id) for race_id, ps in placings.items() for p in ps]
    rated = await conn.fetch(_RATED, [p for p, _ in pairs], [r for _, r in pairs])
    before: dict[str, dict[str, Rating]] = {}
    after: dict[str, dict[str, Rating]] = {}
    for h in rated:
        before.setdefault(h["race_id"], {})[h["player_id"]] = Rating(
            h["rating_before"], h["rd_before"], h["volatility_before"]
        )
        after.setdefault(h["race_id"], {})[h["player_id"]] = Rating(
            h["rating_after"], h["rd_after"], h["volatility_after"]
        )
    rejections = [
        Rejection(d.race_id, d.player_id, placings.get(d.race_id, []), before.get(d.race_id, {}),
                  after.get(d.race_id, {}))
        for d in rejected
    ]  # fmt: skip
    return _ReadBack(released, decided, rejections)
