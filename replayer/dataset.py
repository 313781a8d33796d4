"""The archive's change log and snapshots as Arrow datasets, for DuckDB to scan.

Listing is explicit (one ``find`` per table, pruned by ``dt``) rather than pyarrow's own
discovery, so a partition range costs one listing and partition values stay strings (a table
named ``007`` stays ``007``). A file that vanishes between listing and reading (compaction
deleted it after its grace period) makes the caller re-list and retry: see
:func:`with_relisting`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import TypeVar

import pyarrow.dataset as ds

from archiver import layout
from archiver.schema import CHANGE_SCHEMA, PARTITION_SCHEMA, SNAPSHOT_SCHEMA
from archiver.storage import Archive
from replayer.errors import ReplayError

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANGES_WITH_PARTITIONS = CHANGE_SCHEMA.append(PARTITION_SCHEMA.field("table_name")).append(
    PARTITION_SCHEMA.field("dt")
)


class ArchivedObjectUnavailable(ReplayError):
    """An archive object is in an S3 storage class that must be restored before reading."""


def _partition_value(path: str, name: str) -> str | None:
    for part in path.split("/"):
        if part.startswith(name + "="):
            return part[len(name) + 1 :]
    return None


def change_files(
    archive: Archive,
    table: str | None = None,
    dt_from: date | str | None = None,
    dt_to: date | str | None = None,
) -> list[str]:
    """Relative paths of change files, optionally for one table and a ``dt`` range (inclusive)."""
    start = str(dt_from) if dt_from is not None else None
    end = str(dt_to) if dt_to is not None else None
    root = layout.changes_table_dir(table) if table is not None else layout.CHANGES
    out = []
    for rel in archive.find(root, ".parquet"):
        dt = _partition_value(rel, "dt")
        if dt is None or (start and dt < start) or (end and dt > end):
            continue
        out.append(rel)
    return out


def changes_dataset(archive: Archive, files: list[str]) -> ds.Dataset:
    """A dataset over the given change files with ``table_name`` and ``dt`` as string columns."""
    partitioning = ds.partitioning(PARTITION_SCHEMA, flavor="hive")
    return ds.dataset(
        [archive.path(rel) for rel in files],
        schema=CHANGES_WITH_PARTITIONS,
        format="parquet",
        filesystem=archive.arrow_fs,
        partitioning=partitioning,
        partition_base_dir=archive.path(layout.CHANGES),
    )


def snapshot_dataset(archive: Archive, files: list[str]) -> ds.Dataset:
    """A dataset over one snapshot's part files (columns ``keys``, ``item``)."""
    return ds.dataset(
        [archive.path(rel) for rel in files],
        schema=SNAPSHOT_SCHEMA,
        format="parquet",
        filesystem=archive.arrow_fs,
    )


def _is_vanished(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, FileNotFoundError) or "NoSuchKey" in text or "does not exist" in text


def _is_archived(exc: BaseException) -> bool:
    return "InvalidObjectState" in str(exc) or "InvalidObjectState" in repr(
        getattr(exc, "__cause__", None)
    )


def with_relisting(action: Callable[[], T], *, what: str, attempts: int = 3) -> T:
    """Run ``action`` (which lists and reads); if a listed file vanished meanwhile, list again.

    Compaction deletes its inputs only after a grace period, so a second listing sees the
    compacted file instead; duplicates across the two are harmless (replay dedupes by
    ``event_id``). Objects in S3 Glacier Deep Archive raise one clear error instead.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:  # pyarrow/duckdb wrap the filesystem's error in their own
            if _is_archived(exc):
                raise ArchivedObjectUnavailable(
                    f"{what}: an archive object is in S3 Glacier Deep Archive or Flexible Retrieval "
                    f"and must be restored from S3 before reading ({exc})"
                ) from exc
            if not _is_vanished(exc) or attempt == attempts:
                raise
            log.info("%s: a file vanished while reading (compaction?); listing again", what)
    raise AssertionError("unreachable")
