from __future__ import annotations

import argparse

from archiver.aws.clients import AwsSettings
from archiver.cliutil import add_archive_argument
from archiver.format.storage import Archive
from replayer.engines import athena_setup as _library
from replayer.engines.athena_setup import DEFAULT_PROJECTION_START, archived_tables, setup
from replayer.exceptions import BadInput

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_archive_argument(parser)
    parser.add_argument("--database", required=True, help="the Glue database (created if missing)")
    parser.add_argument(
        "--table-name",
        action="append",
        dest="table_names",
        metavar="T",
        help="a table the projection lists (repeat it); default: every table in the archive",
    )
    parser.add_argument(
        "--projection-start",
        default=DEFAULT_PROJECTION_START,
        metavar="YYYY-MM-DD",
        help="the first dt partition Athena considers",
    )


def main(args: argparse.Namespace) -> int:
    if not str(args.archive).startswith("s3://"):
        raise BadInput("athena-setup needs an archive in S3 (s3://bucket/prefix): Athena reads S3")
    settings = AwsSettings.from_args(args)
    archive = Archive.open(args.archive, endpoint_url=settings.endpoint_url)
    names = args.table_names or archived_tables(archive)
    if not names:
        raise BadInput(f"{archive.url} holds no table yet: pass --table-name")
    root = "s3://" + archive.root
    for line in setup(
        settings.client("glue"), args.database, root, names, projection_start=args.projection_start
    ):
        print(line)
    print(f"tables projected: {', '.join(names)}")
    return 0
