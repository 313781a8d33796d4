"""Prove the archive against AWS's own copy: its state at a time, item by item.

Picks ``T`` (``--at``, or ``--random`` inside both the archive's exact coverage and PITR's
restorable window), folds the archive at ``T`` and compares it with AWS's own state at ``T``:
a native full export at ``T`` (default; no table created) or a PITR restore into a scratch
table, deleted afterwards unless ``--keep``. Keys written within the margin of ``T`` (the
method's — 60 s for an export, 5 s for PITR — or ``--margin SECONDS``) are not comparable —
AWS's copy is fuzzy there — and are counted, not compared; the margin also bounds the
drillable window (``T`` at most the watermark minus it). An export's margin below 60 s is
allowed with a one-line warning on stderr: it risks false differences. The result is
appended to ``_state/<table>/drills.jsonl`` and shown by ``status``. Exit 0: identical; 2: a
bad flag (``--margin`` not above 0); 3: differences (the first ones printed in full); 4:
refused. The instant, the margin and what it will cost are printed before it starts (and
alone with ``--dry-run``).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import datetime, timedelta

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_DIFFERENCES
from archiver.aws.prices import PRICES_AS_OF, full_export_cost, rates_for
from archiver.cliutil import (
    add_archive_argument,
    add_emf_argument,
    add_table_argument,
    non_negative_float,
    number_type,
    positive_int,
)
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_time, utcnow
from archiver.native.pitr import describe_pitr
from replayer.drill import native
from replayer.drill.run import (
    DEFAULT_EXAMPLES,
    MARGINS,
    MAX_MARGIN_SECONDS,
    drill_margin,
    margin_risk,
    new_drill_id,
    run_drill,
)
from replayer.drill.window import check_time, drill_window, random_time
from replayer.engines.fold import FoldSettings, add_fold_arguments
from replayer.strategies.costs import format_cost, native_restore_cost


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the archived table to drill (it must be live, with PITR on)")
    add_archive_argument(parser)
    add_emf_argument(parser)
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--at",
        metavar="TIME",
        help="the instant to drill: ISO 8601 with a zone (2026-01-31T12:00:00Z) or epoch seconds",
    )
    when.add_argument(
        "--random",
        action="store_true",
        help="an instant drawn at random inside both the archive's exact coverage and PITR's "
        "restorable window",
    )
    parser.add_argument(
        "--method",
        choices=("export", "pitr"),
        default="export",
        help="AWS's copy: a native full export at T (no table created; needs an S3 "
        "destination), or a PITR restore into a scratch table",
    )
    parser.add_argument(
        "--margin",
        metavar="SECONDS",
        type=number_type(float, above=0, at_most=MAX_MARGIN_SECONDS, unit="seconds"),
        help="leave out (as not comparable) the keys the archive shows written within this "
        "many seconds of T, and drill only up to the watermark minus it (default: the "
        f"method's, {MARGINS['export'].total_seconds():g} s for an export, "
        f"{MARGINS['pitr'].total_seconds():g} s for PITR); larger for an export AWS says is "
        "accurate to about a minute, smaller for a quiet table — below 60 s an export risks "
        "false differences (a warning says so)",
    )
    parser.add_argument(
        "--staging",
        metavar="S3URL",
        help="where the export is written (default: the S3 archive's _staging/<table>/; a "
        "local archive needs it)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the export or the scratch table afterwards (default: deleted)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the instant, the drillable window and the price, and request nothing",
    )
    parser.add_argument(
        "--examples",
        type=positive_int,
        default=DEFAULT_EXAMPLES,
        help="how many differences to print (and record) in full",
    )
    parser.add_argument(
        "--poll-seconds",
        type=non_negative_float,
        default=10.0,
        help="how often to poll the export or restore",
    )
    add_fold_arguments(parser)


def _price(method: str, table_bytes: int, region: str | None) -> str:
    if method == "export":
        where, rates = rates_for(region)
        cost = full_export_cost(table_bytes, rates)
        what = f"a full export of {table_bytes:,} bytes"
    else:
        where = "us-east-1"
        cost = native_restore_cost(table_bytes)
        what = f"a PITR restore of {table_bytes:,} bytes (plus the scratch table's scan)"
    return (
        f"price: {format_cost(cost)} for {what} at list prices ({where}, as of {PRICES_AS_OF}; "
        "check https://aws.amazon.com/dynamodb/pricing/)"
    )


def main(args: argparse.Namespace) -> int:
    settings = AwsSettings.from_args(args)
    archive = Archive.open(args.archive, endpoint_url=settings.endpoint_url)
    ddb = settings.client("dynamodb")
    table = args.table_name
    margin: timedelta = drill_margin(args.method, args.margin)
    risk = margin_risk(args.method, margin)
    if risk:
        print(f"ddb-replayer: warning: {risk}", file=sys.stderr)
    window = drill_window(archive, table, describe_pitr(ddb, table), margin)
    at: datetime = (
        random_time(window, random.SystemRandom()) if args.random else parse_time(args.at)
    )
    check_time(window, at)
    table_arn, table_bytes = native.table_size(ddb, table)
    print(
        f"drill {table} at {iso_ms(at)} by {args.method}, margin "
        f"{margin.total_seconds():g} s; window: {window.describe()}"
    )
    print(_price(args.method, table_bytes, settings.region))
    if args.dry_run:
        print("dry run: nothing requested")
        return 0
    drill_id = new_drill_id(utcnow())
    if args.method == "export":
        store = native.staging_store(
            archive, table, args.staging, drill_id, endpoint_url=settings.endpoint_url
        )

        def native_side(when: datetime) -> native.NativeCopy:
            return native.export_copy(
                ddb, table_arn, table, when, store, keep=args.keep, poll_seconds=args.poll_seconds,
                sleep=time.sleep,
            )  # fmt: skip
    else:
        scratch = native.scratch_name(table, drill_id)

        def native_side(when: datetime) -> native.NativeCopy:
            return native.pitr_copy(
                ddb, table, when, scratch, keep=args.keep, poll_seconds=args.poll_seconds
            )

    result = run_drill(
        archive,
        table,
        at,
        method=args.method,
        native_side=native_side,
        margin=margin,
        settings=settings,
        fold_settings=FoldSettings.from_args(args),
        examples=args.examples,
        drill_id=drill_id,
    )
    print(result.report())
    return 0 if result.identical else EXIT_DIFFERENCES
