"""The Arrow schemas of change records and snapshots (DESIGN.md "Change record schema")."""

from __future__ import annotations

import pyarrow as pa

UTC_MS = pa.timestamp("ms", tz="UTC")

CHANGE_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_name", pa.string(), nullable=False),
        pa.field("event_time", UTC_MS, nullable=False),
        pa.field("sequence_number", pa.string(), nullable=False),
        pa.field("shard_id", pa.string(), nullable=True),
        pa.field("stream_arn", pa.string(), nullable=False),
        pa.field("table_id", pa.string(), nullable=False),
        pa.field("keys", pa.string(), nullable=False),
        pa.field("new_image", pa.string(), nullable=True),
        pa.field("old_image", pa.string(), nullable=True),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("user_identity", pa.string(), nullable=True),
        pa.field("origin", pa.string(), nullable=False),
    ]
)
CHANGE_COLUMNS = tuple(CHANGE_SCHEMA.names)
EVENT_NAMES = ("INSERT", "MODIFY", "REMOVE")  # the values of event_name

SNAPSHOT_SCHEMA = pa.schema(
    [
        pa.field("keys", pa.string(), nullable=False),
        pa.field("item", pa.string(), nullable=False),
    ]
)

# Hive partition columns come from the path and are always strings (a table named 007 stays 007).
PARTITION_SCHEMA = pa.schema([pa.field("table_name", pa.string()), pa.field("dt", pa.string())])

EVENT_NAMES = ("INSERT", "MODIFY", "REMOVE")

# Parquet settings shared by every writer: zstd, and row groups large enough for readers
# (DuckDB and Athena read a row group as one unit) without one per million rows.
COMPRESSION = "zstd"
ROW_GROUP_ROWS = 128 * 1024
