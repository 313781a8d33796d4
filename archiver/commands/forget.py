from __future__ import annotations

import argparse
import time

from archiver.aws.error_table import UsageError
from archiver.cliutil import (
    add_archive_argument,
    add_file_mode_argument,
    add_table_argument,
    non_negative_float,
    open_archive,
)
from archiver.erasure import forget as _library
from archiver.erasure.forget import Outcome, forget
from archiver.erasure.keys import parse_key, read_keys_file
from archiver.format import layout, tables

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the archived table's name")
    add_archive_argument(parser)
    add_file_mode_argument(parser)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--key",
        action="append",
        metavar="JSON",
        help='a key to erase, as DynamoDB JSON like the AWS CLI\'s: \'{"pk": {"S": "a"}}\' '
        "(repeatable)",
    )
    what.add_argument(
        "--keys-file",
        metavar="FILE",
        help="keys to erase, one DynamoDB JSON key per line ('-': standard input)",
    )
    what.add_argument(
        "--where",
        metavar="SQL",
        help="erase every key with a change row (or snapshot item, as new_image) matching this "
        "DuckDB expression, e.g. \"new_image->>'$.email.S' = 'a@b.c'\"",
    )
    what.add_argument("--resume", action="store_true",
                      help="only finish an interrupted erasure of the table")  # fmt: skip
    parser.add_argument("--reason", default="", help="why (kept in the erasure log)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the objects and rows that would go; change nothing")  # fmt: skip
    parser.add_argument(
        "--purge-versions",
        action="store_true",
        help="also delete the noncurrent versions of every object rewritten (versioned buckets)",
    )
    parser.add_argument(
        "--watch",
        type=non_negative_float,
        metavar="SECONDS",
        help="after erasing, keep erasing the keys from change files archived during this "
        "long (86400: the stream's retention), every --watch-interval seconds",
    )
    parser.add_argument(
        "--watch-interval",
        type=non_negative_float,
        default=300.0,
        metavar="SECONDS",
        help="how often --watch looks for new files",
    )


def _print(table: str, outcome: Outcome, dry_run: bool, keys: int | None) -> None:
    verb = "would rewrite" if dry_run else "rewrote"
    what = "unfinished erasure" if outcome.resumed else "erasure"
    of = f" of {keys} key{'s' if keys != 1 else ''}" if keys is not None else ""
    print(
        f"{table}: {what} {outcome.erasure_id}{of}: {verb} {len(outcome.targets)} objects, "
        f"{outcome.rows_removed} rows {'to remove' if dry_run else 'removed'}"
    )
    for target in outcome.targets:
        print(f"  {target.path}  {target.rows} rows")
    found = outcome.found
    if found is not None:
        print(
            f"{table}: searched {found.objects_listed} objects: {found.row_groups_read} of "
            f"{found.row_groups} Parquet row groups could hold the keys (their keys column "
            f"read), {found.read_whole} export/staging files read whole"
        )
    if outcome.versions_purged:
        print(f"{table}: deleted {outcome.versions_purged} noncurrent object versions")
    if outcome.versions_left:
        print(
            f"{table}: {outcome.versions_left} noncurrent object versions still hold the erased "
            "rows (the bucket is versioned): re-run with --purge-versions, or let a lifecycle "
            "rule expire noncurrent versions"
        )


def main(args: argparse.Namespace) -> int:
    archive = open_archive(args)
    table = args.table_name
    if not (
        archive.exists(layout.changes_table_dir(table)) or archive.exists(layout.state_dir(table))
    ):
        raise UsageError(f"table {table!r} is not in the archive {archive.url}")
    names = tables.archived_key_names(archive, table)
    keys: list[str] | None
    selector = "key"
    if args.key:
        keys = [parse_key(text, names) for text in args.key]
    elif args.keys_file:
        keys, selector = read_keys_file(args.keys_file, names), "keys-file"
    elif args.where:
        from archiver.erasure.where import keys_where

        keys, selector = keys_where(archive, table, args.where), "where"
    else:
        keys = None
    if keys is not None:
        keys = sorted(set(keys))

    def run(first: bool = True) -> list[Outcome]:
        return forget(
            archive,
            table,
            keys,
            reason=args.reason,
            selector=selector,
            purge_versions=args.purge_versions,
            dry_run=args.dry_run,
            names=names,
            log_empty=first,
        )

    outcomes = run()
    if keys is None and not outcomes:
        print(f"{table}: no unfinished erasure to resume")
    for outcome in outcomes:
        _print(
            table, outcome, args.dry_run, None if outcome.resumed and not keys else len(keys or [])
        )
    if keys is not None and not args.dry_run:
        print(
            f"{table}: records of these keys not archived yet (the stream holds 24 h) are "
            "archived by the next `ddb-archiver run`, like later writes to them: run this "
            "forget again 24 h after the last write to them (or use --watch)"
        )
    if args.watch and keys and not args.dry_run:
        deadline = time.monotonic() + args.watch
        while time.monotonic() < deadline:
            time.sleep(min(args.watch_interval, max(deadline - time.monotonic(), 0)))
            for outcome in run(first=False):
                if outcome.targets:
                    _print(table, outcome, False, len(keys))
    return 0
