-- One item's every change, in stream order, each record once: what `ddb-replayer query`'s
-- history_of('table', '<key>') returns. Generated from replayer/engines/athena_sql.py: edit that,
-- not this file (tests/test_timetravel.py checks they agree). Parameters, in order:
--   1. table name                        orders
--   2. the item's key as canonical JSON  {"pk":{"S":"order-42"}}
--      (attribute names sorted, no spaces; `ddb-replayer history` prints it)
WITH params AS (
  SELECT CAST(? AS varchar) AS table_name, CAST(? AS varchar) AS item_keys
)
SELECT event_time, event_name,
  CASE WHEN user_identity = 'Service/dynamodb.amazonaws.com' THEN 'ttl' ELSE 'user' END AS who,
  old_image, new_image, table_id, stream_arn, sequence_number, event_id
FROM (
  SELECT c.*, row_number() OVER (PARTITION BY c.event_id ORDER BY c.sequence_number) AS copy
  FROM changes AS c CROSS JOIN params AS p
  WHERE c.table_name = p.table_name AND c.keys = p.item_keys
) AS matching
WHERE copy = 1
ORDER BY stream_arn, sequence_number
