from __future__ import annotations

import argparse
import sys
from datetime import datetime

import orjson

from archiver.cliutil import add_archive_argument, add_table_argument
from archiver.format import layout
from archiver.format.codec import canonicalize_text
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_time
from replayer.exceptions import BadInput
from replayer.read import history as _library
from replayer.read.history import item_history, write_timeline

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the archived table's name")
    add_archive_argument(parser)
    parser.add_argument(
        "--key",
        required=True,
        help='the item\'s key attributes in DynamoDB JSON, e.g. \'{"pk": {"S": "a"}}\'',
    )
    parser.add_argument(
        "--from",
        dest="time_from",
        metavar="TIME",
        help="only changes at or after TIME (ISO 8601 with a zone, or epoch seconds)",
    )
    parser.add_argument(
        "--to", dest="time_to", metavar="TIME", help="only changes at or before TIME"
    )
    parser.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table: a readable timeline; json: one array of changes with DynamoDB JSON values",
    )


def _window(time_from: datetime | None, time_to: datetime | None) -> str:
    if time_from and time_to:
        return f" between {iso_ms(time_from)} and {iso_ms(time_to)}"
    if time_from:
        return f" since {iso_ms(time_from)}"
    if time_to:
        return f" up to {iso_ms(time_to)}"
    return ""


def main(args: argparse.Namespace) -> int:
    time_from = parse_time(args.time_from) if args.time_from else None
    time_to = parse_time(args.time_to) if args.time_to else None
    if time_from and time_to and time_from > time_to:
        raise BadInput("--from is after --to")
    archive = Archive.open(args.archive, endpoint_url=args.endpoint_url)
    table = args.table_name
    if not archive.exists(layout.changes_table_dir(table)) and not archive.exists(
        layout.state_dir(table)
    ):
        raise BadInput(f"table {table!r} is not in the archive {archive.url}")
    changes = item_history(archive, table, args.key, time_from, time_to)
    shown_key = canonicalize_text(args.key)
    if args.format == "json":
        sys.stdout.write(orjson.dumps([c.to_json() for c in changes]).decode("utf-8") + "\n")
        if not changes:
            print(
                f"no history for {shown_key} in {table}{_window(time_from, time_to)}",
                file=sys.stderr,
            )
        return 0
    if not changes:
        print(f"No history for {shown_key} in {table}{_window(time_from, time_to)}.")
        return 0
    plural = "s" if len(changes) != 1 else ""
    window = _window(time_from, time_to)
    print(f"History of {shown_key} in {table}{window}: {len(changes)} change{plural}")
    write_timeline(changes, sys.stdout)
    return 0
