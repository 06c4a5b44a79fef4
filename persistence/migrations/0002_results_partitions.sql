-- ensure_results_partition(day): the monthly partition of race_participants holding that day,
-- created if missing. Safe to call concurrently: creators queue on a SHARE UPDATE EXCLUSIVE lock
-- of the parent (which inserts do not wait for), and taking a table lock also refreshes the
-- catalog cache, so the second creator sees the first one's partition. Rows
-- that already sit in the default partition for that month are moved into the new partition,
-- so attaching it never fails. Bounds are UTC months whatever the session time zone.
CREATE FUNCTION ensure_results_partition(day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamp := date_trunc('month', day::timestamp);
    lo timestamptz := month_start AT TIME ZONE 'UTC';
    hi timestamptz := (month_start + interval '1 month') AT TIME ZONE 'UTC';
    part text := 'race_participants_' || to_char(month_start, '"y"YYYY"m"MM');
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN part;
    END IF;
    LOCK TABLE race_participants IN SHARE UPDATE EXCLUSIVE MODE;
    IF to_regclass(part) IS NOT NULL THEN
        RETURN part;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE race_participants INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
    EXECUTE format(
        'WITH moved AS (DELETE FROM race_participants_default WHERE created_at >= %L AND created_at < %L RETURNING *) '
        'INSERT INTO %I SELECT * FROM moved',
        lo, hi, part);
    EXECUTE format('ALTER TABLE race_participants ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    RETURN part;
END
$$;
