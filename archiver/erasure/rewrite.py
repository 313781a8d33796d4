"""Rewriting one archive object without some keys' rows: the mechanics under ``forget``.

Every function here reads one object, and writes its replacement with one atomic write (an S3
PUT, a local rename), so a crash leaves the object either old or new. None of them deletes:
``archiver.erasure.forget`` orders writes, commits and deletions, and keeps the pending list.

* :class:`KeyMatcher` — which rows belong to the erased keys: by the keys themselves, or (when
  finishing an interrupted erasure, whose pending list holds only keyed hashes) by hashing
  each distinct key of the object with the archive's secret.
* :func:`count_parquet` — how many rows of a Parquet object (change file, snapshot part,
  staging) hold the keys, reading only what can: the row groups whose ``keys`` statistics
  (min/max) can contain one of them, and of those only the ``keys`` column.
* :func:`rewrite_change_file` — a change file keeps its name and chain links; its footer gets
  the new row count and content hash and the erasure's id (``archiver.format.footers``).
* :func:`rewrite_parquet` — a snapshot part (to the new part name its manifest will list) or
  any other Parquet object with a ``keys`` column.
* :func:`rewrite_items_file` — a native export's (or staging's) gzip'd DynamoDB JSON or Ion
  lines: the other lines are kept byte for byte.
* :func:`check_locks`, :func:`versions` — S3 Object Lock (refuse before changing anything)
  and the noncurrent versions that still hold the rows (count or purge).
* :func:`update_export_manifests` — an export's ``manifest-files.json`` (item counts, MD5,
  ETag) and ``manifest-summary.json`` (``itemCount``) recomputed from its data files, and their
  ``.md5``/``.checksum`` companions in whatever encoding they had.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from archiver.format import erasure_log as erasures
from archiver.format import footers, layout
from archiver.format.codec import CodecError, canonical_json, key_of, normalize_item
from archiver.format.errors import EXIT_REFUSED, ArchiverError, CorruptArchive
from archiver.format.schema import COMPRESSION, ROW_GROUP_ROWS
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms

KEYS = "keys"


@dataclass
class KeyMatcher:
    """The erased keys: canonical key JSON texts, or only their keyed hashes."""

    keys: frozenset[str] | None
    hashes: frozenset[str]
    secret: bytes
    _seen: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def of_keys(cls, keys: Iterable[str], secret: bytes) -> KeyMatcher:
        keys = frozenset(keys)
        return cls(keys, frozenset(erasures.key_hashes(secret, keys)), secret)

    @classmethod
    def of_hashes(cls, hashes: Iterable[str], secret: bytes) -> KeyMatcher:
        return cls(None, frozenset(hashes), secret)

    def __bool__(self) -> bool:
        return bool(self.hashes)

    def matches(self, key: str) -> bool:
        if self.keys is not None:
            return key in self.keys
        hit = self._seen.get(key)
        if hit is None:
            hit = self._seen[key] = erasures.key_hash(self.secret, key) in self.hashes
        return hit

    def may_hold(self, low: str | None, high: str | None) -> bool:
        """Whether a row group whose ``keys`` run from ``low`` to ``high`` can hold a key."""
        if self.keys is None or low is None or high is None:
            return True  # hashes cannot be located by value; no statistics: read it
        return any(low <= key <= high for key in self.keys)

    def mask(self, keys: pa.ChunkedArray | pa.Array) -> pa.Array:
        """True for the rows whose key is erased."""
        if self.keys is not None:
            wanted = pa.array(sorted(self.keys), pa.string())
        else:
            distinct = pc.unique(keys).to_pylist()
            wanted = pa.array([k for k in distinct if k is not None and self.matches(k)])
        return pc.fill_null(pc.is_in(keys, value_set=wanted.cast(pa.string())), False)


# -- Parquet ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParquetCount:
    rows: int  # rows holding an erased key
    row_groups_read: int
    row_groups: int


def _keys_statistics(metadata: pq.FileMetaData, group: int) -> tuple[str | None, str | None]:
    index = metadata.schema.names.index(KEYS)
    stats = metadata.row_group(group).column(index).statistics
    if stats is None or not stats.has_min_max:
        return None, None
    return str(stats.min), str(stats.max)


def count_parquet(archive: Archive, rel: str, matcher: KeyMatcher) -> ParquetCount:
    """Rows of ``rel`` holding an erased key; reads only row groups that can hold one.

    Raises:
        CorruptArchive: the object is not readable Parquet (exit 2, nothing changed).
    """
    try:
        handle = pq.ParquetFile(archive.path(rel), filesystem=archive.arrow_fs)
        metadata = handle.metadata
        if KEYS not in metadata.schema.names:
            return ParquetCount(0, 0, metadata.num_row_groups)
        groups = [
            g
            for g in range(metadata.num_row_groups)
            if metadata.row_group(g).num_rows and matcher.may_hold(*_keys_statistics(metadata, g))
        ]
        if not groups:
            return ParquetCount(0, 0, metadata.num_row_groups)
        keys = handle.read_row_groups(groups, columns=[KEYS]).column(KEYS)
    except (OSError, pa.ArrowException) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise _unreadable(archive, rel, exc) from exc
    hits = int(pc.sum(matcher.mask(keys)).as_py() or 0)
    return ParquetCount(hits, len(groups), metadata.num_row_groups)


def _unreadable(archive: Archive, rel: str, exc: BaseException) -> CorruptArchive:
    return CorruptArchive(
        f"{archive.uri(rel)} cannot be read as Parquet ({footers.one_line(exc)[:200]}): it may "
        "hold the keys, so nothing was erased; repair or remove it first "
        "(`ddb-archiver check` lists damaged files)"
    )


def _read(archive: Archive, rel: str) -> pa.Table:
    try:
        return pq.read_table(archive.path(rel), filesystem=archive.arrow_fs)
    except (OSError, pa.ArrowException) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise _unreadable(archive, rel, exc) from exc


def _parquet_bytes(rows: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(
        rows,
        buffer,
        compression=COMPRESSION,
        row_group_size=ROW_GROUP_ROWS,
        write_statistics=True,
    )
    return buffer.getvalue()


def rewrite_change_file(archive: Archive, rel: str, matcher: KeyMatcher, erasure_id: str) -> int:
    """Rewrite a change file without the erased keys' rows, under the same name; returns the
    rows removed (0: nothing to do, the file is left as it is)."""
    rows = _read(archive, rel)
    mask = matcher.mask(rows.column(KEYS))
    removed = int(pc.sum(mask).as_py() or 0)
    if removed == 0:
        return 0
    kept = rows.filter(pc.invert(mask))
    archive.write_parquet(rel, footers.after_erasure(kept, rows.schema.metadata, erasure_id))
    return removed


@dataclass(frozen=True)
class Rewritten:
    rows_removed: int
    item_count: int
    sha256: str


def rewrite_parquet(
    archive: Archive, rel: str, matcher: KeyMatcher, *, to: str | None = None
) -> Rewritten:
    """Write ``rel`` without the erased keys' rows to ``to`` (default: over itself, and only
    when it holds some)."""
    rows = _read(archive, rel)
    mask = matcher.mask(rows.column(KEYS))
    kept = rows.filter(pc.invert(mask))
    if to is None and kept.num_rows == rows.num_rows:
        return Rewritten(0, kept.num_rows, "")  # nothing to do: no new object version either
    data = _parquet_bytes(kept)
    archive.put_bytes(to or rel, data)
    return Rewritten(rows.num_rows - kept.num_rows, kept.num_rows, hashlib.sha256(data).hexdigest())


# -- locks and versions ---------------------------------------------------------------------


class ObjectLocked(ArchiverError):
    """Objects holding the keys are under S3 Object Lock: their data cannot be erased."""

    exit_code = EXIT_REFUSED


def check_locks(archive: Archive, paths: Iterable[str], now: datetime) -> None:
    """Refuse when an object to rewrite is under Object Lock (retention in force, legal hold).

    Raises:
        ObjectLocked: exit 4, naming the objects and their retain-until dates.
    """
    if archive.s3_location() is None:  # a local archive has no Object Lock
        return
    locked = []
    for rel in paths:
        try:
            mode, until, hold = archive.object_lock(rel)
        except FileNotFoundError:
            continue
        if hold or (mode and until is not None and as_utc(until) > now):
            why = [f"{mode} retention until {iso_ms(as_utc(until))}"] if until else []
            why += ["legal hold"] if hold else []
            locked.append(f"{archive.uri(rel)} ({', '.join(why)})")
    if locked:
        more = f" (and {len(locked) - 5} more)" if len(locked) > 5 else ""
        raise ObjectLocked(
            f"{len(locked)} object(s) holding the keys are under S3 Object Lock and cannot lose "
            f"their data: {'; '.join(locked[:5])}{more}; nothing was changed"
        )


def versions(archive: Archive, paths: Iterable[str], purge: bool) -> tuple[int, int]:
    """``(purged, left)``: noncurrent versions of these objects, deleted when ``purge``."""
    paths = list(paths)
    if not paths or not archive.versioned():
        return 0, 0
    purged = left = 0
    for rel in paths:
        for version_id in archive.noncurrent_versions(rel):
            if purge:
                archive.delete_version(rel, version_id)
                purged += 1
            else:
                left += 1
    return purged, left


# -- item lines (native exports, staging) ----------------------------------------------------

ION_MARKER = b"$ion_1_0"


def _line_key(line: bytes, ion_format: bool, key_names: list[str], where: str) -> str | None:
    """The canonical key of one data line; ``None`` for a line without an item."""
    text = line.strip()
    if not text or (ion_format and text == ION_MARKER):
        return None
    try:
        if ion_format:
            from archiver.format.exports import ion

            items = list(ion.read_items(io.BytesIO(text)))
            if len(items) != 1:
                raise CodecError(f"{len(items)} items on one line")
            item = items[0]
        else:
            item = orjson.loads(text)["Item"]
        return canonical_json(key_of(normalize_item(item), key_names))
    except (CodecError, KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise CorruptArchive(f"{where}: a line is not an export item ({exc})") from exc


def filter_lines(
    data: bytes, matcher: KeyMatcher, key_names: list[str], *, ion_format: bool, where: str
) -> tuple[bytes, int, int]:
    """``(kept text, items removed, items kept)`` of one decompressed data file."""
    out: list[bytes] = []
    removed = kept = 0
    marker_dropped = False
    for line in data.splitlines(keepends=True):
        key = _line_key(line, ion_format, key_names, where)
        if key is not None and matcher.matches(key):
            removed += 1
            marker_dropped = marker_dropped or line.lstrip().startswith(ION_MARKER)
            continue
        if key is not None:
            kept += 1
            if marker_dropped and not line.lstrip().startswith(ION_MARKER):
                line = ION_MARKER + b" " + line  # the stream's version marker stays first
            marker_dropped = False
        out.append(line)
    return b"".join(out), removed, kept


def is_ion(data: bytes) -> bool:
    head = data[:64].lstrip()
    return head.startswith(b"$ion") or (head.startswith(b"{") and not head.startswith(b'{"'))


def count_items_file(archive: Archive, rel: str, matcher: KeyMatcher, key_names: list[str]) -> int:
    """Items of a gzip'd (or plain) data file holding an erased key (the file is read whole:
    compressed text has no statistics)."""
    data = _decompressed(archive, rel)
    _, removed, _ = filter_lines(
        data, matcher, key_names, ion_format=is_ion(data), where=archive.uri(rel)
    )
    return removed


def _decompressed(archive: Archive, rel: str) -> bytes:
    raw = archive.get_bytes(rel)
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise CorruptArchive(f"{archive.uri(rel)}: not a readable gzip file ({exc})") from exc
    return raw


def rewrite_items_file(
    archive: Archive, rel: str, matcher: KeyMatcher, key_names: list[str]
) -> tuple[int, int]:
    """Rewrite a data file without the erased keys' items (same name, same compression);
    returns ``(items removed, items kept)``."""
    raw = archive.get_bytes(rel)
    compressed = raw[:2] == b"\x1f\x8b"
    data = _decompressed(archive, rel) if compressed else raw
    text, removed, kept = filter_lines(
        data, matcher, key_names, ion_format=is_ion(data), where=archive.uri(rel)
    )
    if removed:
        archive.put_bytes(rel, gzip.compress(text, mtime=0) if compressed else text)
    return removed, kept


# -- export manifests -------------------------------------------------------------------------

_DIGESTS: dict[int, Callable[[bytes], bytes]] = {
    16: lambda data: hashlib.md5(data, usedforsecurity=False).digest(),
    32: lambda data: hashlib.sha256(data).digest(),
}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _companions(archive: Archive, rel: str, content: bytes) -> None:
    """Bring ``rel``'s ``.md5``/``.checksum`` companions up to date with ``content``: each keeps
    its digest (MD5 or SHA-256, told by its length) and encoding (hex or base64); one in no
    such form is left alone."""
    stem = rel.rsplit(".", 1)[0]
    for suffix in (".md5", ".checksum"):
        companion = stem + suffix
        try:
            text = archive.get_bytes(companion).strip()
        except FileNotFoundError:
            continue
        wanted = None
        for size, digest in _DIGESTS.items():
            if len(text) == 2 * size and set(text) <= _HEX:
                wanted = digest(content).hex().encode()
            elif len(text) == len(base64.b64encode(bytes(size))) and not set(text) <= _HEX:
                wanted = base64.b64encode(digest(content))
        if wanted is not None and text != wanted:
            archive.put_bytes(companion, wanted)


def update_export_manifests(
    archive: Archive, folder: str, changed: Iterable[str], key_names: list[str]
) -> None:
    """Recompute an export's manifests for its rewritten data files (``changed``, paths
    relative to the archive root): idempotent, so a re-run after a crash redoes it."""
    files_rel, summary_rel = layout.export_files_manifest(folder), layout.export_summary(folder)
    parsed = layout.parse_export_folder(folder)
    export_id = "" if parsed is None else parsed.export_id
    try:
        old_files = archive.get_bytes(files_rel)
    except FileNotFoundError:
        return  # an export without manifests (an emulator's): nothing to keep true
    changed = {rel.split(f"{folder}/", 1)[-1] for rel in changed}
    lines, total = [], 0
    for line in old_files.splitlines():
        if not line.strip():
            continue
        entry = orjson.loads(line)
        key = str(entry["dataFileS3Key"])
        relative = layout.export_relative_key(key, export_id) or key
        if relative in changed:
            data = archive.get_bytes(f"{folder}/{relative}")
            plain = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            ion_format = is_ion(plain)
            entry["itemCount"] = sum(
                1
                for text in plain.splitlines()
                if _line_key(text, ion_format, key_names, relative) is not None
            )
            md5 = hashlib.md5(data, usedforsecurity=False).digest()
            entry["md5Checksum"] = base64.b64encode(md5).decode("ascii")
            if "etag" in entry:
                entry["etag"] = md5.hex()
        total += int(entry["itemCount"])
        lines.append(orjson.dumps(entry))
    new_files = b"\n".join(lines) + b"\n"
    if new_files != old_files:
        archive.put_bytes(files_rel, new_files)
    _companions(archive, files_rel, new_files)
    summary_bytes = archive.get_bytes(summary_rel)
    summary = orjson.loads(summary_bytes)
    if summary.get("itemCount") != total:
        summary["itemCount"] = total
        summary_bytes = orjson.dumps(summary)
        archive.put_bytes(summary_rel, summary_bytes)
    _companions(archive, summary_rel, summary_bytes)
