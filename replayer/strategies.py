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

This module estimates and chooses; running a chosen native strategy (``pitr``, ``backup``)
is :mod:`replayer.native_restore`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from archiver.aws import AwsSettings
from archiver.backups import Backup, describe_backup, list_backups
from archiver.describe import describe_or_none
from archiver.errors import ArchiverError, TableNotFound
from archiver.format import layout, statefiles
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms, utcnow
from archiver.pitr import PitrStatus, describe_pitr
from replayer import lambda_gaps
from replayer import plan as planning
from replayer.errors import BadInput, Refused, ReplayError
from replayer.fold import Fold
from replayer.plan import LogPlan, Plan

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "replay", "pitr", "backup")
# Ties go to the strategy the archive can verify end to end.
_PREFERENCE = {"replay": 0, "backup": 1, "pitr": 2}

DEFAULT_WRITE_RATE = 1000.0  # items/s into a new on-demand table, until a restore is measured
NATIVE_RESTORE_BASE_SECONDS = 20 * 60.0  # AWS: native restores take at least 20 minutes
NATIVE_RESTORE_SECONDS_PER_GIB = 60.0
BACKUP_MARGIN = timedelta(seconds=60)  # backups are consistent to about a minute
GIB = 1024**3


# -- write rate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteRate:
    """Items per second a restore writes into DynamoDB, and where that figure comes from."""

    items_per_second: float
    source: str

    @classmethod
    def load(cls, archive: Archive, table: str, max_write_rate: float | None = None) -> WriteRate:
        """The last measured rate for ``table`` (else the default), capped by ``max_write_rate``."""
        # A broken stats file is an error naming it (and is never overwritten by this restore).
        stats = statefiles.read_json(
            archive,
            layout.restore_stats(table),
            statefiles.RESTORE_STATS,
            "restore-stats.json",
            missing_ok=True,
        )
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
    lambda_checks: lambda_gaps.LambdaChecks | None = None

    def replay(self) -> tuple[Estimate, Plan | None]:
        try:
            plan = planning.plan_restore(
                self.archive,
                self.source,
                self.at,
                allow_gaps=self.allow_gaps,
                settings=self.aws,
                lambda_checks=self.lambda_checks,
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
            live = describe_or_none(self.ddb, self.source)
        except TableNotFound:
            return estimate_pitr(None, self.at, None)
        except ArchiverError as exc:
            return Estimate("pitr", None, f"cannot read the source's PITR status ({exc})")
        if live is None:
            return estimate_pitr(None, self.at, None)
        size = live.get("TableSizeBytes")
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
                lambda_checks=self.lambda_checks,
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
