"""Snapshot manifests: a snapshot exists once its ``_manifest.json`` is written (last)."""

from __future__ import annotations

from typing import Any

from archiver import layout
from archiver.storage import Archive
from archiver.timefmt import parse_iso


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
        manifest = archive.read_json_or(layout.snapshot_manifest(table, snapshot_id))
        if manifest is not None:
            manifests.append(manifest)
    return sorted(manifests, key=lambda m: parse_iso(m["valid_from"]))


def write_manifest(archive: Archive, table: str, manifest: dict[str, Any]) -> None:
    """Commit a snapshot: call only after every part file listed in it is durable."""
    archive.write_json(layout.snapshot_manifest(table, manifest["snapshot_id"]), manifest)
