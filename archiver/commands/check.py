from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_DIFFERENCES, EXIT_NEW_GAP, EXIT_OK, UsageError
from archiver.cliutil import (
    add_archive_argument,
    add_file_mode_argument,
    add_table_argument,
    open_archive,
)
from archiver.format import layout
from archiver.integrity import check as _library
from archiver.integrity.check import CheckResult, run_checks

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the archived table's name")
    add_archive_argument(parser)
    add_file_mode_argument(parser)
    parser.add_argument(
        "--deep",
        action="store_true",
        help="also read every row (content hash, columns, canonical JSON, event names)",
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="re-read broken ranges from the stream while it holds them; record the rest "
        "in gaps.jsonl (reason archive-file-lost)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _print(result: CheckResult, out: Any) -> None:
    for problem in result.problems:
        print(problem.line(), file=out)
    for problem in result.known:
        print(f"known (in gaps.jsonl): {problem.line()}", file=out)
    unchained = (
        f", {result.unchained} unchained (written before chain footers)" if result.unchained else ""
    )
    verdict = f"{len(result.problems)} problem(s)" if result.problems else "no problems"
    print(f"{result.table}: {result.files} change files checked{unchained}; {verdict}", file=out)


def main(args: argparse.Namespace) -> int:
    archive = open_archive(args)
    table = args.table_name
    known = archive.exists(layout.changes_table_dir(table)) or archive.exists(
        layout.state_dir(table)
    )
    if not known:
        raise UsageError(f"table {table!r} is not in the archive {archive.url}")
    progress = not args.json and sys.stderr.isatty()
    result = run_checks(archive, table, deep=args.deep, progress=progress)
    outcome: dict[str, Any] = {}
    if args.repair and result.problems:
        from archiver.integrity.repair import repair

        report = asyncio.run(repair(archive, table, result, AwsSettings.from_args(args)))
        outcome = report.to_json()
        if not args.json:
            for line in report.lines():
                print(line)
        result = run_checks(archive, table, deep=args.deep, progress=progress)
        if report.gaps:
            outcome["exit"] = EXIT_NEW_GAP
    if args.json:
        print(json.dumps({**result.to_json(), **({"repair": outcome} if outcome else {})}))
    else:
        _print(result, sys.stdout)
    if result.problems:
        return EXIT_DIFFERENCES
    return int(outcome.get("exit", EXIT_OK))
