-- Tournaments' final results (outbox kind "tournament_final", arena.results.TournamentFinalRecord).
-- The final fills in the tournament row (inserted here if no heat was ever raced) and records
-- every entrant's final standing. tournament_finals is the idempotency key: its row is inserted
-- ON CONFLICT DO NOTHING RETURNING, and the rest is written only when that row is new.

ALTER TABLE tournaments
    ADD COLUMN name            text,
    ADD COLUMN tournament_type text,     -- scheduled | instant
    ADD COLUMN visibility      text,     -- public | private
    ADD COLUMN rule            text,     -- top_k | points
    ADD COLUMN heat_size       integer,
    ADD COLUMN advance         integer,
    ADD COLUMN races_per_round integer,
    ADD COLUMN started_at      timestamptz,
    ADD COLUMN ended_at        timestamptz;

-- One row per final result stored; the lists that are not standings are kept as they came.
CREATE TABLE tournament_finals (
    match_id       text PRIMARY KEY,                 -- "{tournament_id}:final"
    tournament_id  text NOT NULL UNIQUE REFERENCES tournaments,
    state          text NOT NULL,
    entrants       integer NOT NULL,
    heat_races     jsonb NOT NULL,                   -- [{round_no, heat_no, race_no, race_id}]: the races that counted
    settled_heats  jsonb NOT NULL,                   -- [{round_no, heat_no, reason}]: heats decided without a full result
    record_version smallint NOT NULL,
    stored_at      timestamptz NOT NULL DEFAULT now()
);

-- Every entrant's final standing. No foreign key to players: an entrant whose heats were all
-- settled without a race never appears in a result, so may have no players row.
CREATE TABLE tournament_results (
    tournament_id text NOT NULL REFERENCES tournaments,
    player_id     text NOT NULL,
    rank          integer NOT NULL,           -- 1 = winner
    name          text NOT NULL,
    seed          integer NOT NULL,           -- 1 = best rated at the start
    rating        double precision NOT NULL,  -- the rating the seeding used
    last_round    integer NOT NULL,           -- the last round the player was dealt into
    prize         text,                       -- NULL: no prize for this rank
    PRIMARY KEY (tournament_id, player_id)
);
CREATE INDEX tournament_results_rank ON tournament_results (tournament_id, rank);
CREATE INDEX tournament_results_player ON tournament_results (player_id);
