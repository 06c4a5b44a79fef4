"""Every Redis key and channel name, in one place, as functions.

Names follow the design documents (``race:{id}:state``, ``race:{id}:updates``). Keys that one
Lua script touches together share a hash tag (the part in braces) so the script stays valid
on Redis Cluster.
"""

from __future__ import annotations

from arena.ids import RaceId

# The outbox: finished matches waiting for persistence. The stream and the
# "already written" markers are touched by one script, hence the shared {outbox} tag.
OUTBOX_STREAM = "{outbox}:matches"


# Outbox entries that failed too often, with the reason; listed and replayed by ops.deadletters.
# Shares the {outbox} tag: moving an entry between the streams is one atomic script.
DEAD_STREAM = "{outbox}:dead"

# Hash player id -> display name, for leaderboard pages (names are not in the sorted sets).
PLAYER_NAMES = "players:names"


def daily_board(day: str) -> str:
    """Sorted set of the daily challenge's best attempt per player on ``day`` (``2026-12-06``),
    scored like the leaderboards (persistence/leaderboards.py); it lives as long as a daily board."""
    return f"daily:{day}:board"


def leaderboard(race_type: str, timeframe: str, period: str) -> str:
    """Sorted set of the best result per player, e.g. ``leaderboard:quick:daily:2026-11-23``.

    ``period`` is the day (``2026-11-23``) or ISO week (``2026-W48``); empty for all-time.
    """
    suffix = f":{period}" if period else ""
    return f"leaderboard:{race_type}:{timeframe}{suffix}"


def recent_races(player_id: str) -> str:
    """Sorted set of a player's latest race results, scored by end time (ms).

    Named ``user:{id}:recent_results`` until typing tests took that name (the seed's, for tests);
    the old sets hold races and expire within ``ARENA_RECENT_TTL_S`` (the read side of
    ``persistence.test_results`` never trusts a member that is not a test's).
    """
    return f"user:{player_id}:recent_races"


def pair_history(player_id: str) -> str:
    """A player's pooled letter-pair evidence over recent races (persistence/pairs.py), msgpack."""
    return f"user:{player_id}:pairs"


def pair_population() -> str:
    """The population profile of players' letter-pair speeds (persistence/pair_population.py),
    msgpack: one key for the deployment, read and written once per persistence batch."""
    return "{pairs}:population"


def outbox_written(race_id: RaceId) -> str:
    """Marker that a race's result is already in the outbox (makes the append idempotent)."""
    return f"{{outbox}}:written:{race_id}"


def race_state(race_id: RaceId) -> str:
    """Hash mirroring a live race: state, owner node, type, players, start instant."""
    return f"race:{{{race_id}}}:state"


def race_checkpoint(race_id: RaceId) -> str:
    """List: a race's checkpoint (``gameserver/checkpoint.py``): its definition first, then every
    journal entry (joins, countdown, acknowledged inputs) in order, appended by the owner node."""
    return f"race:{{{race_id}}}:checkpoint"


def race_claim(race_id: RaceId) -> str:
    """Short lease (SET NX): which live node finalises a dead node's race (exactly one)."""
    return f"race:{{{race_id}}}:claim"


def race_owner(race_id: RaceId) -> str:
    """String: the node that adopted a dead node's race (``gameserver/reaper.py``), for the nodes
    that redirect its players' joins there and for the lobby; set only once a race has moved."""
    return f"race:{{{race_id}}}:owner"


def node_checkpoints(node_id: str) -> str:
    """Set of the race ids a node holds checkpoints of (what a reaper finalises if it dies)."""
    return f"node:{node_id}:checkpoints"


def race_handoffs(region: str) -> str:
    """Hash race id -> JSON ``{"node", "at"}``: races a draining node hands to the live nodes of its
    region (drain with move, ``gameserver/mover.py``); their reapers adopt them like a dead node's."""
    return f"races:handoff:{region}"


# Hash node id -> region of every node that may hold checkpoints: reapers look for dead ones here
# (the registry forgets a dead node's entry, and its region with it).
CHECKPOINT_NODES = "checkpoints:nodes"


def race_updates(race_id: RaceId) -> str:
    """Sharded pub/sub channel (SPUBLISH/SSUBSCRIBE) carrying a race's progress frames to other
    nodes: on a Redis Cluster it lives on the shard of its race's slot (arena/shardfeed.py)."""
    return f"race:{{{race_id}}}:updates"


# Sorted set: race id -> instant (ms) until which someone outside the owner node watches it
# (another node's spectators, a tournament's live page). Owners ask it with one ZMSCORE a second.
WATCHED_RACES = "races:watched"


def node_info(node_id: str) -> str:
    """Hash describing a gameserver node: public URL, region, state."""
    return f"node:{node_id}"


def node_drain_report(node_id: str) -> str:
    """String (JSON): a node's last drain report, written as it stops (read by ``ops.admin``)."""
    return f"node:{node_id}:drain"


# Sorted set of node ids scored by their last heartbeat (ms): the registry's liveness index.
NODES_ALIVE = "nodes:alive"


# ---- matchmaking: tickets and queues (arena/tickets.py, matchmaker/) --------------
# Everything of one queue (race type, region) shares the hash tag {race_type:region}: the
# claim, assign, release, reap and cancel scripts touch the queue, its pool, its claims and
# the tickets together. A ticket id embeds its queue, so its hash key is found from the id.


def mm_queue(race_type: str, region: str) -> str:
    """Sorted set of queued ticket ids, scored by enqueue instant (ms): oldest first."""
    return f"mm:{{{race_type}:{region}}}:queue"


def mm_pool(race_type: str, region: str) -> str:
    """Hash ticket id -> "rating|language|player_id|name" of queued tickets (what pairing reads)."""
    return f"mm:{{{race_type}:{region}}}:pool"


def mm_claims(race_type: str, region: str) -> str:
    """Sorted set of claimed ticket ids, scored by claim deadline (ms): what the reaper scans."""
    return f"mm:{{{race_type}:{region}}}:claims"


def mm_ticket(race_type: str, region: str, ticket_id: str) -> str:
    """Hash of one ticket: owner, rating, state, claim and assignment fields."""
    return f"mm:{{{race_type}:{region}}}:ticket:{ticket_id}"


def mm_stats(race_type: str, region: str) -> str:
    """Hash of a queue's recent wait figures, written by matchmakers, read for expected waits."""
    return f"mm:{{{race_type}:{region}}}:stats"


def mm_lease(race_type: str, region: str) -> str:
    """Short lease: which matchmaker is pairing this queue right now (avoids duplicate work)."""
    return f"mm:{{{race_type}:{region}}}:lease"


def ticket_events(ticket_id: str) -> str:
    """Pub/sub channel announcing a ticket's state change (matched, cancelled) to waiters."""
    return f"ticket:{{{ticket_id}}}:events"


# ---- ratings (arena/rating.py) ---------------------------------------------------------
# One hash tag {rating} for all of them: a race's update writes every player's rating, the
# "already applied" marker and the change stream in one script.


def player_rating(player_id: str) -> str:
    """Hash of a player's Glicko-2 rating: r, rd, vol, races, v (version), updated_at."""
    return f"{{rating}}:player:{player_id}"


def rating_applied(match_id: str) -> str:
    """Marker that a match's result is already in the ratings (makes the update idempotent)."""
    return f"{{rating}}:applied:{match_id}"


def rating_rejected(race_id: str, player_id: str) -> str:
    """Marker that a rejected result's rating change is undone (persistence/rejection.py)."""
    return f"{{rating}}:rejected:{race_id}:{player_id}"


# Stream of rating changes, one entry per rated match, for persistence to read later.
RATING_CHANGES_STREAM = "{rating}:changes"


# ---- lobby (lobby/) --------------------------------------------------------------------
# Each of these is touched alone (one key per command or script), so none needs a hash tag.


def account(name_key: str) -> str:
    """Hash of a named player: player_id, name, scrypt salt/hash/parameters. Keyed by the case-folded name."""
    return f"account:{name_key}"


def player_ticket(player_id: str) -> str:
    """The player's latest matchmaking ticket id (one live ticket per player)."""
    return f"player:{player_id}:ticket"


def player_ticket_lock(player_id: str) -> str:
    """Short lock while the lobby creates a ticket for this player."""
    return f"player:{player_id}:ticket:lock"


def rate_limit(scope: str, subject: str, window: int) -> str:
    """Request counter of one client IP or player ("ip" / "player") in one fixed window."""
    return f"ratelimit:{scope}:{subject}:{window}"


def user_presence(player_id: str) -> str:
    """The player's presence (region, last seen), expiring: the seeds' ``user:{userId}:presence``."""
    return f"user:{player_id}:presence"


def presence_online(region: str) -> str:
    """Sorted set of players online in a region, scored by last heartbeat (ms)."""
    return f"presence:{region}:online"


def private_race(code: str) -> str:
    """Hash of a private race by invite code: settings, members, state, seats; expires with the code."""
    return f"private:{code}"


def private_race_events(code: str) -> str:
    """Pub/sub channel announcing a private race's changes (joined, starting, started) to waiters."""
    return f"private:{code}:events"


# ---- tournaments (tournaments/) ----------------------------------------------------------
# Every key of one tournament shares the hash tag {tournament id} (the seeds' names:
# tournament:{id}:state, :rankings, :participants, channel :updates), so each of its scripts
# touches one slot. The indexes and the director's lease share the tag {tournaments}.


def tournament_state(tournament_id: str) -> str:
    """Hash of a tournament: spec, state, round, entrants (seeded), versions, final result."""
    return f"tournament:{{{tournament_id}}}:state"


def tournament_participants(tournament_id: str) -> str:
    """Hash player id -> JSON {name, registered_at} of the registered players."""
    return f"tournament:{{{tournament_id}}}:participants"


def tournament_rankings(tournament_id: str) -> str:
    """Sorted set of the current standings: higher score = better (players - rank + 1)."""
    return f"tournament:{{{tournament_id}}}:rankings"


def tournament_updates(tournament_id: str) -> str:
    """Pub/sub channel of a tournament's changes (JSON): standings, heats, rounds."""
    return f"tournament:{{{tournament_id}}}:updates"


def tournament_heat(tournament_id: str, round_no: int, heat_no: int) -> str:
    """Hash of one heat: members, state, placement attempt, race, seats, results, standings."""
    return f"tournament:{{{tournament_id}}}:heat:{round_no}:{heat_no}"


def tournament_races(tournament_id: str) -> str:
    """Hash race id -> "round:heat:race_no" of every race placed for the tournament's heats."""
    return f"tournament:{{{tournament_id}}}:races"


def tournament_assignments(tournament_id: str) -> str:
    """Hash player id -> "round:heat": the latest heat each player was dealt into."""
    return f"tournament:{{{tournament_id}}}:assignments"


def tournament_prizes(tournament_id: str) -> str:
    """Hash player id -> prize, written when the tournament finishes."""
    return f"tournament:{{{tournament_id}}}:prizes"


# Sorted set of every tournament open for registration, scored by when the director must
# look at it (ms): the start of a scheduled one; +inf for an instant one until it is full.
TOURNAMENTS_REGISTERING = "{tournaments}:registering"
# Sorted set of every running tournament, scored by start (ms): the director's work list.
TOURNAMENTS_RUNNING = "{tournaments}:running"
# The director's lease (one active director) and the epoch bumped at each election.
TOURNAMENT_DIRECTOR_LEASE = "{tournaments}:director"
TOURNAMENT_DIRECTOR_EPOCH = "{tournaments}:director:epoch"


def tournaments_listed(status: str) -> str:
    """Sorted set of public tournaments by listing status (upcoming, live, finished)."""
    return f"{{tournaments}}:listed:{status}"


def tournament_invite(code: str) -> str:
    """Private tournament's invite code -> tournament id."""
    return f"{{tournaments}}:invite:{code}"


# Sorted set of running races, scored by start instant (ms): the lobby's "live now" list.
# Owners add a race when its mirror says running and remove it once it ends; readers drop
# entries whose race:{id}:state mirror is gone (a node died mid-race, say).
LIVE_RACES = "races:live"


# ---- typing tests (arena/typing_tests.py; seed 002) ------------------------------------


def test_content(test_id: str) -> str:
    """String: a typing test's content (mode and text, JSON), 24 h; the seed's ``test:{testId}:content``."""
    return f"test:{test_id}:content"


def recent_results(player_id: str) -> str:
    """Sorted set of a player's last typing-test results, scored by end time (ms), 1 h: the
    seed's ``user:{userId}:recent_results``. Races have their own set, ``recent_races``."""
    return f"user:{player_id}:recent_results"


def test_wpm_histogram(mode: str, day: str) -> str:
    """Hash WPM bucket -> count of a mode's counted results on a UTC day (``2026-12-06``), 8 days."""
    return f"tests:wpm:{mode}:{day}"
