"""Enforce a retention: delete a table's history older than a horizon, keeping restores after it.

``--older-than 400d`` puts the horizon at the start (00:00 UTC) of the day 400 days ago:
change files are deleted by whole ``dt`` days, so the horizon is that day's midnight, and
nothing recorded at or after it is touched. At least 24 hours (the stream's retention), so the
archiver never re-reads what expired.

Restores from the horizon on stay possible: first a **base snapshot at the horizon** is made
from the archive itself — the table's state just before it, folded from the existing base and
log — and committed as a snapshot (``method: fold``, ``valid_from`` = ``log_from`` = the
horizon: exact, the log is applied from the horizon on). The fold is the replayer's, run as
``ddb-replayer export`` in a subprocess into ``_staging/<table>/``: one fold implementation
(with every refusal a restore has: gaps, a broken chain, the watermark), and the archiver
still never imports the replayer. Then, in this order:

  1. the first file kept of each shard whose predecessor goes is relinked (its chain footer
     says it has none, as a shard's first file does), so the chain stays valid;
  2. ``coverage.json`` moves ``covered_from`` to the horizon (``from_table_creation`` false)
     and ``_state/<table>/retention.json`` records it: restores before it are refused, naming
     the retention, from this moment on;
  3. change files of older days (never the last file a checkpoint names: it stays until a later
     file exists), snapshots valid before the horizon (manifest first: the commit goes first),
     native exports older than it, are deleted, and compaction's pending list forgets them.

Crash-safe: the base is taken first (a fold that is refused changes nothing), then the plan is
written to ``_state/<table>/expire-pending.json`` before any other change; every step is
idempotent; a re-run finishes it.

Examples:
  ddb-archiver expire --table-name orders --archive s3://bucket/prefix --older-than 400d
  ddb-archiver expire --table-name orders --archive ./demo-archive --older-than 90d --dry-run
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from archiver.aws.error_table import EXIT_REFUSED, ArchiverError, UsageError
from archiver.format import coverage, footers, layout, statefiles
from archiver.format.changefiles import checkpointed_streams, read_checkpoints
from archiver.format.exports.full import EXPORT_MARGIN, archived_exports
from archiver.format.manifests import list_snapshots, write_manifest
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms, parse_iso, stamp, utcnow

MIN_RETENTION = timedelta(hours=24)
FOLD_METHOD = "fold"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([wdhms])$")
_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}

_PENDING: statefiles.Schema = {
    "horizon": (statefiles.ISO, True, "an ISO UTC time"),
    "delete": (statefiles._list_of(statefiles.STR), True, "a list of paths"),
    "relink": (statefiles._list_of(statefiles.STR), True, "a list of paths"),
}


class ExpireFailed(ArchiverError):
    """The base snapshot at the horizon could not be made: nothing was deleted (exit 4)."""

    exit_code = EXIT_REFUSED


def duration(text: str) -> timedelta:
    """``400d``, ``12w``, ``36h`` (also ``m``, ``s``) as a timedelta of at least 24 h."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 400d, 12w or 36h")
    value = timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    if value < MIN_RETENTION:
        raise argparse.ArgumentTypeError(
            f"{text!r} is less than 24 h, the stream's retention: the archiver could read "
            "expired records again"
        )
    return value


def horizon_of(now: datetime, older_than: timedelta) -> datetime:
    """Midnight UTC of the day ``older_than`` before ``now``: files go by whole days."""
    return as_utc(now - older_than).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class ExpirePlan:
    horizon: datetime
    delete: list[str] = field(default_factory=list)
    relink: list[str] = field(default_factory=list)
    base: str | None = None  # the snapshot id of the base at the horizon, once known


def _head_files(archive: Archive, table: str) -> set[tuple[str, str, str]]:
    """(label, shard, last_seq) of each checkpoint's last file: never deleted."""
    heads = set()
    for label in checkpointed_streams(archive, table):
        for shard_id, doc in read_checkpoints(archive, table, label).items():
            if doc.get("sequence_number"):
                heads.add((label, shard_id, layout.pad_seq(str(doc["sequence_number"]))))
    return heads


def plan_expiry(archive: Archive, table: str, horizon: datetime) -> ExpirePlan:
    """What goes (and which kept files lose their link to a deleted predecessor)."""
    plan = ExpirePlan(horizon)
    cutoff = layout.dt_of(horizon)
    heads = _head_files(archive, table)
    groups: dict[tuple[str, str], list[tuple[str, str, bool]]] = {}
    for rel in archive.find(layout.changes_table_dir(table), ".parquet"):
        parsed = footers.parse_change_path(rel)
        if parsed is None:
            continue
        _, dt, name = parsed
        gone = dt < cutoff and (name.label, name.shard_id, name.last_seq) not in heads
        groups.setdefault((name.label, name.shard_id), []).append((name.first_seq, rel, gone))
        if gone:
            plan.delete.append(rel)
    for files in groups.values():
        files.sort()
        for (_, _, before_gone), (_, rel, gone) in itertools.pairwise(files):
            if before_gone and not gone:
                plan.relink.append(rel)
    for manifest in list_snapshots(archive, table):
        if parse_iso(manifest["valid_from"]) < horizon:
            sid = manifest["snapshot_id"]
            plan.delete.append(layout.snapshot_manifest(table, sid))  # the commit goes first
            plan.delete += archive.find(layout.snapshot_dir(table, sid), ".parquet")
    for export in archived_exports(archive):
        export_time = (export.summary or {}).get("exportTime")
        if export.table_name != table or not export_time:
            continue
        if parse_iso(str(export_time)) + EXPORT_MARGIN < horizon:
            plan.delete += archive.find(export.folder.path)
    return plan


def _existing_base(archive: Archive, table: str, table_id: str, horizon: datetime) -> str | None:
    for manifest in list_snapshots(archive, table):
        if (
            manifest.get("table_id") == table_id
            and manifest.get("method") == FOLD_METHOD
            and parse_iso(manifest["valid_from"]) == horizon
        ):
            return str(manifest["snapshot_id"])
    return None


def take_base(
    archive: Archive, table: str, gen: dict[str, Any], horizon: datetime, endpoint: str | None
) -> str:
    """A snapshot of the table just before ``horizon``, folded by the replayer; its id.

    Raises:
        ExpireFailed: the fold was refused or failed (its one-line reason included).
    """
    existing = _existing_base(archive, table, str(gen["table_id"]), horizon)
    if existing:
        return existing
    staging = f"{layout.table_staging_dir(table)}/expire-{stamp(horizon)}"
    for rel in archive.find(staging):
        archive.delete(rel)
    command = [
        sys.executable,
        "-m",
        "replayer.cli",
        "export",
        *("--table-name", table, "--archive", archive.url, "--format", "parquet"),
        *("--restore-date-time", iso_ms(horizon - timedelta(milliseconds=1))),
        *("--output", archive.uri(staging)),
    ]
    if endpoint:
        command += ["--endpoint-url", endpoint]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExpireFailed(
            f"not expiring {table}: the base snapshot at the horizon {iso_ms(horizon)} could "
            f"not be made, nothing was deleted: {reason}"
        )
    snapshot_id = f"{stamp(horizon)}-{hashlib.sha256(table.encode()).hexdigest()[:6]}"
    files, total = [], 0
    for n, rel in enumerate(sorted(archive.find(f"{staging}/data", ".parquet"))):
        data = archive.get_bytes(rel)
        target = layout.snapshot_part(table, snapshot_id, n)
        archive.put_bytes(target, data)
        count = pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows
        files.append(
            {"path": target, "item_count": count, "sha256": hashlib.sha256(data).hexdigest()}
        )
        total += count
    key_schema = next((m.get("key_schema") for m in list_snapshots(archive, table)), None)
    summary = archive.read_json_or(f"{staging}/export.json") or {}
    now = utcnow()
    write_manifest(
        archive,
        table,
        {
            "table": table,
            "table_id": gen["table_id"],
            "snapshot_id": snapshot_id,
            "method": FOLD_METHOD,
            "valid_from": iso_ms(horizon),
            "log_from": iso_ms(horizon),
            "started_at": iso_ms(now),
            "finished_at": iso_ms(now),
            "item_count": total,
            "key_schema": key_schema or summary.get("key_schema") or [],
            "source": f"fold of {archive.url} at {iso_ms(horizon - timedelta(milliseconds=1))}",
            "files": files,
            "created_at": iso_ms(now),
        },
    )
    for rel in archive.find(staging):
        archive.delete(rel)
    return snapshot_id


def relink(archive: Archive, rel: str) -> None:
    """Rewrite a kept file's footer to say it has no predecessor (its predecessor expires)."""
    rows = archive.read_parquet(rel)
    metadata = dict(rows.schema.metadata or {})
    footer = footers.footer_of(metadata)
    if footer is None or footer.prev_last_seq is None:
        return
    unlinked = dataclasses.replace(footer, prev_last_seq=None, prev_chained=False)
    metadata[footers.FOOTER_KEY] = orjson.dumps(unlinked.to_json(), option=orjson.OPT_SORT_KEYS)
    archive.write_parquet(rel, rows.replace_schema_metadata(metadata))


def _move_coverage(archive: Archive, table: str, horizon: datetime) -> None:
    state = statefiles.read_json(
        archive, layout.coverage(table), statefiles.COVERAGE, "coverage.json"
    )
    assert state is not None  # missing_ok is off
    for generation in [state, *state.get("previous", [])]:
        start = generation.get("covered_from")
        if start is None or parse_iso(str(start)) < horizon:
            generation["covered_from"] = iso_ms(horizon)
            generation["from_table_creation"] = False
    archive.write_json(layout.coverage(table), state)
    archive.write_json(
        layout.retention(table),
        {"table": table, "horizon": iso_ms(horizon), "at": iso_ms(utcnow())},
    )


def expire(
    archive: Archive,
    table: str,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    endpoint_url: str | None = None,
) -> ExpirePlan:
    """Expire ``table``'s history older than ``older_than`` (see the module's docstring)."""
    pending = statefiles.read_json(
        archive, layout.expire_pending(table), _PENDING, "expire-pending.json", missing_ok=True
    )
    if pending is not None:
        plan = ExpirePlan(parse_iso(pending["horizon"]), list(pending["delete"]),
                          list(pending["relink"]), pending.get("base"))  # fmt: skip
    else:
        plan = plan_expiry(archive, table, horizon_of(now or utcnow(), older_than))
    gen = coverage.current(archive, table)
    if gen is None:
        raise UsageError(f"table {table!r} has no coverage.json in {archive.url}")
    if dry_run:
        return plan
    # The base first (a refused fold leaves everything as it was), then the plan, then changes.
    plan.base = take_base(archive, table, gen, plan.horizon, endpoint_url)
    if pending is None:
        archive.write_json(layout.expire_pending(table), {
            "horizon": iso_ms(plan.horizon), "delete": plan.delete, "relink": plan.relink,
        })  # fmt: skip
    for rel in plan.relink:
        if archive.exists(rel):
            relink(archive, rel)
    _move_coverage(archive, table, plan.horizon)
    for rel in plan.delete:
        archive.delete(rel)
    gone = set(plan.delete)
    compaction = layout.compaction_pending(table)
    doc = statefiles.read_json(
        archive,
        compaction,
        statefiles.COMPACTION_PENDING,
        "compaction-pending.json",
        missing_ok=True,
    )
    if doc and any(e.get("path") in gone for e in doc.get("pending", [])):
        doc["pending"] = [e for e in doc["pending"] if e.get("path") not in gone]
        archive.write_json(compaction, doc)
    archive.delete(layout.expire_pending(table))
    return plan


# -- CLI ------------------------------------------------------------------------------------


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The stack's daily expiry (``RetentionDays``): ``ARCHIVE_URL``, ``TABLE_NAME`` and
    ``RETENTION_DAYS`` from the environment."""
    import os

    archive = Archive.open(os.environ["ARCHIVE_URL"])
    table = os.environ["TABLE_NAME"]
    days = float(os.environ["RETENTION_DAYS"])
    plan = expire(archive, table, duration(f"{days:g}d"))
    return {"table": table, "horizon": iso_ms(plan.horizon), "deleted": len(plan.delete),
            "base": plan.base}  # fmt: skip
