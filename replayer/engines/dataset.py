"""The archive's change log and snapshots as Arrow datasets, for DuckDB to scan.

Listing is explicit (one ``find`` per table, pruned by ``dt``) rather than pyarrow's own
discovery, so a partition range costs one listing and partition values stay strings (a table
named ``007`` stays ``007``). A file that vanishes between listing and reading (compaction
deleted it after its grace period) makes the caller re-list and retry: see
:func:`with_relisting`. The datasets are :mod:`archiver.format.arrow_scan`'s, which DuckDB
scans over the Python filesystem of an S3 archive without deadlocking on the GIL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from archiver.aws.error_table import ObjectInColdStorage, is_error
from archiver.format import arrow_scan, layout
from archiver.format.schema import CHANGE_SCHEMA, PARTITION_SCHEMA, SNAPSHOT_SCHEMA
from archiver.format.storage import Archive
from replayer.exceptions import DamagedFile, ReplayError

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANGES_WITH_PARTITIONS = CHANGE_SCHEMA.append(PARTITION_SCHEMA.field("table_name")).append(
    PARTITION_SCHEMA.field("dt")
)


class ArchivedObjectUnavailable(ReplayError):
    """An archive object is in an S3 storage class that must be restored before reading."""


# S3 answers GetObject on an object in Glacier Flexible Retrieval / Deep Archive (not restored)
# with InvalidObjectState (``ObjectInColdStorage`` in the error table); s3fs turns that into a
# bare PermissionError. The reading filesystem below re-raises it as an ObjectNeedsRestore
# naming the object, which pyarrow passes on as it is — but DuckDB flattens it into text, so
# its message carries this marker and the path.
_ARCHIVED_MARK = "ObjectNeedsRestore"
_ARCHIVED_OBJECT = re.compile(_ARCHIVED_MARK + r" \[([^\]]+)\]")
# What DuckDB's message says when a file it was to read is gone (it has no finer type): its own
# Parquet reader on a local path, or the FileNotFoundError that pyarrow's fsspec handler raised
# under a registered dataset (S3: s3fs's, or botocore's NoSuchKey), which DuckDB flattens.
_VANISHED = re.compile(
    "No files found that match the pattern|No such file or directory|FileNotFoundError"
    "|NoSuchKey|does not exist"
)


class ObjectNeedsRestore(OSError):
    """Reading an S3 object failed because of its storage class (it must be restored first)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{_ARCHIVED_MARK} [{path}]: object must be restored from S3 first")
        self.path = path


def duckdb_message_match(exc: BaseException, pattern: re.Pattern[str]) -> re.Match[str] | None:
    """``pattern`` searched in the message of a DuckDB error, else ``None``.

    DuckDB raises one ``InvalidInputException`` for bad input and for any failure of a Python
    object it reads (a registered Arrow dataset), with the cause's type and text only in its
    message, and no error code. This is the one place that reads that message; a test pins
    the messages of the installed DuckDB.
    """
    # Read through the Arrow stream DuckDB hands out, its error arrives as an Arrow error or
    # a plain OSError carrying the same message.
    if not isinstance(exc, duckdb.Error | pa.ArrowException | OSError):
        return None
    return pattern.search(str(exc))


def _storage_class_error(exc: BaseException, path: str) -> BaseException:
    causes = [exc, exc.__cause__, exc.__context__]
    if any(c is not None and is_error(c, ObjectInColdStorage) for c in causes):
        return ObjectNeedsRestore(path)
    return exc


class _NamedReads:
    """An fsspec file whose read errors say which object they are about."""

    def __init__(self, handle: Any, path: str) -> None:
        self._handle = handle
        self._path = path

    def read(self, *args: Any) -> Any:
        try:
            return self._handle.read(*args)
        except OSError as exc:
            raise _storage_class_error(exc, self._path) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


class _ReadingHandler(pafs.FSSpecHandler):
    def open_input_file(self, path: str) -> Any:
        try:
            handle = self.fs.open(path, mode="rb")
        except OSError as exc:
            raise _storage_class_error(exc, path) from exc
        return pa.PythonFile(_NamedReads(handle, path), mode="r")


def reading_fs(archive: Archive) -> pafs.FileSystem:
    """``archive.arrow_fs``, except that S3 objects that need a restore are named in errors."""
    return archive.arrow_filesystem(_ReadingHandler)


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
        path = layout.parse_change_file(rel)
        if path is None or (start and path.dt < start) or (end and path.dt > end):
            continue
        out.append(rel)
    return out


def changes_dataset(archive: Archive, files: list[str]) -> ds.Dataset:
    """A dataset over the given change files with ``table_name`` and ``dt`` as string columns."""
    partitioning = ds.partitioning(PARTITION_SCHEMA, flavor="hive")
    return arrow_scan.dataset(
        [archive.path(rel) for rel in files],
        schema=CHANGES_WITH_PARTITIONS,
        format="parquet",
        filesystem=reading_fs(archive),
        partitioning=partitioning,
        partition_base_dir=archive.path(layout.CHANGES),
    )


def snapshot_dataset(archive: Archive, files: list[str]) -> ds.Dataset:
    """A dataset over one snapshot's part files (columns ``keys``, ``item``)."""
    return arrow_scan.dataset(
        [archive.path(rel) for rel in files],
        schema=SNAPSHOT_SCHEMA,
        format="parquet",
        filesystem=reading_fs(archive),
    )


def _is_vanished(exc: BaseException) -> bool:
    return isinstance(exc, FileNotFoundError) or duckdb_message_match(exc, _VANISHED) is not None


def _archived_message(what: str, exc: BaseException) -> str | None:
    """The one-line error for a failure caused by an object that must be restored first;
    ``None`` for any other failure."""
    path = None
    for error in (exc, exc.__cause__):
        if isinstance(error, ObjectNeedsRestore):
            path = error.path
    match = duckdb_message_match(exc, _ARCHIVED_OBJECT)
    if match is not None:
        path = match.group(1)
    if path is not None:
        return (
            f"{what}: s3://{path.lstrip('/')} is in S3 Glacier Flexible Retrieval or "
            "Deep Archive: restore it from S3 first (aws s3api restore-object), then retry"
        )
    causes = (exc, exc.__cause__, exc.__context__)
    if any(c is not None and is_error(c, ObjectInColdStorage) for c in causes):
        return (
            f"{what}: an archive object is in S3 Glacier Deep Archive or Flexible Retrieval "
            "and must be restored from S3 before reading"
        )
    return None


# What pyarrow and DuckDB say about a Parquet file that is truncated or corrupt (they give no
# error type for it); the file's path is quoted in the same message.
_CORRUPT = re.compile(
    r"magic bytes|deserialize thrift|corrupt|invalid parquet|unexpected end of stream"
    r"|parquet file size is|decompress",
    re.IGNORECASE,
)
_QUOTED_PARQUET = re.compile(r"'([^']+\.parquet)'")


def damaged_file(archive: Archive, exc: BaseException) -> DamagedFile | None:
    """The one-line error (exit 2) for a read that failed on a damaged Parquet file, naming
    it and pointing to ``ddb-archiver check``; ``None`` for any other failure."""
    if duckdb_message_match(exc, _CORRUPT) is None:
        return None
    match = duckdb_message_match(exc, _QUOTED_PARQUET)
    rel = archive.rel(match.group(1)) if match else ""
    where = layout.parse_change_file(rel) or layout.parse_snapshot_file(rel)
    table = where.table if where is not None else "<table>"
    return DamagedFile(
        f"{archive.uri(rel) if rel else 'a file of the archive'} cannot be read as Parquet "
        f"(truncated or corrupt): the archive is damaged; run `ddb-archiver check --table-name "
        f"{table} --archive {archive.url}` to list every damaged file"
    )


def archived_object(what: str, exc: BaseException) -> ArchivedObjectUnavailable | None:
    """The one-line error for a read that failed on an object that must be restored from S3
    first; ``None`` for any other failure."""
    message = _archived_message(what, exc)
    return None if message is None else ArchivedObjectUnavailable(message)


def with_relisting(
    action: Callable[[], T], *, what: str, attempts: int = 3, archive: Archive | None = None
) -> T:
    """Run ``action`` (which lists and reads); if a listed file vanished meanwhile, list again.

    Compaction deletes its inputs only after a grace period, so a second listing sees the
    compacted file instead; duplicates across the two are harmless (replay dedupes by
    ``event_id``). Objects in S3 Glacier Deep Archive raise one clear error instead, and so
    does a damaged Parquet file of ``archive`` (:func:`damaged_file`).
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:  # pyarrow/duckdb wrap the filesystem's error in their own
            archived = _archived_message(what, exc)
            if archived is not None:
                raise ArchivedObjectUnavailable(archived) from exc
            damaged = damaged_file(archive, exc) if archive is not None else None
            if damaged is not None:
                raise damaged from exc
            if not _is_vanished(exc) or attempt == attempts:
                raise
            log.info("%s: a file vanished while reading (compaction?); listing again", what)
    raise AssertionError("unreachable")
