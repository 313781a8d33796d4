-- Deletions per day: by TTL expiry (DynamoDB's own service identity) versus by users.
-- Parameters, in order:
--   1. table name                        orders
--   2. from, ISO 8601 with a zone        2026-01-01T00:00:00Z
--   3. to                                2026-01-31T23:59:59Z
-- dt is the UTC date of event_time, so the bounds are converted to UTC before their dates
-- are taken: date_format formats a timestamp in its own zone, the offset it was given in.
WITH params AS (
  SELECT
    ? AS table_name,
    from_iso8601_timestamp(?) AS time_from,
    from_iso8601_timestamp(?) AS time_to
),
removes AS (
  SELECT DISTINCT c.event_id, c.dt, c.user_identity
  FROM changes AS c
  CROSS JOIN params AS p
  WHERE c.table_name = p.table_name
    AND c.dt BETWEEN date_format(p.time_from AT TIME ZONE 'UTC', '%Y-%m-%d')
                 AND date_format(p.time_to AT TIME ZONE 'UTC', '%Y-%m-%d')
    AND c.event_time BETWEEN p.time_from AND p.time_to
    AND c.event_name = 'REMOVE'
)
SELECT
  dt AS day,
  count_if(coalesce(user_identity, '') = 'Service/dynamodb.amazonaws.com') AS ttl_deletes,
  count_if(coalesce(user_identity, '') <> 'Service/dynamodb.amazonaws.com') AS user_deletes
FROM removes
GROUP BY dt
ORDER BY dt
