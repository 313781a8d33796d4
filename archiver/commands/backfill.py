from __future__ import annotations

import argparse
import asyncio
from typing import Any

from archiver.aws.clients import AwsSettings
from archiver.aws.describe import capture_description, describe_or_none
from archiver.aws.error_table import EXIT_NEW_GAP, UsageError
from archiver.cliutil import (
    add_archive_argument,
    add_file_mode_argument,
    add_table_argument,
    open_archive,
    positive_float,
)
from archiver.format.exports.full import EXPORT_MARGIN
from archiver.format.timefmt import iso_ms
from archiver.snapshots import backfill as _library
from archiver.snapshots.backfill import (
    changed_bytes_per_day,
    describe_plan,
    plan_backfill,
    run_backfill,
)
from archiver.snapshots.base_snapshot import export_destination
from archiver.snapshots.export_chain import Chain, PitrPeriod

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the DynamoDB table")
    add_archive_argument(parser)
    add_file_mode_argument(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be exported, its cost and duration, and stop",
    )
    parser.add_argument(
        "--s3-prefix",
        metavar="S3URL",
        help="where exports are written (s3://bucket/prefix); required with a local archive",
    )
    parser.add_argument(
        "--poll-seconds",
        type=positive_float,
        default=10.0,
        help="how often to ask about the exports",
    )


def main(args: argparse.Namespace, *, ddb: Any = None) -> int:
    settings = AwsSettings.from_args(args)
    table = args.table_name
    archive = open_archive(args, endpoint_url=settings.endpoint_url)
    ddb = ddb or settings.client("dynamodb")
    description = describe_or_none(ddb, table)
    if description is None:
        raise UsageError(f"table {table} does not exist")
    pitr = PitrPeriod.read(ddb, table)
    plan = plan_backfill(archive, table, description, pitr)
    region = settings.region or getattr(getattr(ddb, "meta", None), "region_name", None)
    per_day = changed_bytes_per_day(archive, table, description)
    for line in describe_plan(plan, description, per_day, region):
        print(line)
    if args.dry_run:
        print("dry run: nothing was exported")
        return 0
    if not args.s3_prefix:
        export_destination(archive, None)  # a local archive needs --s3-prefix: say so now
    asyncio.run(capture_description(settings, archive, table))
    dest = export_destination(archive, args.s3_prefix, endpoint_url=settings.endpoint_url)
    chain = Chain(ddb, archive, table, description, dest=dest, poll_seconds=args.poll_seconds)
    failed = run_backfill(chain, plan, print)
    print(
        f"backfill of {table} done: history from {iso_ms(plan.base_at + EXPORT_MARGIN)} "
        f"to {iso_ms(plan.end)}"
        + (f", {failed} window(s) failed (gaps recorded)" if failed else "")
    )
    return EXIT_NEW_GAP if failed else 0
