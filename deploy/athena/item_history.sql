-- One item's history: every change to one key in a time window, in stream order, each
-- event once (a record archived twice is shown once).
-- Parameters, in order (the Athena console asks for each ?):
--   1. table name                        orders
--   2. the item's key as canonical JSON  {"pk":{"S":"order-42"}}
--      (attribute names sorted, no spaces; `ddb-replayer history` prints it)
--   3. from, ISO 8601 with a zone        2026-01-01T00:00:00Z
--   4. to                                2026-12-31T23:59:59Z
-- dt is the UTC date of event_time, so the bounds are converted to UTC before their dates
-- are taken: date_format formats a timestamp in its own zone, the offset it was given in.
WITH params AS (
  SELECT
    ? AS table_name,
    ? AS item_keys,
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
    AND c.keys = p.item_keys
    AND c.event_time BETWEEN p.time_from AND p.time_to
)
SELECT
  event_time,
  event_name,
  CASE WHEN user_identity = 'Service/dynamodb.amazonaws.com' THEN 'ttl' ELSE 'user' END AS who,
  old_image,
  new_image,
  sequence_number,
  event_id
FROM matching
WHERE copy = 1
ORDER BY stream_arn, sequence_number
