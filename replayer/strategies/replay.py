"""The replay restore: the archive's own rebuild of a table as it was at a time.

Plan (newest base valid at T + the archived log up to T, or a clear refusal), fold the archive
in DuckDB (or on Athena), create the target from the archived description of the source, warm
for the restore's write rate, write every item with parallel batch writers (resumable: progress
is saved per partition and chunk), then verify. ``replayer.commands.restore`` is the command that
picks this or a native strategy.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError

from archiver.aws.clients import AwsSettings
from archiver.aws.describe import describe_or_none
from archiver.aws.error_table import EXIT_DIFFERENCES, EXIT_OK, ArchiverError
from archiver.format import tables
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from replayer.engines import athena_engine
from replayer.engines.athena_engine import AthenaFolder
from replayer.engines.fold import Fold, FoldResult, FoldSettings
from replayer.exceptions import BadInput, Refused, TargetTableExists
from replayer.planning import lambda_gaps
from replayer.planning import plan as planning
from replayer.planning.model import Plan
from replayer.read.verify import Comparison, verify_table
from replayer.write import restore_state
from replayer.write import warm as warm_throughput
from replayer.write.batch_writers import (
    DEFAULT_CONCURRENCY,
    ClientFactory,
    PartitionJob,
    WriteFailed,
    WriteStats,
    start_fork_server,
    write_partitions,
)
from replayer.write.target_table import (
    create_table_request,
    create_target,
    set_source_capacity,
    wait_until_active,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


log = logging.getLogger(__name__)
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
        allow_inexact: inside an incremental-export window, take the uncertain keys' state
            at the window's start instead of refusing (replayer.planning.windows).
        dry_run: print the plan, the warm throughput and its cost, and stop; nothing is created.
        verify: compare the target with the folded state afterwards.
        max_write_rate: cap on items written per second, all writers together (None: no cap).
        workers: concurrent BatchWriteItem calls per writer process.
        processes: writer processes (partitions of the fold result).
        warm: create the target ready for the restore's write rate (``WarmThroughput`` or
            provisioned WCU); False keeps the source's settings as they are.
        target_minutes: the duration the warm throughput is sized for (never a pace: the
            writers start at what the created table takes).
        resume: continue into a target this same plan's restore created and partly wrote.
        items_per_process: fewer items than this per process are not worth a process (one
            process writes ~15,000 items/s; starting the fork server and a worker costs 1–2 s).
        client_factory: makes each writer's client (default: from the AWS settings).
        archive_url: the archive as the user named it (for the ``--resume`` command printed).
        fold: DuckDB resources for the fold.
        lambda_checks: how a Lambda-archived table's failed batches and stalls are found.
        athena: fold on Athena with this (``--engine athena``) instead of in DuckDB; the
            result is still loaded into the DuckDB session, for the writers and verify.
    """

    allow_gaps: bool = False
    allow_inexact: bool = False
    dry_run: bool = False
    verify: bool = True
    max_write_rate: float | None = None
    workers: int = DEFAULT_CONCURRENCY
    processes: int = 1
    warm: bool = True
    target_minutes: float = warm_throughput.DEFAULT_TARGET_MINUTES
    resume: bool = False
    items_per_process: int = 20_000
    client_factory: Callable[[], Any] | None = None
    archive_url: str | None = None
    fold: FoldSettings = field(default_factory=FoldSettings)
    lambda_checks: lambda_gaps.LambdaChecks | None = None
    athena: AthenaFolder | None = None


@dataclass
class ReplayOutcome:
    """What ``restore_by_replay`` did (``written``/``comparison`` are None on a dry run)."""

    plan: Plan
    description: dict[str, Any]
    items: int = 0
    written: WriteStats | None = None
    comparison: Comparison | None = None
    warm: warm_throughput.WarmPlan | None = None
    starting_rate: warm_throughput.StartingRate | None = None
    restore_id: str = ""

    @property
    def exit_code(self) -> int:
        if self.comparison is not None and not self.comparison.identical:
            return EXIT_DIFFERENCES
        return EXIT_OK


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

    Refusals (target exists, watermark, coverage, gaps, no base, no description, invalid
    items) happen before anything is created. With ``options.resume`` a target this plan's
    restore created (its tags say so) is continued from its saved progress.

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
    # The measured rates are rewritten at the end: a broken file stops the restore here,
    # naming it, before anything is created (as every other strategy's estimate does).
    restore_state.read_restore_stats(archive, source)
    client = client or settings.client("dynamodb")
    existing = restore_state.existing_target(client, target)
    if existing is not None and not existing.tagged:
        raise TargetTableExists(
            f"target table {target!r} already exists"
            + (
                " and carries no restore tag: --resume never writes into a table this "
                "restore did not create"
                if options.resume
                else ": restore into a new name, or delete it first"
            )
        )
    if plan is None:
        plan = planning.plan_restore(
            archive,
            source,
            at,
            allow_gaps=options.allow_gaps,
            settings=settings,
            lambda_checks=options.lambda_checks,
            allow_inexact=options.allow_inexact,
        )
    fingerprint = restore_state.plan_fingerprint(plan, keys=options.fold.keys)
    if existing is not None:
        _refuse_existing(existing, fingerprint, options, plan, archive, target)
    description = archived_table(archive, plan, client)
    outcome = ReplayOutcome(plan, description)
    with Fold(archive, options.fold) as fold:
        if options.dry_run:
            if options.athena is not None:
                options.athena.check_tables(plan)
                bound = options.athena.check_scan(plan)
                options.athena.check_from_table_creation(plan)
                say(plan.describe({"athena scan ≤": bound}))  # bytes, from the partitions in range
                say(describe_target(description, target))
                say("dry run: nothing was created (the Athena fold is not run)")
                return outcome
            say(plan.describe(fold.count_records(plan)))
            say(describe_target(description, target))
            state = fold.state_at(plan)
            warm = _warm_plan(client, description, state, options)
            say(f"items          {state.count:,}")
            say(warm.describe())
            say("dry run: nothing was created")
            outcome.warm = warm
            return outcome
        log.info(
            "folding %d change file(s)%s%s",
            len(plan.change_files),
            f" over snapshot {plan.base.snapshot_id}" if plan.base else "",
            " on Athena" if options.athena else "",
        )
        state = athena_engine.state_at(
            fold, archive, plan, tables.key_names(description["KeySchema"]), options.athena
        )
        outcome.items = state.count
        _refuse_invalid(state, description)
        warm = outcome.warm = _warm_plan(client, description, state, options)
        progress = _progress_for(archive, source, target, fingerprint, existing, state, options)
        outcome.restore_id = progress.restore_id
        base = f"snapshot {plan.base.snapshot_id}" if plan.base else "no base"
        say(
            f"restoring {source} as of {iso_ms(plan.at)} into {target}: {state.count:,} items "
            f"({base}, log from {iso_ms(plan.log_from)}; restore id {progress.restore_id})"
        )
        if plan.inexact is not None:
            say(plan.inexact.describe())
        if options.warm:
            say(warm.describe())
        parts_dir = tempfile.mkdtemp(prefix="partitions-", dir=fold.temp_directory)
        parts = state.partition_files(progress.partitions, parts_dir)
        if len(parts) > 1:
            # While the table is created (seconds on AWS); not during the fold or the
            # partitioning, whose DuckDB threads slow down a lot more than it takes.
            start_fork_server()
        if existing is None:
            request = warm_throughput.apply_to_request(
                create_table_request(description, target), warm
            )
            created = create_target(
                client,
                description,
                target,
                request=request,
                tags=restore_state.restore_tags(progress.restore_id, fingerprint),
            )
        else:
            created = wait_until_active(client, target)
            done = _already_written(parts, progress)
            say(f"resuming restore {progress.restore_id}: {done:,} items already written")
        start = outcome.starting_rate = warm_throughput.starting_rate(created, warm)
        say(start.describe(options.max_write_rate))
        try:
            outcome.written = _write(settings, target, parts, progress, start, options)
        except BaseException as exc:
            shutil.rmtree(parts_dir, ignore_errors=True)
            log.error(
                "table %s is partly written; continue with: %s",
                target,
                _resume_command(plan, target, archive, options),
            )
            if isinstance(exc, WriteFailed):
                exc.args = (
                    f"{exc}; continue with: {_resume_command(plan, target, archive, options)}",
                )
            raise
        shutil.rmtree(parts_dir, ignore_errors=True)
        written = outcome.written
        say(
            f"wrote {written.items:,} items into {target} in {written.seconds:.1f} s "
            f"({written.rate:,.0f} items/s with {written.processes} process(es); "
            f"{written.throttles} throttled, {written.retries} retried calls; "
            f"first write acknowledged after {written.startup_seconds:.1f} s"
            + (f"; {written.skipped:,} written before" if written.skipped else "")
            + ")"
        )
        _record_rate(archive, source, written, plan)
        if options.verify:
            outcome.comparison = verify_table(client, target, state)
            say(f"verify: {outcome.comparison.report('the archive', target)}")
        if outcome.comparison is None or outcome.comparison.identical:
            restore_state.clear_tags(client, restore_state.existing_target(client, target))
            progress.complete()
            if options.warm and warm.billing == "PROVISIONED":
                set_source_capacity(client, description, target)
    return outcome


def _refuse_existing(
    existing: restore_state.ExistingTarget,
    fingerprint: str,
    options: ReplayOptions,
    plan: Plan,
    archive: Archive,
    target: str,
) -> None:
    """Refuse a target table that exists, unless it is this plan's and ``--resume`` asks."""
    if existing.fingerprint != fingerprint:
        raise TargetTableExists(
            f"target table {target!r} already exists: it carries restore "
            f"{existing.restore_id} of another plan (source, time or base differ), so it is "
            "never written"
        )
    if not options.resume:
        raise TargetTableExists(
            f"target table {target!r} already exists: it is restore {existing.restore_id} "
            "of this same plan, partly written; continue it with: "
            + _resume_command(plan, target, archive, options)
        )


def _resume_command(plan: Plan, target: str, archive: Archive, options: ReplayOptions) -> str:
    keys = options.fold.keys
    return restore_state.resume_command(
        plan.table,
        target,
        options.archive_url or archive.url,
        iso_ms(plan.at),
        extra={keys.flags: ""} if keys is not None else None,
    )


def _refuse_invalid(state: FoldResult, description: Mapping[str, Any]) -> None:
    """Exit 2 before the target exists when an item could not be written."""
    types = {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]}
    key_schema = [(k["AttributeName"], types[k["AttributeName"]]) for k in description["KeySchema"]]
    reason = state.invalid_item(key_schema)
    if reason:
        raise BadInput(f"the archive's state holds an item DynamoDB would reject: {reason}; "
                       "nothing was created")  # fmt: skip


def _warm_plan(
    client: Any, description: Mapping[str, Any], state: FoldResult, options: ReplayOptions
) -> warm_throughput.WarmPlan:
    quota = (
        warm_throughput.table_write_quota(client)
        if options.warm
        else warm_throughput.DEFAULT_TABLE_WRITE_QUOTA
    )
    return warm_throughput.plan_warm(
        description,
        items=state.count,
        write_units=state.write_units(),
        target_minutes=options.target_minutes,
        quota=quota,
        warm=options.warm,
    )


def _progress_for(
    archive: Archive,
    source: str,
    target: str,
    fingerprint: str,
    existing: restore_state.ExistingTarget | None,
    state: FoldResult,
    options: ReplayOptions,
) -> restore_state.RestoreProgress:
    """The saved progress of the restore being resumed, else a new one — saved before the
    target is created, so that a resume always finds the partition count."""
    if existing is not None:
        try:
            loaded = restore_state.RestoreProgress.load(
                archive, source, existing.restore_id, fingerprint, target
            )
        except ValueError as exc:
            raise Refused(str(exc)) from None
        if loaded is not None:
            return loaded
        restore_id = existing.restore_id
    else:
        restore_id = restore_state.new_restore_id()
    wanted = max(1, options.processes)
    partitions = max(1, min(wanted, math.ceil(state.count / max(options.items_per_process, 1))))
    progress = restore_state.RestoreProgress(
        archive, source, restore_id, fingerprint, target, partitions
    )
    progress.save(force=True)
    return progress


def _already_written(parts: list[tuple[str, int]], progress: restore_state.RestoreProgress) -> int:
    """Items the saved progress counts as acknowledged."""
    return sum(progress.written_items(p, n) for p, (_, n) in enumerate(parts))


def _write(
    settings: AwsSettings,
    target: str,
    parts: list[tuple[str, int]],
    progress: restore_state.RestoreProgress,
    start: warm_throughput.StartingRate,
    options: ReplayOptions,
) -> WriteStats:
    """Write the partitions, each starting at its share of what the table takes."""
    count = len(parts)
    initial = start.items_per_second / count
    cap = options.max_write_rate / count if options.max_write_rate else None
    factory = options.client_factory or ClientFactory(settings)
    jobs = [
        PartitionJob(
            partition=p,
            path=path,
            table=target,
            skip_chunks=progress.done[p],
            skip_ahead=frozenset(progress.ahead[p]),
            concurrency=options.workers,
            initial_rate=initial,
            max_rate=cap,
            client_factory=factory,
        )
        for p, (path, _) in enumerate(parts)
    ]
    total = sum(n for _, n in parts)
    skipped = _already_written(parts, progress)
    return write_partitions(
        jobs, progress=progress, total=total, skipped=skipped, desc=f"writing {target}"
    )


def _record_rate(archive: Archive, source: str, written: WriteStats, plan: Plan) -> None:
    """Keep the measured write rate for ``--strategy auto``'s estimates (best effort)."""
    try:
        from replayer.strategies.choice import record_write_rate
    except ImportError:  # the estimator is optional for a replay restore
        return
    record_write_rate(
        archive,
        source,
        items=written.items,
        seconds=written.seconds,
        strategy="replay",
        inexact=plan.inexact.as_json() if plan.inexact is not None else None,
    )
