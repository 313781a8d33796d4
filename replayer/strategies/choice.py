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
- **replay** — the archive's own restore (base snapshot + log, ``replayer.strategies.replay``).
  Estimate: the items to write at the measured write rate.
- **import** — the same fold staged in S3 and loaded by ``ImportTable``
  (``replayer.strategies.import_table``). Not for a source with LSIs, and a local archive needs
  ``--staging``. Estimate: :class:`replayer.strategies.import_model.ImportModel` over the staged
  size.

Each estimate also has a cost, from the list prices in :mod:`replayer.strategies.costs`; ``--prefer
cost`` picks the cheapest usable strategy instead of the fastest (the other figure breaks ties).

The write rate is the last restore's measured rate, kept in the archive
(``_state/<table>/restore-stats.json``), else :data:`DEFAULT_WRITE_RATE`, and never more than
``--max-write-rate``. Estimates are rough: they rank strategies, they do not promise times.

This module estimates and chooses; running a chosen native strategy (``pitr``, ``backup``)
is :mod:`replayer.strategies.native_restore`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from archiver.aws.clients import AwsSettings
from archiver.aws.describe import describe_or_none
from archiver.aws.error_table import ArchiverError, TableNotFound
from archiver.format import tables
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms, utcnow
from archiver.native.backups import Backup, describe_backup, list_backups
from archiver.native.pitr import PitrStatus, describe_pitr
from replayer.engines.fold import Fold
from replayer.exceptions import BadInput, Refused, ReplayError
from replayer.planning import lambda_gaps
from replayer.planning import plan as planning
from replayer.planning.model import LogPlan, Plan
from replayer.strategies import costs as pricing
from replayer.strategies.import_model import ImportModel
from replayer.strategies.import_table import lsi_refusal, staging_url
from replayer.write.restore_state import read_restore_stats, update_restore_stats

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "replay", "import", "pitr", "backup")
PREFER = ("time", "cost")
# Ties go to the strategies the archive can verify end to end.
_PREFERENCE = {"replay": 0, "import": 1, "backup": 2, "pitr": 3}

DEFAULT_WRITE_RATE = 1000.0  # items/s into a new on-demand table, until a restore is measured
NATIVE_RESTORE_BASE_SECONDS = 20 * 60.0  # AWS: native restores take at least 20 minutes
NATIVE_RESTORE_SECONDS_PER_GIB = 60.0
BACKUP_MARGIN = timedelta(seconds=60)  # backups are consistent to about a minute
GIB = 1024**3
DEFAULT_ITEM_BYTES = 1024  # when the archived description has no size (an empty table)


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
        stats = read_restore_stats(archive, table)
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
    archive: Archive,
    table: str,
    *,
    items: int,
    seconds: float,
    strategy: str,
    inexact: Mapping[str, Any] | None = None,
) -> None:
    """Remember a restore's measured rate for later estimates (best effort: a restore with
    read-only access to the archive still succeeds). Tiny restores say little about the rate
    and leave it as it was; an inexact restore (``--allow-inexact``) is noted in any case."""
    if (items < 100 or seconds <= 0) and inexact is None:
        return

    def update(kept: dict[str, Any]) -> dict[str, Any]:
        if items < 100 or seconds <= 0:
            # Only the note of an inexact restore is new; the measured rate stays as it was.
            stats = dict(kept)
        else:
            stats = {
                # What else the file keeps (earlier imports' sizes and times) stays.
                **({"imports": kept["imports"]} if "imports" in kept else {}),
                "items": items,
                "seconds": round(seconds, 3),
                "items_per_second": round(items / seconds, 1),
                "strategy": strategy,
                "measured_at": iso_ms(utcnow()),
            }
        if inexact is not None:
            stats["inexact"] = dict(inexact)
        return stats

    update_restore_stats(archive, table, update)


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
    """One strategy's estimated duration and cost, or why it cannot produce the table at T."""

    strategy: str
    seconds: float | None  # None: not possible
    reason: str
    backup: Backup | None = None
    cost: float | None = None  # USD at list prices (replayer.strategies.costs); None: unknown

    @property
    def usable(self) -> bool:
        return self.seconds is not None

    def line(self) -> str:
        """One row of the estimates table (see :data:`ESTIMATES_HEADER`)."""
        if self.seconds is None:
            return f"  {self.strategy:<8} {'no':<7} {'-':<10} {'-':<9} {self.reason}"
        took = format_duration(self.seconds)
        cost = pricing.format_cost(self.cost)
        return f"  {self.strategy:<8} {'yes':<7} {took:<10} {cost:<9} {self.reason}"


ESTIMATES_HEADER = f"  {'strategy':<8} {'usable':<7} {'est. time':<10} {'est. cost':<9} why"


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
        cost=pricing.native_restore_cost(size_bytes),
    )


def estimate_replay(
    items: int | None,
    rate: WriteRate,
    refusal: str | None = None,
    *,
    item_bytes: float = DEFAULT_ITEM_BYTES,
    indexes: int = 0,
) -> Estimate:
    """Replay writes every item alive at T (``item_bytes`` each, into ``indexes`` GSIs too)."""
    if refusal is not None or items is None:
        return Estimate("replay", None, refusal or "the archive cannot rebuild T")
    return Estimate(
        "replay",
        rate.seconds_for(items),
        f"{items:,} items at {rate.describe()}",
        cost=pricing.replay_cost(items, item_bytes, indexes),
    )


def estimate_import(
    items: int | None,
    model: ImportModel,
    refusal: str | None = None,
    *,
    item_bytes: float = DEFAULT_ITEM_BYTES,
) -> Estimate:
    """ImportTable loads the staged items: ``model`` over their uncompressed size (the size
    per item measured by an earlier import, else the table's average item size)."""
    if refusal is not None or items is None:
        return Estimate("import", None, refusal or "the archive cannot rebuild T")
    per_item = model.json_bytes_per_item or item_bytes
    size = items * per_item
    return Estimate(
        "import",
        model.seconds_for(size),
        f"{items:,} items, {size / GIB:.2f} GiB staged, at {model.describe()}",
        cost=pricing.import_cost(size),
    )


def estimate_backup(
    backup: Backup | None,
    tail_keys: int | None,
    rate: WriteRate,
    refusal: str | None = None,
    *,
    item_bytes: float = DEFAULT_ITEM_BYTES,
    indexes: int = 0,
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
        cost=pricing.native_restore_cost(backup.size_bytes)
        + pricing.replay_cost(tail_keys, item_bytes, indexes),
    )


def choose(
    estimates: Sequence[Estimate], requested: str, prefer: str = "time"
) -> tuple[Estimate, str]:
    """The estimate to act on and the reason, for ``--strategy requested``: for ``auto`` the
    fastest usable one (``prefer="cost"``: the cheapest), the other figure breaking ties.

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
    unknown = float("inf")  # a cost not known never wins on cost
    if prefer == "cost":
        usable.sort(
            key=lambda e: (
                unknown if e.cost is None else e.cost,
                e.seconds or 0.0,
                _PREFERENCE[e.strategy],
            )
        )
    else:
        usable.sort(key=lambda e: (e.seconds or 0.0, _PREFERENCE[e.strategy]))
    chosen = usable[0]
    others = [_versus(e) for e in usable[1:] if e.seconds is not None]
    versus = f" (vs {', '.join(others)})" if others else " (the only possible strategy)"
    best = "cheapest" if prefer == "cost" else "fastest"
    return chosen, f"{best}{versus}"


def _versus(estimate: Estimate) -> str:
    text = f"{estimate.strategy} {format_duration(estimate.seconds or 0.0)}"
    return text if estimate.cost is None else f"{text} {pricing.format_cost(estimate.cost)}"


def describe_choice(estimates: Sequence[Estimate], chosen: Estimate, reason: str) -> str:
    """The estimates as a table (one row per strategy), then the choice and why."""
    lines = ["estimates:", ESTIMATES_HEADER, *(e.line() for e in estimates)]
    lines.append(f"strategy: {chosen.strategy} — {reason}")
    rates = pricing.RESTORE_RATES
    lines.append(
        f"(costs at {rates.region} list prices of {rates.as_of}; times and costs are rough, "
        "for ranking)"
    )
    return "\n".join(lines)


# -- backups ---------------------------------------------------------------------------------


def usable_backups(
    ddb: DynamoDBClient, table: str, at: datetime, *, generation_created_at: datetime | None
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

    ddb: DynamoDBClient
    archive: Archive
    source: str
    at: datetime
    rate: WriteRate
    allow_gaps: bool = False
    allow_inexact: bool = False
    aws: AwsSettings | None = None
    backup_arn: str | None = None
    lambda_checks: lambda_gaps.LambdaChecks | None = None
    staging: str | None = None  # --staging (import): None means the archive's own, if S3
    prefer: str = "time"
    replay_items: int | None = field(default=None, init=False)  # replay()'s count, for import

    def shape(self, plan: Plan) -> tuple[dict[str, Any] | None, float, int]:
        """The archived description of the generation at T, its average item size (DynamoDB's
        ``TableSizeBytes / ItemCount``, else :data:`DEFAULT_ITEM_BYTES`) and its GSI count."""
        doc = tables.description_at(self.archive, plan.table, plan.at, plan.table_id)
        table: dict[str, Any] | None = doc["Table"] if doc else None
        size = int((table or {}).get("TableSizeBytes") or 0)
        count = int((table or {}).get("ItemCount") or 0)
        item_bytes = size / count if size > 0 and count > 0 else float(DEFAULT_ITEM_BYTES)
        return table, item_bytes, len((table or {}).get("GlobalSecondaryIndexes") or [])

    def import_(self, plan: Plan | None, items: int | None, why_not: str | None) -> Estimate:
        """ImportTable of the same fold: needs what replay needs, S3 staging and no LSIs."""
        if plan is None:
            return estimate_import(None, ImportModel(), why_not)
        try:
            staging_url(self.archive, self.staging, plan.table, "-")
        except BadInput as exc:
            return estimate_import(None, ImportModel(), str(exc))
        table, item_bytes, _ = self.shape(plan)
        refusal = lsi_refusal(table) if table else None
        if table is None:
            refusal = "the archive holds no description of the table at T (keys unknown)"
        model = ImportModel.load(self.archive, self.source)
        return estimate_import(items, model, refusal, item_bytes=item_bytes)

    def replay(self) -> tuple[Estimate, Plan | None]:
        try:
            plan = planning.plan_restore(
                self.archive,
                self.source,
                self.at,
                allow_gaps=self.allow_gaps,
                settings=self.aws,
                lambda_checks=self.lambda_checks,
                allow_inexact=self.allow_inexact,
            )
            with Fold(self.archive) as fold:
                counts = fold.count_records(plan)
        except ReplayError as exc:
            return estimate_replay(None, self.rate, str(exc)), None
        # An upper bound: keys changed in the log may also be in the base, or deleted.
        items = (plan.base.item_count if plan.base else 0) + counts["keys changed"]
        _, item_bytes, indexes = self.shape(plan)
        self.replay_items = items
        estimate = estimate_replay(items, self.rate, item_bytes=item_bytes, indexes=indexes)
        return estimate, plan

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
        if requested in ("auto", "replay", "import"):
            estimate, replay_plan = self.replay()
            if requested != "import":
                estimates.append(estimate)
            if requested in ("auto", "import"):
                estimates.append(self.import_(replay_plan, self.replay_items, estimate.reason))
        if requested in ("auto", "backup"):
            estimate, tail_plan, tail_keys = self.backup()
            estimates.append(estimate)
        if requested in ("auto", "pitr"):
            estimates.append(self.pitr())
        chosen, reason = choose(estimates, requested, self.prefer)
        return Choice(self.at, estimates, chosen, reason, replay_plan, tail_plan, tail_keys)
