-- The table as it was at T, exactly as `ddb-replayer restore --engine athena` folds it:
-- per key the latest change in [log_from, T] of the generation alive at T (absent if it is
-- a REMOVE), else the base snapshot's item. Generated from replayer/engines/athena_sql.py: edit
-- that, not this file (tests/test_athena_fold.py checks they agree).
-- Planning is not in SQL: `ddb-replayer restore --dry-run` prints every value below, after
-- checking coverage, the watermark and gaps. Parameters, in order:
--   1. table name                       orders
--   2. table_id (the generation)        the plan's "generation"
--   3. log_from, ISO 8601 with a zone   the plan's log start
--   4. T, ISO 8601 with a zone          2026-01-31T12:00:00Z
--   5. base snapshot id                 the plan's base ('' for none)
WITH params AS (
  SELECT
    CAST(? AS varchar) AS table_name,
    CAST(? AS varchar) AS table_id,
    CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' AS timestamp) AS log_from,
    CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' AS timestamp) AS at_time,
    CAST(? AS varchar) AS snapshot_id
),
bounds AS (
  SELECT *, date_format(log_from, '%Y-%m-%d') AS dt_from,
    date_format(at_time, '%Y-%m-%d') AS dt_to
  FROM params
),
log AS (
  SELECT c.keys, concat(c.stream_arn, c.sequence_number) AS ord, c.event_name, c.new_image
  FROM changes AS c
  CROSS JOIN bounds AS p
  WHERE c.table_name = p.table_name
    AND c.dt BETWEEN p.dt_from AND p.dt_to
    AND c.table_id = p.table_id
    AND c.event_time BETWEEN p.log_from AND p.at_time
),
win AS (
  SELECT keys, max(ord) AS ord FROM log GROUP BY keys
),
latest AS (
  SELECT log.keys, arbitrary(log.new_image) AS item
  FROM log JOIN win ON log.keys = win.keys AND log.ord = win.ord
  WHERE log.event_name <> 'REMOVE'
  GROUP BY log.keys
),
state AS (
  SELECT keys, item FROM latest
  UNION ALL
  SELECT base.keys, base.item
  FROM snapshots AS base
  CROSS JOIN bounds AS p
  WHERE base.table_name = p.table_name
    AND base.snapshot_id = p.snapshot_id
    AND NOT EXISTS (SELECT 1 FROM win WHERE win.keys = base.keys)
)
SELECT keys, item FROM state
ORDER BY keys
