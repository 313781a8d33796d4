-- The state of a table at an instant T: per key, the latest change at or before T (absent
-- if it is a REMOVE), else the item from the base snapshot. The same fold as
-- `ddb-replayer restore`, in SQL, for tables too big to fold on one machine.
-- Parameters, in order:
--   1. table name                        orders
--   2. log_from, ISO 8601 with a zone    the base snapshot's log_from (its _manifest.json),
--                                        or the table's creation time when it has no base
--   3. T, ISO 8601 with a zone           2026-01-31T12:00:00Z
--   4. base snapshot id                  20260131T000000000Z-ab12cd ('' for no base)
-- Only the table generation alive at T counts (the table_id of the newest record <= T).
-- Check coverage and gaps first (`ddb-replayer status`): this query does not.
-- dt is the UTC date of event_time, so the bounds are converted to UTC before their dates
-- are taken: date_format formats a timestamp in its own zone, the offset it was given in.
WITH params AS (
  SELECT
    ? AS table_name,
    from_iso8601_timestamp(?) AS log_from,
    from_iso8601_timestamp(?) AS at_time
),
in_window AS (
  SELECT c.keys, c.event_name, c.new_image, c.table_id, c.stream_arn, c.sequence_number, c.event_time
  FROM changes AS c
  CROSS JOIN params AS p
  WHERE c.table_name = p.table_name
    AND c.dt BETWEEN date_format(p.log_from AT TIME ZONE 'UTC', '%Y-%m-%d')
                 AND date_format(p.at_time AT TIME ZONE 'UTC', '%Y-%m-%d')
    AND c.event_time BETWEEN p.log_from AND p.at_time
),
generation AS (
  SELECT table_id
  FROM in_window
  ORDER BY event_time DESC, stream_arn DESC, sequence_number DESC
  LIMIT 1
),
latest AS (
  SELECT
    w.keys,
    w.event_name,
    w.new_image,
    row_number() OVER (PARTITION BY w.keys ORDER BY w.stream_arn DESC, w.sequence_number DESC) AS rn
  FROM in_window AS w
  JOIN generation AS g ON w.table_id = g.table_id
),
base AS (
  SELECT s.keys, s.item
  FROM snapshots AS s
  CROSS JOIN params AS p
  WHERE s.table_name = p.table_name
    AND s.snapshot_id = ?
)
SELECT keys, new_image AS item
FROM latest
WHERE rn = 1 AND event_name <> 'REMOVE'
UNION ALL
SELECT b.keys, b.item
FROM base AS b
WHERE NOT EXISTS (SELECT 1 FROM latest AS l WHERE l.keys = b.keys)
ORDER BY keys
