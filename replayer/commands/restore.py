"""Rebuild a table as it was at a time, into a new table.

``ddb-replayer restore`` picks a strategy (``--strategy auto``, the default, estimates each and
takes the fastest, printing the estimates and why):

- replay: plan (newest base valid at T + the archived log up to T, or a clear refusal), fold
  the archive in DuckDB, create the target from the archived description of the source (keys,
  indexes, billing and capacity, SSE, table class, deletion protection), write every item
  with parallel BatchWriteItem calls;
- pitr: DynamoDB's RestoreTableToPointInTime, when T is inside the PITR window;
- backup: RestoreTableFromBackup of the newest backup at or before T (or --backup-arn), then
  the archived log over (backup - 60 s, T] written over it;
- import: the fold staged as DynamoDB JSON in S3 (--staging) and loaded by ImportTable
  (``replayer.strategies.import_table``): no write capacity used, no LSIs.

The result is verified item by item against the archive (when the archive can rebuild T), and
--copy-settings then copies tags, TTL, stream, PITR, auto scaling, alarms and resource policy.

Exit codes: 0 done (and verified); 2 bad input; 3 the target differs from the archive's state
(verify), or an import did not load every item; 4 refused by a safety check, with nothing
created (the target exists, T after the watermark, the log not covering the range or meeting a
recorded gap, no usable base, the requested strategy not possible at T, a staging prefix that
holds another restore's files).
"""

from __future__ import annotations

import argparse
import logging
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_DIFFERENCES, EXIT_OK
from archiver.cliutil import (
    add_allow_gaps_argument,
    add_allow_inexact_argument,
    add_archive_argument,
    add_emf_argument,
    add_lambda_arguments,
    add_restore_time_arguments,
    positive_float,
)
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_time
from archiver.native.pitr import describe_pitr
from replayer.engines.athena_engine import AthenaFolder, add_engine_arguments
from replayer.engines.fold import FoldSettings, add_fold_arguments
from replayer.exceptions import BadInput, Refused, ReplayError
from replayer.planning import lambda_gaps
from replayer.planning import plan as planning
from replayer.planning.key_selection import add_key_selection_arguments, select_keys
from replayer.strategies import choice as strategies
from replayer.strategies import import_table as import_strategy
from replayer.strategies import native_restore
from replayer.strategies.replay import (
    ReplayOptions,
    archived_table,
    check_table_name,
    restore_by_replay,
)
from replayer.write import restore_state
from replayer.write import warm as warm_throughput
from replayer.write.batch_writers import DEFAULT_CONCURRENCY, WriteStats
from replayer.write.settings_copy import copy_after_restore
from replayer.write.several_tables import (
    TableRun,
    add_source_tables_arguments,
    restore_tables,
    several_tables,
)
from replayer.write.target_table import refuse_if_exists

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

STRATEGIES = strategies.STRATEGIES


def resolve_time(archive: Archive, table: str, args: argparse.Namespace) -> datetime:
    """``--restore-date-time`` parsed (exit 2 when malformed), or the watermark for
    ``--use-latest-restorable-time``."""
    if args.use_latest_restorable_time:
        return planning.latest_restorable_time(archive, table)
    return parse_time(args.restore_date_time)


# -- CLI ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_tables_arguments(parser, targets=True)  # one table, or several at one instant
    add_archive_argument(parser)
    add_emf_argument(parser)
    add_restore_time_arguments(
        parser,
        "the time to restore to, inclusive",
        latest=" (with --strategy pitr: PITR's LatestRestorableDateTime)",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="auto",
        help="replay: from the archive (base snapshot + change log); import: the same state "
        "staged in S3 and loaded by ImportTable; pitr / backup: native restores; auto: the "
        "fastest (or, with --prefer cost, cheapest) correct one",
    )
    parser.add_argument(
        "--staging",
        metavar="S3URL",
        help="with --strategy import (or auto): an empty s3://bucket/prefix to stage the "
        "DynamoDB JSON files in (default: <archive>/_staging/<restore id>/ for an S3 "
        "archive; required for a local one); deleted after a verified restore",
    )
    parser.add_argument(
        "--prefer",
        choices=strategies.PREFER,
        default="time",
        help="what --strategy auto minimises: the estimated time (default) or cost",
    )
    parser.add_argument(
        "--backup-arn",
        metavar="A",
        help="with --strategy backup (or auto): restore this on-demand backup (created at or "
        "before T) instead of the newest one at or before T",
    )
    parser.add_argument(
        "--copy-settings",
        action="store_true",
        help="afterwards copy what restores do not carry over, from the live source (else the "
        "archived description): tags, TTL (after verification), stream, PITR, auto scaling, "
        "alarms, resource policy",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the estimates and the chosen strategy (with --strategy replay: the plan, "
        "its base, log range, files and record counts) and create nothing",
    )
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip the item-by-item comparison of the target with the archive afterwards",
    )
    parser.add_argument(
        "--max-write-rate",
        type=positive_float,
        metavar="N",
        help="write at most N items per second (default: as fast as the table accepts)",
    )
    add_allow_gaps_argument(parser)
    add_lambda_arguments(parser)
    add_allow_inexact_argument(parser)
    parser.add_argument(
        "--write-workers",
        type=write_workers,
        default=None,
        metavar="P[xC]",
        help="writer processes P (default: one per core) each with C concurrent "
        f"BatchWriteItem calls (default {DEFAULT_CONCURRENCY}); the fold result is split by key "
        "hash into P partitions",
    )
    parser.add_argument(
        "--target-minutes",
        type=positive_float,
        default=warm_throughput.DEFAULT_TARGET_MINUTES,
        metavar="N",
        help="size the warm throughput (or provisioned WCU) the target is created with to "
        "write everything in about N minutes (default %(default)g), capped at the account's "
        "table quota; only what is asked for: the writers start at what the created table "
        "takes (on demand at least 4,000 write units/s), so a small restore is not slowed",
    )
    parser.add_argument(
        "--no-warm",
        dest="warm",
        action="store_false",
        help="create the target with the source's throughput settings only (no WarmThroughput, "
        "no extra provisioned WCU); the writers start at what that table takes",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a restore that stopped: write into the target it created (its tags "
        "name the restore and plan) only what is not yet acknowledged, then verify",
    )
    add_fold_arguments(parser)
    add_engine_arguments(parser)
    add_key_selection_arguments(parser)


def write_workers(text: str) -> tuple[int, int]:
    """``P`` or ``PxC``: writer processes and concurrent calls per process."""
    processes, _, concurrency = text.lower().partition("x")
    try:
        p = int(processes)
        c = int(concurrency) if concurrency else DEFAULT_CONCURRENCY
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not P or PxC (e.g. 4 or 4x16)") from None
    if p < 1 or c < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: processes and calls must be at least 1")
    return p, c


def strategy_time(
    client: DynamoDBClient, archive: Archive, source: str, args: argparse.Namespace
) -> datetime:
    """The restore time; with ``--strategy pitr --use-latest-restorable-time`` it is PITR's own
    latest restorable time (the archive's watermark is usually later than PITR's, ~5 min ago)."""
    if args.use_latest_restorable_time and args.strategy == "pitr":
        status = describe_pitr(client, source)
        if not status.enabled or status.latest_restorable is None:
            raise Refused(f"point-in-time recovery of {source!r} has no restorable window")
        return status.latest_restorable
    return resolve_time(archive, source, args)


def restore_natively(
    client: DynamoDBClient,
    archive: Archive,
    choice: strategies.Choice,
    args: argparse.Namespace,
    options: ReplayOptions,
) -> int:
    """Run the chosen native strategy, then verify against the archive when it can rebuild T."""
    source, target = args.source_table_name, args.target_table_name
    outcome = native_restore.restore_native(
        client, archive, choice, source=source, target=target, max_write_rate=args.max_write_rate
    )
    print(f"restored {source} as of {iso_ms(choice.at)} into {target} ({outcome.strategy})")
    if outcome.tail is not None:
        tail = outcome.tail
        print(
            f"log tail: {tail.items:,} items written, {tail.deletes:,} deleted in "
            f"{tail.seconds:.1f} s"
            + (
                f"; {outcome.corrections} key(s) changed just after T reset to their state at T"
                if outcome.corrections
                else ""
            )
        )
    if not options.verify:
        return EXIT_OK
    comparison = native_restore.verify_native(
        client,
        archive,
        source,
        target,
        choice.at,
        allow_gaps=options.allow_gaps,
        settings=options.fold,
        lambda_checks=options.lambda_checks,
    )
    return EXIT_DIFFERENCES if comparison is not None and not comparison.identical else EXIT_OK


def restore_by_import(
    settings: AwsSettings,
    archive: Archive,
    choice: strategies.Choice,
    args: argparse.Namespace,
    options: ReplayOptions,
    client: Any,
) -> int:
    """Run the ``import`` strategy on the plan it was estimated with."""
    plan = choice.replay_plan
    if plan is None:  # the estimate is usable only with a plan
        raise ReplayError("the import strategy was chosen without a plan")
    outcome = import_strategy.restore_by_import(
        settings,
        archive,
        plan,
        archived_table(archive, plan, client),
        args.target_table_name,
        import_strategy.ImportOptions(
            staging=args.staging, verify=options.verify, fold=options.fold, athena=options.athena
        ),
        client=client,
    )
    if not args.copy_settings:
        print(
            "ImportTable sets no stream, TTL, table class, deletion protection or tags: "
            "--copy-settings copies them from the source"
        )
    return outcome.exit_code


def main(args: argparse.Namespace) -> int:
    if several_tables(args):  # or one named by --target-table-suffix: all planned first
        return restore_tables(args, restore_one)
    return restore_one(args).exit_code


def restore_one(args: argparse.Namespace) -> TableRun:
    """The restore of one table: its exit code, and the items it wrote (for the summary of
    several tables, which runs this once per table)."""
    written: WriteStats | None = None
    if args.backup_arn and args.strategy not in ("auto", "backup"):
        raise BadInput("--backup-arn goes with --strategy backup (or auto)")
    if args.staging and args.strategy not in ("auto", "import"):
        raise BadInput("--staging goes with --strategy import (or auto)")
    source, target = args.source_table_name, args.target_table_name
    check_table_name(target)
    settings = AwsSettings.from_args(args)
    archive = Archive.open(args.archive, endpoint_url=settings.endpoint_url)
    select_keys(args, archive, source)  # --key …: only those items, by replay
    client = settings.client("dynamodb")
    processes, concurrency = args.write_workers or (os.cpu_count() or 1, DEFAULT_CONCURRENCY)
    options = ReplayOptions(
        allow_gaps=args.allow_gaps,
        allow_inexact=args.allow_inexact,
        dry_run=args.dry_run,
        verify=args.verify,
        max_write_rate=args.max_write_rate,
        workers=concurrency,
        processes=processes,
        warm=args.warm,
        target_minutes=args.target_minutes,
        resume=args.resume,
        archive_url=args.archive,
        fold=FoldSettings.from_args(args),
        lambda_checks=lambda_gaps.LambdaChecks.from_args(args),
        athena=(
            AthenaFolder.from_args(args, settings, archive) if args.engine == "athena" else None
        ),
    )
    if args.resume and args.strategy not in ("auto", "replay"):
        raise BadInput("--resume continues a replay restore (--strategy replay or auto)")
    existing = restore_state.existing_target(client, target)
    # An import checks the target itself: it may be its own, resumed.
    if (
        existing is not None
        and not existing.tagged
        and not args.resume
        and args.strategy != "import"
    ):
        refuse_if_exists(client, target)  # before any planning or estimating
    # A target a restore tagged goes to the replay path, which says whether it is this
    # plan's (printing the --resume command) or another's.
    if args.strategy == "replay" or args.resume or (existing is not None and existing.tagged):
        at = resolve_time(archive, source, args)
        outcome = restore_by_replay(settings, archive, source, target, at, options, client=client)
        code, written = outcome.exit_code, outcome.written
    else:
        if args.strategy == "import":
            # Exit 2 up front when no staging location can be used.
            import_strategy.staging_url(archive, args.staging, source, "-")
        at = strategy_time(client, archive, source, args)
        estimator = strategies.Estimator(
            client,
            archive,
            source,
            at,
            strategies.WriteRate.load(archive, source, args.max_write_rate),
            allow_gaps=args.allow_gaps,
            allow_inexact=args.allow_inexact,
            aws=settings,
            backup_arn=args.backup_arn,
            lambda_checks=options.lambda_checks,
            staging=args.staging,
            prefer=args.prefer,
        )
        choice = estimator.choose(args.strategy)
        print(choice.describe())
        if args.dry_run and choice.chosen.strategy != "replay":
            print("dry run: nothing was created")
            return TableRun(EXIT_OK)
        if choice.chosen.strategy == "replay":  # on a dry run: its plan, then nothing
            outcome = restore_by_replay(
                settings, archive, source, target, at, options, client=client,
                plan=choice.replay_plan,
            )  # fmt: skip
            code, written = outcome.exit_code, outcome.written
        elif choice.chosen.strategy == "import":
            code = restore_by_import(settings, archive, choice, args, options, client)
        else:
            code = restore_natively(client, archive, choice, args, options)
    if args.copy_settings and not args.dry_run:
        # After verification: TTL is among the settings, and expiring items would make the
        # comparison with the archive disagree.
        copy_after_restore(settings, archive, source, target, at)
    if written is None:  # a dry run, or a strategy that reports no count
        return TableRun(code)
    return TableRun(code, items=written.items, before=written.skipped)
