"""Run a native restore — PITR or an on-demand backup — and verify it against the archive.

The strategy to run, and what it needs, is chosen in :mod:`replayer.strategies.choice`. Here the
native restore is started and waited for until the new table and its indexes are ACTIVE; for
``backup`` the archived log over ``(backup − 60 s, T]`` is then written over the restored
table (every key changed there gets its latest image at or before T, or is deleted), and keys
changed only in ``(T, backup + 60 s]`` are reset to their state at T, since the backup may
already hold such a change. :func:`verify_native` compares the result with the archive's own
state at T when the archive can rebuild it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from botocore.exceptions import ClientError

from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms
from archiver.native.backups import Backup
from replayer.engines.fold import Fold, FoldSettings
from replayer.exceptions import Refused, ReplayError, replay_error
from replayer.planning import lambda_gaps
from replayer.planning import plan as planning
from replayer.planning.model import LogPlan
from replayer.read.verify import Comparison, verify_table
from replayer.rollback.decisions import changes_after
from replayer.strategies import choice as strategies
from replayer.write.sinks import TableSink, WriteResult
from replayer.write.target_table import wait_until_active

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)


# -- native restores -------------------------------------------------------------------------


def start_pitr_restore(
    ddb: DynamoDBClient,
    *,
    source_table: str,
    target_table: str,
    at: datetime | None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``RestoreTableToPointInTime`` to ``at`` (``None``: the latest restorable time)."""
    kwargs: dict[str, Any] = {
        "SourceTableName": source_table,
        "TargetTableName": target_table,
        **(overrides or {}),
    }
    if at is None:
        kwargs["UseLatestRestorableTime"] = True
    else:
        kwargs["RestoreDateTime"] = as_utc(at)
    try:
        response = dict(ddb.restore_table_to_point_in_time(**kwargs))
    except ClientError as exc:
        raise replay_error(exc, f"restore {source_table} into {target_table!r}") from exc
    return response


def start_backup_restore(
    ddb: DynamoDBClient,
    *,
    backup_arn: str,
    target_table: str,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``RestoreTableFromBackup`` into a new table."""
    try:
        response = dict(
            ddb.restore_table_from_backup(
                TargetTableName=target_table, BackupArn=backup_arn, **(overrides or {})
            )
        )
    except ClientError as exc:
        raise replay_error(exc, f"restore backup {backup_arn} into {target_table!r}") from exc
    return response


# -- running a native strategy ---------------------------------------------------------------


@dataclass
class NativeOutcome:
    """What a native restore did."""

    strategy: str
    description: dict[str, Any]
    tail: WriteResult | None = None
    corrections: int = 0  # keys changed just after T reset from their old image (see below)


def restore_native(
    ddb: DynamoDBClient,
    archive: Archive,
    choice: strategies.Choice,
    *,
    source: str,
    target: str,
    max_write_rate: float | None = None,
    poll_seconds: float = 15.0,
) -> NativeOutcome:
    """Run the chosen native strategy (``pitr`` or ``backup``) into the new table ``target``.

    Waits for the table to become ACTIVE (with progress), then for ``backup`` applies the log
    tail: every key changed in ``(backup − 60 s, T]`` gets its latest image at or before T, or
    is deleted.
    """
    strategy = choice.chosen.strategy
    if strategy == "pitr":
        log.info("restoring %s to %s with point-in-time recovery", source, iso_ms(choice.at))
        start_pitr_restore(ddb, source_table=source, target_table=target, at=choice.at)
    elif strategy == "backup":
        backup = choice.chosen.backup
        if backup is None:
            raise ReplayError("the backup strategy was chosen without a backup")
        log.info("restoring backup %s (%s) into %s", backup.name, backup.arn, target)
        start_backup_restore(ddb, backup_arn=backup.arn, target_table=target)
    else:
        raise ReplayError(f"{strategy} is not a native strategy")
    description = wait_until_active(
        ddb, target, poll_seconds=poll_seconds, timeout_seconds=24 * 3600.0, appearing=True
    )
    outcome = NativeOutcome(strategy, description)
    if strategy == "backup" and choice.tail_plan is not None and choice.chosen.backup:
        outcome.tail, outcome.corrections = apply_backup_tail(
            ddb,
            archive,
            choice.tail_plan,
            choice.chosen.backup,
            target=target,
            max_write_rate=max_write_rate,
        )
        if outcome.tail.items + outcome.tail.deletes:
            strategies.record_write_rate(
                archive,
                source,
                items=outcome.tail.items + outcome.tail.deletes,
                seconds=outcome.tail.seconds,
                strategy="backup log tail",
            )
    return outcome


def after_t_corrections(
    archive: Archive, tail: LogPlan, backup: Backup, skip: set[str]
) -> dict[str, str | None]:
    """States at T of keys changed only in ``(T, backup + 60 s]``.

    A backup is consistent to about a minute, so when T is that close after it, the backup
    may already hold a change made after T. The first change after T of such a key carries
    its state at T as its old image (absent for an INSERT); rewriting it is harmless when the
    backup did not hold the change. A ``NEW_IMAGE`` stream has no old images: those keys are
    left as the backup has them (logged).
    """
    until = backup.created_at + strategies.BACKUP_MARGIN
    if tail.until >= until:
        return {}
    states: dict[str, str | None] = {}
    unknown = 0
    for history in changes_after(archive, tail.table, tail.table_id, tail.until, until):
        if history.keys in skip:
            continue
        if history.state_at_t_known:
            states[history.keys] = history.state_at_t
        else:
            unknown += 1
    if unknown:
        log.warning(
            "%d key(s) changed within 60 s after the backup but after T; the stream has no "
            "old images, so they are left as the backup holds them",
            unknown,
        )
    return states


def apply_backup_tail(
    ddb: DynamoDBClient,
    archive: Archive,
    tail: LogPlan,
    backup: Backup,
    *,
    target: str,
    max_write_rate: float | None = None,
) -> tuple[WriteResult, int]:
    """Write the log tail over a table restored from ``backup``; returns (result, corrections)."""
    sink = TableSink(ddb, target, None, max_write_rate=max_write_rate)
    sink.prepare()  # the table exists: only waits until it is ACTIVE
    with Fold(archive) as fold:
        changes = fold.log_changes(tail)
        keys = {str(k) for (k,) in fold.con.execute(f"SELECT keys FROM {changes.table}").fetchall()}
        corrections = after_t_corrections(archive, tail, backup, keys)
        extra = pa.RecordBatch.from_pydict(
            {"keys": list(corrections), "item": list(corrections.values())}, schema=_ROWS
        )
        log.info(
            "applying the log over (%s, %s]: %d key(s) changed%s",
            iso_ms(tail.after),
            iso_ms(tail.until),
            changes.count,
            f", {len(corrections)} corrected from just after T" if corrections else "",
        )
        result = sink.write(
            chain(changes.batches(), [extra]), total=changes.count + len(corrections)
        )
    return result, len(corrections)


_ROWS = pa.schema([pa.field("keys", pa.string()), pa.field("item", pa.string())])


def verify_native(
    client: DynamoDBClient,
    archive: Archive,
    source: str,
    target: str,
    at: datetime,
    *,
    allow_gaps: bool = False,
    settings: FoldSettings | None = None,
    say: Callable[[str], None] = print,
    lambda_checks: lambda_gaps.LambdaChecks | None = None,
) -> Comparison | None:
    """Compare a natively restored table with the archive's state at ``at``.

    Returns None (after saying why) when the archive cannot rebuild ``at`` — PITR is often
    chosen exactly because the archive has no base for it.
    """
    try:
        plan = planning.plan_restore(
            archive, source, at, allow_gaps=allow_gaps, lambda_checks=lambda_checks
        )
    except Refused as exc:
        say(f"verify: skipped: the archive cannot rebuild {iso_ms(at)} ({exc})")
        return None
    with Fold(archive, settings) as fold:
        comparison = verify_table(client, target, fold.state_at(plan))
    say(f"verify: {comparison.report('the archive', target)}")
    return comparison
