-- Why a result was held for review (persistence/review.py HoldReason: 'wpm', 'pb', 'pairs_history'),
-- set when the result is stored held and shown by `python -m ops.review list`. NULL for results
-- never held, and for those held before this column existed (their reason was only logged).
ALTER TABLE race_participants ADD COLUMN review_reason text;
