from __future__ import annotations

import argparse
import asyncio
from typing import Any

from archiver.aws.clients import AwsSettings
from archiver.aws.describe import capture_description, describe_or_none, live_lookup
from archiver.aws.error_table import UsageError
from archiver.cliutil import (
    add_archive_argument,
    add_file_mode_argument,
    add_table_argument,
    open_archive,
    positive_float,
)
from archiver.format.exports.full import open_folder, read_export
from archiver.format.exports.incremental import (
    EXPORT_TYPE,
    VIEWS,
    convert_incremental,
    describe_export,
)
from archiver.format.timefmt import iso_ms, parse_time
from archiver.snapshots import export_chain as _library
from archiver.snapshots.base_snapshot import export_destination
from archiver.snapshots.export_chain import DEFAULT_EVERY, Chain, window_length

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the DynamoDB table")
    add_archive_argument(parser)
    add_file_mode_argument(parser)
    parser.add_argument(
        "--every",
        type=window_length,
        default=DEFAULT_EVERY,
        metavar="DURATION",
        help="window length, 15m to 24h (e.g. 15m, 1h, 6h)",
    )
    parser.add_argument(
        "--once", action="store_true", help="export every window due now, then exit (cron)"
    )
    parser.add_argument(
        "--from",
        dest="start",
        type=parse_time,
        metavar="TIME",
        help="where the chain starts when no window has been converted yet (default: the "
        "newest base snapshot's log_from)",
    )
    parser.add_argument(
        "--s3-prefix",
        metavar="S3URL",
        help="where exports are written (s3://bucket/prefix); required with a local archive; "
        "default for an S3 archive: <archive>/exports/",
    )
    parser.add_argument(
        "--export-from",
        metavar="S3URL",
        help="convert this completed incremental export (…/AWSDynamoDB/<export_id>/), made "
        "by anyone, now; idempotent",
    )
    parser.add_argument(
        "--view",
        choices=VIEWS,
        default="NEW_AND_OLD_IMAGES",
        help="the exports' view type (NEW_AND_OLD_IMAGES keeps each item's image before the "
        "window too)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=positive_float,
        default=10.0,
        help="how often to ask DynamoDB whether an export has finished",
    )


def main(args: argparse.Namespace, *, ddb: Any = None) -> int:
    settings = AwsSettings.from_args(args)
    table = args.table_name
    archive = open_archive(args, endpoint_url=settings.endpoint_url)
    if args.export_from:
        folder = read_export(
            open_folder(args.export_from, endpoint_url=settings.endpoint_url), EXPORT_TYPE
        )
        conversion = convert_incremental(
            archive, table, describe_export(folder), live=live_lookup(settings, table)
        )
        window = conversion.window
        state = "converted before" if not conversion.new else f"{window.item_count} changed items"
        print(f"window [{iso_ms(window.start)}, {iso_ms(window.end)}) of {table}: {state}")
        return 0
    ddb = ddb or settings.client("dynamodb")
    description = describe_or_none(ddb, table)
    if description is None:
        raise UsageError(f"table {table} does not exist")
    # Restores recreate the table from the description in force at T: keep it, as `run` does.
    asyncio.run(capture_description(settings, archive, table))
    dest = export_destination(archive, args.s3_prefix, endpoint_url=settings.endpoint_url)
    chain = Chain(
        ddb,
        archive,
        table,
        description,
        dest=dest,
        every=args.every,
        view=args.view,
        poll_seconds=args.poll_seconds,
    )
    done = chain.run(once=args.once, start=args.start)
    reached = chain.position(args.start)
    print(
        f"{table}: {done} step(s) done; history from incremental exports reaches "
        f"{iso_ms(reached) if reached else 'nothing yet'}"
    )
    return 0
