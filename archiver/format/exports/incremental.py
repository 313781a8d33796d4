"""DynamoDB incremental exports (``ExportType=INCREMENTAL_EXPORT``) → change rows.

An incremental export of the window ``[export_from, export_to)`` is a folder in AWS's layout
(AWS-FORMATS.md), like a full export but with a ``2023-08-01`` summary (``exportType``,
``exportFromTime``, ``exportToTime``, ``outputView``) and data lines of the form::

    {"Metadata":{"WriteTimestampMicros":{"N":"1746609560577628"}},
     "Keys":{…},"NewImage":{…},"OldImage":{…}}

Its output is compacted: one line per item changed in the window, holding that item's last
change in it. Each line becomes one change row (``archiver.format.schema``) with
``origin = incremental-export``:

* ``event_time``: the last write's time (``WriteTimestampMicros``, truncated to the
  millisecond); ``sequence_number``: the same time in microseconds, zero-padded to 40 digits;
* ``event_name``: ``REMOVE`` without a ``NewImage``, ``INSERT`` without an ``OldImage`` in a
  ``NEW_AND_OLD_IMAGES`` export, else ``MODIFY``;
* ``event_id``: ``incremental-<micros>-<hash of the canonical key>``, a function of the write
  itself, so the same write seen through two exports counts once;
* ``shard_id``: ``incremental-<from>-<to>`` (the window); ``stream_arn``: the export's ARN;
  ``user_identity``: null (exports do not say who wrote); ``size_bytes``: the line's size.

Rows are written as they are read, one file per part of at most ``part_rows`` rows (or
``part_bytes`` of text) within one ``dt`` (``layout.incremental_change_file``: named by
window, part and write times, so a re-conversion rewrites the same objects), and the window
is committed last by its record ``_state/<table>/incremental/<from>_<to>.json``
(``layout.incremental_window``). A window
without that record does not exist for restores; one with it is never converted again.

The manifests are checked as for full exports (``archiver.format.exports.full``): every data
file's MD5 and line count, and the counts adding up to the summary's ``itemCount``. A folder
without manifests cannot be converted: nothing else says which window it covers.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

import orjson

from archiver.format import coverage, layout, statefiles
from archiver.format.codec import CodecError, canonical_bytes, normalize_item
from archiver.format.errors import UsageError
from archiver.format.exports.full import (
    CorruptExport,
    DataFile,
    ExportFolder,
    LiveTable,
    _HashingReader,
    check_against_manifest,
    check_manifests,
    resolve_identity,
)
from archiver.format.records import ChangeRows
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow

log = logging.getLogger(__name__)

EXPORT_TYPE = "INCREMENTAL_EXPORT"
ORIGIN = "incremental-export"
VIEWS = ("NEW_AND_OLD_IMAGES", "NEW_IMAGE")
# AWS accepts windows from 15 minutes to 24 hours.
MIN_WINDOW = timedelta(minutes=15)
MAX_WINDOW = timedelta(hours=24)
# A restore inside a window is exact at the window's last instant: its end is exclusive and
# event times are kept to the millisecond.
RESOLUTION = timedelta(milliseconds=1)
DEFAULT_PART_ROWS = 250_000
# Text buffered per part before it is written: memory stays flat however big the export.
DEFAULT_PART_BYTES = 64 * 1024 * 1024
EVENT_ID_PREFIX = "incremental-"


class OverlappingWindow(UsageError):
    """A window overlaps one already converted with other bounds (two chains would mix)."""


@dataclass(frozen=True)
class IncrementalExport:
    """An incremental export folder, read and checked for completeness (data not read yet)."""

    folder: ExportFolder
    export_from: datetime
    export_to: datetime
    output_view: str

    @property
    def export_arn(self) -> str:
        summary = self.folder.summary or {}
        arn = summary.get("exportArn")
        if arn:
            return str(arn)
        return f"{summary.get('tableArn', '')}/export/{self.folder.export_id}"


def describe_export(folder: ExportFolder) -> IncrementalExport:
    """The window and view of an incremental export folder read by ``exports.read_export``."""
    summary = folder.summary
    if summary is None:
        raise CorruptExport(
            f"export {folder.url} has no manifest-summary.json: nothing says which window it "
            "covers, so it cannot be converted"
        )
    if summary.get("outputFormat") != "DYNAMODB_JSON":
        raise UsageError(
            f"export {folder.url} is in {summary.get('outputFormat')}: incremental exports are "
            "converted from DYNAMODB_JSON only (request them with ExportFormat DYNAMODB_JSON)"
        )
    try:
        start = parse_iso(str(summary["exportFromTime"]))
        end = parse_iso(str(summary["exportToTime"]))
    except (KeyError, ValueError) as exc:
        raise CorruptExport(f"export {folder.url}: summary has no valid window ({exc})") from exc
    view = str(summary.get("outputView") or "NEW_AND_OLD_IMAGES")
    if view not in VIEWS:
        raise CorruptExport(f"export {folder.url}: unknown outputView {view!r}")
    if end <= start:
        raise CorruptExport(f"export {folder.url}: empty window [{iso_ms(start)}, {iso_ms(end)})")
    return IncrementalExport(folder, start, end, view)


# -- committed windows ----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A converted window: its commit record."""

    table_id: str
    start: datetime
    end: datetime
    output_view: str
    files: tuple[str, ...]
    item_count: int
    export_arn: str
    doc: Mapping[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Window:
        return cls(
            table_id=str(doc["table_id"]),
            start=parse_iso(str(doc["window_from"])),
            end=parse_iso(str(doc["window_to"])),
            output_view=str(doc.get("output_view", "NEW_AND_OLD_IMAGES")),
            files=tuple(str(f["path"]) for f in doc.get("files", [])),
            item_count=int(doc.get("item_count") or 0),
            export_arn=str(doc.get("export_arn") or ""),
            doc=doc,
        )

    @property
    def last_exact(self) -> datetime:
        """The last instant of the window, at which a restore is always exact."""
        return self.end - RESOLUTION


def list_windows(archive: Archive, table: str, table_id: str | None = None) -> list[Window]:
    """Committed windows of ``table`` (of one generation when ``table_id`` is given), by start."""
    out = []
    for name in archive.listdir(layout.incremental_dir(table)):
        if not name.endswith(".json") or name.startswith("."):
            continue
        rel = f"{layout.incremental_dir(table)}/{name}"
        doc = statefiles.read_json(
            archive, rel, statefiles.INCREMENTAL_WINDOW, "incremental window commit"
        )
        assert doc is not None  # missing_ok is off
        window = Window.from_doc(doc)
        if table_id is None or window.table_id == table_id:
            out.append(window)
    return sorted(out, key=lambda w: (w.start, w.end))


def _overlapping(windows: list[Window], start: datetime, end: datetime) -> Window | None:
    for window in windows:
        if window.start < end and start < window.end and (window.start, window.end) != (start, end):
            return window
    return None


# -- reading lines --------------------------------------------------------------------------


def _event_id(micros: int, keys: bytes) -> str:
    digest = hashlib.blake2b(keys, digest_size=16).hexdigest()
    return f"{EVENT_ID_PREFIX}{micros}-{digest}"


def _records(
    stream: IO[bytes], where: str, export: IncrementalExport
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(write micros, stream-record-shaped dict)`` per data line, checked."""
    start_us = _micros(export.export_from)
    end_us = _micros(export.export_to)
    with_old = export.output_view == "NEW_AND_OLD_IMAGES"
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
            micros = int(doc["Metadata"]["WriteTimestampMicros"]["N"])
            keys = normalize_item(doc["Keys"])
            new = doc.get("NewImage")
            old = doc.get("OldImage")
            new = None if new is None else normalize_item(new)
            old = None if old is None else normalize_item(old)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CorruptExport(f"{where} line {number}: not an export line ({exc})") from exc
        except CodecError as exc:
            raise CorruptExport(f"{where} line {number}: {exc}") from exc
        if not start_us <= micros < end_us:
            raise CorruptExport(
                f"{where} line {number}: write time {micros} µs is outside the window "
                f"[{iso_ms(export.export_from)}, {iso_ms(export.export_to)})"
            )
        if new is None:
            name = "REMOVE"
        elif with_old and old is None:
            name = "INSERT"
        else:
            name = "MODIFY"
        ddb: dict[str, Any] = {
            "ApproximateCreationDateTime": micros // 1000 / 1000,
            "Keys": keys,
            "SequenceNumber": str(micros),
            "SizeBytes": len(line),
        }
        if new is not None:
            ddb["NewImage"] = new
        if old is not None:
            ddb["OldImage"] = old
        record = {
            "eventID": _event_id(micros, canonical_bytes(keys)),
            "eventName": name,
            "dynamodb": ddb,
        }
        yield micros, record


def _micros(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=value.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# -- writing --------------------------------------------------------------------------------


@dataclass
class _Part:
    rows: ChangeRows = field(default_factory=ChangeRows)
    first_us: int = 0
    last_us: int = 0


class _WindowWriter:
    """Rows of one window, buffered per ``dt`` and written a part at a time."""

    def __init__(
        self,
        archive: Archive,
        table: str,
        export: IncrementalExport,
        table_id: str,
        part_rows: int,
        part_bytes: int = DEFAULT_PART_BYTES,
    ) -> None:
        self.archive = archive
        self.table = table
        self.export = export
        self.table_id = table_id
        self.part_rows = part_rows
        self.part_bytes = part_bytes
        self.shard_id = layout.incremental_shard(export.export_from, export.export_to)
        self.parts: dict[str, _Part] = {}
        self.files: list[dict[str, Any]] = []
        self.count = 0
        self.first_us: int | None = None
        self.last_us: int | None = None

    def add(self, micros: int, record: Mapping[str, Any]) -> None:
        dt = layout.dt_of(
            datetime(1970, 1, 1, tzinfo=self.export.export_from.tzinfo)
            + timedelta(microseconds=micros)
        )
        part = self.parts.get(dt)
        if part is None:
            part = self.parts[dt] = _Part(first_us=micros, last_us=micros)
        part.rows.append(
            record,
            stream_arn=self.export.export_arn,
            shard_id=self.shard_id,
            table_id=self.table_id,
            origin=ORIGIN,
        )
        part.first_us = min(part.first_us, micros)
        part.last_us = max(part.last_us, micros)
        self.first_us = micros if self.first_us is None else min(self.first_us, micros)
        self.last_us = micros if self.last_us is None else max(self.last_us, micros)
        self.count += 1
        rows = len(part.rows)
        if rows >= self.part_rows or (rows % 1000 == 0 and part.rows.nbytes >= self.part_bytes):
            self._write(dt)

    def _write(self, dt: str) -> None:
        part = self.parts.pop(dt)
        path = layout.incremental_change_file(
            self.table,
            dt,
            self.export.export_from,
            self.export.export_to,
            len(self.files),
            part.first_us,
            part.last_us,
        )
        size = self.archive.write_parquet(path, part.rows.to_table())
        self.files.append({"path": path, "rows": len(part.rows), "size_bytes": size})

    def finish(self) -> None:
        for dt in sorted(self.parts):
            self._write(dt)


def _convert_file(export: IncrementalExport, data_file: DataFile, writer: _WindowWriter) -> int:
    folder = export.folder
    where = f"export {folder.url}: {data_file.rel}"
    count = 0
    try:
        with folder.store.fs.open(folder.store.path(data_file.rel), "rb") as raw:
            hashing = _HashingReader(raw)
            with gzip.GzipFile(fileobj=hashing, mode="rb") as stream:  # type: ignore[call-overload]
                for micros, record in _records(stream, where, export):
                    writer.add(micros, record)
                    count += 1
            hashing.drain()
    except FileNotFoundError:
        raise CorruptExport(f"{where}: data file is missing") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptExport(f"{where}: not a readable gzip file ({exc})") from exc
    check_against_manifest(where, data_file, hashing.b64, count, "lines")
    return count


@dataclass(frozen=True)
class WindowConversion:
    window: Window
    new: bool  # False when the window had been converted before


def convert_incremental(
    archive: Archive,
    table: str,
    export: IncrementalExport,
    *,
    live: LiveTable = None,
    table_created_at: datetime | None = None,
    part_rows: int = DEFAULT_PART_ROWS,
    part_bytes: int = DEFAULT_PART_BYTES,
) -> WindowConversion:
    """Convert one incremental export into change rows of ``table`` and commit its window.

    Idempotent: a window already committed is returned as it is. A crash part-way leaves
    only part files that the next conversion of the same export rewrites under the same
    names; nothing is visible to restores until the window's record is written.

    Raises:
        CorruptExport: the data does not match the manifests (nothing committed).
        OverlappingWindow: another window with other bounds overlaps this one.
    """
    folder = export.folder
    start, end = export.export_from, export.export_to
    if folder.table_name is not None and folder.table_name != table:
        raise UsageError(f"export {folder.url} is of table {folder.table_name}, not {table}")
    summary = folder.summary or {}
    identity = resolve_identity(
        archive,
        table,
        table_id=str(summary["tableId"]) if summary.get("tableId") else None,
        at=start,
        live=live,
    )
    windows = list_windows(archive, table, identity.table_id)
    for window in windows:
        if (window.start, window.end) == (start, end):
            return WindowConversion(window, new=False)
    clash = _overlapping(windows, start, end)
    if clash is not None:
        raise OverlappingWindow(
            f"export {folder.url} covers [{iso_ms(start)}, {iso_ms(end)}), which overlaps the "
            f"converted window [{iso_ms(clash.start)}, {iso_ms(clash.end)}): windows of one "
            "table must chain, each starting where the previous one ended"
        )
    check_manifests(folder)
    writer = _WindowWriter(archive, table, export, identity.table_id, part_rows, part_bytes)
    for data_file in folder.data_files:
        _convert_file(export, data_file, writer)
    writer.finish()
    expected = int(summary.get("itemCount", writer.count))
    if writer.count != expected:
        raise CorruptExport(
            f"export {folder.url}: read {writer.count} lines, manifest-summary.json says {expected}"
        )
    doc = {
        "table": table,
        "table_id": identity.table_id,
        "window_from": iso_ms(start),
        "window_to": iso_ms(end),
        "output_view": export.output_view,
        "export_arn": export.export_arn,
        "source": folder.url,
        "item_count": writer.count,
        "first_write": None if writer.first_us is None else str(writer.first_us),
        "last_write": None if writer.last_us is None else str(writer.last_us),
        "files": writer.files,
        "converted_at": iso_ms(utcnow()),
    }
    archive.write_json(layout.incremental_window(table, start, end), doc)
    window = Window.from_doc(doc)
    record_coverage(
        archive, table, identity.table_id, str(summary.get("tableArn") or ""), table_created_at
    )
    log.info(
        "incremental export %s converted: window [%s, %s), %d changed items",
        folder.export_id,
        iso_ms(start),
        iso_ms(end),
        writer.count,
    )
    return WindowConversion(window, new=True)


def record_coverage(
    archive: Archive,
    table: str,
    table_id: str,
    table_arn: str,
    table_created_at: datetime | None,
) -> dict[str, Any]:
    """Rewrite the generation's incremental segments in coverage.json from its windows."""
    spans = [(w.start, w.end) for w in list_windows(archive, table, table_id)]
    return coverage.record_incremental_segments(
        archive,
        table,
        table_id=table_id,
        table_arn=table_arn,
        table_created_at=table_created_at,
        windows=spans,
    )
