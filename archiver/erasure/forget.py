"""Erase keys' whole history from the archive: every row of them, in every object, for good.

Objects swept (all of the table's): change files (the poller's, the Lambda's, compaction
inputs in their grace period, files ``check --repair`` quarantined), snapshot parts, native
export data files under ``exports/`` (of this table), and anything under ``_staging/<table>/``.
A row goes when its key is one of the erased keys: in a change row that takes its old and new
images with it.

Finding what holds a key reads as little as it can: each Parquet object's footer (one small
ranged read), then, only in row groups whose ``keys`` statistics (min/max) can contain an
erased key, the ``keys`` column alone; only objects that do hold one are read whole and
rewritten. Files sorted by key (compacted change files) skip most row groups; export data
(gzip'd text, no statistics) is read whole. ``--where`` first finds the keys: every key
with a change row (or snapshot item, as ``new_image``) for which the predicate held, one DuckDB
expression evaluated with file, network and extension access off.

Every derived fact stays true. A change file keeps its name and chain links (so resume
points, checkpoints, compaction's pending list and the integrity chain are unchanged); its
footer gets the new row count and content hash and the erasure's id. A snapshot part is
replaced by a new part, then its ``_manifest.json`` (the commit) lists it with its count and
sha256, then the old part is deleted. An export's ``manifest-files.json`` and
``manifest-summary.json`` (counts, MD5) are recomputed after its data files.

Crash safety: the objects to rewrite are written to ``_state/<table>/forget-pending.json``
(with the keys' keyed hashes, never the keys) before the first change; each rewrite is one
atomic write, idempotent; a crash leaves every object old or new, and the next ``forget`` of
the table — with the same keys, other keys, or none (``--resume``) — finishes the pending
erasure first, finding its rows by hashing each key with the archive's secret. The erasure
is logged in ``_state/<table>/erasures.jsonl`` (``archiver.format.erasure_log``) when complete.

Versioned buckets keep the old versions, which still hold the rows: ``--purge-versions``
deletes the noncurrent versions of every object the erasure rewrote or deleted
(s3:DeleteObjectVersion); without it the summary counts them. Objects under S3 Object Lock
(retention in force or a legal hold) cannot lose their data: ``forget`` refuses (exit 4)
before changing anything, naming them and their retain-until dates.

The stream keeps records for 24 hours: records of an erased key that were still in the stream
(not archived yet) are archived by the next ``run`` as usual, and so are later writes to it.
Re-run the same ``forget`` 24 hours after the last write to the key (or use ``--watch``).

Run one ``forget`` (or ``compact``) per table at a time.

Examples:
  ddb-archiver forget --table-name orders --archive s3://bucket/prefix \\
      --key '{"pk": {"S": "customer#42"}}' --reason "GDPR request 2026-118" --purge-versions
  ddb-archiver forget --table-name orders --archive ./demo-archive --keys-file keys.jsonl --dry-run
  ddb-archiver forget --table-name orders --archive ./demo-archive \\
      --where "new_image->>'$.email.S' = 'a@b.c'"
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from archiver.aws.error_table import UsageError
from archiver.erasure import rewrite as erasure
from archiver.erasure.rewrite import KeyMatcher
from archiver.format import erasure_log as erasures
from archiver.format import layout, statefiles, tables
from archiver.format.exports.full import archived_exports
from archiver.format.manifests import converted_exports, list_snapshots, write_manifest
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow

log = logging.getLogger(__name__)

CHANGE = "change"
SNAPSHOT = "snapshot"
EXPORT = "export"
PARQUET = "parquet"
ITEMS = "items"
WORKERS = 16
ITEM_SUFFIXES = (".json.gz", ".ion.gz", ".json", ".ion", ".gz")

_PENDING: statefiles.Schema = {
    "erasure_id": (statefiles.STR, True, "a string"),
    "key_hashes": (statefiles._list_of(statefiles.STR), True, "a list of hex strings"),
    "targets": (statefiles._list_of(statefiles.DICT), True, "a list of objects"),
}


@dataclass
class Target:
    """One object holding erased rows, and how it is rewritten."""

    path: str
    kind: str
    rows: int
    group: str = ""  # a snapshot's manifest path, an export's folder
    replacement: str = ""  # a snapshot part: the part that replaces it

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Target:
        return cls(**{k: doc[k] for k in ("path", "kind", "rows", "group", "replacement")})


@dataclass
class Found:
    """What a search read and found."""

    targets: list[Target] = field(default_factory=list)
    objects_listed: int = 0
    row_groups: int = 0
    row_groups_read: int = 0
    read_whole: int = 0


@dataclass
class Outcome:
    """One erasure, done (or planned, for ``--dry-run``)."""

    erasure_id: str
    targets: list[Target]
    resumed: bool = False
    versions_purged: int = 0
    versions_left: int = 0
    found: Found | None = None

    @property
    def rows_removed(self) -> int:
        return sum(t.rows for t in self.targets)


# -- finding ------------------------------------------------------------------------------


def _export_folders(archive: Archive, table: str) -> list[layout.ExportFolderPath]:
    """Export folders of ``table``: its summary names it, or a snapshot of it came from it."""
    converted = converted_exports(archive, table)
    return [
        export.folder
        for export in archived_exports(archive)
        if export.table_name == table
        or (export.table_name is None and export.folder.export_id in converted)
    ]


def _candidates(archive: Archive, table: str) -> list[Target]:
    """Every object of ``table`` that may hold rows (``rows`` not counted yet)."""
    out = [
        Target(rel, CHANGE, 0) for rel in archive.find(layout.changes_table_dir(table), ".parquet")
    ]
    quarantine = f"{layout.state_dir(table)}/quarantine"
    out += [Target(rel, CHANGE, 0) for rel in archive.find(quarantine, ".parquet")]
    committed: dict[str, str] = {}
    for manifest in list_snapshots(archive, table):
        rel = layout.snapshot_manifest(table, manifest["snapshot_id"])
        for part in manifest["files"]:
            committed[str(part["path"])] = rel
    for rel in archive.find(layout.snapshots_table_dir(table), ".parquet"):
        group = committed.get(rel)
        out.append(Target(rel, SNAPSHOT, 0, group) if group else Target(rel, PARQUET, 0))
    for folder in _export_folders(archive, table):
        out += [Target(rel, EXPORT, 0, folder.path) for rel in archive.find(folder.data_dir)]
    for rel in archive.find(layout.table_staging_dir(table)):
        if rel.endswith(".parquet"):
            out.append(Target(rel, PARQUET, 0))
        elif rel.endswith(ITEM_SUFFIXES):
            out.append(Target(rel, ITEMS, 0))
    return out


def find(
    archive: Archive,
    table: str,
    matcher: KeyMatcher,
    names: list[str] | None,
    *,
    workers: int = WORKERS,
) -> Found:
    """Every object of ``table`` holding rows of the erased keys, with their row counts."""
    found = Found()
    candidates = _candidates(archive, table)
    found.objects_listed = len(candidates)

    def count(target: Target) -> Target:
        if target.kind in (EXPORT, ITEMS):
            if names is None:
                raise UsageError(
                    f"{archive.uri(target.path)} holds items, but the table's key schema is "
                    "unknown (no archived description or snapshot): run `ddb-archiver run` once"
                )
            target.rows = erasure.count_items_file(archive, target.path, matcher, names)
            found.read_whole += 1
        else:
            counted = erasure.count_parquet(archive, target.path, matcher)
            target.rows = counted.rows
            found.row_groups += counted.row_groups
            found.row_groups_read += counted.row_groups_read
        return target

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(candidates)))) as pool:
        found.targets = [t for t in pool.map(count, candidates) if t.rows]
    _number_replacements(archive, found.targets)
    return found


def _number_replacements(archive: Archive, targets: list[Target]) -> None:
    """Give each snapshot part to replace the path of a new part, after the folder's last."""
    by_group: dict[str, list[Target]] = {}
    for target in targets:
        if target.kind == SNAPSHOT:
            by_group.setdefault(target.group, []).append(target)
    for group, parts in by_group.items():
        folder = group.rsplit("/", 1)[0]
        numbers = [layout.snapshot_part_number(n) for n in archive.listdir(folder)]
        last = max((n for n in numbers if n is not None), default=-1)
        for offset, target in enumerate(sorted(parts, key=lambda t: t.path), 1):
            target.replacement = f"{folder}/{layout.snapshot_part_name(last + offset)}"


# -- rewriting ----------------------------------------------------------------------------


def _touched(targets: Iterable[Target]) -> list[str]:
    """Every path an erasure wrote or deleted: the objects whose old versions hold the rows."""
    out = []
    for target in targets:
        out.append(target.path)
        if target.replacement:
            out.append(target.replacement)
    return out


def _pending(archive: Archive, table: str) -> dict[str, Any] | None:
    return statefiles.read_json(
        archive, layout.forget_pending(table), _PENDING, "forget-pending.json", missing_ok=True
    )


def execute(
    archive: Archive,
    table: str,
    pending: dict[str, Any],
    matcher: KeyMatcher,
    names: list[str] | None,
    *,
    purge: bool,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Carry out a pending erasure (idempotent: a re-run after a crash finishes it)."""
    erasure_id = str(pending["erasure_id"])
    targets = [Target.from_json(t) for t in pending["targets"]]
    exports: dict[str, list[str]] = {}
    snapshots: dict[str, list[Target]] = {}
    for target in targets:
        if target.kind == CHANGE:
            erasure.rewrite_change_file(archive, target.path, matcher, erasure_id)
        elif target.kind == PARQUET:
            if archive.exists(target.path):
                erasure.rewrite_parquet(archive, target.path, matcher)
        elif target.kind in (EXPORT, ITEMS):
            assert names is not None
            erasure.rewrite_items_file(archive, target.path, matcher, names)
            if target.kind == EXPORT:
                exports.setdefault(target.group, []).append(target.path)
        else:
            snapshots.setdefault(target.group, []).append(target)
        if progress is not None:
            progress(1)
    for folder, changed in exports.items():
        assert names is not None
        erasure.update_export_manifests(archive, folder, changed, names)
    for manifest_rel, parts in snapshots.items():
        _replace_parts(archive, manifest_rel, parts, matcher, erasure_id)
    purged, left = erasure.versions(archive, _touched(targets), purge)
    return Outcome(erasure_id, targets, versions_purged=purged, versions_left=left)


def _replace_parts(
    archive: Archive,
    manifest_rel: str,
    parts: list[Target],
    matcher: KeyMatcher,
    erasure_id: str,
) -> None:
    """New parts first, then the manifest that lists them (the commit), then old parts go."""
    manifest = archive.read_json(manifest_rel)
    files = {str(f["path"]): f for f in manifest["files"]}
    changed = False
    for part in parts:
        if part.path not in files:
            continue  # committed by an earlier attempt
        done = erasure.rewrite_parquet(archive, part.path, matcher, to=part.replacement)
        entry = {"path": part.replacement, "item_count": done.item_count, "sha256": done.sha256}
        manifest["files"] = [entry if f["path"] == part.path else f for f in manifest["files"]]
        changed = True
    if changed:
        manifest["item_count"] = sum(int(f["item_count"]) for f in manifest["files"])
        manifest["erasures"] = [*manifest.get("erasures", []), erasure_id]
        write_manifest(archive, str(manifest["table"]), manifest)
    for part in parts:
        archive.delete(part.path)


def finish(
    archive: Archive,
    table: str,
    pending: dict[str, Any],
    matcher: KeyMatcher,
    names: list[str] | None,
    *,
    purge: bool,
    now: datetime,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Execute a pending erasure, log it, and drop the pending list (in that order)."""
    outcome = execute(archive, table, pending, matcher, names, purge=purge, progress=progress)
    outcome.resumed = bool(pending.get("resumed"))
    erasures.append_log(
        archive,
        table,
        {
            "erasure_id": outcome.erasure_id,
            "at": iso_ms(now),
            "started_at": pending.get("started_at"),
            "reason": pending.get("reason"),
            "selector": pending.get("selector"),
            "key_hashes": list(pending["key_hashes"]),
            "objects_rewritten": len(outcome.targets),
            "rows_removed": outcome.rows_removed,
            "objects": [t.path for t in outcome.targets],
            "noncurrent_versions_purged": outcome.versions_purged,
            "noncurrent_versions_left": outcome.versions_left,
        },
    )
    archive.delete(layout.forget_pending(table))
    return outcome


def forget(
    archive: Archive,
    table: str,
    keys: Sequence[str] | None,
    *,
    reason: str = "",
    selector: str = "key",
    purge_versions: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
    names: list[str] | None = None,
    log_empty: bool = True,
) -> list[Outcome]:
    """Erase ``keys`` (canonical key JSON) from every object of ``table``.

    An unfinished erasure of the table (a crash, an interrupted run) is finished first. With
    ``keys`` None, only that. Returns the erasures done (or, ``dry_run``, planned).

    Raises:
        erasure.ObjectLocked: an object to rewrite is under Object Lock; nothing was changed.
    """
    now = now or utcnow()
    names = names if names is not None else tables.archived_key_names(archive, table)
    # A new archive's secret is written only with the first pending list: until then (a
    # refusal, a dry run) nothing in the archive changes.
    stored = erasures.load_secret(archive, create=False)
    secret = stored or secrets.token_bytes(erasures.SECRET_BYTES)
    matcher = KeyMatcher.of_keys(keys, secret) if keys else None
    outcomes: list[Outcome] = []
    pending = _pending(archive, table)
    same = (
        pending is not None
        and matcher is not None
        and (set(pending["key_hashes"]) == set(matcher.hashes))
    )
    if pending is not None and not same:
        hashed = KeyMatcher.of_hashes(pending["key_hashes"], secret)
        targets = [Target.from_json(t) for t in pending["targets"]]
        if dry_run:
            outcomes.append(Outcome(str(pending["erasure_id"]), targets, resumed=True))
        else:
            erasure.check_locks(archive, [t.path for t in targets], now)
            pending["resumed"] = True
            outcomes.append(finish(archive, table, pending, hashed, names,
                                   purge=purge_versions, now=now))  # fmt: skip
    if matcher is None:
        return outcomes
    found = find(archive, table, matcher, names)
    if same:
        assert pending is not None
        known = {t["path"] for t in pending["targets"]}
        extra = [t for t in found.targets if t.path not in known]
        _number_replacements(archive, extra)
        planned = [Target.from_json(t) for t in pending["targets"]] + extra
        erasure_id, started = str(pending["erasure_id"]), pending.get("started_at")
    else:
        planned, erasure_id, started = found.targets, layout.new_erasure_id(now), iso_ms(now)
    if dry_run:
        outcomes.append(Outcome(erasure_id, planned, resumed=same, found=found))
        return outcomes
    if not planned and not log_empty:
        outcomes.append(Outcome(erasure_id, [], found=found))
        return outcomes
    erasure.check_locks(archive, [t.path for t in planned], now)
    doc = {
        "erasure_id": erasure_id,
        "started_at": started,
        "reason": reason,
        "selector": selector,
        "key_hashes": sorted(matcher.hashes),
        "targets": [asdict(t) for t in planned],
        "resumed": same,
    }
    if stored is None:
        erasures.save_secret(archive, secret)
    archive.write_json(layout.forget_pending(table), doc)
    outcome = finish(archive, table, doc, matcher, names, purge=purge_versions, now=now)
    outcome.found = found
    outcomes.append(outcome)
    return outcomes
