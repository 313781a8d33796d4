-- One item's every change, in stream order, each record once: what `ddb-replayer query`'s
-- history_of('table', '<key>', '<from>', '<to>') returns. Generated from
-- replayer/engines/athena_sql.py: edit that, not this file (tests/test_timetravel.py checks they
-- agree). Parameters, in order:
--   1. table name                        orders
--   2. the item's key as canonical JSON  {"pk":{"S":"order-42"}}
--      (attribute names sorted, no spaces; `ddb-replayer history` prints it)
--   3. from, ISO 8601 with a zone        2026-01-01T00:00:00Z  ('' for no lower bound)
--   4. to                                2026-01-31T23:59:59Z  ('' for no upper bound)
-- Only the dt partitions from..to spans are read (dt is the UTC date of event_time, so the
-- bounds are taken in UTC). Without bounds every dt partition of the table is read: Athena
-- bills a scan of the table's whole change log.
WITH params AS (
  SELECT
    CAST(? AS varchar) AS table_name,
    CAST(? AS varchar) AS item_keys,
    CAST(from_iso8601_timestamp(coalesce(nullif(CAST(? AS varchar), ''),
      '1970-01-01T00:00:00Z')) AT TIME ZONE 'UTC' AS timestamp) AS time_from,
    CAST(from_iso8601_timestamp(coalesce(nullif(CAST(? AS varchar), ''),
      '9999-12-31T23:59:59.999Z')) AT TIME ZONE 'UTC' AS timestamp) AS time_to
),
bounds AS (
  SELECT *, date_format(time_from, '%Y-%m-%d') AS dt_from,
    date_format(time_to, '%Y-%m-%d') AS dt_to
  FROM params
)
SELECT event_time, event_name,
  CASE WHEN user_identity = 'Service/dynamodb.amazonaws.com' THEN 'ttl' ELSE 'user' END AS who,
  old_image, new_image, table_id, stream_arn, sequence_number, event_id
FROM (
  SELECT c.*, row_number() OVER (PARTITION BY c.event_id ORDER BY c.sequence_number) AS copy
  FROM changes AS c CROSS JOIN bounds AS p
  WHERE c.table_name = p.table_name AND c.keys = p.item_keys
    AND c.dt >= p.dt_from
    AND c.dt <= p.dt_to
    AND c.event_time >= p.time_from
    AND c.event_time <= p.time_to
) AS matching
WHERE copy = 1
ORDER BY stream_arn, sequence_number
