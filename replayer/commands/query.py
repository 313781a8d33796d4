"""SQL over the archive, locally, with DuckDB.

Two views read the archive in place (nothing is copied or downloaded first):

  changes    every archived change record (event_id, event_name, event_time, sequence_number,
             shard_id, stream_arn, table_id, keys, new_image, old_image, size_bytes,
             user_identity, origin) plus the partition columns table_name and dt (strings)
  snapshots  every committed base snapshot: keys, item, table_name, snapshot_id

Two table functions travel in time (replayer.read.timetravel): state_at('orders', TIMESTAMP
'2026-01-31 12:00:00') is the table as it was then (keys, item), planned and refused exactly
as restore is; history_of('orders', '{"pk": {"S": "a"}}') is one item's every change.

keys, new_image, old_image and item are canonical DynamoDB JSON text: use DuckDB's JSON
functions on them (new_image->>'$.status.S'). Filters on table_name and dt skip the other
partitions' files without opening them; a filter on keys skips row groups. Times are UTC.

Read-only: one SELECT (or EXPLAIN) statement, over these views only. DuckDB's file, network
and extension access is off and its configuration locked before the query runs, so COPY … TO,
read_csv('/etc/passwd'), ATTACH, INSTALL and SET are refused (exit 2), as is more than one
statement.

Examples:
  ddb-replayer query --archive s3://bucket/prefix \
      "SELECT dt, event_name, count(*) FROM changes WHERE table_name = 'orders' GROUP BY ALL"
  ddb-replayer query --archive ./demo-archive \
      "SELECT count(*) FROM state_at('orders', TIMESTAMP '2026-01-31 12:00:00')"
  ddb-replayer query --archive ./demo-archive --format csv \
      "SELECT event_time, keys FROM changes WHERE user_identity = 'Service/dynamodb.amazonaws.com'"
"""

from __future__ import annotations

import argparse
import re
import sys

from archiver.cliutil import add_archive_argument
from archiver.format.storage import Archive
from replayer.exceptions import BadInput
from replayer.read.query import FORMATS, check_archive, run_query, write_result
from replayer.read.timetravel import expand


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_archive_argument(parser)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table: aligned text, long cells cut; csv: with a header row; "
        "json: one JSON object per row (JSON Lines)",
    )
    parser.add_argument(
        "sql",
        metavar="SQL",
        help="DuckDB SQL over the views `changes` and `snapshots`; '-' reads it from stdin",
    )


def main(args: argparse.Namespace) -> int:
    sql = sys.stdin.read() if args.sql == "-" else args.sql
    if not re.search(r"\S", sql):
        raise BadInput("the SQL is empty")
    archive = Archive.open(args.archive, endpoint_url=args.endpoint_url)
    check_archive(archive)
    result = run_query(archive, expand(archive, sql))
    write_result(result, args.format, sys.stdout)
    return 0
