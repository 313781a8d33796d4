from __future__ import annotations

import argparse
import re
from datetime import datetime

from archiver.aws.error_table import UsageError
from archiver.cliutil import (
    add_archive_argument,
    add_emf_argument,
    add_file_mode_argument,
    add_table_argument,
    non_negative_float,
    open_archive,
    positive_float,
)
from archiver.format import layout
from archiver.integrity import compaction as _library
from archiver.integrity.compaction import DEFAULT_GRACE_SECONDS, DEFAULT_TARGET_MB, compact

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__

_DT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _dt(text: str) -> str:
    if not _DT.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-31")
    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid date") from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the archived table's name")
    add_archive_argument(parser)
    add_file_mode_argument(parser)
    add_emf_argument(parser)
    parser.add_argument(
        "--dt",
        type=_dt,
        action="append",
        default=argparse.SUPPRESS,
        metavar="YYYY-MM-DD",
        help="compact this day's partition (repeatable); default: every day before today (UTC)",
    )
    parser.add_argument(
        "--target-size",
        type=positive_float,
        default=DEFAULT_TARGET_MB,
        metavar="MB",
        help="merge files into files of about this size",
    )
    parser.add_argument(
        "--grace-seconds",
        type=non_negative_float,
        default=DEFAULT_GRACE_SECONDS,
        metavar="S",
        help="keep merged inputs this long before deleting them, so readers that listed them "
        "can finish (a later run deletes them; 0 deletes at once)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would be merged; write and delete nothing"
    )


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def main(args: argparse.Namespace) -> int:
    archive = open_archive(args)
    table = args.table_name
    known = archive.exists(layout.changes_table_dir(table)) or archive.exists(
        layout.state_dir(table)
    )
    if not known:
        raise UsageError(f"table {table!r} is not in the archive {archive.url}")
    report = compact(
        archive,
        table,
        dts=sorted(set(args.dt)) if getattr(args, "dt", None) else None,
        target_bytes=int(args.target_size * 1024 * 1024),
        grace_seconds=args.grace_seconds,
        dry_run=args.dry_run,
        progress=True,
    )
    verb = "would merge" if args.dry_run else "merged"
    if report.files_in:
        days = len(report.partitions)
        line = (
            f"{table}: {verb} {report.files_in} files into {report.files_out} "
            f"in {days} partition{'s' if days != 1 else ''} ({_mb(report.bytes_in)}"
        )
        if args.dry_run:
            print(line + ")")
            for out in report.outputs:
                print(f"  {out}")
        else:
            print(
                line + f" → {_mb(report.bytes_out)}; {report.rows_out} records, "
                f"{report.duplicates} duplicates dropped)"
            )
    else:
        print(f"{table}: nothing to merge")
    if report.skipped_today:
        print(
            f"{table}: skipped dt={report.skipped_today} (today: the archiver is still writing "
            f"it; pass --dt {report.skipped_today} to compact it anyway)"
        )
    if not args.dry_run:
        if report.deleted:
            print(f"{table}: deleted {report.deleted} merged inputs past their grace period")
        if report.pending:
            print(
                f"{table}: {report.pending} merged inputs pending deletion "
                f"(first deletable after {report.deletable_after}; a later run deletes them)"
            )
    return 0
