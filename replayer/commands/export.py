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

The output must be empty: exports are never mixed or overwritten. An export records its plan
first (``<output>/_export-plan.json``); one that stopped is continued with ``--resume``, which
keeps the parts already written (rows are written in key order, so part n holds the same rows
on every run) and writes the rest. A non-empty output of another plan is refused (exit 4).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_OK
from archiver.cliutil import (
    add_allow_gaps_argument,
    add_allow_inexact_argument,
    add_archive_argument,
    add_file_mode_argument,
    add_lambda_arguments,
    add_restore_time_arguments,
    open_archive,
)
from archiver.format import tables
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_time, utcnow
from replayer.engines.athena_engine import AthenaFolder, add_engine_arguments
from replayer.engines.fold import Fold, FoldSettings, add_fold_arguments
from replayer.exceptions import BadInput, Refused
from replayer.planning import lambda_gaps
from replayer.planning import plan as planning
from replayer.planning.key_selection import add_key_selection_arguments, select_keys
from replayer.write.restore_state import plan_fingerprint
from replayer.write.several_tables import (
    TableRun,
    add_source_tables_arguments,
    export_tables,
    several_tables,
)
from replayer.write.sinks import FileSink, file_sink

log = logging.getLogger(__name__)

FORMATS = ("parquet", "dynamodb-json")
SUMMARY = "export.json"
PLAN_MARKER = "_export-plan.json"


def _check_resumable(
    output: Archive,
    marker: dict[str, Any],
    fingerprint: str,
    args: argparse.Namespace,
    plan: planning.Plan,
) -> None:
    """A non-empty output may be continued only when it is this plan's unfinished export."""
    if marker.get("fingerprint") != fingerprint:
        raise Refused(
            f"output {output.url} already holds files: an export of another plan (table, "
            "time, base or format differ); export into an empty location"
        )
    if output.exists(SUMMARY):
        raise Refused(f"output {output.url} already holds files: this complete export "
                      f"({SUMMARY}); export into an empty location")  # fmt: skip
    if not args.resume:
        raise Refused(
            f"output {output.url} already holds files: a partial export of this same plan; "
            "continue it with: "
            f"ddb-replayer export --table-name {plan.table} --archive {args.archive} "
            f"--restore-date-time {iso_ms(plan.at)} --output {args.output} "
            f"--format {args.format} --resume"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_tables_arguments(parser, flag="--table-name")  # one table, or several
    add_archive_argument(parser)
    add_restore_time_arguments(parser, "the time whose state to export, inclusive", latest="")
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
    add_allow_gaps_argument(parser)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an export of the same plan that stopped, keeping the parts it wrote",
    )
    add_lambda_arguments(parser)
    add_allow_inexact_argument(parser)
    add_fold_arguments(parser)
    add_engine_arguments(parser)
    add_key_selection_arguments(parser)


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
    if several_tables(args):  # each into <output>/<table>/, all planned first
        return export_tables(args, export_one, SUMMARY)
    return export_one(args).exit_code


def export_one(args: argparse.Namespace) -> TableRun:
    """The export of one table: its exit code and the items exported (for the summary of
    several tables, which runs this once per table)."""
    settings = AwsSettings.from_args(args)
    archive = Archive.open(args.archive, endpoint_url=settings.endpoint_url)
    keys = select_keys(args, archive, args.table_name)  # --key …: only those items
    output = open_archive(args, args.output, endpoint_url=settings.endpoint_url)
    if args.use_latest_restorable_time:
        at = planning.latest_restorable_time(archive, args.table_name)
    else:
        at = parse_time(args.restore_date_time)
    athena = args.engine == "athena"
    if athena and args.format != "dynamodb-json":
        raise BadInput("--engine athena writes --format dynamodb-json (what its UNLOAD produces)")
    if athena and output.s3_location() is None:
        raise BadInput(f"--engine athena writes to S3 (Athena's UNLOAD), not {output.url}")
    sink = file_sink(args.format, output)
    marker = output.read_json_or(PLAN_MARKER) if output.find("") else None
    if marker is None:
        sink.prepare()  # refuse a non-empty output before reading anything
    plan = planning.plan_restore(
        archive,
        args.table_name,
        at,
        allow_gaps=args.allow_gaps,
        settings=settings,
        lambda_checks=lambda_gaps.LambdaChecks.from_args(args),
        allow_inexact=args.allow_inexact,
    )
    # Athena reads only an archive in S3: refuse before anything is written to the output.
    folder = AthenaFolder.from_args(args, settings, archive) if athena else None
    fingerprint = plan_fingerprint(plan, strategy=f"export:{args.format}", keys=keys)
    if marker is not None:
        _check_resumable(output, marker, fingerprint, args, plan)
        sink.keep_existing = True
    else:
        output.write_json(PLAN_MARKER, {"fingerprint": fingerprint, "format": args.format,
                                        "created_at": iso_ms(utcnow())})  # fmt: skip
    if folder is not None:
        unloaded = folder.unload(plan, output.uri(FileSink.DATA) + "/")
        items, files = unloaded.count, unloaded.relative_files(output.uri(""))
    else:
        with Fold(archive, FoldSettings.from_args(args)) as fold:
            state = fold.state_at(plan)
            result = sink.write(state.batches(ordered=True), total=state.count)
        items, files = result.items, result.files
    summary = {
        "table": plan.table,
        "table_id": plan.table_id,
        "restore_date_time": iso_ms(plan.at),
        "format": args.format,
        "engine": args.engine,
        "item_count": items,
        "files": files,
        "base": plan.base.snapshot_id if plan.base else None,
        "log_from": iso_ms(plan.log_from),
        "inexact": plan.inexact.as_json() if plan.inexact is not None else None,
        "archive": archive.url,
        "created_at": iso_ms(utcnow()),
        **_table_shape(archive, plan),
    }
    output.write_json(SUMMARY, summary)
    if plan.inexact is not None:
        print(plan.inexact.describe())
    print(
        f"exported {items:,} items of {plan.table} as of {iso_ms(plan.at)} to "
        f"{output.uri(FileSink.DATA)} ({len(files)} {args.format} file(s))"
    )
    if args.format == "dynamodb-json":
        print(
            "import with: aws dynamodb import-table --input-format DYNAMODB_JSON "
            f"--input-compression-type GZIP --s3-bucket-source S3Bucket=…,S3KeyPrefix=…/"
            f"{FileSink.DATA}/ (see {SUMMARY} for the key schema)"
        )
    return TableRun(EXIT_OK, items=items)
