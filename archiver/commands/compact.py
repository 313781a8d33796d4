"""Merge small change files into files near a target size, without a reader ever missing a record.

The archiver writes one file per flush (the Lambda function one per batch), so a table collects
many small files a day: slow to list and scan, and under the 128 KB below which S3 lifecycle
rules do not move objects to colder storage. Compaction merges them per day, stream and shard
(a shard's contiguous files within one dt partition) into files named, like every change file,
by their first and last sequence numbers. So the archiver's resume point (the highest last
sequence number per shard in file names) is unchanged, and a file's name stays a function of
its content. Records archived twice (a retried write) are kept once, by event_id; rows are
sorted by key and stream order, so reading one item's history skips most row groups.

Nothing is ever missing for a reader, in this order, per merged file:

  1. the merged file is written (atomically) and its row count checked;
  2. its inputs are recorded in _state/<table>/compaction-pending.json with the time they
     become deletable (now + --grace-seconds);
  3. a later run (or this one, with --grace-seconds 0) deletes the inputs past their grace.

A crash between 1 and 2 leaves duplicates, which the next run merges into the same file again;
a crash during 3 leaves the entries pending, and the next run finishes the deletions. A reader
that lists while both copies exist reads duplicates (replay drops them); one whose file
vanished after listing lists again.

Run one compaction per table at a time (it rewrites the pending list). It is safe beside the
poller or the Lambda function, which only ever add files with later sequence numbers.

Examples:
  ddb-archiver compact --table-name orders --archive s3://bucket/prefix       # days before today
  ddb-archiver compact --table-name orders --archive ./demo-archive --dt 2026-01-31 --dry-run
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime

from archiver.aws.error_table import UsageError
from archiver.cliutil import (
    add_archive_argument,
    add_file_mode_argument,
    add_table_argument,
    non_negative_float,
    open_archive,
    positive_float,
)
from archiver.format import layout
from archiver.integrity.compaction import DEFAULT_GRACE_SECONDS, DEFAULT_TARGET_MB, compact

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
