"""Check one table's archive: every file on its own and against its neighbours; repair holes.

Lists every problem with its path, one per line (or as JSON with --json):

  change files   unreadable or truncated Parquet; a chain footer that disagrees with the file's
                 name, partition, row count or sequence-number statistics; broken chains (a
                 file missing in the middle of a shard, or at its end: the checkpoint's head);
                 overlapping ranges; an unchained file after chained ones (a replaced file)
  state files    checkpoints, coverage.json, gaps.jsonl, table descriptions, snapshot
                 manifests, restore-stats.json, compaction-pending.json, retention.json,
                 lambda.json, lambda-redrives.jsonl, backfill.json, incremental window commits,
                 restore progress files and drills.jsonl that do not parse or have the wrong shape
  snapshots      part files missing, unreadable, or not matching their _manifest.json (sha256,
                 item count)
  Lambda mode    every failed batch in the on-failure destination not redriven yet (a hole
                 until `ddb-archiver redrive` archives it), or that the destination is unknown
                 (a local archive without DDB_ARCHIVE_LAMBDA_FAILURES): unknown is not none

--deep also reads every row of every change file: its content hash, required columns present,
canonical JSON, event names consistent with the images. Files written before chain footers
existed are "unchained": their names and statistics are checked, their links cannot be (they
are counted, not reported as problems).

--repair re-reads a broken range from the stream while the stream still holds it: the shard is
read again from just after the last intact file before the hole up to the file after it, and
written the normal way (same names, same rows, chain links restored); damaged files it
replaces are removed. A range the stream no longer holds is recorded in gaps.jsonl (reason
archive-file-lost), so restores across it refuse like across any gap, and the damaged file is
moved to _state/<table>/quarantine/. Problems already on record that way are listed as known.

Exit codes: 0 clean; 3 problems found (after --repair: problems left); 5 --repair recorded a
new gap; 2 bad input.

Examples:
  ddb-archiver check --table-name orders --archive s3://bucket/prefix
  ddb-archiver check --table-name orders --archive ./demo-archive --deep --json
  ddb-archiver check --table-name orders --archive s3://bucket/prefix --repair
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from archiver.format import chain, coverage, footers, layout, statefiles
from archiver.format.chain import Problem
from archiver.format.codec import canonicalize_text
from archiver.format.footers import FileState
from archiver.format.schema import CHANGE_SCHEMA, EVENT_NAMES
from archiver.format.storage import Archive
from archiver.lambda_mode import failures as lambda_failures

STATE_FILE = "state-file"
SNAPSHOT_MISMATCH = "snapshot-mismatch"
ROW_PROBLEM = "bad-rows"
STRAY_FILE = "stray-file"
LAMBDA_BATCH_FAILED = lambda_failures.GAP_REASON
LAMBDA_FAILURES_UNKNOWN = "lambda-failures-unknown"
PENDING_NAME = "compaction-pending.json"


@dataclass
class CheckContext:
    """What every check gets: the archive, the table, the options; and what earlier checks
    learned (the change files' footers, for the repair)."""

    archive: Archive
    table: str
    deep: bool = False
    progress: bool = False
    states: list[FileState] = field(default_factory=list)
    checkpoints: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    unchained: list[str] = field(default_factory=list)
    known: list[Problem] = field(default_factory=list)


CheckFunction = Callable[[CheckContext], Iterable[Problem]]
# The checks ``check`` runs, in order; more can be plugged in with :func:`register`.
CHECKS: list[tuple[str, CheckFunction]] = []


def register(name: str) -> Callable[[CheckFunction], CheckFunction]:
    """Add a check (``ctx → problems``) to what ``ddb-archiver check`` runs."""

    def add(function: CheckFunction) -> CheckFunction:
        CHECKS.append((name, function))
        return function

    return add


def _bar(ctx: CheckContext, total: int, desc: str) -> tqdm[Any]:
    return tqdm(total=total, desc=desc, unit="file", disable=not ctx.progress or None)


# -- state files ----------------------------------------------------------------------------


def _state_problem(exc: statefiles.StateFileError, rel: str) -> Problem:
    return Problem(STATE_FILE, rel, exc.problem)


@register("state files")
def check_state_files(ctx: CheckContext) -> list[Problem]:
    """Parse every state file of the table against its schema."""
    archive, table = ctx.archive, ctx.table
    out: list[Problem] = []
    singles = [
        (layout.coverage(table), statefiles.COVERAGE, "coverage.json"),
        (layout.restore_stats(table), statefiles.RESTORE_STATS, "restore-stats.json"),
        (f"{layout.state_dir(table)}/{PENDING_NAME}", statefiles.COMPACTION_PENDING, PENDING_NAME),
        (layout.retention(table), statefiles.RETENTION, "retention.json"),
        (layout.lambda_deployment(table), statefiles.LAMBDA_DEPLOYMENT, "lambda.json"),
        (layout.backfill_plan(table), statefiles.BACKFILL_PLAN, "backfill.json"),
    ]
    singles += [
        (rel, statefiles.INCREMENTAL_WINDOW, "incremental window commit")
        for rel in archive.find(layout.incremental_dir(table), ".json")
    ]
    singles += [
        (rel, statefiles.RESTORE_PROGRESS, "restore progress")
        for rel in archive.find(layout.restores_dir(table), ".json")
    ]
    for rel, schema, what in singles:
        try:
            statefiles.read_json(archive, rel, schema, what, missing_ok=True)
        except statefiles.StateFileError as exc:
            out.append(_state_problem(exc, rel))
    try:
        ctx.gaps = statefiles.read_jsonl(archive, layout.gaps(table), statefiles.GAP, "gap record")
    except statefiles.StateFileError as exc:
        out.append(_state_problem(exc, layout.gaps(table)))
    redrives = layout.lambda_redrives(table)
    try:
        statefiles.read_jsonl(archive, redrives, statefiles.LAMBDA_REDRIVE, "redrive record")
    except statefiles.StateFileError as exc:
        out.append(_state_problem(exc, redrives))
    drills = layout.drills(table)
    try:
        statefiles.read_jsonl(archive, drills, statefiles.DRILL, "drill record")
    except statefiles.StateFileError as exc:
        out.append(_state_problem(exc, drills))
    for rel in archive.find(layout.checkpoints_dir(table), ".json"):
        try:
            doc = statefiles.read_json(archive, rel, statefiles.CHECKPOINT, "checkpoint")
        except statefiles.StateFileError as exc:
            out.append(_state_problem(exc, rel))
            continue
        assert doc is not None
        label = rel.split("/")[-2]
        ctx.checkpoints[(label, str(doc["shard_id"]))] = {**doc, "_path": rel}
    state = layout.state_dir(table)
    for name in archive.listdir(state):
        if name.startswith(layout.TABLE_DESCRIPTION_PREFIX) and name.endswith(".json"):
            rel = f"{state}/{name}"
            try:
                statefiles.read_json(
                    archive, rel, statefiles.TABLE_DESCRIPTION, "table description"
                )
            except statefiles.StateFileError as exc:
                out.append(_state_problem(exc, rel))
    return out


# -- change files ---------------------------------------------------------------------------


def change_file_paths(archive: Archive, table: str) -> tuple[list[str], list[str]]:
    """``(change files, other .parquet files)`` under the table's ``changes/`` folder."""
    files: list[str] = []
    stray: list[str] = []
    for rel in archive.find(layout.changes_table_dir(table), ".parquet"):
        (files if footers.parse_change_path(rel) is not None else stray).append(rel)
    return files, stray


def superseded_files(archive: Archive, table: str) -> set[str]:
    """Compaction inputs in their grace period (their merged file covers them)."""
    doc = statefiles.read_json(
        archive,
        f"{layout.state_dir(table)}/{PENDING_NAME}",
        statefiles.COMPACTION_PENDING,
        PENDING_NAME,
        missing_ok=True,
    )
    return {str(entry["path"]) for entry in (doc or {}).get("pending", [])}


def heads_of(checkpoints: dict[tuple[str, str], dict[str, Any]]) -> list[chain.Head]:
    """Chain heads from checkpoints: the shard's last durable file ends at ``sequence_number``."""
    heads = []
    for (label, shard_id), doc in checkpoints.items():
        if doc.get("sequence_number"):
            head = doc.get("chain_head") or {}
            heads.append(
                chain.Head(
                    label,
                    shard_id,
                    layout.pad_seq(str(doc["sequence_number"])),
                    str(doc.get("_path", "")),
                    head.get("dt"),
                    chained=bool(head),
                )
            )
    return heads


@register("change files")
def check_change_files(ctx: CheckContext) -> list[Problem]:
    """Footers of every change file (in parallel), each on its own and as chains."""
    archive, table = ctx.archive, ctx.table
    files, stray = change_file_paths(archive, table)
    out = [Problem(STRAY_FILE, rel, "is not named like a change file") for rel in stray]
    try:
        superseded = superseded_files(archive, table)
    except statefiles.StateFileError:
        superseded = set()  # reported by the state-file check
    with _bar(ctx, len(files), f"checking {table}: footers") as bar:
        ctx.states = footers.read_states(archive, files, progress=bar.update)
    for state in ctx.states:
        out.extend(chain.file_problems(state))
    report = chain.chain_problems(
        ctx.states, heads=heads_of(ctx.checkpoints), superseded=superseded
    )
    ctx.unchained = report.unchained
    out.extend(report.problems)
    if ctx.deep:
        readable = [s for s in ctx.states if s.error is None]
        bar = _bar(ctx, len(readable), f"checking {table}: rows")
        with bar, ThreadPoolExecutor(max_workers=4) as pool:
            for problems in pool.map(lambda s: _deep_problems(archive, s), readable):
                out.extend(problems)
                bar.update(1)
    return out


def _deep_problems(archive: Archive, state: FileState) -> list[Problem]:
    try:
        rows = pq.read_table(archive.path(state.rel), filesystem=archive.arrow_fs)
    except Exception as exc:  # a corrupt page: pyarrow's own error
        return [Problem(chain.UNREADABLE, state.rel, f"rows cannot be read ({exc})")]
    out = chain.content_problems(state, rows)
    missing = [name for name in CHANGE_SCHEMA.names if name not in rows.column_names]
    if missing:
        return [*out, Problem(ROW_PROBLEM, state.rel, f"columns missing: {', '.join(missing)}")]
    bad: list[str] = []
    expected_shard = None if state.name.shard_id == layout.LAMBDA_SHARD else state.name.shard_id
    for number, row in enumerate(rows.select(CHANGE_SCHEMA.names).to_pylist()):
        why = _row_problem(row, expected_shard)
        if why:
            bad.append(f"row {number}: {why}")
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        out.append(Problem(ROW_PROBLEM, state.rel, "; ".join(bad[:3]) + more))
    return out


def _row_problem(row: dict[str, Any], shard_id: str | None) -> str | None:
    for item in CHANGE_SCHEMA:
        if not item.nullable and row[item.name] is None:
            return f"{item.name} is null"
    name = row["event_name"]
    if name not in EVENT_NAMES:
        return f"event_name {name!r}"
    if name == "REMOVE" and row["new_image"] is not None:
        return "a REMOVE with a new image"
    if name != "REMOVE" and row["new_image"] is None:
        return f"an {name} without a new image"
    if name == "INSERT" and row["old_image"] is not None:
        return "an INSERT with an old image"
    if row["shard_id"] != shard_id:
        return f"shard_id {row['shard_id']!r} in a file of shard {shard_id!r}"
    for column in ("keys", "new_image", "old_image"):
        text = row[column]
        if text is None:
            continue
        try:
            canonical = canonicalize_text(text)
        except Exception as exc:
            return f"{column} is not DynamoDB JSON ({exc})"
        if canonical != text:
            return f"{column} is not canonical DynamoDB JSON"
    return None


# -- snapshots ------------------------------------------------------------------------------


@register("snapshots")
def check_snapshots(ctx: CheckContext) -> list[Problem]:
    """Every committed snapshot's part files against its ``_manifest.json``."""
    archive, table = ctx.archive, ctx.table
    manifests = []
    out: list[Problem] = []
    for entry in archive.listdir(layout.snapshots_table_dir(table)):
        if not entry.startswith("snapshot_id="):
            continue
        rel = layout.snapshot_manifest(table, entry.split("=", 1)[1])
        try:
            manifest = statefiles.read_json(
                archive, rel, statefiles.SNAPSHOT_MANIFEST, "snapshot manifest", missing_ok=True
            )
        except statefiles.StateFileError as exc:
            out.append(_state_problem(exc, rel))
            continue
        if manifest is not None:
            manifests.append((rel, manifest))
    parts = [(rel, f) for rel, manifest in manifests for f in manifest["files"]]
    with _bar(ctx, len(parts), f"checking {table}: snapshots") as bar:
        for rel, part in parts:
            out.extend(_part_problems(archive, rel, part))
            bar.update(1)
    for rel, manifest in manifests:
        total = sum(int(f["item_count"]) for f in manifest["files"])
        if total != manifest["item_count"]:
            out.append(
                Problem(
                    SNAPSHOT_MISMATCH,
                    rel,
                    f"its files' item counts add up to {total}, its item_count says "
                    f"{manifest['item_count']}",
                )
            )
    return out


def _part_problems(archive: Archive, manifest_rel: str, part: dict[str, Any]) -> list[Problem]:
    path = str(part["path"])
    try:
        data = archive.get_bytes(path)
    except FileNotFoundError:
        return [Problem(SNAPSHOT_MISMATCH, path, f"is listed in {manifest_rel} but missing")]
    out = []
    if hashlib.sha256(data).hexdigest() != part["sha256"]:
        out.append(Problem(SNAPSHOT_MISMATCH, path, f"its sha256 differs from {manifest_rel}'s"))
    try:
        rows = pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows
    except Exception as exc:
        return [*out, Problem(chain.UNREADABLE, path, f"cannot be read as Parquet ({exc})")]
    if rows != part["item_count"]:
        out.append(
            Problem(
                SNAPSHOT_MISMATCH,
                path,
                f"holds {rows} items, {manifest_rel} says {part['item_count']}",
            )
        )
    return out


# -- Lambda mode ----------------------------------------------------------------------------


@register("failed Lambda batches")
def check_lambda_failures(ctx: CheckContext) -> list[Problem]:
    """Every failed batch not redriven (Lambda mode, or any mode with a location configured)."""
    archive, table = ctx.archive, ctx.table
    try:
        current = coverage.current(archive, table)
    except statefiles.StateFileError:
        return []  # reported by the state-file check
    lambda_mode = current is not None and current.get("mode") in lambda_failures.LAMBDA_MODES
    if not lambda_mode and not os.environ.get(lambda_failures.ENV_LOCATION):
        return []
    location = lambda_failures.location_url(archive)
    try:
        report = lambda_failures.lambda_failure_gaps(archive, table)
    except statefiles.StateFileError:
        return []  # reported by the state-file check
    except Exception as exc:  # the destination cannot be listed: the batches are unknown
        return [Problem(LAMBDA_FAILURES_UNKNOWN, str(location), f"cannot be listed: {exc}")]
    if report.location is None:
        reason = lambda_failures.location_unknown(archive, flag=None)
        return [Problem(LAMBDA_FAILURES_UNKNOWN, layout.coverage(table), reason)]
    return [
        Problem(
            LAMBDA_BATCH_FAILED,
            str(gap["object"]),
            f"{gap['batch_size']} record(s) of shard {gap['shard_id']} from {gap['from']} to "
            f"{gap['to']} are in no change file ({gap['status']}): run `{gap['redrive']}`",
        )
        for gap in report.gaps
    ]


# -- running --------------------------------------------------------------------------------


@dataclass
class CheckResult:
    table: str
    problems: list[Problem]
    known: list[Problem]
    files: int
    unchained: int
    context: CheckContext

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "change_files": self.files,
            "unchained_files": self.unchained,
            "problems": [p.to_json() for p in self.problems],
            "known_holes": [p.to_json() for p in self.known],
        }


def run_checks(
    archive: Archive, table: str, *, deep: bool = False, progress: bool = False
) -> CheckResult:
    """Run every registered check; problems inside ranges on record as lost are ``known``."""
    ctx = CheckContext(archive, table, deep=deep, progress=progress)
    found: list[Problem] = []
    for _, check in CHECKS:
        found.extend(check(ctx))
    holes = chain.holes_of(ctx.gaps)
    problems = [p for p in found if not chain.on_record(p, holes)]
    known = [p for p in found if chain.on_record(p, holes)]
    return CheckResult(table, problems, known, len(ctx.states), len(ctx.unchained), ctx)


# -- the run's own check ----------------------------------------------------------------------


def verify_resume(archive: Archive, table: str) -> None:
    """Before ``run`` trusts its resume points: every unfinished shard's chain is intact.

    Reads the checkpoints and the footers of the files of every shard not yet read to its
    end (open shards roll over every few hours, so these are few): the last file must be the
    checkpoint's head, and every file must link to the one before. Ranges already on record
    as lost (gaps.jsonl) do not count.

    Raises:
        StateFileError: a checkpoint, coverage.json or gaps.jsonl does not parse (exit 2).
        ChainBroken: a head file is missing or damaged, or files after it do not link (exit 4).
    """
    ctx = CheckContext(archive, table)
    run_state = ("/checkpoints/", "/coverage.json", "/gaps.jsonl")
    for problem in check_state_files(ctx):
        if any(mark in "/" + problem.path for mark in run_state):
            raise statefiles.StateFileError(archive.uri(problem.path), problem.detail)
    files, _ = change_file_paths(archive, table)
    heads = {
        (h.label, h.shard_id): h
        for h in heads_of(ctx.checkpoints)
        if not ctx.checkpoints[(h.label, h.shard_id)].get("closed")
    }
    closed = {key for key, doc in ctx.checkpoints.items() if doc.get("closed")}
    wanted: list[str] = []
    for rel in files:
        parsed = footers.parse_change_path(rel)
        assert parsed is not None
        name = parsed[2]
        if name.shard_id != layout.LAMBDA_SHARD and (name.label, name.shard_id) not in closed:
            wanted.append(rel)
    try:
        superseded = superseded_files(archive, table)
    except statefiles.StateFileError:
        superseded = set()
    problems = chain.verify_files(
        archive,
        [r for r in wanted if r not in superseded],
        heads=heads.values(),
        superseded=superseded,
        context=files,
    )
    holes = chain.holes_of(ctx.gaps)
    problems = [p for p in problems if p.kind != chain.OVERLAP and not chain.on_record(p, holes)]
    chain.refuse_if_broken(
        problems,
        f"not archiving {table}: its resume point cannot be trusted",
        f"run `{chain.check_command(table, archive, repair=True)}`",
    )


__all__ = ["CHECKS", "CheckContext", "CheckResult", "register", "run_checks", "verify_resume"]
