"""Each player's pooled letter-pair evidence in Redis (``user:{id}:pairs``), and the holds it calls.

Persistence runs this once per batch, before it stores the batch (persistence/consumer.py): it
reads the players' summaries and the population profile (``{pairs}:population``; one MGET), adds
each valid finish's intervals in race-end order, judges the pooled evidence (persistence/pairs.py:
its F; persistence/pair_population.py: its agreement with the profile, to which it may add the
player's evidence once per generation) and writes the summaries and the profile back
with a TTL (``ARENA_REVIEW_PAIRS_TTL_S``; one script call, one SET each on a cluster); the
store then holds the results it names (persistence/store.py). A re-delivered result counts
once (the summary keeps the ids of its races). Two workers storing the same player's races at
the same moment may each miss the other's race: like the personal-best history, the evidence
is a guide, not a ledger.

An operator's release of any of a player's results deletes the summary: the operator has looked
at the player, and the evidence starts over (docs/FAIRPLAY.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import cast

import redis.asyncio as aioredis
import structlog
from redis.asyncio.cluster import RedisCluster

from arena import keys
from arena.redisutil import is_cluster
from arena.results import MatchRecord
from persistence.leaderboards import counts_for_ranking
from persistence.pair_population import HELD_POPULATION, PopulationLimits, PopulationProfile
from persistence.pair_population import judged as population_judged
from persistence.pairs import PairHistory, PairLimits, race_pairs
from persistence.settings import ReadSideSettings

log = structlog.get_logger(__name__)


# SET with a TTL for each key (KEYS[i] = ARGV[i + 1], ARGV[1] the TTL): one command for a batch.
_SET_ALL = """
local ttl = ARGV[1]
for i, name in ipairs(KEYS) do
    redis.call('SET', name, ARGV[i + 1], 'EX', ttl)
end
return #KEYS
"""


@dataclass(frozen=True, slots=True)
class PairVerdict:
    """(race, player) of the valid finishes the evidence holds, and of those it is still short for
    (fewer pooled intervals than the rule needs, this result counted: placement)."""

    held: set[tuple[str, str]] = field(default_factory=set)
    short: set[tuple[str, str]] = field(default_factory=set)
    population: set[tuple[str, str]] = field(default_factory=set)  # of ``held``: by pairs_population
    contributions: int | None = None  # in the population profile after this batch (None: not read)


def pair_limits(settings: ReadSideSettings) -> PairLimits:
    return PairLimits(min_f=settings.review_pairs_f, races=settings.review_pairs_races)


def population_limits(settings: ReadSideSettings) -> PopulationLimits:
    return PopulationLimits(
        min_r=settings.review_pairs_agreement_r, min_players=settings.review_pairs_population_min
    )


class PairEvidence:
    def __init__(self, redis: aioredis.Redis, settings: ReadSideSettings) -> None:
        self._redis = redis
        self._limits = pair_limits(settings)
        self._population = population_limits(settings)
        self._ttl_s = settings.review_pairs_ttl_s
        self._set_all = redis.register_script(_SET_ALL)

    async def judge(self, records: Sequence[MatchRecord]) -> set[tuple[str, str]]:
        """(race, player) of the valid finishes to hold: the player's evidence says "no letter pairs"."""
        return (await self.assess(records)).held

    async def assess(self, records: Sequence[MatchRecord]) -> PairVerdict:
        """What the players' evidence says of each valid finish: held, or still short (placement)."""
        if not self._limits.min_f:
            return PairVerdict()
        ordered = sorted(records, key=lambda r: (r.ended_at, r.match_id))
        results = [(r, p) for r in ordered for p in r.participants if counts_for_ranking(p)]
        if not results:
            return PairVerdict()
        players = sorted({p.player_id for _, p in results})
        # The players' evidence and the population profile in one read.
        names = [keys.pair_history(pl) for pl in players]
        *raws, raw_profile = await self._read([*names, keys.pair_population()])
        histories = {pl: PairHistory.from_bytes(raw) for pl, raw in zip(players, raws, strict=True)}
        profile = start = PopulationProfile.from_bytes(raw_profile)
        verdict = PairVerdict()
        for r, p in results:
            before = histories[p.player_id]
            # Per result: O(keys) to group the intervals, O(pairs) to pool and judge (bounded).
            pairs = race_pairs(p.keys, p.key_times, self._limits.pause_ms, self._limits.clip)
            after, short = before.plus(r.match_id, pairs, self._limits).assessed(self._limits)
            after, profile = population_judged(after, profile, self._limits, self._population)
            histories[p.player_id] = after
            if short:
                verdict.short.add((r.match_id, p.player_id))
            if after.held:
                verdict.held.add((r.match_id, p.player_id))
                if after.why == HELD_POPULATION:
                    verdict.population.add((r.match_id, p.player_id))
                if not before.held:
                    log.info("pair_evidence_hold", player_id=p.player_id, race_id=r.match_id, rule=after.why)
        values = {keys.pair_history(pl): h.to_bytes() for pl, h in histories.items()}
        if profile is not start:
            # Two workers' batches at the same moment: the last write wins and the other's
            # contributions are lost. The profile is an average of many: it barely moves.
            values[keys.pair_population()] = profile.to_bytes()
        await self._write(values)
        return replace(verdict, contributions=profile.players)

    async def _read(self, names: list[str]) -> list[bytes | None]:
        """One MGET: a fifth of the client CPU of one pipelined GET per player (≈ 5 vs 28 µs a key,
        docs/PERFORMANCE.md). A cluster's keys are in many slots: redis-py splits it by slot."""
        if is_cluster(self._redis):
            cluster = cast(RedisCluster, self._redis)
            return cast(list[bytes | None], await cluster.mget_nonatomic(names))
        return cast(list[bytes | None], await self._redis.mget(names))

    async def _write(self, values: dict[str, bytes]) -> None:
        """Every summary with its TTL. One Redis: one script call (≈ 10 vs 28 µs of client CPU a
        key against a pipelined SET each). A cluster's keys are in many slots: one SET each."""
        if is_cluster(self._redis):
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, value in values.items():
                    pipe.set(name, value, ex=self._ttl_s)
                await pipe.execute()
        else:
            await self._set_all(keys=list(values), args=[self._ttl_s, *values.values()])

    async def forget(self, players: Iterable[str]) -> None:
        """An operator released one of their results: the evidence starts over."""
        names = [keys.pair_history(p) for p in sorted(set(players))]
        if names:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.delete(name)
                await pipe.execute()
