from __future__ import annotations

import argparse
import re
import sys

from archiver.cliutil import add_archive_argument
from archiver.format.storage import Archive
from replayer.exceptions import BadInput
from replayer.read import query as _library
from replayer.read.query import FORMATS, check_archive, run_query, write_result
from replayer.read.timetravel import expand

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_archive_argument(parser)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table: aligned text, long cells cut; csv: with a header row; "
        "json: one JSON object per row (JSON Lines)",
    )
    parser.add_argument(
        "sql",
        metavar="SQL",
        help="DuckDB SQL over the views `changes` and `snapshots`; '-' reads it from stdin",
    )


def main(args: argparse.Namespace) -> int:
    sql = sys.stdin.read() if args.sql == "-" else args.sql
    if not re.search(r"\S", sql):
        raise BadInput("the SQL is empty")
    archive = Archive.open(args.archive, endpoint_url=args.endpoint_url)
    check_archive(archive)
    result = run_query(archive, expand(archive, sql))
    write_result(result, args.format, sys.stdout)
    return 0
