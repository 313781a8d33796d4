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
from replayer.rollback import in_place as _library
from replayer.rollback.in_place import Rollback, fold_states, run, stream_drainer

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


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
