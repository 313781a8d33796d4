-- Base snapshots as an Athena table (Hive DDL). Same placeholders as changes_table.sql.
-- snapshot_id is an injected projection: a query must name the snapshot
-- (WHERE snapshot_id = '20260131T120000000Z-ab12cd'); ddb-replayer status lists them.
-- Files starting with _ (the _manifest.json commit marker) are ignored by Athena.
CREATE EXTERNAL TABLE IF NOT EXISTS snapshots (
  keys string COMMENT 'canonical DynamoDB JSON of the key attributes',
  item string COMMENT 'canonical DynamoDB JSON of the whole item'
)
PARTITIONED BY (table_name string, snapshot_id string)
STORED AS PARQUET
LOCATION '<archive-root>/snapshots/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.table_name.type' = 'enum',
  'projection.table_name.values' = '<table-names>',
  'projection.snapshot_id.type' = 'injected',
  'storage.location.template' = '<archive-root>/snapshots/table_name=${table_name}/snapshot_id=${snapshot_id}'
);
