-- Typing tests' results (issue 16; seed 002 "Typing Tests & Results": its table, column and
-- index names). One row per test, partitioned by month of created_at (= the test's end), the
-- measures as columns (wpm, accuracy, errors, mode) and the keystroke log kept.
-- id: the test's id (the node's race id), the idempotency key; user_id: the player's id (the
-- seed's name); test_id: what was typed (a quote's passage id, or the test's own id for words
-- drawn for it), so (test_id, user_id) finds a player's attempts at one quote.
CREATE TABLE test_results (
    id             text NOT NULL,
    user_id        text NOT NULL,
    test_id        text NOT NULL,
    created_at     timestamptz NOT NULL,
    type           text NOT NULL CHECK (type IN ('time', 'words', 'quote')),
    mode           text NOT NULL,            -- arena/typing_tests.py: time-15 ... words-100, quote
    name           text NOT NULL,
    state          text NOT NULL CHECK (state IN ('finished', 'aborted')),
    reason         text NOT NULL,
    status         text NOT NULL CHECK (status IN ('finished', 'dnf')),
    valid          boolean NOT NULL,         -- false when fair-play flags were raised
    flags          text[] NOT NULL,
    wpm            double precision NOT NULL,
    raw_wpm        double precision NOT NULL,
    accuracy       double precision NOT NULL,
    consistency    double precision NOT NULL,
    correct_chars  integer NOT NULL,
    typed_chars    integer NOT NULL,
    errors         integer NOT NULL,
    elapsed_ms     integer NOT NULL,
    passage_chars  integer NOT NULL,
    node_id        text NOT NULL,
    started_at     timestamptz,
    test_created_at timestamptz NOT NULL,    -- when the node created the test
    keylog         bytea NOT NULL,           -- persistence/keylog.py: msgpack [1, keys, time deltas]
    record_version smallint NOT NULL,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE test_results_default PARTITION OF test_results DEFAULT;
CREATE INDEX idx_test_results_user_created ON test_results (user_id, created_at DESC);
CREATE INDEX idx_test_results_test_user ON test_results (test_id, user_id);
CREATE INDEX idx_test_results_type ON test_results (type);
-- Personal bests per mode (GET /v1/players/{id}/tests/bests): one index range per mode.
CREATE INDEX idx_test_results_user_mode_wpm ON test_results (user_id, mode, wpm DESC) WHERE valid AND status = 'finished';

-- ensure_test_results_partition(day): the monthly partition holding that day, created if
-- missing; as ensure_results_partition (0002), whose comments explain the locking and the move
-- of rows already in the default partition.
CREATE FUNCTION ensure_test_results_partition(day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamp := date_trunc('month', day::timestamp);
    lo timestamptz := month_start AT TIME ZONE 'UTC';
    hi timestamptz := (month_start + interval '1 month') AT TIME ZONE 'UTC';
    part text := 'test_results_' || to_char(month_start, '"y"YYYY"m"MM');
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN part;
    END IF;
    LOCK TABLE test_results IN SHARE UPDATE EXCLUSIVE MODE;
    IF to_regclass(part) IS NOT NULL THEN
        RETURN part;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE test_results INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
    EXECUTE format(
        'WITH moved AS (DELETE FROM test_results_default WHERE created_at >= %L AND created_at < %L RETURNING *) '
        'INSERT INTO %I SELECT * FROM moved',
        lo, hi, part);
    EXECUTE format('ALTER TABLE test_results ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    RETURN part;
END
$$;

-- This month and the next exist from the start; persistence creates each later month (and the
-- one after it) when it first stores a result of that month.
SELECT ensure_test_results_partition((now() AT TIME ZONE 'UTC')::date);
SELECT ensure_test_results_partition(((now() AT TIME ZONE 'UTC') + interval '1 month')::date);
