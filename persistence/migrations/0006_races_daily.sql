-- The daily challenge's day an attempt was raced for (MatchRecord.daily, lobby/daily.py), so
-- PostgreSQL keeps what the outbox said and a board can be rebuilt from it; NULL for every other race.
ALTER TABLE races ADD COLUMN daily date;
CREATE INDEX races_daily ON races (daily) WHERE daily IS NOT NULL;
