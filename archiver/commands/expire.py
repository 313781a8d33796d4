from __future__ import annotations

import argparse

from archiver.cliutil import (
    add_archive_argument,
    add_file_mode_argument,
    add_table_argument,
    open_archive,
)
from archiver.erasure import expire as _library
from archiver.erasure.expire import duration, expire
from archiver.format.timefmt import iso_ms

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


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
