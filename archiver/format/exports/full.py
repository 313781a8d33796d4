"""Native DynamoDB exports (``ExportTableToPointInTime``) → Parquet snapshots.

A full export is a folder in AWS's layout (AWS-FORMATS.md)::

    <prefix>/AWSDynamoDB/<export_id>/_started
    <prefix>/AWSDynamoDB/<export_id>/manifest-summary.json   itemCount, exportTime, tableId, format
    <prefix>/AWSDynamoDB/<export_id>/manifest-files.json     one JSON line per data file
    <prefix>/AWSDynamoDB/<export_id>/data/<random>.json.gz   (or .ion.gz)

Conversion checks everything the manifests promise — each data file's MD5 and item count, the
counts summing to the summary's ``itemCount``, the table and its ``tableId`` — and registers the
snapshot only when all of it holds: on any mismatch it raises :class:`CorruptExport` and leaves
no manifest. A folder without manifests (what emulators write) is converted with a warning
that it could not be checked.

The snapshot's margins follow DESIGN.md: exports are accurate to about a minute, so an export
at ``E`` is valid from ``E + 60 s`` and needs the log from ``E − 60 s``. Its ``source`` is the
export folder's URL, whose last part is the export id: an export is converted once.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import logging
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

import orjson
from tqdm import tqdm

from archiver.format import layout, tables
from archiver.format.codec import AttributeValue, CodecError, canonical_json, key_of, normalize_item
from archiver.format.errors import (
    CorruptArchive,
    UsageError,
)
from archiver.format.exports import ion
from archiver.format.manifests import (
    DEFAULT_PART_BYTES,
    SnapshotWriter,
    converted_exports,
    list_snapshots,
)
from archiver.format.storage import Archive
from archiver.format.tables import table_id_of
from archiver.format.timefmt import as_utc, from_epoch, iso_ms, parse_iso

log = logging.getLogger(__name__)

SUMMARY = layout.EXPORT_SUMMARY
FILES = layout.EXPORT_FILES
STARTED = layout.EXPORT_STARTED
DATA = layout.EXPORT_DATA
EXPORT_MARGIN = timedelta(seconds=60)
FORMATS = ("DYNAMODB_JSON", "ION")
_PROGRESS_STEP = 1000


class CorruptExport(CorruptArchive):
    """An export folder does not hold what its manifests promise (exit 2, nothing registered)."""


class ExportNotReady(UsageError):
    """The export folder has no summary yet: the export is running, or it failed."""


class NotAFullExport(UsageError):
    """An incremental export: changes over a window, not a table's state (no base snapshot)."""


class NotAnIncrementalExport(UsageError):
    """A full export where an incremental one was expected (a state, not changes)."""


@dataclass(frozen=True)
class DataFile:
    """One data file of an export; ``item_count``/``md5`` are ``None`` without manifests."""

    rel: str  # relative to the export folder
    item_count: int | None
    md5: str | None  # base64 MD5 of the object, as manifest-files.json gives it


@dataclass(frozen=True)
class ExportFolder:
    """An export folder read and checked for completeness (data not read yet)."""

    store: Archive  # the export folder opened as a root
    export_id: str
    summary: dict[str, Any] | None
    data_files: list[DataFile]

    @property
    def url(self) -> str:
        return self.store.uri("")

    @property
    def output_format(self) -> str | None:
        return None if self.summary is None else str(self.summary.get("outputFormat", ""))

    @property
    def table_name(self) -> str | None:
        """The exported table's name (from the summary's ``tableArn``)."""
        if self.summary is None or not self.summary.get("tableArn"):
            return None
        return layout.table_of_arn(str(self.summary["tableArn"]))


# DescribeTable's Table, or a function looking it up only when needed (it needs AWS access).
LiveTable = Mapping[str, Any] | Callable[[], Mapping[str, Any] | None] | None


@dataclass(frozen=True)
class TableIdentity:
    table_id: str
    key_schema: list[dict[str, str]]


@dataclass(frozen=True)
class Conversion:
    manifest: dict[str, Any]
    new: bool  # False when the export had been converted before


def folder_in(archive: Archive, rel: str) -> Archive:
    """``rel`` inside ``archive`` opened as a root of its own (same filesystem)."""
    return Archive(archive.fs, archive.path(rel), archive.uri(rel))


def open_folder(url: str, *, endpoint_url: str | None = None) -> Archive:
    """An export folder given as a URL (``s3://bucket/prefix/AWSDynamoDB/<id>/`` or a path)."""
    store = Archive.open(url.rstrip("/"), endpoint_url=endpoint_url)
    if layout.parse_export_folder(store.root) is None:
        raise UsageError(
            f"{url} is not an export folder: give the folder of one export, "
            "…/AWSDynamoDB/<export_id>/"
        )
    return store


# -- the exports in an archive ----------------------------------------------------------


@dataclass(frozen=True)
class ArchivedExport:
    """One folder under ``<archive>/exports/AWSDynamoDB/`` and its summary, if it has one
    (``None``: still running, failed, or an emulator's export without manifests)."""

    folder: layout.ExportFolderPath
    summary: dict[str, Any] | None

    @property
    def table_name(self) -> str | None:
        """The exported table's name (from the summary's ``tableArn``)."""
        arn = (self.summary or {}).get("tableArn")
        return layout.table_of_arn(str(arn)) if arn else None


def archived_export_folders(archive: Archive) -> list[layout.ExportFolderPath]:
    """Every export folder under ``<archive>/exports/AWSDynamoDB/`` (nothing read)."""
    base = layout.exports_dir()
    found = (layout.parse_export_folder(f"{base}/{name}") for name in archive.listdir(base))
    return [folder for folder in found if folder is not None]


def archived_exports(archive: Archive) -> list[ArchivedExport]:
    """Every export folder under ``<archive>/exports/AWSDynamoDB/``, with its summary read (a
    summary that does not parse is a :class:`CorruptExport` naming it)."""
    out = []
    for folder in archived_export_folders(archive):
        try:
            summary = archive.read_json_or(folder.summary)
        except orjson.JSONDecodeError as exc:
            raise CorruptExport(f"{archive.uri(folder.summary)} is not JSON ({exc})") from exc
        out.append(ArchivedExport(folder, summary if isinstance(summary, dict) else None))
    return out


# -- reading the manifests ----------------------------------------------------------------


def _relative_key(key: str, export_id: str) -> str:
    """``dataFileS3Key`` is relative to the bucket root; the part after ``AWSDynamoDB/<id>/`` is
    the same wherever the folder is read from (its bucket, a copy in a local archive)."""
    rel = layout.export_relative_key(key, export_id)
    if rel is None:
        raise CorruptExport(f"manifest-files.json lists {key}, which is outside export {export_id}")
    return rel


def read_export(store: Archive, export_type: str = "FULL_EXPORT") -> ExportFolder:
    """Read an export folder's manifests (or list its data files when it has none).

    ``export_type`` is the kind expected (``FULL_EXPORT`` or ``INCREMENTAL_EXPORT``); a
    summary of the other kind is refused.
    """
    parsed = layout.parse_export_folder(store.root)
    if parsed is None:
        raise UsageError(f"{store.uri('')} is not an export folder (…/AWSDynamoDB/<export_id>/)")
    export_id = parsed.export_id
    try:
        summary = store.read_json_or(SUMMARY)
    except orjson.JSONDecodeError as exc:
        raise CorruptExport(f"export {store.uri('')}: {SUMMARY} is not JSON ({exc})") from exc
    if summary is None:
        data_files = [DataFile(rel=rel, item_count=None, md5=None) for rel in store.find(DATA)]
        if store.exists(STARTED) or not data_files:
            raise ExportNotReady(
                f"export {store.uri('')} has no {SUMMARY}: it has not completed, failed, "
                "or the URL is not an export folder"
            )
        return ExportFolder(store, export_id, None, data_files)
    found_type = summary.get("exportType", "FULL_EXPORT")
    if found_type != export_type and export_type == "FULL_EXPORT":
        raise NotAFullExport(
            f"export {store.uri('')} is an {found_type}, not a full export: it cannot be a base "
            "snapshot"
        )
    if found_type != export_type:
        raise NotAnIncrementalExport(
            f"export {store.uri('')} is a {found_type}, not an {export_type}: it holds a "
            "table's state, not its changes (convert it with `ddb-archiver snapshot`)"
        )
    if summary.get("outputFormat") not in FORMATS:
        raise CorruptExport(
            f"export {store.uri('')}: unknown outputFormat {summary.get('outputFormat')!r}"
        )
    try:
        lines = store.get_bytes(FILES).splitlines()
    except FileNotFoundError:
        raise CorruptExport(f"export {store.uri('')}: {SUMMARY} without {FILES}") from None
    data_files = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
            data_files.append(
                DataFile(
                    rel=_relative_key(str(entry["dataFileS3Key"]), export_id),
                    item_count=int(entry["itemCount"]),
                    md5=str(entry["md5Checksum"]),
                )
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CorruptExport(
                f"export {store.uri('')}: {FILES} line {number} is not a data file entry ({exc})"
            ) from exc
    return ExportFolder(store, export_id, summary, data_files)


def check_manifests(folder: ExportFolder) -> None:
    """What can be checked before reading any data: counts add up, every data file is there."""
    if folder.summary is None:
        return
    listed = sum(f.item_count or 0 for f in folder.data_files)
    expected = int(folder.summary.get("itemCount", -1))
    if listed != expected:
        raise CorruptExport(
            f"export {folder.url}: {FILES} counts {listed} items but {SUMMARY} says {expected}"
        )
    present = set(folder.store.find(DATA))
    for data_file in folder.data_files:
        if data_file.rel not in present:
            raise CorruptExport(f"export {folder.url}: data file {data_file.rel} is missing")


# -- table identity -------------------------------------------------------------------------


def archived_descriptions(archive: Archive, table: str) -> list[dict[str, Any]]:
    """The table's archived descriptions, oldest first (``tables`` owns the format)."""
    return tables.list_descriptions(archive, table)


def _description_at(descriptions: list[dict[str, Any]], at: datetime) -> dict[str, Any]:
    before = [d for d in descriptions if parse_iso(d["captured_at"]) <= at]
    return before[-1] if before else descriptions[0]


def resolve_identity(
    archive: Archive,
    table: str,
    *,
    table_id: str | None,
    at: datetime,
    live: LiveTable,
) -> TableIdentity:
    """The exported table's ``table_id`` and key schema.

    ``table_id`` is the export summary's ``tableId`` when there is one; it must match an
    archived description of the table when any exist (else the export is of another table
    generation or account). ``live`` is the current ``DescribeTable`` result, or a function
    that looks it up — called only when the archive's descriptions do not answer.
    """
    descriptions = archived_descriptions(archive, table)
    if callable(live):
        # The archive's descriptions answer whenever there are any.
        live = None if descriptions else live()
    if table_id:
        known = sorted({str(d.get("table_id")) for d in descriptions})
        matching = [d for d in descriptions if d.get("table_id") == table_id]
        if descriptions and not matching:
            raise CorruptExport(
                f"the export's tableId {table_id} matches no archived description of {table} "
                f"(table ids {', '.join(known)}): an export of another table generation or account"
            )
        if matching:
            return TableIdentity(
                table_id, list(_description_at(matching, at)["Table"]["KeySchema"])
            )
        if live is not None:
            live_id = table_id_of(live)
            # A derived id (an endpoint that returns no TableId) cannot be compared.
            if live_id != table_id and not live_id.startswith("derived-"):
                raise CorruptExport(
                    f"the export's tableId {table_id} is not the live {table}'s ({live_id}) "
                    "and the archive has no description of it: the table was recreated since?"
                )
            return TableIdentity(table_id, list(live["KeySchema"]))
    elif descriptions:
        chosen = _description_at(descriptions, at)
        return TableIdentity(str(chosen["table_id"]), list(chosen["Table"]["KeySchema"]))
    elif live is not None:
        return TableIdentity(table_id_of(live), list(live["KeySchema"]))
    raise UsageError(
        f"cannot convert an export of {table}: its key schema is unknown (no archived table "
        "description and the table is not reachable); run `ddb-archiver run` once, or pass AWS "
        "access to the table"
    )


# -- reading data files ---------------------------------------------------------------------


class _HashingReader:
    """A read-only stream that hashes (MD5) every byte read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.md5 = hashlib.md5(usedforsecurity=False)

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.md5.update(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    @property
    def b64(self) -> str:
        return base64.b64encode(self.md5.digest()).decode("ascii")


def _json_items(stream: IO[bytes], where: str) -> Iterator[dict[str, AttributeValue]]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)["Item"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise CorruptExport(f"{where} line {number}: not an export line ({exc})") from exc
        yield item


def _sniff_format(stream: gzip.GzipFile) -> str:
    """A folder without a summary does not say its format: Ion text starts with its version
    marker or an unquoted field name, DynamoDB JSON with ``{"Item"``."""
    head = stream.peek(64).lstrip()
    if head.startswith(b"$ion") or (head.startswith(b"{") and not head.startswith(b'{"')):
        return "ION"
    return "DYNAMODB_JSON"


def _convert_file(
    folder: ExportFolder,
    data_file: DataFile,
    key_names: list[str],
    writer: SnapshotWriter,
    bar: tqdm,
) -> int:
    where = f"export {folder.url}: {data_file.rel}"
    count = 0
    try:
        with folder.store.fs.open(folder.store.path(data_file.rel), "rb") as raw:
            hashing = _HashingReader(raw)
            with gzip.GzipFile(fileobj=hashing, mode="rb") as stream:  # type: ignore[call-overload]
                fmt = folder.output_format or _sniff_format(stream)
                items = ion.read_items(stream) if fmt == "ION" else _json_items(stream, where)
                for item in items:
                    count += 1
                    try:
                        # Files are checked value by value, unlike SDK responses (codec.py).
                        checked = normalize_item(item)
                    except CodecError as exc:
                        raise CorruptExport(f"{where}: item {count}: {exc}") from exc
                    writer.add(canonical_json(key_of(checked, key_names)), canonical_json(checked))
                    if writer.full:
                        writer.flush()
                    if count % _PROGRESS_STEP == 0:
                        bar.update(_PROGRESS_STEP)
                bar.update(count % _PROGRESS_STEP)
            hashing.drain()
    except FileNotFoundError:
        raise CorruptExport(f"{where}: data file is missing") from None
    except CodecError as exc:
        raise CorruptExport(f"{where}: {exc}") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptExport(f"{where}: not a readable gzip file ({exc})") from exc
    check_against_manifest(where, data_file, hashing.b64, count, "items")
    return count


def check_against_manifest(
    where: str, data_file: DataFile, md5_b64: str, count: int, unit: str
) -> None:
    """A data file read whole agrees with its ``manifest-files.json`` entry (MD5 and count).

    Raises:
        CorruptExport: it does not.
    """
    if data_file.md5 is not None and md5_b64 != data_file.md5:
        raise CorruptExport(
            f"{where}: MD5 {md5_b64} does not match manifest-files.json's {data_file.md5}"
        )
    if data_file.item_count is not None and count != data_file.item_count:
        raise CorruptExport(
            f"{where}: holds {count} {unit} but manifest-files.json says {data_file.item_count}"
        )


def _last_modified(store: Archive, rel: str) -> datetime:
    info = store.fs.info(store.path(rel))
    value = info.get("LastModified") or info.get("mtime") or info.get("created")
    if isinstance(value, datetime):
        return as_utc(value)
    return from_epoch(float(value))


# -- conversion -----------------------------------------------------------------------------


def export_time_without_manifest(
    folder: ExportFolder, described: Mapping[str, Any] | None
) -> datetime:
    """The export time of a folder without manifests, saying where it came from.

    ``described`` is DescribeExport's ``ExportDescription`` when the export's ARN is known.
    """
    described_time = None if described is None else described.get("ExportTime")
    if isinstance(described_time, datetime):
        when, origin = as_utc(described_time), "DescribeExport's ExportTime"
    else:
        when = max(_last_modified(folder.store, f.rel) for f in folder.data_files)
        why = "the export's ARN is unknown" if described is None else "DescribeExport gave none"
        origin = f"its data objects' LastModified ({why})"
    log.warning(
        "export %s has no manifests (an emulator's export?): its item counts and checksums "
        "could not be checked; export time %s taken from %s",
        folder.url,
        iso_ms(when),
        origin,
    )
    return when


def convert_export(
    archive: Archive,
    table: str,
    folder: ExportFolder,
    *,
    live: LiveTable = None,
    described: Mapping[str, Any] | None = None,
    part_bytes: int = DEFAULT_PART_BYTES,
) -> Conversion:
    """Convert one export folder into a committed snapshot of ``table`` in ``archive``.

    Idempotent: an export already converted returns its snapshot. On any mismatch raises
    :class:`CorruptExport` with no manifest written and the parts written so far removed.
    """
    done = converted_exports(archive, table)
    if folder.export_id in done:
        for manifest in list_snapshots(archive, table):
            if manifest["snapshot_id"] == done[folder.export_id]:
                return Conversion(manifest, new=False)
    if folder.table_name is not None and folder.table_name != table:
        raise UsageError(f"export {folder.url} is of table {folder.table_name}, not {table}")
    check_manifests(folder)
    if folder.summary is not None:
        export_time = parse_iso(str(folder.summary["exportTime"]))
        started_at = parse_iso(str(folder.summary.get("startTime") or folder.summary["exportTime"]))
        finished_at = parse_iso(str(folder.summary.get("endTime") or folder.summary["exportTime"]))
        summary_table_id = folder.summary.get("tableId")
    else:
        export_time = export_time_without_manifest(folder, described)
        started_at = finished_at = export_time
        summary_table_id = None
    identity = resolve_identity(
        archive,
        table,
        table_id=str(summary_table_id) if summary_table_id else None,
        at=export_time,
        live=live,
    )
    key_names = tables.key_names(identity.key_schema)
    writer = SnapshotWriter(
        archive, table, layout.new_snapshot_id(export_time), part_bytes=part_bytes
    )
    total = None if folder.summary is None else int(folder.summary.get("itemCount", 0))
    try:
        with tqdm(
            total=total, unit="item", desc=f"convert {folder.export_id}", disable=None
        ) as bar:
            for data_file in folder.data_files:
                _convert_file(folder, data_file, key_names, writer, bar)
        writer.flush()
        if total is not None and writer.item_count != total:
            raise CorruptExport(
                f"export {folder.url}: read {writer.item_count} items, {SUMMARY} says {total}"
            )
        manifest = writer.commit(
            table_id=identity.table_id,
            method="export",
            valid_from=export_time + EXPORT_MARGIN,
            log_from=export_time - EXPORT_MARGIN,
            started_at=started_at,
            finished_at=finished_at,
            key_schema=identity.key_schema,
            source=folder.url,
        )
    except BaseException:
        writer.abort()
        raise
    log.info(
        "export %s converted to snapshot %s (%d items, valid from %s)",
        folder.export_id,
        manifest["snapshot_id"],
        manifest["item_count"],
        manifest["valid_from"],
    )
    return Conversion(manifest, new=True)
