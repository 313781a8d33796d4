"""History before the archiver was installed: 35 days back on day one, from PITR.

``ddb-archiver backfill`` takes a full export at point-in-time recovery's earliest restorable
time (plus a margin, so the time is still inside the period when the request arrives) as a
base snapshot, and incremental exports of at most 24 hours each from the base's ``log_from``
up to where the stream archive's coverage begins — or up to now when the table has no stream
archive (then ``ddb-archiver incremental`` carries on from there). Restores then reach any
instant back to the base's ``valid_from``: exactly at window ends and wherever the plan finds
no uncertain key (DESIGN.md "History from incremental exports").

Before anything is requested it prints what it will export, how much data that is, what it
costs at AWS's list prices (``archiver.aws.prices``) and how long it may take; ``--dry-run``
stops there. The plan is recorded in ``_state/<table>/backfill.json`` before the first request,
so a rerun after a crash continues the same plan (same windows, same ``ClientToken`` s: the
exports already made are found, the windows already converted skipped). All exports are
requested at once (DynamoDB runs many exports concurrently), then waited for and converted in
order, one progress line per window.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow.parquet as pq

from archiver.aws.error_table import UsageError
from archiver.aws.prices import (
    GB,
    PRICING_URL,
    full_export_cost,
    incremental_export_cost,
    rates_for,
)
from archiver.aws.retry import WaitFailed
from archiver.format import coverage, gap_log, layout, statefiles
from archiver.format.exports.full import EXPORT_MARGIN, convert_export, read_export
from archiver.format.exports.incremental import (
    MAX_WINDOW,
    MIN_WINDOW,
    list_windows,
    record_coverage,
)
from archiver.format.manifests import list_snapshots
from archiver.format.storage import Archive
from archiver.format.tables import table_id_of
from archiver.format.timefmt import iso_ms, parse_iso
from archiver.snapshots.base_snapshot import wait_for_export
from archiver.snapshots.export_chain import BASE_MARGIN, Chain, PitrPeriod, Say

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill exports: a base at ``base_at`` and windows from ``base_at − 60 s``."""

    table: str
    table_id: str
    base_at: datetime
    windows: tuple[tuple[datetime, datetime], ...]
    until: str  # "stream" (where its coverage begins) or "now"

    @property
    def start(self) -> datetime:
        return self.base_at - EXPORT_MARGIN

    @property
    def end(self) -> datetime:
        return self.windows[-1][1]

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "table_id": self.table_id,
            "base_at": iso_ms(self.base_at),
            "until": self.until,
            "windows": [[iso_ms(a), iso_ms(b)] for a, b in self.windows],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> BackfillPlan:
        return cls(
            table=str(doc["table"]),
            table_id=str(doc["table_id"]),
            base_at=parse_iso(str(doc["base_at"])),
            windows=tuple((parse_iso(a), parse_iso(b)) for a, b in doc["windows"]),
            until=str(doc.get("until", "stream")),
        )


def split(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` as the fewest windows of at most 24 hours, of equal length (whole
    seconds; the last one ends exactly at ``end``)."""
    length = end - start
    if length < MIN_WINDOW:
        raise UsageError(
            f"[{iso_ms(start)}, {iso_ms(end)}) is shorter than the 15 minutes an incremental "
            "export needs"
        )
    count = math.ceil(length / MAX_WINDOW)
    step = timedelta(seconds=math.ceil(length.total_seconds() / count))
    bounds = [start + i * step for i in range(count)] + [end]
    return list(itertools.pairwise(bounds))


def plan_backfill(
    archive: Archive, table: str, description: Mapping[str, Any], pitr: PitrPeriod
) -> BackfillPlan:
    """The plan recorded before, or a new one from PITR's period and the stream's coverage."""
    table_id = table_id_of(description)
    recorded = statefiles.read_json(
        archive,
        layout.backfill_plan(table),
        statefiles.BACKFILL_PLAN,
        "backfill.json",
        missing_ok=True,
    )
    if recorded is not None and recorded.get("table_id") == table_id:
        return BackfillPlan.from_json(recorded)
    earliest, latest = pitr.require(table)
    generation = coverage.generation_of(archive, table, table_id)
    if generation and generation.get("from_table_creation"):
        raise UsageError(
            f"nothing to backfill: the stream archive covers {table} since its creation"
        )
    if generation and generation.get("covered_from"):
        end, until = parse_iso(str(generation["covered_from"])), "stream"
    else:
        end, until = latest.replace(microsecond=0), "now"
    base_at = earliest + BASE_MARGIN
    if base_at - EXPORT_MARGIN + MIN_WINDOW > end:
        raise UsageError(
            f"nothing to backfill: PITR's earliest restorable time ({iso_ms(earliest)}) is "
            f"within minutes of where the history starts ({iso_ms(end)})"
        )
    windows = split(base_at - EXPORT_MARGIN, end)
    return BackfillPlan(table, table_id, base_at, tuple(windows), until)


def changed_bytes_per_day(archive: Archive, table: str, description: Mapping[str, Any]) -> float:
    """Changed data per day, estimated from the stream archive: archived records per day
    (from the change files' footers) times the table's average item size. 0 without one."""
    generation = coverage.current(archive, table) or {}
    start, end = generation.get("covered_from"), generation.get("watermark")
    if not start or not end:
        return 0.0
    days = max((parse_iso(str(end)) - parse_iso(str(start))).total_seconds() / 86_400, 1 / 24)
    rows = 0
    for rel in archive.find(layout.changes_table_dir(table), ".parquet"):
        if not layout.is_incremental_file(rel):
            rows += pq.ParquetFile(archive.path(rel), filesystem=archive.arrow_fs).metadata.num_rows
    items = int(description.get("ItemCount") or 0)
    average = int(description.get("TableSizeBytes") or 0) / items if items else 1024
    return rows * average / days


def describe_plan(
    plan: BackfillPlan,
    description: Mapping[str, Any],
    per_day: float,
    region: str | None,
) -> list[str]:
    """What a backfill will export, cost and take, for people (printed before it starts)."""
    where, rates = rates_for(region)
    table_bytes = int(description.get("TableSizeBytes") or 0)
    full = full_export_cost(table_bytes, rates)
    changed = [int(per_day * (b - a).total_seconds() / 86_400) for a, b in plan.windows]
    incremental = sum(incremental_export_cost(c, rates) for c in changed)
    until = (
        "where the stream archive's coverage begins"
        if plan.until == "stream"
        else "now (`ddb-archiver incremental` continues from there)"
    )
    lines = [
        f"backfill of {plan.table} (table id {plan.table_id})",
        f"  base         full export at {iso_ms(plan.base_at)}: the table, "
        f"~{table_bytes / GB:.3f} GB (DescribeTable's TableSizeBytes)",
        f"  windows      {len(plan.windows)} incremental export(s) of up to 24 h, "
        f"[{iso_ms(plan.start)}, {iso_ms(plan.end)}), up to {until}",
    ]
    if per_day:
        lines.append(
            f"  changed data ~{per_day / GB:.3f} GB/day (from the stream archive's records "
            "and the average item size)"
        )
    else:
        lines.append(
            "  changed data unknown (no stream archive to estimate from): the estimate counts "
            "each window's 10 MB minimum only"
        )
    lines += [
        f"  cost         ~${full + incremental:,.2f} (full export ${full:,.2f} + incremental "
        f"exports ${incremental:,.2f}) at {where} list prices, to check at {PRICING_URL}",
        "  duration     the exports run concurrently at AWS, which promises no duration: "
        "expect tens of minutes to a few hours, plus conversion here",
    ]
    return lines


def run_backfill(chain: Chain, plan: BackfillPlan, say: Say) -> int:
    """Request every export of ``plan`` not done yet, then wait and convert them in order.

    Returns the number of windows whose export failed (each recorded as a gap).
    """
    archive, table = chain.archive, chain.table
    archive.write_json(layout.backfill_plan(table), plan.as_json())
    have_base = any(
        m.get("table_id") == plan.table_id and parse_iso(str(m["log_from"])) == plan.start
        for m in list_snapshots(archive, table)
    )
    done = {(w.start, w.end) for w in list_windows(archive, table, plan.table_id)}
    base_arn = None if have_base else chain.request_base(plan.base_at)
    pending = [(a, b, chain.request_window(a, b)) for a, b in plan.windows if (a, b) not in done]
    if base_arn is not None:
        described = wait_for_export(
            chain.ddb, base_arn, poll_seconds=chain.poll_seconds, sleep=chain.sleep
        )
        folder = read_export(chain.folder_of(base_arn, set()))
        manifest = convert_export(
            archive, table, folder, live=chain.description, described=described
        ).manifest
        say(
            f"base snapshot {manifest['snapshot_id']}: {manifest['item_count']} items, valid "
            f"from {manifest['valid_from']}"
        )
    failed = 0
    total = len(plan.windows)
    for a, b, arn in pending:
        index = plan.windows.index((a, b)) + 1
        try:
            wait_for_export(chain.ddb, arn, poll_seconds=chain.poll_seconds, sleep=chain.sleep)
        except WaitFailed as exc:
            failed += 1
            chain.record_hole(a, b, gap_log.GAP_EXPORT_FAILED, detail=str(exc))
            continue
        window = chain.convert_window(arn, set()).window
        say(f"window {index}/{total} [{iso_ms(a)}, {iso_ms(b)}): {window.item_count} changed items")
    record_coverage(archive, table, plan.table_id, chain.table_arn, chain.table_created_at)
    return failed
