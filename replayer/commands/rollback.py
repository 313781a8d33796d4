"""Undo, in the live table itself, every change made after a time.

Only keys changed after TIME are touched, each set back to its state at TIME:

1. the table's stream is drained into the archive first (the archiver's ``run --once`` path,
   in-process), so the archive knows every change up to now;
2. per key changed in (TIME, now]: the ``old_image`` of its first change after TIME *is* its
   state at TIME (absent for an INSERT); with a ``NEW_IMAGE`` stream the archive's fold at TIME
   gives it;
3. each key is written back (put, or delete) with a condition that it still is what the
   archive last saw — with ``--version-attribute A`` that ``A`` still has the archived value,
   else that the item exists and its attributes still equal the archived ones, as many as fit
   DynamoDB's 4 KB condition-expression limit. A failed condition is a **conflict**: reported,
   never overwritten;
4. the stream is drained again, and any change to a touched key that the rollback did not make
   is reported as a conflict too.

Items that DynamoDB's TTL deleted after TIME (``userIdentity`` Service/dynamodb.amazonaws.com)
stay deleted — they had expired — unless ``--include-ttl-deletes``.

Deciding steps 2 and 3 — what to write per key, under which condition — is
:mod:`replayer.rollback.decisions`; this module drains, writes, reports conflicts, and runs the CLI.

Exit codes: 0 clean; 3 conflicts were reported; 4 refused (TIME before the archive's
coverage or after its watermark, a gap in the log after TIME); 2 bad input.

Example::

    ddb-replayer rollback --table-name orders --archive s3://bucket/prefix \
        --restore-date-time 2026-01-31T11:59:59Z --dry-run
"""

from __future__ import annotations

import argparse

from archiver.aws.clients import AwsSettings
from archiver.cliutil import (
    add_archive_argument,
    add_file_mode_argument,
    add_lambda_arguments,
    add_restore_time_arguments,
    add_table_argument,
    open_archive,
)
from archiver.format.timefmt import parse_time
from replayer.planning import lambda_gaps
from replayer.planning.key_selection import add_key_selection_arguments, select_keys
from replayer.rollback.in_place import Rollback, fold_states, run, stream_drainer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the live table to roll back")
    add_archive_argument(parser)
    add_file_mode_argument(parser)
    add_restore_time_arguments(parser, "undo every change after TIME (changes at TIME itself stay)")
    parser.add_argument(
        "--dry-run", action="store_true", help="list the writes it would make; write nothing"
    )
    parser.add_argument(
        "--version-attribute",
        metavar="A",
        help="a version attribute every write sets (optimistic locking): condition each "
        "rollback write on it, instead of on the item's attributes",
    )
    parser.add_argument(
        "--include-ttl-deletes",
        action="store_true",
        help="also bring back items that DynamoDB's TTL deleted after TIME (default: they "
        "stay deleted, they had expired)",
    )
    add_lambda_arguments(parser)
    add_key_selection_arguments(parser)


def main(args: argparse.Namespace) -> int:
    at = parse_time(args.restore_date_time)
    aws = AwsSettings.from_args(args)
    archive = open_archive(args, endpoint_url=aws.endpoint_url)
    checks = lambda_gaps.LambdaChecks.from_args(args)
    rollback = Rollback(
        ddb=aws.client("dynamodb"),
        archive=archive,
        table=args.table_name,
        at=at,
        drain=stream_drainer(aws, archive, args.table_name),
        version_attribute=args.version_attribute,
        include_ttl_deletes=args.include_ttl_deletes,
        states_at=fold_states(archive, args.table_name, checks),
        lambda_checks=checks,
        keys=select_keys(args, archive, args.table_name),  # --key …: only those items
    )
    return run(rollback, dry_run=args.dry_run)
