"""Enforce a retention: delete a table's history older than a horizon, keeping restores after it.

``--older-than 400d`` puts the horizon at the start (00:00 UTC) of the day 400 days ago:
change files are deleted by whole ``dt`` days, so the horizon is that day's midnight, and
nothing recorded at or after it is touched. At least 24 hours (the stream's retention), so the
archiver never re-reads what expired.

Restores from the horizon on stay possible: first a **base snapshot at the horizon** is made
from the archive itself — the table's state just before it, folded from the existing base and
log — and committed as a snapshot (``method: fold``, ``valid_from`` = ``log_from`` = the
horizon: exact, the log is applied from the horizon on). The fold is the replayer's, run as
``ddb-replayer export`` in a subprocess into ``_staging/<table>/``: one fold implementation
(with every refusal a restore has: gaps, a broken chain, the watermark), and the archiver
still never imports the replayer. Then, in this order:

  1. the first file kept of each shard whose predecessor goes is relinked (its chain footer
     says it has none, as a shard's first file does), so the chain stays valid;
  2. ``coverage.json`` moves ``covered_from`` to the horizon (``from_table_creation`` false)
     and ``_state/<table>/retention.json`` records it: restores before it are refused, naming
     the retention, from this moment on;
  3. change files of older days (never the last file a checkpoint names: it stays until a later
     file exists), snapshots valid before the horizon (manifest first: the commit goes first),
     native exports older than it, are deleted, and compaction's pending list forgets them.

Crash-safe: the base is taken first (a fold that is refused changes nothing), then the plan is
written to ``_state/<table>/expire-pending.json`` before any other change; every step is
idempotent; a re-run finishes it.

Examples:
  ddb-archiver expire --table-name orders --archive s3://bucket/prefix --older-than 400d
  ddb-archiver expire --table-name orders --archive ./demo-archive --older-than 90d --dry-run
"""

from __future__ import annotations

import argparse

from archiver.cliutil import (
    add_archive_argument,
    add_file_mode_argument,
    add_table_argument,
    open_archive,
)
from archiver.erasure.expire import duration, expire
from archiver.format.timefmt import iso_ms


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the archived table's name")
    add_archive_argument(parser)
    add_file_mode_argument(parser)
    parser.add_argument(
        "--older-than",
        type=duration,
        required=True,
        metavar="DURATION",
        help="delete history older than this (400d, 12w, 36h; at least 24h), by whole days",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted; change nothing"
    )


def main(args: argparse.Namespace) -> int:
    archive = open_archive(args)
    table = args.table_name
    plan = expire(
        archive, table, args.older_than, dry_run=args.dry_run, endpoint_url=args.endpoint_url
    )
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{table}: horizon {iso_ms(plan.horizon)}: {verb} {len(plan.delete)} objects")
    if args.dry_run:
        for rel in plan.delete:
            print(f"  {rel}")
    else:
        print(
            f"{table}: base snapshot {plan.base} at the horizon; restores before "
            f"{iso_ms(plan.horizon)} are refused (retention)"
        )
    return 0
