-- The change log as an Athena table (Hive DDL, as Athena takes CREATE TABLE).
-- deploy/template.yaml creates the same table through Glue; run this by hand only for an
-- archive the stack does not manage. Replace <archive-root> (s3://bucket or s3://bucket/prefix,
-- no trailing slash) and <table-names> (comma-separated: orders,customers).
-- Partition projection: no crawler, no MSCK REPAIR; table_name and dt must be in the WHERE
-- clause for Athena to read only those partitions.
CREATE EXTERNAL TABLE IF NOT EXISTS changes (
  event_id        string    COMMENT 'the stream record eventID (dedupe key)',
  event_name      string    COMMENT 'INSERT, MODIFY or REMOVE',
  event_time      timestamp COMMENT 'ApproximateCreationDateTime, UTC',
  sequence_number string    COMMENT 'zero-padded to 40 digits: string order is stream order',
  shard_id        string    COMMENT 'null when written by the Lambda function',
  stream_arn      string    COMMENT 'the stream; its label orders streams in time',
  table_id        string    COMMENT 'tells a recreated table from its predecessor',
  keys            string    COMMENT 'canonical DynamoDB JSON of the key attributes',
  new_image       string    COMMENT 'canonical DynamoDB JSON after the change (null for REMOVE)',
  old_image       string    COMMENT 'canonical DynamoDB JSON before the change (NEW_AND_OLD_IMAGES)',
  size_bytes      bigint    COMMENT 'SizeBytes',
  user_identity   string    COMMENT 'Service/dynamodb.amazonaws.com marks a TTL deletion',
  origin          string    COMMENT 'stream, lambda or incremental-export'
)
PARTITIONED BY (table_name string, dt string)
STORED AS PARQUET
LOCATION '<archive-root>/changes/'
TBLPROPERTIES (
  'parquet.compression' = 'ZSTD',
  'projection.enabled' = 'true',
  'projection.table_name.type' = 'enum',
  'projection.table_name.values' = '<table-names>',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = '<archive-root>/changes/table_name=${table_name}/dt=${dt}'
);
