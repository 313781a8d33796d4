"""Write a table as it was at a time to files: Parquet, or DynamoDB JSON for ImportTable.

``ddb-replayer export`` plans and folds exactly as ``restore`` does, then writes the state to
``--output`` (a local folder or ``s3://bucket/prefix``):

* ``<output>/data/part-NNNNN.parquet`` — columns ``keys`` and ``item`` (canonical DynamoDB
  JSON), the archive's snapshot schema: query it with DuckDB or Athena.
* ``<output>/data/part-NNNNN.json.gz`` (``--format dynamodb-json``) — GZIP JSON lines
  ``{"Item": {...}}``: DynamoDB ``ImportTable`` reads them as they are (S3 key prefix
  ``<prefix>/data/``, input format ``DYNAMODB_JSON``, compression ``GZIP``).
* ``<output>/export.json`` — what was exported: table, time, plan, item count, files, and the
  table's keys and attribute definitions (what an ImportTable request needs).

The output must be empty: exports are never mixed or overwritten.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from archiver.aws import AwsSettings
from archiver.cliutil import (
    add_archive_argument,
    add_file_mode_argument,
    add_table_argument,
    open_archive,
)
from archiver.format import tables
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_time, utcnow
from replayer import lambda_gaps
from replayer import plan as planning
from replayer.fold import Fold, FoldSettings, add_fold_arguments
from replayer.sinks import FileSink, file_sink

log = logging.getLogger(__name__)

FORMATS = ("parquet", "dynamodb-json")
SUMMARY = "export.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the archived table")
    add_archive_argument(parser)
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--restore-date-time",
        help="the time whose state to export, inclusive: ISO 8601 with a zone "
        "(2026-01-31T12:00:00Z) or epoch seconds",
    )
    when.add_argument(
        "--use-latest-restorable-time",
        action="store_true",
        help="export the state at the watermark",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="where to write: an empty local folder or s3://bucket/prefix",
    )
    add_file_mode_argument(parser, "--output")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="parquet",
        help="parquet: keys + item columns (canonical DynamoDB JSON); dynamodb-json: gzip JSON "
        'lines {"Item": …} that DynamoDB ImportTable accepts',
    )
    parser.add_argument(
        "--allow-gaps",
        action="store_true",
        help="export even across a recorded gap in the log (its changes are missing)",
    )
    lambda_gaps.add_arguments(parser)
    add_fold_arguments(parser)


def _table_shape(archive: Archive, plan: planning.Plan) -> dict[str, Any]:
    doc = tables.description_at(archive, plan.table, plan.at, plan.table_id)
    if doc is None:
        return {}
    table = doc["Table"]
    return {
        "KeySchema": table.get("KeySchema"),
        "AttributeDefinitions": table.get("AttributeDefinitions"),
    }


def main(args: argparse.Namespace) -> int:
    settings = AwsSettings.from_args(args)
    archive = Archive.open(args.archive, endpoint_url=settings.endpoint_url)
    output = open_archive(args, args.output, endpoint_url=settings.endpoint_url)
    if args.use_latest_restorable_time:
        at = planning.latest_restorable_time(archive, args.table_name)
    else:
        at = parse_time(args.restore_date_time)
    sink = file_sink(args.format, output)
    sink.prepare()  # refuse a non-empty output before reading anything
    plan = planning.plan_restore(
        archive,
        args.table_name,
        at,
        allow_gaps=args.allow_gaps,
        settings=settings,
        lambda_checks=lambda_gaps.LambdaChecks.from_args(args),
    )
    with Fold(archive, FoldSettings.from_args(args)) as fold:
        state = fold.state_at(plan)
        result = sink.write(state.batches(), total=state.count)
    summary = {
        "table": plan.table,
        "table_id": plan.table_id,
        "restore_date_time": iso_ms(plan.at),
        "format": args.format,
        "item_count": result.items,
        "files": result.files,
        "base": plan.base.snapshot_id if plan.base else None,
        "log_from": iso_ms(plan.log_from),
        "archive": archive.url,
        "created_at": iso_ms(utcnow()),
        **_table_shape(archive, plan),
    }
    output.write_json(SUMMARY, summary)
    print(
        f"exported {result.items:,} items of {plan.table} as of {iso_ms(plan.at)} to "
        f"{output.uri(FileSink.DATA)} ({len(result.files)} {args.format} file(s))"
    )
    if args.format == "dynamodb-json":
        print(
            "import with: aws dynamodb import-table --input-format DYNAMODB_JSON "
            f"--input-compression-type GZIP --s3-bucket-source S3Bucket=…,S3KeyPrefix=…/"
            f"{FileSink.DATA}/ (see {SUMMARY} for the key schema)"
        )
    return 0
