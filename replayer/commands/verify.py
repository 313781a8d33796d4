from __future__ import annotations

import argparse

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_DIFFERENCES
from archiver.cliutil import (
    add_allow_gaps_argument,
    add_allow_inexact_argument,
    add_archive_argument,
    add_lambda_arguments,
    add_restore_time_arguments,
    add_segments_argument,
    add_table_argument,
)
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_time
from replayer.engines import athena_engine
from replayer.engines.athena_engine import AthenaFolder, add_engine_arguments
from replayer.engines.fold import Fold, FoldSettings, add_fold_arguments
from replayer.planning.key_selection import add_key_selection_arguments, select_keys
from replayer.planning.lambda_gaps import LambdaChecks
from replayer.planning.plan import plan_restore
from replayer.read import verify as _library
from replayer.read.verify import DEFAULT_SEGMENTS, key_names, verify_table

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the table to check", flag="--target-table-name")
    add_table_argument(parser, "the archived table it should equal", flag="--source-table-name")
    add_archive_argument(parser)
    add_restore_time_arguments(parser, "the time whose state to compare with, inclusive")
    add_allow_gaps_argument(parser)
    add_lambda_arguments(parser)
    add_allow_inexact_argument(parser)
    add_segments_argument(parser, default=DEFAULT_SEGMENTS)
    add_fold_arguments(parser)
    add_engine_arguments(parser)
    add_key_selection_arguments(parser)


def main(args: argparse.Namespace) -> int:
    at = parse_time(args.restore_date_time)
    settings = AwsSettings.from_args(args)
    archive = Archive.open(args.archive, endpoint_url=settings.endpoint_url)
    client = settings.client("dynamodb")
    names = key_names(client, args.target_table_name)  # a missing target is bad input, first
    plan = plan_restore(
        archive,
        args.source_table_name,
        at,
        allow_gaps=args.allow_gaps,
        settings=settings,
        allow_inexact=args.allow_inexact,
        lambda_checks=LambdaChecks.from_args(args),
    )
    select_keys(args, archive, args.source_table_name)  # --key …: only those items
    if plan.inexact is not None:
        print(plan.inexact.describe())
    athena = AthenaFolder.from_args(args, settings, archive) if args.engine == "athena" else None
    with Fold(archive, FoldSettings.from_args(args)) as fold:
        state = athena_engine.state_at(fold, archive, plan, names, athena)
        result = verify_table(client, args.target_table_name, state, segments=args.segments)
    print(
        f"verify {args.target_table_name} against {args.source_table_name} at {iso_ms(at)}: "
        + result.report("the archive", args.target_table_name)
    )
    return 0 if result.identical else EXIT_DIFFERENCES
