from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from archiver.cliutil import add_archive_argument, add_lambda_failures_argument, add_table_argument
from archiver.format.storage import Archive
from replayer.read import status as _library
from replayer.read.query import check_archive
from replayer.read.status import archive_status, render

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_archive_argument(parser)
    add_table_argument(parser, "only this table (default: every archived table)", required=False)
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    add_lambda_failures_argument(parser)


def main(args: argparse.Namespace, out: Any = None) -> int:
    endpoint_url = getattr(args, "endpoint_url", None)
    archive = Archive.open(args.archive, endpoint_url=endpoint_url)
    check_archive(archive)
    report = archive_status(
        archive,
        args.table_name,
        lambda_failures_url=getattr(args, "lambda_failures", None),
        endpoint_url=endpoint_url,
    )
    stream = out or sys.stdout
    if args.json:
        stream.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        stream.write(render(report) + "\n")
    return 0
