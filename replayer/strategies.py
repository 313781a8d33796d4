"""Restore strategies: replay from the archive, native PITR, native backup plus the log tail.

``ddb-replayer restore --strategy auto`` (the default) estimates each strategy that can
produce the table as it was at T and picks the fastest:

- **pitr** — ``RestoreTableToPointInTime``, when T is inside the table's restorable window.
  AWS restores take at least 20 minutes whatever the size; the estimate is
  ``20 min + 1 min per GiB`` of table.
- **backup** — ``RestoreTableFromBackup`` of the newest on-demand backup created at or before T
  (same table generation), then the archived log over ``(backup − 60 s, T]``: every key
  changed there is written with its state at T (its latest image, or deleted). Needs that
  range archived without gaps and T at or before the watermark. Estimate: the native restore
  plus the changed keys at the measured write rate.
- **replay** — the archive's own restore (base snapshot + log, ``replayer.restore``).
  Estimate: the items to write at the measured write rate.

The write rate is the last restore's measured rate, kept in the archive
(``_state/<table>/restore-stats.json``), else :data:`DEFAULT_WRITE_RATE`, and never more than
``--max-write-rate``. Estimates are rough: they rank strategies, they do not promise times.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

import pyarrow as pa
from botocore.exceptions import ClientError
from tqdm import tqdm

from archiver import layout
from archiver.aws import AwsSettings
from archiver.backups import Backup, describe_backup, list_backups
from archiver.errors import ArchiverError, TableNotFound, client_error_code
from archiver.pitr import PitrStatus, describe_pitr
from archiver.storage import Archive
from archiver.timefmt import as_utc, iso_ms, utcnow
from replayer import plan as planning
from replayer.errors import BadInput, Refused, ReplayError, TargetTableExists
from replayer.fold import Fold, FoldSettings
from replayer.plan import LogPlan, Plan
from replayer.rollback import changes_after
from replayer.sinks import TableSink, WriteResult
from replayer.verify import Comparison, verify_table

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "replay", "pitr", "backup")
# Ties go to the strategy the archive can verify end to end.
_PREFERENCE = {"replay": 0, "backup": 1, "pitr": 2}

DEFAULT_WRITE_RATE = 1000.0  # items/s into a new on-demand table, until a restore is measured
NATIVE_RESTORE_BASE_SECONDS = 20 * 60.0  # AWS: native restores take at least 20 minutes
NATIVE_RESTORE_SECONDS_PER_GIB = 60.0
BACKUP_MARGIN = timedelta(seconds=60)  # backups are consistent to about a minute
GIB = 1024**3
LOG_EVERY_SECONDS = 120.0  # progress lines while waiting for a native restore, off a terminal


# -- write rate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteRate:
    """Items per second a restore writes into DynamoDB, and where that figure comes from."""

    items_per_second: float
    source: str

    @classmethod
    def load(cls, archive: Archive, table: str, max_write_rate: float | None = None) -> WriteRate:
        """The last measured rate for ``table`` (else the default), capped by ``max_write_rate``."""
        stats = None
        try:
            stats = archive.read_json_or(layout.restore_stats(table))
        except Exception as exc:  # an unreadable stats file must not stop a restore
            log.debug("cannot read restore stats: %s", exc)
        if stats and float(stats.get("items_per_second") or 0) > 0:
            rate = cls(
                float(stats["items_per_second"]),
                f"measured by the {stats.get('strategy', 'last')} restore of "
                f"{stats.get('measured_at')} ({stats.get('items')} items in "
                f"{float(stats.get('seconds') or 0):.1f} s)",
            )
        else:
            rate = cls(DEFAULT_WRITE_RATE, "default (no restore measured yet)")
        if max_write_rate is not None and max_write_rate < rate.items_per_second:
            return cls(max_write_rate, f"--max-write-rate (uncapped: {rate.describe()})")
        return rate

    def describe(self) -> str:
        return f"{self.items_per_second:,.0f} items/s, {self.source}"

    def seconds_for(self, items: int) -> float:
        return items / self.items_per_second if items else 0.0


def record_write_rate(
    archive: Archive, table: str, *, items: int, seconds: float, strategy: str
) -> None:
    """Remember a restore's measured rate for later estimates (best effort: a restore with
    read-only access to the archive still succeeds). Tiny restores say little and are skipped."""
    if items < 100 or seconds <= 0:
        return
    stats = {
        "items": items,
        "seconds": round(seconds, 3),
        "items_per_second": round(items / seconds, 1),
        "strategy": strategy,
        "measured_at": iso_ms(utcnow()),
    }
    try:
        archive.write_json(layout.restore_stats(table), stats)
    except Exception as exc:
        log.warning("could not record the restore's write rate in the archive: %s", exc)


# -- estimates -------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``~45 s``, ``~21 min``, ``~3.2 h``."""
    if seconds < 90:
        return f"~{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Estimate:
    """One strategy's estimated duration, or why it cannot produce the table at T."""

    strategy: str
    seconds: float | None  # None: not possible
    reason: str
    backup: Backup | None = None

    @property
    def usable(self) -> bool:
        return self.seconds is not None

    def line(self) -> str:
        took = format_duration(self.seconds) if self.seconds is not None else "not possible"
        return f"  {self.strategy:<7} {took:<13} {self.reason}"


def native_restore_seconds(size_bytes: int | None) -> float:
    """A native (PITR or backup) restore: at least 20 minutes, growing with size."""
    return NATIVE_RESTORE_BASE_SECONDS + NATIVE_RESTORE_SECONDS_PER_GIB * (size_bytes or 0) / GIB


def estimate_pitr(pitr: PitrStatus | None, at: datetime, size_bytes: int | None) -> Estimate:
    """PITR is possible when ``at`` lies inside the restorable window right now."""
    if pitr is None:
        return Estimate("pitr", None, "the source table does not exist (PITR needs it)")
    if not pitr.enabled:
        return Estimate("pitr", None, "point-in-time recovery is not enabled on the source")
    if not pitr.covers(at):
        early = iso_ms(pitr.earliest_restorable) if pitr.earliest_restorable else "?"
        late = iso_ms(pitr.latest_restorable) if pitr.latest_restorable else "?"
        return Estimate("pitr", None, f"T is outside the PITR window {early} .. {late}")
    size = f"{(size_bytes or 0) / GIB:.2f} GiB"
    return Estimate(
        "pitr",
        native_restore_seconds(size_bytes),
        f"T is inside the PITR window; native restore of {size} (≥ 20 min)",
    )


def estimate_replay(items: int | None, rate: WriteRate, refusal: str | None = None) -> Estimate:
    """Replay writes every item alive at T."""
    if refusal is not None or items is None:
        return Estimate("replay", None, refusal or "the archive cannot rebuild T")
    return Estimate(
        "replay",
        rate.seconds_for(items),
        f"{items:,} items at {rate.describe()}",
    )


def estimate_backup(
    backup: Backup | None,
    tail_keys: int | None,
    rate: WriteRate,
    refusal: str | None = None,
) -> Estimate:
    """A backup restore plus writing each key changed in (backup − 60 s, T]."""
    if backup is None:
        return Estimate("backup", None, refusal or "no backup of this table at or before T")
    if refusal is not None or tail_keys is None:
        return Estimate(
            "backup", None, f"backup {backup.name}: {refusal or 'log tail unknown'}", backup
        )
    seconds = native_restore_seconds(backup.size_bytes) + rate.seconds_for(tail_keys)
    return Estimate(
        "backup",
        seconds,
        f"backup {backup.name} of {iso_ms(backup.created_at)} (≥ 20 min), then "
        f"{tail_keys:,} changed key(s) from the log at {rate.items_per_second:,.0f} items/s",
        backup,
    )


def choose(estimates: Sequence[Estimate], requested: str) -> tuple[Estimate, str]:
    """The estimate to act on and the reason, for ``--strategy requested``.

    Raises:
        Refused: the requested strategy (or, for ``auto``, every strategy) is not possible.
    """
    if requested != "auto":
        chosen = next(e for e in estimates if e.strategy == requested)
        if not chosen.usable:
            raise Refused(f"--strategy {requested} is not possible: {chosen.reason}")
        return chosen, f"--strategy {requested} was requested"
    usable = [e for e in estimates if e.usable]
    if not usable:
        reasons = "; ".join(f"{e.strategy}: {e.reason}" for e in estimates)
        raise Refused(f"no strategy can restore T: {reasons}")
    usable.sort(key=lambda e: (e.seconds or 0.0, _PREFERENCE[e.strategy]))
    chosen = usable[0]
    others = [f"{e.strategy} {format_duration(e.seconds or 0.0)}" for e in usable[1:] if e.seconds]
    versus = f" (vs {', '.join(others)})" if others else " (the only possible strategy)"
    return chosen, f"fastest{versus}"


def describe_choice(estimates: Sequence[Estimate], chosen: Estimate, reason: str) -> str:
    lines = ["estimates:", *(e.line() for e in estimates)]
    lines.append(f"strategy: {chosen.strategy} — {reason}")
    return "\n".join(lines)


# -- backups ---------------------------------------------------------------------------------


def usable_backups(
    ddb: Any, table: str, at: datetime, *, generation_created_at: datetime | None
) -> list[Backup]:
    """AVAILABLE backups of ``table`` created at or before ``at`` by the table generation
    alive at ``at`` (created after that generation's table), oldest first."""
    backups = list_backups(ddb, table, created_before=at)
    usable = [
        b
        for b in backups
        if b.status == "AVAILABLE"
        and ":dynamodb:" in b.arn  # AWS Backup recovery points restore through AWS Backup
        and (generation_created_at is None or b.created_at >= as_utc(generation_created_at))
    ]
    return usable


# -- native restores -------------------------------------------------------------------------


def _translate(exc: ClientError, what: str, target: str) -> ReplayError:
    code = client_error_code(exc)
    message = exc.response.get("Error", {}).get("Message", "")
    err: ReplayError
    if code in {"TableAlreadyExistsException", "TableInUseException"}:
        err = TargetTableExists(f"target table {target!r} already exists")
    elif code in {
        "PointInTimeRecoveryUnavailableException",
        "InvalidRestoreTimeException",
        "ContinuousBackupsUnavailableException",
    }:
        err = Refused(f"{what}: {code}: {message}")
    elif code in {"BackupNotFoundException", "SourceTableNotFoundException", "ValidationException"}:
        err = BadInput(f"{what}: {code}: {message}")
    else:
        err = ReplayError(f"{what}: {code or type(exc).__name__}: {message}")
    err.__cause__ = exc
    return err


def start_pitr_restore(
    ddb: Any,
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
        response: dict[str, Any] = ddb.restore_table_to_point_in_time(**kwargs)
    except ClientError as exc:
        raise _translate(exc, f"restore {source_table} to a point in time", target_table) from exc
    return response


def start_backup_restore(
    ddb: Any, *, backup_arn: str, target_table: str, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``RestoreTableFromBackup`` into a new table."""
    try:
        response: dict[str, Any] = ddb.restore_table_from_backup(
            TargetTableName=target_table, BackupArn=backup_arn, **(overrides or {})
        )
    except ClientError as exc:
        raise _translate(exc, f"restore backup {backup_arn}", target_table) from exc
    return response


def wait_until_active(
    ddb: Any,
    table: str,
    *,
    poll_seconds: float = 15.0,
    timeout_seconds: float = 24 * 3600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll ``DescribeTable`` until the table and its indexes are ACTIVE, showing progress."""
    started = time.monotonic()
    logged = 0.0
    with tqdm(
        total=None,
        desc=f"restoring {table}",
        bar_format="{desc}: {postfix} [{elapsed}]",
        file=sys.stderr,
        disable=None,
    ) as bar:
        while True:
            try:
                description: dict[str, Any] = ddb.describe_table(TableName=table)["Table"]
            except ClientError as exc:
                if client_error_code(exc) != "ResourceNotFoundException":
                    raise
                description = {"TableStatus": "CREATING"}  # not visible yet
            status = str(description.get("TableStatus"))
            indexes = [
                str(gsi.get("IndexStatus"))
                for gsi in description.get("GlobalSecondaryIndexes") or []
            ]
            state = status + (f", indexes {'/'.join(indexes)}" if indexes else "")
            bar.set_postfix_str(state)
            if status == "ACTIVE" and all(s == "ACTIVE" for s in indexes):
                return description
            elapsed = time.monotonic() - started
            if bar.disable and elapsed >= logged + LOG_EVERY_SECONDS:
                # No terminal for the bar (a log, a pipe): a line now and then instead.
                logged = elapsed
                log.info("waiting for %s: %s after %.0f min", table, state, elapsed / 60)
            if status not in ("CREATING", "UPDATING"):
                raise ReplayError(f"restored table {table!r} is {status}, not ACTIVE")
            if elapsed > timeout_seconds:
                raise ReplayError(
                    f"restored table {table!r} still {status} after {timeout_seconds:.0f} s"
                )
            sleep(poll_seconds)


# -- estimating every strategy ---------------------------------------------------------------


@dataclass
class Choice:
    """The estimates, the strategy picked, and what it needs to run."""

    at: datetime
    estimates: list[Estimate]
    chosen: Estimate
    reason: str
    replay_plan: Plan | None = None
    tail_plan: LogPlan | None = None
    tail_keys: int | None = None

    def describe(self) -> str:
        return describe_choice(self.estimates, self.chosen, self.reason)


@dataclass
class Estimator:
    """Estimates each strategy for restoring ``source`` as at ``at``. Clients passed in."""

    ddb: Any
    archive: Archive
    source: str
    at: datetime
    rate: WriteRate
    allow_gaps: bool = False
    aws: AwsSettings | None = None
    backup_arn: str | None = None

    def replay(self) -> tuple[Estimate, Plan | None]:
        try:
            plan = planning.plan_restore(
                self.archive, self.source, self.at, allow_gaps=self.allow_gaps, settings=self.aws
            )
            with Fold(self.archive) as fold:
                counts = fold.count_records(plan)
        except ReplayError as exc:
            return estimate_replay(None, self.rate, str(exc)), None
        # An upper bound: keys changed in the log may also be in the base, or deleted.
        items = (plan.base.item_count if plan.base else 0) + counts["keys changed"]
        return estimate_replay(items, self.rate), plan

    def pitr(self) -> Estimate:
        try:
            status = describe_pitr(self.ddb, self.source)
            size = self.ddb.describe_table(TableName=self.source)["Table"].get("TableSizeBytes")
        except TableNotFound:
            return estimate_pitr(None, self.at, None)
        except ClientError as exc:
            return Estimate("pitr", None, f"cannot read the source's PITR status ({exc})")
        except ArchiverError as exc:
            return Estimate("pitr", None, f"cannot read the source's PITR status ({exc})")
        return estimate_pitr(status, self.at, size)

    def pick_backup(self, generation_created_at: datetime | None) -> Backup | None:
        if self.backup_arn:
            backup = describe_backup(self.ddb, self.backup_arn)
            if backup.table_name and backup.table_name != self.source:
                raise BadInput(
                    f"--backup-arn {self.backup_arn} is a backup of {backup.table_name!r}, "
                    f"not of {self.source!r}"
                )
            if backup.created_at > self.at:
                raise Refused(
                    f"backup {backup.name} was created at {iso_ms(backup.created_at)}, after "
                    f"the restore time {iso_ms(self.at)}: it holds later changes"
                )
            return backup
        found = usable_backups(
            self.ddb, self.source, self.at, generation_created_at=generation_created_at
        )
        return found[-1] if found else None

    def backup(self) -> tuple[Estimate, LogPlan | None, int | None]:
        try:
            generation = planning.generation_at(self.archive, self.source, self.at)
        except ReplayError as exc:
            generation = None
            why_no_log: str | None = str(exc)
        else:
            why_no_log = None
        try:
            backup = self.pick_backup(generation.table_created_at if generation else None)
        except (ReplayError, ArchiverError) as exc:
            return Estimate("backup", None, str(exc)), None, None
        if backup is None:
            return estimate_backup(None, None, self.rate), None, None
        if generation is None:
            return estimate_backup(backup, None, self.rate, why_no_log), None, None
        try:
            tail = planning.plan_log(
                self.archive,
                self.source,
                backup.created_at - BACKUP_MARGIN,
                self.at,
                table_id=generation.table_id,
                allow_gaps=self.allow_gaps,
            )
            with Fold(self.archive) as fold:
                keys = fold.log_changes(tail).count
        except ReplayError as exc:
            return estimate_backup(backup, None, self.rate, f"log tail: {exc}"), None, None
        return estimate_backup(backup, keys, self.rate), tail, keys

    def choose(self, requested: str) -> Choice:
        """Estimate what ``requested`` needs (``auto``: everything) and pick."""
        estimates: list[Estimate] = []
        replay_plan = tail_plan = None
        tail_keys = None
        if requested in ("auto", "replay"):
            estimate, replay_plan = self.replay()
            estimates.append(estimate)
        if requested in ("auto", "backup"):
            estimate, tail_plan, tail_keys = self.backup()
            estimates.append(estimate)
        if requested in ("auto", "pitr"):
            estimates.append(self.pitr())
        chosen, reason = choose(estimates, requested)
        return Choice(self.at, estimates, chosen, reason, replay_plan, tail_plan, tail_keys)


# -- running a native strategy ---------------------------------------------------------------


@dataclass
class NativeOutcome:
    """What a native restore did."""

    strategy: str
    description: dict[str, Any]
    tail: WriteResult | None = None
    corrections: int = 0  # keys changed just after T reset from their old image (see below)


def restore_native(
    ddb: Any,
    archive: Archive,
    choice: Choice,
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
    description = wait_until_active(ddb, target, poll_seconds=poll_seconds)
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
            record_write_rate(
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
    until = backup.created_at + BACKUP_MARGIN
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
    ddb: Any,
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
    client: Any,
    archive: Archive,
    source: str,
    target: str,
    at: datetime,
    *,
    allow_gaps: bool = False,
    settings: FoldSettings | None = None,
    say: Callable[[str], None] = print,
) -> Comparison | None:
    """Compare a natively restored table with the archive's state at ``at``.

    Returns None (after saying why) when the archive cannot rebuild ``at`` — PITR is often
    chosen exactly because the archive has no base for it.
    """
    try:
        plan = planning.plan_restore(archive, source, at, allow_gaps=allow_gaps)
    except Refused as exc:
        say(f"verify: skipped: the archive cannot rebuild {iso_ms(at)} ({exc})")
        return None
    with Fold(archive, settings) as fold:
        comparison = verify_table(client, target, fold.state_at(plan))
    say(f"verify: {comparison.report('the archive', target)}")
    return comparison
