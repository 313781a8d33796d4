"""Rebuild a table as it was at a time, into a new table.

``ddb-replayer restore`` picks a strategy (``--strategy auto``, the default, estimates each and
takes the fastest, printing the estimates and why):

- replay: plan (newest base valid at T + the archived log up to T, or a clear refusal), fold
  the archive in DuckDB, create the target from the archived description of the source (keys,
  indexes, billing and capacity, SSE, table class, deletion protection), write every item
  with parallel BatchWriteItem calls;
- pitr: DynamoDB's RestoreTableToPointInTime, when T is inside the PITR window;
- backup: RestoreTableFromBackup of the newest backup at or before T (or --backup-arn), then
  the archived log over (backup - 60 s, T] written over it.

The result is verified item by item against the archive (when the archive can rebuild T), and
--copy-settings then copies tags, TTL, stream, PITR, auto scaling, alarms and resource policy.

Exit codes: 0 done (and verified); 2 bad input; 3 the target differs from the archive's state
(verify); 4 refused by a safety check, with nothing created (the target exists, T after the
watermark, the log not covering the range or meeting a recorded gap, no usable base, the
requested strategy not possible at T).
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError

from archiver.aws import AwsSettings
from archiver.cliutil import add_archive_argument, add_table_argument, positive_float, positive_int
from archiver.describe import describe_or_none
from archiver.errors import EXIT_DIFFERENCES, EXIT_OK, ArchiverError
from archiver.format import tables
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_time
from archiver.pitr import describe_pitr
from replayer import lambda_gaps, native_restore, strategies
from replayer import plan as planning
from replayer.errors import BadInput, Refused
from replayer.fold import Fold, FoldSettings, add_fold_arguments
from replayer.plan import Plan
from replayer.settings_copy import copy_after_restore
from replayer.sinks import DEFAULT_WORKERS, TableSink, WriteResult
from replayer.target_table import create_table_request, refuse_if_exists
from replayer.verify import Comparison, verify_table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

STRATEGIES = strategies.STRATEGIES
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


def check_table_name(name: str) -> None:
    """Refuse a target name DynamoDB would reject — before any work is done (exit 2)."""
    if not _TABLE_NAME.match(name):
        raise BadInput(
            f"{name!r} is not a valid table name: 3 to 255 letters, digits, '_', '-' or '.'"
        )


@dataclass(frozen=True)
class ReplayOptions:
    """How ``restore_by_replay`` runs.

    Attributes:
        allow_gaps: restore across recorded gaps in the log (each is warned about).
        dry_run: print the plan and stop; nothing is created.
        verify: compare the target with the folded state afterwards.
        max_write_rate: cap on items written per second (None: no cap).
        workers: concurrent BatchWriteItem calls.
        fold: DuckDB resources for the fold.
        lambda_checks: how a Lambda-archived table's failed batches and stalls are found.
    """

    allow_gaps: bool = False
    dry_run: bool = False
    verify: bool = True
    max_write_rate: float | None = None
    workers: int = DEFAULT_WORKERS
    fold: FoldSettings = field(default_factory=FoldSettings)
    lambda_checks: lambda_gaps.LambdaChecks | None = None


@dataclass
class ReplayOutcome:
    """What ``restore_by_replay`` did (``written``/``comparison`` are None on a dry run)."""

    plan: Plan
    description: dict[str, Any]
    items: int = 0
    written: WriteResult | None = None
    comparison: Comparison | None = None

    @property
    def exit_code(self) -> int:
        if self.comparison is not None and not self.comparison.identical:
            return EXIT_DIFFERENCES
        return EXIT_OK


def resolve_time(archive: Archive, table: str, args: argparse.Namespace) -> datetime:
    """``--restore-date-time`` parsed (exit 2 when malformed), or the watermark for
    ``--use-latest-restorable-time``."""
    if args.use_latest_restorable_time:
        return planning.latest_restorable_time(archive, table)
    return parse_time(args.restore_date_time)


def archived_table(
    archive: Archive, plan: Plan, client: DynamoDBClient | None = None
) -> dict[str, Any]:
    """The source table's ``DescribeTable`` ``Table`` in force at ``plan.at`` (its generation).

    Falls back to the live table when the archive holds no description of this generation
    but the live table *is* that generation.

    Raises:
        Refused: no description of the generation alive at T is known.
    """
    doc = tables.description_at(archive, plan.table, plan.at, plan.table_id)
    if doc is not None:
        table: dict[str, Any] = doc["Table"]
        return table
    if client is not None:
        try:
            live = describe_or_none(client, plan.table) or {}
        except (ArchiverError, BotoCoreError) as exc:
            # Unreadable is not absent: say so, then refuse below as for an absent table.
            log.warning(
                "DescribeTable %s failed (%s): the live table cannot stand in for the "
                "archive's missing description",
                plan.table,
                getattr(exc, "code", "") or type(exc).__name__,
            )
            live = {}
        if live and tables.table_id_of(live) == plan.table_id:
            log.warning(
                "the archive holds no description of %s; creating the target like the live table",
                plan.table,
            )
            return live
    raise Refused(
        f"the archive holds no description of table {plan.table!r} (generation "
        f"{plan.table_id}), so the target's keys and indexes are unknown: nothing was created"
    )


def describe_target(table: dict[str, Any], target: str) -> str:
    """One line on the table that will be created."""
    request = create_table_request(table, target)
    keys = ", ".join(f"{k['AttributeName']} ({k['KeyType']})" for k in request["KeySchema"])
    parts = [f"target         {target}: keys {keys}, {request['BillingMode']}"]
    gsis = [g["IndexName"] for g in request.get("GlobalSecondaryIndexes", [])]
    lsis = [i["IndexName"] for i in request.get("LocalSecondaryIndexes", [])]
    if gsis:
        parts.append(f"GSIs {', '.join(gsis)}")
    if lsis:
        parts.append(f"LSIs {', '.join(lsis)}")
    return ", ".join(parts)


def restore_by_replay(
    settings: AwsSettings,
    archive: Archive,
    source: str,
    target: str,
    at: datetime,
    options: ReplayOptions | None = None,
    *,
    client: DynamoDBClient | None = None,
    plan: Plan | None = None,
    say: Callable[[str], None] = print,
) -> ReplayOutcome:
    """Rebuild ``source`` as it was at ``at`` into the new table ``target``, from the archive.

    Refusals (target exists, watermark, coverage, gaps, no base, no description) happen before
    anything is created.

    Args:
        settings: AWS settings (for clients and native export conversion).
        archive: the archive root.
        source: the archived table name.
        target: the table to create.
        at: the restore time (inclusive).
        options: see :class:`ReplayOptions`.
        client: a boto3 DynamoDB client (default: one from ``settings``).
        plan: a plan made already (``--strategy auto`` estimates with one).
        say: where progress lines go (stdout by default).
    """
    options = options or ReplayOptions()
    check_table_name(target)
    client = client or settings.client("dynamodb")
    refuse_if_exists(client, target)
    if plan is None:
        plan = planning.plan_restore(
            archive,
            source,
            at,
            allow_gaps=options.allow_gaps,
            settings=settings,
            lambda_checks=options.lambda_checks,
        )
    description = archived_table(archive, plan, client)
    outcome = ReplayOutcome(plan, description)
    with Fold(archive, options.fold) as fold:
        if options.dry_run:
            say(plan.describe(fold.count_records(plan)))
            say(describe_target(description, target))
            say("dry run: nothing was created")
            return outcome
        log.info(
            "folding %d change file(s)%s",
            len(plan.change_files),
            f" over snapshot {plan.base.snapshot_id}" if plan.base else "",
        )
        state = fold.state_at(plan)
        outcome.items = state.count
        base = f"snapshot {plan.base.snapshot_id}" if plan.base else "no base"
        say(
            f"restoring {source} as of {iso_ms(plan.at)} into {target}: {state.count:,} items "
            f"({base}, log from {iso_ms(plan.log_from)})"
        )
        sink = TableSink(
            client,
            target,
            description,
            max_write_rate=options.max_write_rate,
            workers=options.workers,
        )
        sink.prepare()
        try:
            outcome.written = sink.write(state.batches(), total=state.count)
        except BaseException:
            log.error(
                "table %s was created but not completely written: delete it before retrying",
                target,
            )
            raise
        say(
            f"wrote {outcome.written.items:,} items into {target} in "
            f"{outcome.written.seconds:.1f} s ({outcome.written.rate:,.0f} items/s"
            + (f", {sink.retries} retried calls" if sink.retries else "")
            + ")"
        )
        _record_rate(archive, source, outcome.written)
        if options.verify:
            outcome.comparison = verify_table(client, target, state)
            say(f"verify: {outcome.comparison.report('the archive', target)}")
    return outcome


def _record_rate(archive: Archive, source: str, written: WriteResult) -> None:
    """Keep the measured write rate for ``--strategy auto``'s estimates (best effort)."""
    try:
        from replayer.strategies import record_write_rate
    except ImportError:  # the estimator is optional for a replay restore
        return
    record_write_rate(
        archive, source, items=written.items, seconds=written.seconds, strategy="replay"
    )


# -- CLI ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the archived table", flag="--source-table-name")
    add_table_argument(
        parser, "the new table to create (must not exist)", flag="--target-table-name"
    )
    add_archive_argument(parser)
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--restore-date-time",
        help="the time to restore to, inclusive: ISO 8601 with a zone (2026-01-31T12:00:00Z) "
        "or epoch seconds (1769860800.5)",
    )
    when.add_argument(
        "--use-latest-restorable-time",
        action="store_true",
        help="restore to the watermark: the latest instant up to which every change is "
        "archived (with --strategy pitr: PITR's LatestRestorableDateTime)",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="auto",
        help="replay: from the archive (base snapshot + change log); pitr / backup: native "
        "restores; auto: the fastest correct one",
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
    parser.add_argument(
        "--allow-gaps",
        action="store_true",
        help="restore even across a recorded gap in the log; the changes in the gap are "
        "missing from the result (warned about loudly)",
    )
    lambda_gaps.add_arguments(parser)
    parser.add_argument(
        "--write-workers",
        type=positive_int,
        default=DEFAULT_WORKERS,
        help="concurrent BatchWriteItem calls",
    )
    add_fold_arguments(parser)


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


def main(args: argparse.Namespace) -> int:
    if args.backup_arn and args.strategy not in ("auto", "backup"):
        raise BadInput("--backup-arn goes with --strategy backup (or auto)")
    source, target = args.source_table_name, args.target_table_name
    check_table_name(target)
    settings = AwsSettings.from_args(args)
    archive = Archive.open(args.archive, endpoint_url=settings.endpoint_url)
    client = settings.client("dynamodb")
    options = ReplayOptions(
        allow_gaps=args.allow_gaps,
        dry_run=args.dry_run,
        verify=args.verify,
        max_write_rate=args.max_write_rate,
        workers=args.write_workers,
        fold=FoldSettings.from_args(args),
        lambda_checks=lambda_gaps.LambdaChecks.from_args(args),
    )
    if args.strategy == "replay":
        at = resolve_time(archive, source, args)
        outcome = restore_by_replay(settings, archive, source, target, at, options, client=client)
        code = outcome.exit_code
    else:
        refuse_if_exists(client, target)
        at = strategy_time(client, archive, source, args)
        estimator = strategies.Estimator(
            client,
            archive,
            source,
            at,
            strategies.WriteRate.load(archive, source, args.max_write_rate),
            allow_gaps=args.allow_gaps,
            aws=settings,
            backup_arn=args.backup_arn,
            lambda_checks=options.lambda_checks,
        )
        choice = estimator.choose(args.strategy)
        print(choice.describe())
        if args.dry_run and choice.chosen.strategy != "replay":
            print("dry run: nothing was created")
            return EXIT_OK
        if choice.chosen.strategy == "replay":  # on a dry run: its plan, then nothing
            outcome = restore_by_replay(
                settings, archive, source, target, at, options, client=client,
                plan=choice.replay_plan,
            )  # fmt: skip
            code = outcome.exit_code
        else:
            code = restore_natively(client, archive, choice, args, options)
    if args.copy_settings and not args.dry_run:
        # After verification: TTL is among the settings, and expiring items would make the
        # comparison with the archive disagree.
        copy_after_restore(settings, archive, source, target, at)
    return code
