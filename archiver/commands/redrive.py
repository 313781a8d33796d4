from __future__ import annotations

import argparse

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_NEW_GAP, EXIT_OK, UsageError
from archiver.cliutil import (
    add_archive_argument,
    add_emf_argument,
    add_file_mode_argument,
    add_table_argument,
    open_archive,
)
from archiver.lambda_mode import failures as failures
from archiver.lambda_mode import redrive as _library
from archiver.lambda_mode.redrive import redrive

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the archived table's name")
    add_archive_argument(parser)
    add_file_mode_argument(parser)
    add_emf_argument(parser)
    parser.add_argument(
        "--from",
        dest="source",
        metavar="S3URL",
        help="where the on-failure destination writes (default: "
        f"{failures.ENV_LOCATION}, else s3://<archive bucket>/{failures.STACK_PREFIX}/ as the "
        "stack configures it)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would be archived; write nothing"
    )


def main(args: argparse.Namespace) -> int:
    settings = AwsSettings.from_args(args)
    archive = open_archive(args, endpoint_url=settings.endpoint_url)
    table = args.table_name
    location = failures.open_location(archive, args.source, endpoint_url=settings.endpoint_url)
    if location is None:
        raise UsageError(
            f"no on-failure location for the local archive {archive.url}: give --from S3URL "
            f"or set {failures.ENV_LOCATION}"
        )
    report = redrive(
        archive,
        table,
        location,
        streams=settings.client("dynamodbstreams"),
        kinesis=settings.client("kinesis"),
        dry_run=args.dry_run,
    )
    for outcome in report.outcomes:
        print(outcome.line(args.dry_run))
    redriven = len(report.outcomes) - len(report.open)
    print(
        f"{table}: {redriven} failed batch(es) {'to archive' if args.dry_run else 'archived'}, "
        f"{report.already} redriven before, {len(report.open)} still a gap"
        + (" (dry run: nothing written)" if args.dry_run else "")
    )
    return EXIT_NEW_GAP if report.open else EXIT_OK
