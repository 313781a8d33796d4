"""Merge small change files into files near a target size, without a reader ever missing a record.

The archiver writes one file per flush (the Lambda function one per batch), so a table collects
many small files a day: slow to list and scan, and under the 128 KB below which S3 lifecycle
rules do not move objects to colder storage. Compaction merges them per day, stream and shard
(a shard's contiguous files within one dt partition) into files named, like every change file,
by their first and last sequence numbers. So the archiver's resume point (the highest last
sequence number per shard in file names) is unchanged, and a file's name stays a function of
its content. Records archived twice (a retried write) are kept once, by event_id; rows are
sorted by key and stream order, so reading one item's history skips most row groups.

Nothing is ever missing for a reader, in this order, per merged file:

  1. the merged file is written (atomically) and its row count checked;
  2. its inputs are recorded in _state/<table>/compaction-pending.json with the time they
     become deletable (now + --grace-seconds);
  3. a later run (or this one, with --grace-seconds 0) deletes the inputs past their grace.

A crash between 1 and 2 leaves duplicates, which the next run merges into the same file again;
a crash during 3 leaves the entries pending, and the next run finishes the deletions. A reader
that lists while both copies exist reads duplicates (replay drops them); one whose file
vanished after listing lists again.

Run one compaction per table at a time (it rewrites the pending list). It is safe beside the
poller or the Lambda function, which only ever add files with later sequence numbers.

Examples:
  ddb-archiver compact --table-name orders --archive s3://bucket/prefix       # days before today
  ddb-archiver compact --table-name orders --archive ./demo-archive --dt 2026-01-31 --dry-run
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from archiver.aws import metrics
from archiver.aws.error_table import ArchiverError
from archiver.format import chain, footers, layout, statefiles
from archiver.format.schema import CHANGE_SCHEMA
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow

log = logging.getLogger(__name__)

DEFAULT_TARGET_MB = 256.0
# Long enough for any restore or query that listed the old files to finish reading them
# (and one that did not finish lists again); deleting later only costs a day's storage.
DEFAULT_GRACE_SECONDS = 24 * 3600.0


class CompactionError(ArchiverError):
    """A merged file did not come out as expected; its inputs were left untouched."""


def pending_path(table: str) -> str:
    """``_state/<table>/compaction-pending.json``: inputs waiting for their grace period."""
    return layout.compaction_pending(table)


@dataclass(frozen=True)
class ChangeFile:
    """One change file as listed: its path, size and what its name says."""

    rel: str
    size: int
    dt: str
    name: layout.ChangeFileName

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.dt, self.name.label, self.name.shard_id)


@dataclass
class Report:
    """What a compaction run did (or, with ``dry_run``, would do)."""

    partitions: set[str] = field(default_factory=set)
    files_in: int = 0
    files_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    rows_in: int = 0
    rows_out: int = 0
    pending: int = 0
    deletable_after: str | None = None
    deleted: int = 0
    skipped_today: str | None = None
    outputs: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.rows_in - self.rows_out


# -- listing and planning ------------------------------------------------------------------


def list_change_files(
    archive: Archive, table: str, dts: Iterable[str] | None = None
) -> list[ChangeFile]:
    """The table's change files (only the given ``dt`` partitions, when given)."""
    wanted = set(dts) if dts is not None else None
    out = []
    for rel, size in archive.walk_files(layout.changes_table_dir(table), ".parquet"):
        path = layout.parse_change_file(rel)
        if path is None or path.name is None:
            continue
        if wanted is not None and path.dt not in wanted:
            continue
        out.append(ChangeFile(rel, size, path.dt, path.name))
    return out


def plan_bins(files: list[ChangeFile], target_bytes: int) -> list[list[ChangeFile]]:
    """Split one group's files (any order) into runs to merge, each near ``target_bytes``.

    Runs are consecutive in sequence order, so each merged file still covers one contiguous
    range. Files whose ranges overlap (a batch written twice with different boundaries, or a
    merged file beside inputs whose deletion a crash interrupted) always share a run, so
    their duplicates meet and are dropped. Runs of one file are left alone.
    """
    ordered = sorted(files, key=lambda f: (f.name.first_seq, f.name.last_seq, f.rel))
    bins: list[list[ChangeFile]] = []
    current: list[ChangeFile] = []
    size = 0
    reach = ""  # the highest last_seq in the current run
    for f in ordered:
        overlaps = bool(current) and f.name.first_seq <= reach
        if current and not overlaps and size + f.size > target_bytes:
            bins.append(current)
            current, size, reach = [], 0, ""
        current.append(f)
        size += f.size
        reach = max(reach, f.name.last_seq)
    if current:
        bins.append(current)
    return [b for b in bins if len(b) > 1]


def _within_day(runs: list[list[ChangeFile]], every: list[ChangeFile]) -> list[list[ChangeFile]]:
    """Runs cut where their shard's chain goes through a file of another day between two of
    their files. A Kinesis shard's records arrive out of time order, so its chain crosses
    ``dt`` partitions back and forth; a merged file must still cover one contiguous range of
    it (its name says so), never records that live in another day's files."""
    firsts: dict[tuple[str, str], list[str]] = {}
    for f in every:
        firsts.setdefault((f.name.label, f.name.shard_id), []).append(f.name.first_seq)
    out: list[list[ChangeFile]] = []
    for run in runs:
        chain = sorted(firsts.get((run[0].name.label, run[0].name.shard_id), []))
        inside = {f.name.first_seq for f in run}
        piece: list[ChangeFile] = []
        for f in run:
            if piece:
                reach = max(p.name.last_seq for p in piece)
                between = (
                    bisect.bisect_right(chain, reach),
                    bisect.bisect_left(chain, f.name.first_seq),
                )
                if any(first not in inside for first in chain[between[0] : between[1]]):
                    out.append(piece)
                    piece = []
            piece.append(f)
        out.append(piece)
    return [piece for piece in out if len(piece) > 1]


def merged_path(table: str, run: list[ChangeFile]) -> str:
    """The merged file's name: the run's first and last sequence numbers."""
    first = min(f.name.first_seq for f in run)
    last = max(f.name.last_seq for f in run)
    label, shard_id = run[0].name.label, run[0].name.shard_id
    return layout.change_file_in(
        table, run[0].dt, layout.ChangeFileName(label, shard_id, first, last)
    )


# -- merging -------------------------------------------------------------------------------


def merge_rows(tables: list[pa.Table]) -> pa.Table:
    """Concatenate change rows, keep each ``event_id`` once, sort by keys and stream order."""
    combined = pa.concat_tables([t.select(CHANGE_SCHEMA.names).cast(CHANGE_SCHEMA) for t in tables])
    if combined.num_rows == 0:
        return combined
    indexed = combined.append_column("_row", pa.array(range(combined.num_rows), pa.int64()))
    firsts = indexed.group_by("event_id", use_threads=False).aggregate([("_row", "min")])
    unique = combined.take(firsts["_row_min"])
    order = pc.sort_indices(
        unique,
        sort_keys=[
            ("keys", "ascending"),
            ("stream_arn", "ascending"),
            ("sequence_number", "ascending"),
        ],
    )
    return unique.take(order)


def _read_input(archive: Archive, table: str, rel: str) -> pa.Table:
    try:
        return archive.read_parquet(rel)
    except (OSError, pa.ArrowException) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise chain.corrupt_file(archive, table, rel, exc) from exc


def merge_run(archive: Archive, table: str, run: list[ChangeFile]) -> tuple[str, int, int, int]:
    """Write the merged file of ``run``; returns (path, rows in, rows out, bytes out).

    The merged file links to what the run's first input linked to (its chain footer's
    ``prev_last_seq``), so the shard's chain stays valid without touching any other file.
    """
    tables = [_read_input(archive, table, f.rel) for f in run]
    rows_in = sum(t.num_rows for t in tables)
    order = sorted(range(len(run)), key=lambda i: (run[i].name.first_seq, run[i].name.last_seq))
    footer = footers.footer_of(tables[order[0]].schema.metadata)
    # Never merge across a hole: the merged file's name would cover records it lacks.
    reach = run[order[0]].name.last_seq
    for i in order[1:]:
        link = footers.footer_of(tables[i].schema.metadata)
        if link is not None and link.prev_last_seq is not None and link.prev_last_seq > reach:
            raise chain.ChainBroken(
                f"{archive.uri(run[i].rel)} links to a file ending at {link.prev_last_seq}, "
                f"which is missing: not merging across the hole; run "
                f"`{chain.check_command(table, archive, repair=True)}`"
            )
        reach = max(reach, run[i].name.last_seq)
    merged = merge_rows(tables)
    out = merged_path(table, run)
    name = layout.ChangeFileName.parse(out)
    assert name is not None
    merged = footers.with_footer(
        merged,
        footers.make_footer(
            merged,
            table=table,
            dt=run[0].dt,
            shard_id=name.shard_id,
            first_seq=name.first_seq,
            last_seq=name.last_seq,
            prev_last_seq=footer.prev_last_seq if footer is not None else None,
            prev_chained=footer.prev_chained if footer is not None else False,
            kinesis=_merged_kinesis([footers.footer_of(tables[i].schema.metadata) for i in order]),
        ),
    )
    merged = _carry_erasures(merged, tables, footer)
    size = archive.write_parquet(out, merged)
    # Only a file that reads back whole may replace its inputs.
    written = pq.read_metadata(archive.path(out), filesystem=archive.arrow_fs).num_rows
    if written != merged.num_rows:
        raise CompactionError(
            f"{archive.uri(out)} holds {written} rows, expected {merged.num_rows}: inputs kept"
        )
    metrics.current().record(metrics.FILES_WRITTEN, 1, table)
    return out, rows_in, merged.num_rows, size


def _merged_kinesis(inputs: list[footers.Footer | None]) -> dict[str, Any] | None:
    """The Kinesis provenance of a merged run (inputs in chain order): its first input's
    first Kinesis sequence number to its last input's last (the rows' ``sequence_number``
    range is recomputed from the merged rows)."""
    found = [f.kinesis for f in inputs if f is not None and f.kinesis is not None]
    if not found:
        return None
    keep = ("stream_arn", "shard_id", "first_sequence_number")
    return {
        **{k: found[0].get(k) for k in keep},
        "last_sequence_number": found[-1].get("last_sequence_number"),
    }


def _carry_erasures(
    merged: pa.Table, tables: list[pa.Table], first: footers.Footer | None
) -> pa.Table:
    """Rows an erasure removed from an input are missing from the merged file too: its footer
    says so (``ddb-archiver forget``), so the chain accepts its narrower range."""
    erasures = tuple(
        dict.fromkeys(e for t in tables for e in footers.erasures_of(t.schema.metadata))
    )
    footer = footers.footer_of(merged.schema.metadata)
    if not erasures or footer is None:
        return merged
    footer = dataclasses.replace(
        footer,
        erasures=erasures,
        stream_arn=footer.stream_arn or (first.stream_arn if first else ""),
        table_id=footer.table_id or (first.table_id if first else ""),
    )
    return footers.with_footer(merged, footer)


# -- pending deletions ---------------------------------------------------------------------


def read_pending(archive: Archive, table: str) -> list[dict[str, Any]]:
    doc = statefiles.read_json(
        archive,
        pending_path(table),
        statefiles.COMPACTION_PENDING,
        "compaction-pending.json",
        missing_ok=True,
    )
    return list(doc["pending"]) if doc else []


def write_pending(archive: Archive, table: str, pending: list[dict[str, Any]]) -> None:
    archive.write_json(pending_path(table), {"table": table, "pending": pending})


def purge_pending(archive: Archive, table: str, now: datetime) -> tuple[int, list[dict[str, Any]]]:
    """Delete inputs whose grace has passed; returns (deleted, still pending)."""
    pending = read_pending(archive, table)
    due = [e for e in pending if parse_iso(e["deletable_after"]) <= now]
    if not due:
        return 0, pending
    deleted = 0
    for entry in due:
        # The entry goes only after the delete: a crash here leaves it for the next run.
        archive.delete(entry["path"])
        deleted += 1
    due_paths = {e["path"] for e in due}
    remaining = [e for e in pending if e["path"] not in due_paths]
    write_pending(archive, table, remaining)
    return deleted, remaining


# -- the run -------------------------------------------------------------------------------


def compact(
    archive: Archive,
    table: str,
    *,
    dts: list[str] | None = None,
    target_bytes: int = int(DEFAULT_TARGET_MB * 1024 * 1024),
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: bool = False,
) -> Report:
    """Compact ``table``'s partitions (``dts``; default: every day before today, UTC).

    Today's partition is skipped by default because the archiver is still adding to it:
    compacting it is safe but rewrites the day's merged file on every run.
    """
    now = now or utcnow()
    report = Report()
    pending = read_pending(archive, table)
    pending_paths = {e["path"] for e in pending}
    files = [f for f in list_change_files(archive, table, dts) if f.rel not in pending_paths]
    if dts is None:
        today = layout.dt_of(now)
        if any(f.dt == today for f in files):
            report.skipped_today = today
        files = [f for f in files if f.dt < today]
    groups: dict[tuple[str, str, str], list[ChangeFile]] = {}
    for f in files:
        groups.setdefault(f.group, []).append(f)
    runs = [run for key in sorted(groups) for run in plan_bins(groups[key], target_bytes)]
    if any(f.name.label == layout.KINESIS_LABEL for f in files):
        every = files if dts is None else list_change_files(archive, table)
        runs = _within_day(runs, [f for f in every if f.rel not in pending_paths])
    deletable_after = iso_ms(now + timedelta(seconds=grace_seconds))
    for run in tqdm(runs, desc=f"compacting {table}", unit="file", disable=not progress or None):
        report.partitions.add(run[0].dt)
        report.files_in += len(run)
        report.bytes_in += sum(f.size for f in run)
        if dry_run:
            report.outputs.append(merged_path(table, run))
            report.files_out += 1
            continue
        out, rows_in, rows_out, size = merge_run(archive, table, run)
        report.outputs.append(out)
        report.files_out += 1
        report.rows_in += rows_in
        report.rows_out += rows_out
        report.bytes_out += size
        # An output that reuses a pending input's name is live data again: never delete it.
        pending = [e for e in pending if e["path"] != out]
        recorded = iso_ms(now)
        for f in run:
            if f.rel != out:
                entry = {"path": f.rel, "replaced_by": out, "recorded_at": recorded}
                pending.append({**entry, "deletable_after": deletable_after})
        write_pending(archive, table, pending)
    if not dry_run:
        report.deleted, remaining = purge_pending(archive, table, now)
        report.pending = len(remaining)
        if remaining:
            report.deletable_after = min(e["deletable_after"] for e in remaining)
    return report
