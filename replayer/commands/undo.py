"""Undo the changes of one window (--from, --to] in the live table, leaving later ones alone.

Per key with a change record in the window — narrowed by --key, --keys-file or --where (one
DuckDB expression over the window's change rows, e.g. "new_image->>'$.status.S' = 'broken'"):
``before`` is its state at --from, ``bad`` its state at --to, ``now`` the live item. Where
``now`` is ``bad``, ``before`` is written back (a put, or a delete when the item did not exist),
on the condition that the item still is ``bad`` (a --version-attribute, else its attributes).
Where ``now`` is ``before`` already, nothing is written: a rerun after a crash writes only what
is left. Anything else was changed again after the window: a conflict, left as it is unless
--force-overwrite-later-changes, listed in the summary and in --conflicts FILE (JSON lines
{"key", "before", "bad", "now"}, DynamoDB JSON). Keys changed only outside the window are
never touched.

The stream is drained into the archive first, and the window is planned as a restore is:
refused (exit 4, nothing written) when --from is before the archive's coverage, when the log
meets a recorded gap after --from, or when --to is after the watermark. The undo's own writes
are archived like any others: undoing the window around an undo undoes it.

Exit codes: 0 done; 3 conflicts were left as they are; 4 refused; 2 bad input.

Example::

    ddb-replayer undo --table-name orders --archive s3://bucket/prefix \\
        --from 2026-01-31T14:02:00Z --to 2026-01-31T14:20:00Z --dry-run --conflicts c.jsonl
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from archiver import cliutil
from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_DIFFERENCES, EXIT_OK
from archiver.cliutil import add_archive_argument, add_table_argument
from archiver.format.storage import Archive
from archiver.format.timefmt import parse_time
from replayer.engines.fold import FoldSettings, add_fold_arguments
from replayer.planning import lambda_gaps
from replayer.planning.key_selection import add_key_selection_arguments, select_keys
from replayer.rollback.in_place import stream_drainer
from replayer.rollback.undo import CONFLICT, Undo, print_plan, pruned_fold_states, write_conflicts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the live table to repair")
    add_archive_argument(parser)
    parser.add_argument(
        "--from",
        dest="after",
        required=True,
        metavar="T1",
        help="the window's start, exclusive: changes after T1 are undone (ISO 8601 with a "
        "zone, or epoch seconds)",
    )
    parser.add_argument(
        "--to",
        dest="until",
        required=True,
        metavar="T2",
        help="the window's end, inclusive: changes after T2 are kept",
    )
    add_key_selection_arguments(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (restore / delete / unchanged / conflicts, per key) and write "
        "nothing (the conflicts file is still written)",
    )
    parser.add_argument(
        "--conflicts",
        metavar="FILE",
        help="write the conflicts as JSON lines {key, before, bad, now} (DynamoDB JSON) here",
    )
    parser.add_argument(
        "--force-overwrite-later-changes",
        dest="force",
        action="store_true",
        help="also write the state at T1 over items changed again after the window (each on "
        "the condition that it is still as read)",
    )
    parser.add_argument(
        "--version-attribute",
        metavar="A",
        help="a version attribute every write sets (optimistic locking): condition each "
        "write on it, instead of on the item's attributes",
    )
    parser.add_argument(
        "--include-ttl-deletes",
        action="store_true",
        help="also bring back items that DynamoDB's TTL deleted in the window (default: they "
        "stay deleted, they had expired)",
    )
    cliutil.add_lambda_arguments(parser)
    add_fold_arguments(parser)


def main(args: argparse.Namespace) -> int:
    after, until = parse_time(args.after), parse_time(args.until)
    aws = AwsSettings.from_args(args)
    archive = Archive.open(args.archive, endpoint_url=aws.endpoint_url)
    checks = lambda_gaps.LambdaChecks.from_args(args)
    undo = Undo(
        ddb=aws.client("dynamodb"),
        archive=archive,
        table=args.table_name,
        after=after,
        until=until,
        drain=stream_drainer(aws, archive, args.table_name),
        states_at=pruned_fold_states(
            archive, args.table_name, checks, FoldSettings.from_args(args)
        ),
        select=lambda: select_keys(args, archive, args.table_name, after=after, until=until),
        version_attribute=args.version_attribute,
        include_ttl_deletes=args.include_ttl_deletes,
        force=args.force,
        lambda_checks=checks,
    )
    return run(undo, dry_run=args.dry_run, conflicts_file=args.conflicts)


def run(undo: Undo, *, dry_run: bool, conflicts_file: str | None, out: Any = None) -> int:
    """Plan, print, and (unless ``dry_run``) execute; returns the exit code."""
    out = out or sys.stdout
    plan = undo.prepare()
    print(plan.describe(), file=out)
    if dry_run:
        print_plan(plan, out, force=undo.force)
        if conflicts_file:
            write_conflicts(conflicts_file, [] if undo.force else plan.of(CONFLICT))
        print("dry run: nothing written", file=out)
        return EXIT_OK
    report = undo.execute(plan)
    for conflict in report.conflicts:
        print(f"CONFLICT {conflict.key.keys}: {conflict.reason}", file=out)
    if conflicts_file:
        write_conflicts(conflicts_file, [c.key for c in report.conflicts])
        if report.conflicts:
            print(f"{len(report.conflicts)} conflict(s) written to {conflicts_file}", file=out)
    print(report.summary(), file=out)
    return EXIT_DIFFERENCES if report.conflicts else EXIT_OK
