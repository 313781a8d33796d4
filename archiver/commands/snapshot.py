from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from archiver.aws.clients import AwsSettings
from archiver.aws.describe import describe_or_none, live_lookup
from archiver.aws.error_table import UsageError
from archiver.cliutil import (
    add_archive_argument,
    add_file_mode_argument,
    add_segments_argument,
    add_table_argument,
    open_archive,
    positive_float,
)
from archiver.format import layout
from archiver.format.exports.full import FORMATS, convert_export, open_folder, read_export
from archiver.format.storage import Archive
from archiver.snapshots import base_snapshot as _library
from archiver.snapshots.base_snapshot import (
    export_destination,
    export_snapshot,
    pitr_enabled,
    scan_snapshot,
)

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the DynamoDB table")
    add_archive_argument(parser)
    add_file_mode_argument(parser)
    parser.add_argument(
        "--method",
        choices=("export", "scan"),
        help="export (native, needs PITR) or scan (parallel Scan); default: export when PITR is "
        "on and the export can land in S3 (an S3 archive or --s3-prefix), else scan",
    )
    parser.add_argument(
        "--s3-prefix",
        metavar="S3URL",
        help="where the native export is written (s3://bucket/prefix); required for --method "
        "export with a local archive; default for an S3 archive: <archive>/exports/",
    )
    parser.add_argument(
        "--export-from",
        metavar="S3URL",
        help="convert this completed full export (…/AWSDynamoDB/<export_id>/), made by anyone, "
        "into a snapshot now; idempotent",
    )
    add_segments_argument(parser, default_help="one per 2 GiB of table, 4 to 64")
    parser.add_argument(
        "--export-format",
        choices=FORMATS,
        default="DYNAMODB_JSON",
        help="format of a native export (both convert the same)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=positive_float,
        default=10.0,
        help="how often to ask DynamoDB whether the export has finished",
    )


def _say(manifest: Mapping[str, Any], new: bool = True) -> None:
    if not new:
        print(
            f"export {manifest['source']} was converted before: snapshot {manifest['snapshot_id']}"
        )
        return
    print(
        f"snapshot {manifest['snapshot_id']} of {manifest['table']}: {manifest['item_count']} "
        f"items by {manifest['method']}, valid from {manifest['valid_from']} "
        f"(needs the log from {manifest['log_from']})"
    )


def _choose_method(args: argparse.Namespace, archive: Archive, pitr: bool | None) -> str:
    if args.method:
        return str(args.method)
    if pitr and (args.s3_prefix or archive.s3_location(layout.EXPORTS) is not None):
        method, why = "export", "point-in-time recovery is on"
    elif pitr:
        method, why = "scan", "the archive is local and no --s3-prefix was given for an export"
    elif pitr is None:
        method, why = "scan", "point-in-time recovery status is unreadable"
    else:
        method, why = "scan", "point-in-time recovery is off (native exports need it)"
    log.info("method: %s (%s)", method, why)
    return method


def main(args: argparse.Namespace) -> int:
    settings = AwsSettings.from_args(args)
    table = args.table_name
    archive = open_archive(args, endpoint_url=settings.endpoint_url)
    if args.export_from:
        if args.method == "scan" or args.segments or args.s3_prefix:
            raise UsageError(
                "--export-from converts an existing export: it takes no --method scan, "
                "--segments or --s3-prefix"
            )
        folder = read_export(open_folder(args.export_from, endpoint_url=settings.endpoint_url))
        conversion = convert_export(archive, table, folder, live=live_lookup(settings, table))
        _say(conversion.manifest, conversion.new)
        return 0
    ddb = settings.client("dynamodb")
    description = describe_or_none(ddb, table)
    if description is None:
        raise UsageError(f"table {table} does not exist")
    if args.method == "export" and not args.s3_prefix:
        export_destination(archive, None)  # raises the explanation when exports cannot land
    method = _choose_method(args, archive, pitr_enabled(ddb, table))
    if method == "export":
        conversion = export_snapshot(
            ddb,
            archive,
            table,
            description,
            s3_prefix=args.s3_prefix,
            export_format=args.export_format,
            poll_seconds=args.poll_seconds,
            endpoint_url=settings.endpoint_url,
        )
        _say(conversion.manifest)
        return 0
    if args.s3_prefix:
        log.warning("--s3-prefix is only used by --method export; ignored")
    manifest = asyncio.run(scan_snapshot(settings, archive, table, segments=args.segments))
    _say(manifest)
    return 0
