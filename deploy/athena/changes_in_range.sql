-- Every change to a table in a time window, oldest first, each event once.
-- Parameters, in order:
--   1. table name                        orders
--   2. from, ISO 8601 with a zone        2026-01-31T12:00:00Z
--   3. to                                2026-01-31T13:00:00Z
-- dt is the UTC date of event_time, so the bounds are converted to UTC before their dates
-- are taken: date_format formats a timestamp in its own zone, the offset it was given in.
WITH params AS (
  SELECT
    ? AS table_name,
    from_iso8601_timestamp(?) AS time_from,
    from_iso8601_timestamp(?) AS time_to
),
matching AS (
  SELECT
    c.*,
    row_number() OVER (PARTITION BY c.event_id ORDER BY c.sequence_number) AS copy
  FROM changes AS c
  CROSS JOIN params AS p
  WHERE c.table_name = p.table_name
    AND c.dt BETWEEN date_format(p.time_from AT TIME ZONE 'UTC', '%Y-%m-%d')
                 AND date_format(p.time_to AT TIME ZONE 'UTC', '%Y-%m-%d')
    AND c.event_time BETWEEN p.time_from AND p.time_to
)
SELECT
  event_time,
  event_name,
  keys,
  CASE WHEN user_identity = 'Service/dynamodb.amazonaws.com' THEN 'ttl' ELSE 'user' END AS who,
  new_image,
  old_image
FROM matching
WHERE copy = 1
ORDER BY event_time, stream_arn, sequence_number
