-- Held for review (docs/FAIRPLAY.md, "Held for review"): a valid finish at or above
-- ARENA_REVIEW_WPM is stored 'held' and kept off the leaderboards until an operator releases
-- ('released': ranked from then on) or rejects it ('rejected': never ranked). Existing rows are 'clear'.
ALTER TABLE race_participants
    ADD COLUMN review_state text NOT NULL DEFAULT 'clear'
        CHECK (review_state IN ('clear', 'held', 'released', 'rejected'));
-- The review queue is small; the operator's list reads it by end time.
CREATE INDEX race_participants_held ON race_participants (created_at) WHERE review_state = 'held';

-- One operator decision per held result (outbox kind "review_decision", persistence/review.py).
-- The primary key is the idempotency key: a decision is inserted ON CONFLICT DO NOTHING, and only
-- a new one moves its result out of 'held'; a later, different decision changes nothing.
CREATE TABLE review_decisions (
    race_id    text NOT NULL,
    player_id  text NOT NULL,
    decision   text NOT NULL CHECK (decision IN ('released', 'rejected')),
    reason     text NOT NULL,
    decided_at timestamptz NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (race_id, player_id)
);

-- The personal-best rule needs each player's best ranked WPM and how many ranked finishes are
-- stored, at ingestion, without scanning their history: kept up to date by the batch's writer
-- (clear results when stored, released ones when released). Backfilled from what is stored.
ALTER TABLE players
    ADD COLUMN best_wpm     double precision NOT NULL DEFAULT 0,
    ADD COLUMN ranked_races integer NOT NULL DEFAULT 0;
UPDATE players AS p SET best_wpm = s.best, ranked_races = s.n
FROM (SELECT player_id, max(wpm) AS best, count(*) AS n
      FROM race_participants WHERE valid AND status = 'finished' AND review_state IN ('clear', 'released')
      GROUP BY player_id) AS s
WHERE p.player_id = s.player_id;
