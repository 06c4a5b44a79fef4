-- Players, races and their results, ratings history, tournaments.
-- Times are timestamptz (UTC); the outbox carries them as epoch milliseconds.

CREATE TABLE players (
    player_id     text PRIMARY KEY,
    name          text NOT NULL,          -- the latest display name seen in a result
    races         integer NOT NULL DEFAULT 0,
    first_seen_at timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL
);

-- A tournament row appears with its first heat; the tournament service owns the rest.
CREATE TABLE tournaments (
    tournament_id text PRIMARY KEY,
    race_type     text NOT NULL,
    status        text NOT NULL DEFAULT 'running',
    heats         integer NOT NULL DEFAULT 0,
    rounds        integer NOT NULL DEFAULT 0,  -- highest round number seen
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX tournaments_status ON tournaments (status, created_at);

-- One row per finished or aborted race or heat. The race id is the idempotency key, so this
-- table is not partitioned: a partitioned table's primary key must include the partition column.
CREATE TABLE races (
    race_id        text PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('race', 'heat')),
    race_type      text NOT NULL CHECK (race_type IN ('quick', 'standard', 'marathon', 'custom')),
    state          text NOT NULL CHECK (state IN ('finished', 'aborted')),
    reason         text NOT NULL,
    node_id        text NOT NULL,
    passage_id     text NOT NULL,
    passage_chars  integer NOT NULL CHECK (passage_chars >= 0),
    players        smallint NOT NULL,
    tournament_id  text REFERENCES tournaments,
    round_no       integer,
    heat_no        integer,
    created_at     timestamptz NOT NULL,
    started_at     timestamptz,
    ended_at       timestamptz NOT NULL,
    record_version smallint NOT NULL,
    stored_at      timestamptz NOT NULL DEFAULT now(),  -- when persistence wrote it (rebuild catch-up)
    CHECK ((kind = 'heat') = (tournament_id IS NOT NULL))
);
CREATE INDEX races_ended_at ON races (ended_at);
CREATE INDEX races_stored_at ON races (stored_at);
CREATE INDEX races_tournament ON races (tournament_id, round_no, heat_no) WHERE tournament_id IS NOT NULL;

-- Results: one row per participant, partitioned by month of created_at (= the race's end).
-- Monthly partitions are made on demand by ensure_results_partition() (0002); rows for a
-- month without one land in the default partition and move when it is created.
-- No foreign keys here: the only writer inserts a race, its players and its results in one
-- transaction; the per-row checks cost ~40% of PostgreSQL's CPU on this, the hottest table,
-- and would get in the way of detaching old months for archival.
CREATE TABLE race_participants (
    race_id       text NOT NULL,   -- races.race_id
    player_id     text NOT NULL,   -- players.player_id
    created_at    timestamptz NOT NULL,
    name          text NOT NULL,
    place         smallint,                 -- NULL: did not finish, or flagged
    status        text NOT NULL CHECK (status IN ('finished', 'dnf')),
    valid         boolean NOT NULL,         -- false when fair-play flags were raised
    flags         text[] NOT NULL,
    wpm           double precision NOT NULL,
    raw_wpm       double precision NOT NULL,
    accuracy      double precision NOT NULL,
    consistency   double precision NOT NULL,
    correct_chars integer NOT NULL,
    typed_chars   integer NOT NULL,
    errors        integer NOT NULL,
    elapsed_ms    integer NOT NULL,
    joined_at     timestamptz,
    finished_at   timestamptz,
    keylog        bytea NOT NULL,           -- persistence/keylog.py: msgpack [1, keys, time deltas]
    PRIMARY KEY (race_id, player_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX race_participants_player_created ON race_participants (player_id, created_at DESC);
CREATE TABLE race_participants_default PARTITION OF race_participants DEFAULT;

-- Rating changes per player and race (Glicko-2: rating, deviation, volatility before and after),
-- copied from the {rating}:changes stream (arena/rating.py). No foreign keys: a node rates a race
-- before persistence stores it, so a change may arrive first.
CREATE TABLE rating_history (
    player_id   text NOT NULL,
    race_id     text NOT NULL,
    rating_before     double precision NOT NULL,
    rd_before         double precision NOT NULL,
    volatility_before double precision NOT NULL,
    rating_after      double precision NOT NULL,
    rd_after          double precision NOT NULL,
    volatility_after  double precision NOT NULL,
    created_at  timestamptz NOT NULL,  -- when the rating was applied
    PRIMARY KEY (player_id, race_id)
);
CREATE INDEX rating_history_player_created ON rating_history (player_id, created_at DESC);

-- A player's standing in a tournament, summed over the heats persisted so far.
CREATE TABLE tournament_participants (
    tournament_id text NOT NULL REFERENCES tournaments,
    player_id     text NOT NULL REFERENCES players,
    name          text NOT NULL,
    heats         integer NOT NULL DEFAULT 0,
    finished      integer NOT NULL DEFAULT 0,   -- valid finishes
    best_wpm      double precision NOT NULL DEFAULT 0,
    best_accuracy double precision NOT NULL DEFAULT 0,
    last_round    integer,
    joined_at     timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tournament_id, player_id)
);
CREATE INDEX tournament_participants_rank ON tournament_participants (tournament_id, best_wpm DESC);
CREATE INDEX tournament_participants_player ON tournament_participants (player_id);
