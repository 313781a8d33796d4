"""Snapshot manifests: a snapshot exists once its ``_manifest.json`` is written (last).

:class:`SnapshotWriter` writes a snapshot's part files as rows arrive (a part is flushed once it
holds ``part_bytes`` of text, so no table is ever held whole in memory) and commits the
manifest after every part is durable. Both snapshot methods (scan, native export) use it.
"""

from __future__ import annotations

import hashlib
import io
import logging
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from archiver.format import layout, statefiles
from archiver.format.schema import COMPRESSION, ROW_GROUP_ROWS, SNAPSHOT_SCHEMA
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow

log = logging.getLogger(__name__)

# Text per part before it is flushed: parts of some tens of MB once compressed, which readers
# (DuckDB, Athena) handle well, while the writer holds at most this much (plus Python's
# per-string overhead) in memory.
DEFAULT_PART_BYTES = 128 * 1024 * 1024


def list_snapshots(archive: Archive, table: str) -> list[dict[str, Any]]:
    """Committed snapshots of ``table`` (their manifests), oldest ``valid_from`` first.

    A snapshot folder without ``_manifest.json`` is an unfinished or failed snapshot and is
    ignored.
    """
    manifests = []
    for entry in archive.listdir(layout.snapshots_table_dir(table)):
        if not entry.startswith("snapshot_id="):
            continue
        snapshot_id = entry.split("=", 1)[1]
        manifest = statefiles.read_json(
            archive,
            layout.snapshot_manifest(table, snapshot_id),
            statefiles.SNAPSHOT_MANIFEST,
            "snapshot manifest",
            missing_ok=True,
        )
        if manifest is not None:
            manifests.append(manifest)
    return sorted(manifests, key=lambda m: parse_iso(m["valid_from"]))


def write_manifest(archive: Archive, table: str, manifest: dict[str, Any]) -> None:
    """Commit a snapshot: call only after every part file listed in it is durable."""
    archive.write_json(layout.snapshot_manifest(table, manifest["snapshot_id"]), manifest)


def export_id_of_source(source: str) -> str:
    """The export id a converted export's ``source`` (its folder URL) ends with."""
    return source.rstrip("/").rsplit("/", 1)[-1]


def converted_exports(archive: Archive, table: str) -> dict[str, str]:
    """``{export_id: snapshot_id}`` of the native exports already converted for ``table``."""
    return {
        export_id_of_source(str(manifest.get("source") or "")): manifest["snapshot_id"]
        for manifest in list_snapshots(archive, table)
        if manifest.get("method") == "export" and manifest.get("source")
    }


class SnapshotWriter:
    """Writes one snapshot's part files as rows arrive, then commits its manifest.

    Rows are ``(keys, item)``, both canonical DynamoDB JSON. Nothing is visible to readers
    until :meth:`commit` writes the manifest; :meth:`abort` removes the parts written so far.
    """

    def __init__(
        self,
        archive: Archive,
        table: str,
        snapshot_id: str,
        *,
        part_bytes: int = DEFAULT_PART_BYTES,
    ) -> None:
        self.archive = archive
        self.table = table
        self.snapshot_id = snapshot_id
        self.part_bytes = part_bytes
        self.files: list[dict[str, Any]] = []
        self.item_count = 0
        self._keys: list[str] = []
        self._items: list[str] = []
        self._buffered = 0

    @property
    def full(self) -> bool:
        """Whether the buffered rows are due to be flushed as a part."""
        return self._buffered >= self.part_bytes

    def add(self, keys: str, item: str) -> None:
        """Buffer one row; the caller flushes when :attr:`full` (the writer never blocks)."""
        self._keys.append(keys)
        self._items.append(item)
        self._buffered += len(keys) + len(item)

    def flush(self) -> None:
        """Write the buffered rows as the next part file (no-op when nothing is buffered)."""
        if not self._keys:
            return
        rows = pa.table({"keys": self._keys, "item": self._items}, schema=SNAPSHOT_SCHEMA)
        buffer = io.BytesIO()
        pq.write_table(
            rows,
            buffer,
            compression=COMPRESSION,
            row_group_size=ROW_GROUP_ROWS,
            write_statistics=True,
        )
        data = buffer.getvalue()
        rel = layout.snapshot_part(self.table, self.snapshot_id, len(self.files))
        self.archive.put_bytes(rel, data)
        self.files.append(
            {"path": rel, "item_count": rows.num_rows, "sha256": hashlib.sha256(data).hexdigest()}
        )
        self.item_count += rows.num_rows
        self._keys, self._items, self._buffered = [], [], 0

    def commit(
        self,
        *,
        table_id: str,
        method: str,
        valid_from: datetime,
        log_from: datetime,
        started_at: datetime,
        finished_at: datetime,
        key_schema: list[dict[str, str]],
        source: str,
    ) -> dict[str, Any]:
        """Flush the last part and write the manifest (the commit); return the manifest."""
        self.flush()
        manifest = {
            "table": self.table,
            "table_id": table_id,
            "snapshot_id": self.snapshot_id,
            "method": method,
            "valid_from": iso_ms(valid_from),
            "log_from": iso_ms(log_from),
            "started_at": iso_ms(started_at),
            "finished_at": iso_ms(finished_at),
            "item_count": self.item_count,
            "key_schema": [
                {"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]} for k in key_schema
            ],
            "source": source,
            "files": self.files,
            "created_at": iso_ms(utcnow()),
        }
        write_manifest(self.archive, self.table, manifest)
        return manifest

    def abort(self) -> None:
        """Remove the parts written so far (best effort: without a manifest they are ignored
        anyway)."""
        self._keys, self._items, self._buffered = [], [], 0
        for entry in self.files:
            try:
                self.archive.delete(entry["path"])
            except OSError as exc:
                log.warning("could not remove %s of an aborted snapshot: %s", entry["path"], exc)
        self.files = []
        self.item_count = 0
