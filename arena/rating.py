"""Player skill: Glicko-2 ratings, updated from race rankings, kept in Redis.

The first half is pure (no I/O): ``glicko2_update`` is Glickman's algorithm
(http://www.glicko.net/glicko/glicko2.pdf) and ``rate_race`` applies it to a multiplayer race
by treating it as pairwise games against every other rated player, all in one rating
period (the race). Rules:

- a valid finisher beats every player placed below it and every DNF; equal places draw;
- a DNF loses to every finisher; two DNFs are not compared (nothing was learnt);
- flagged (invalid) results are not rated, and a flagged player is nobody's opponent;
- aborted races are not rated; a race with fewer than two rated players changes nothing.

``RatingStore`` keeps ratings in Redis and applies a race exactly once per match id.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from arena import keys
from arena.clock import now_ms
from arena.results import MatchRecord

log = structlog.get_logger(__name__)

GLICKO_SCALE = 173.7178  # Glicko-2's conversion between the Glicko scale and its own
TAU = 0.5  # system constant: how much volatility may change per period (0.3-1.2)
MAX_RD = 350.0
_EPSILON = 1e-6  # convergence of the volatility iteration


@dataclass(frozen=True, slots=True)
class Rating:
    rating: float
    rd: float  # rating deviation: the uncertainty
    volatility: float


DEFAULT = Rating(1500.0, 350.0, 0.06)  # a new player: average, very uncertain


@dataclass(frozen=True, slots=True)
class Placing:
    """One participant's result as far as rating cares."""

    player_id: str
    place: int | None  # 1 = winner; None = did not finish
    valid: bool = True  # False: fair-play flags were raised, the result is not rated


# ---- pure Glicko-2 ---------------------------------------------------------------


def _g(phi: float) -> float:
    return 1.0 / math.sqrt(1.0 + 3.0 * phi * phi / (math.pi * math.pi))


def _expected(mu: float, mu_j: float, phi_j: float) -> float:
    return 1.0 / (1.0 + math.exp(-_g(phi_j) * (mu - mu_j)))


def _new_volatility(phi: float, sigma: float, delta: float, v: float, tau: float) -> float:
    """Step 5 of the paper: the Illinois algorithm on f(x) = 0."""
    a = math.log(sigma * sigma)

    def f(x: float) -> float:
        ex = math.exp(x)
        num = ex * (delta * delta - phi * phi - v - ex)
        den = 2.0 * (phi * phi + v + ex) ** 2
        return num / den - (x - a) / (tau * tau)

    big_a = a
    if delta * delta > phi * phi + v:
        big_b = math.log(delta * delta - phi * phi - v)
    else:
        k = 1
        while f(a - k * tau) < 0:
            k += 1
        big_b = a - k * tau
    f_a, f_b = f(big_a), f(big_b)
    while abs(big_b - big_a) > _EPSILON:
        big_c = big_a + (big_a - big_b) * f_a / (f_b - f_a)
        f_c = f(big_c)
        if f_c * f_b <= 0:
            big_a, f_a = big_b, f_b
        else:
            f_a /= 2.0
        big_b, f_b = big_c, f_c
    return math.exp(big_a / 2.0)


def glicko2_update(player: Rating, games: Sequence[tuple[Rating, float]], tau: float = TAU) -> Rating:
    """The player's rating after one period of ``games`` (opponent, score 1/0.5/0)."""
    if not games:
        return player  # we do not model idle periods: a rating only moves when rated
    mu = (player.rating - 1500.0) / GLICKO_SCALE
    phi = player.rd / GLICKO_SCALE
    inv_v = 0.0
    sum_score = 0.0
    for opponent, score in games:
        mu_j = (opponent.rating - 1500.0) / GLICKO_SCALE
        phi_j = opponent.rd / GLICKO_SCALE
        e = _expected(mu, mu_j, phi_j)
        g = _g(phi_j)
        inv_v += g * g * e * (1.0 - e)
        sum_score += g * (score - e)
    v = 1.0 / inv_v
    delta = v * sum_score
    sigma = _new_volatility(phi, player.volatility, delta, v, tau)
    phi_star = math.sqrt(phi * phi + sigma * sigma)
    phi_new = 1.0 / math.sqrt(1.0 / (phi_star * phi_star) + 1.0 / v)
    mu_new = mu + phi_new * phi_new * sum_score
    return Rating(
        rating=GLICKO_SCALE * mu_new + 1500.0,
        rd=min(MAX_RD, GLICKO_SCALE * phi_new),
        volatility=sigma,
    )


def pairwise_scores(ranking: Sequence[Placing]) -> dict[str, list[tuple[str, float]]]:
    """Each rated player's games: (opponent id, score) against every other rated player."""
    rated = [p for p in ranking if p.valid]
    games: dict[str, list[tuple[str, float]]] = {p.player_id: [] for p in rated}
    for i, a in enumerate(rated):
        for b in rated[i + 1 :]:
            score = _score(a.place, b.place)
            if score is None:
                continue
            games[a.player_id].append((b.player_id, score))
            games[b.player_id].append((a.player_id, 1.0 - score))
    return games


def _score(a: int | None, b: int | None) -> float | None:
    """A's score against B: lower place wins, a DNF (None) loses to a finisher."""
    if a is None and b is None:
        return None
    if a is None:
        return 0.0
    if b is None:
        return 1.0
    if a == b:
        return 0.5
    return 1.0 if a < b else 0.0


def rate_race(
    ratings: Mapping[str, Rating], ranking: Sequence[Placing], tau: float = TAU
) -> dict[str, Rating]:
    """New ratings of the players whose rating changes; everyone is rated from pre-race values."""
    games = pairwise_scores(ranking)
    if len(games) < 2:
        return {}
    updated: dict[str, Rating] = {}
    for player_id, own_games in games.items():
        if not own_games:
            continue
        before = ratings.get(player_id, DEFAULT)
        opponents = [(ratings.get(opp, DEFAULT), score) for opp, score in own_games]
        updated[player_id] = glicko2_update(before, opponents, tau)
    return updated


def ranking_from_record(record: MatchRecord) -> list[Placing] | None:
    """The rated view of a finished match; None when the match is not rated (aborted)."""
    if record.state != "finished":
        return None
    return [
        Placing(player_id=p.player_id, place=p.place if p.status == "finished" else None, valid=p.valid)
        for p in record.participants
    ]


# ---- Redis storage -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RatingChange:
    player_id: str
    before: Rating
    after: Rating


# KEYS[1] marker, KEYS[2] change stream, KEYS[3..] player hashes.
# ARGV[1] match id, ARGV[2] marker ttl s, ARGV[3] now ms, ARGV[4] changes json,
# then per player: expected version, rating, rd, volatility.
# Returns -1: already applied; 0: a player's rating moved meanwhile (retry); 1: applied.
_APPLY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local n = #KEYS - 2
for i = 1, n do
  local v = redis.call('HGET', KEYS[i + 2], 'v') or '0'
  if v ~= ARGV[4 + (i - 1) * 4 + 1] then return 0 end
end
for i = 1, n do
  local base = 4 + (i - 1) * 4
  local key = KEYS[i + 2]
  redis.call('HSET', key, 'r', ARGV[base + 2], 'rd', ARGV[base + 3], 'vol', ARGV[base + 4],
    'updated_at', ARGV[3])
  redis.call('HINCRBY', key, 'v', 1)
  redis.call('HINCRBY', key, 'races', 1)
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'match_id', ARGV[1], 'at', ARGV[3], 'changes', ARGV[4])
return 1
"""

_FIELDS = ("r", "rd", "vol", "v")  # a rating hash: rating, deviation, volatility, version
MARKER_TTL_S = 7 * 24 * 3600  # far longer than any redelivery of a match result
_MAX_ATTEMPTS = 8


class RatingStore:
    """Ratings in Redis (``{rating}:player:{id}`` hashes); a match is applied at most once.

    Every rating key shares the ``{rating}`` hash tag so one script updates a whole race on
    Redis Cluster too; ~10,000 player updates a second is well within one shard.
    """

    def __init__(self, redis: aioredis.Redis, *, tau: float = TAU, marker_ttl_s: int = MARKER_TTL_S) -> None:
        self._redis = redis
        self._tau = tau
        self._marker_ttl_s = marker_ttl_s
        self._apply = redis.register_script(_APPLY)

    async def get(self, player_id: str) -> Rating:
        return (await self.get_many([player_id]))[player_id]

    @staticmethod
    def read_command(player_id: str) -> tuple[str, ...]:
        """The one command that reads a player's rating, for a caller that batches it with
        others (the lobby's ticket creation); ``decode`` turns its raw reply into the rating."""
        return ("HMGET", keys.player_rating(player_id), *_FIELDS)

    @staticmethod
    def decode(reply: Sequence[bytes | str | None]) -> Rating:
        return _decode(reply)[0]

    async def get_many(self, player_ids: Iterable[str]) -> dict[str, Rating]:
        """Current ratings; a player never rated gets ``DEFAULT``."""
        versioned = await self._read(list(dict.fromkeys(player_ids)))
        return {pid: rating for pid, (rating, _) in versioned.items()}

    async def apply_race(self, match_id: str, ranking: Sequence[Placing]) -> list[RatingChange] | None:
        """Rate a race once. Returns the changes ([] when nobody is rated), or None if this
        match was already applied.

        Optimistic: read the ratings, compute, then write only if no player's rating moved
        in between (a version per player), else read again.
        """
        player_ids = [p.player_id for p in ranking if p.valid]
        for _ in range(_MAX_ATTEMPTS):
            if await self._redis.exists(keys.rating_applied(match_id)):
                return None
            current = await self._read(player_ids)
            updated = rate_race({pid: r for pid, (r, _) in current.items()}, ranking, self._tau)
            if not updated:
                return []  # nothing to rate (one rated player, or only DNFs)
            changes = [RatingChange(pid, current[pid][0], after) for pid, after in updated.items()]
            outcome = await self._write(match_id, changes, {pid: current[pid][1] for pid in updated})
            if outcome == 1:
                log.info("race_rated", match_id=match_id, players=len(changes))
                return changes
            if outcome == -1:
                return None
        raise RuntimeError(f"ratings of match {match_id} kept moving; gave up after {_MAX_ATTEMPTS} tries")

    async def apply_record(self, record: MatchRecord) -> list[RatingChange] | None:
        """Rate a finished match from the outbox record; [] when it is not rated (aborted)."""
        ranking = ranking_from_record(record)
        if ranking is None:
            return []
        return await self.apply_race(record.match_id, ranking)

    async def _read(self, player_ids: list[str]) -> dict[str, tuple[Rating, str]]:
        if not player_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for pid in player_ids:
                pipe.hmget(keys.player_rating(pid), *_FIELDS)
            rows = await pipe.execute()
        return {pid: _decode(row) for pid, row in zip(player_ids, rows, strict=True)}

    async def _write(self, match_id: str, changes: list[RatingChange], versions: Mapping[str, str]) -> int:
        payload = json.dumps(
            [
                {
                    "player_id": c.player_id,
                    "before": [c.before.rating, c.before.rd, c.before.volatility],
                    "after": [c.after.rating, c.after.rd, c.after.volatility],
                }
                for c in changes
            ],
            separators=(",", ":"),
        )
        args: list[str | int | float] = [match_id, self._marker_ttl_s, now_ms(), payload]
        for c in changes:
            args += [versions[c.player_id], repr(c.after.rating), repr(c.after.rd), repr(c.after.volatility)]
        player_keys = [keys.player_rating(c.player_id) for c in changes]
        result = await self._apply(
            keys=[keys.rating_applied(match_id), keys.RATING_CHANGES_STREAM, *player_keys], args=args
        )
        return int(result)


def _decode(row: Sequence[bytes | str | None]) -> tuple[Rating, str]:
    r, rd, vol, version = (v.decode() if isinstance(v, bytes) else v for v in row)
    if r is None or rd is None or vol is None:
        return DEFAULT, version or "0"
    return Rating(float(r), float(rd), float(vol)), version or "0"
