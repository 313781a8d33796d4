"""Create or update the Glue tables ``changes`` and ``snapshots`` that Athena queries.

``ddb-replayer athena-setup --archive s3://bucket/prefix --database D`` makes the Glue
database ``D`` (if missing) and the two tables over the archive, with partition projection
(no crawler, no ``MSCK REPAIR``): ``table_name`` is an enum of the archived tables — every
table found in the archive unless ``--table-name`` lists them — and ``dt`` a date range
from ``--projection-start`` to today. Run it again after archiving a new table: a table
missing from the enum is invisible to Athena (its queries return no rows), so
``--engine athena`` refuses to fold a table the Glue table does not list.

The definitions here are the single source: ``deploy/template.yaml`` declares the same
``TableInput`` (``tests/test_athena_setup.py`` checks the two agree), with the stack's
bucket and parameters in place of the arguments.
"""

from __future__ import annotations

import argparse

from archiver.aws.clients import AwsSettings
from archiver.cliutil import add_archive_argument
from archiver.format.storage import Archive
from replayer.engines.athena_setup import DEFAULT_PROJECTION_START, archived_tables, setup
from replayer.exceptions import BadInput


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
