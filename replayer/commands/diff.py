"""Compare two live tables item by item.

``ddb-replayer diff`` scans both tables (parallel, strongly consistent), matches items on their
keys (canonical DynamoDB JSON, so key attributes in any order and numbers in any notation
match) and prints how many items are only in the first table, only in the second, or differ,
with a few examples. Exit 0 when identical, 3 otherwise; 2 when the tables' keys differ.
"""

from __future__ import annotations

import argparse

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_DIFFERENCES
from archiver.cliutil import add_segments_argument, add_table_argument
from replayer.engines.fold import FoldSettings, add_fold_arguments
from replayer.read.verify import DEFAULT_SEGMENTS, diff_tables


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the first table (the reference)")
    add_table_argument(parser, "the table to compare with it", flag="--other-table-name")
    add_segments_argument(parser, default=DEFAULT_SEGMENTS)
    add_fold_arguments(parser)


def main(args: argparse.Namespace) -> int:
    client = AwsSettings.from_args(args).client("dynamodb")
    result = diff_tables(
        client,
        args.table_name,
        args.other_table_name,
        segments=args.segments,
        settings=FoldSettings.from_args(args),
    )
    print(
        f"diff {args.table_name} {args.other_table_name}: "
        + result.report(args.table_name, args.other_table_name)
    )
    return 0 if result.identical else EXIT_DIFFERENCES
