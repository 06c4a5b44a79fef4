-- Placement (docs/FAIRPLAY.md, "Placement"): a new account's valid finishes are stored 'provisional'
-- (in history, on no board, not in the personal-best history) until the player's pooled letter-pair
-- evidence is complete; then persistence releases them (pairs rule passed) or holds them
-- ('held', reason 'pairs_history'). The check gains the state.
ALTER TABLE race_participants DROP CONSTRAINT race_participants_review_state_check;
ALTER TABLE race_participants ADD CONSTRAINT race_participants_review_state_check
    CHECK (review_state IN ('clear', 'provisional', 'held', 'released', 'rejected'));
-- `python -m ops.review list --provisional` reads them by end time (few: new accounts' first races).
CREATE INDEX race_participants_provisional ON race_participants (created_at) WHERE review_state = 'provisional';

-- A placement release is stored as persistence's own decision: the race whose result completed
-- the evidence (NULL for an operator's decision). A re-delivered race finds the decisions it
-- made by it, so the outbox entries that carry them are appended again if a kill lost them.
ALTER TABLE review_decisions ADD COLUMN placed_by text;
CREATE INDEX review_decisions_placed_by ON review_decisions (placed_by) WHERE placed_by IS NOT NULL;
