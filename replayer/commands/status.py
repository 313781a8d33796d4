"""What the archive holds, per table: coverage, watermark and lag, gaps, snapshots, streams and
shards, files and bytes, and the archiver's last run.

Reads only the archive (no AWS call) — and, for a table archived by the Lambda function, the
on-failure destination's objects: each failed batch not redriven yet is listed with the
command that archives it (``ddb-archiver redrive``), or the event ids of its malformed
records. Human-readable by default; --json for scripts and monitoring (lag_seconds is what to
alarm on). A table the archive does not hold is exit 2, with the list of those it does; so is
a root that holds no archive at all (a mistyped --archive), as in ``query``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from archiver.cliutil import add_archive_argument, add_lambda_failures_argument, add_table_argument
from archiver.format.storage import Archive
from replayer.read.query import check_archive
from replayer.read.status import archive_status, render


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
