"""Change-file footers: what each change file says about itself, written and read.

Every change file carries one entry in its Parquet key-value metadata, key :data:`FOOTER_KEY`,
a JSON object (docs/format.md "Integrity chain")::

    {"format": 1, "table", "table_id", "stream_arn", "shard_id", "dt", "first_seq",
     "last_seq", "row_count", "prev_last_seq", "prev_chained", "content_sha256"}

plus, in a file of rows captured from Kinesis Data Streams by the poller, ``"kinesis"``: the
Kinesis stream and shard, the first and last Kinesis sequence numbers the file holds, and its
rows' lowest and highest ``sequence_number`` (its name's range is the shard's record count,
not ``sequence_number``: docs/format.md "Kinesis Data Streams records"); and
``"erasures": [<erasure id>, …]`` once ``ddb-archiver forget`` has removed rows from the
file (then its rows may no longer reach its name's first and last sequence numbers; name and
links stay). A file written before footers existed records erasures under
:data:`ERASURES_KEY` instead, so that it stays unchained.

Writers build it with :func:`make_footer` and attach it with :func:`with_footer`; readers get
it with :func:`read_state` (the Parquet metadata only: one small ranged read, no rows), many
files at once with :func:`read_states`. What the footers mean for a shard's files together is
:mod:`archiver.format.chain`'s.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from archiver.format import layout
from archiver.format.layout import ChangeFileName
from archiver.format.schema import CHANGE_COLUMNS
from archiver.format.storage import Archive

FOOTER_KEY = b"ddb_stream_archive.change_file"
FOOTER_FORMAT = 1
# Erasures of a file without a chain footer (``ddb-archiver forget``): a JSON list of ids.
ERASURES_KEY = b"ddb_stream_archive.erasures"
# Footer reads are small ranged GETs on S3: latency-bound, so many run at once.
DEFAULT_WORKERS = 32


def content_sha256(rows: pa.Table) -> str:
    """SHA-256 of a change file's rows, in file order: every column of the change schema, as
    JSON (times as epoch milliseconds). Independent of Parquet encoding and compression."""
    digest = hashlib.sha256()
    for name in CHANGE_COLUMNS:
        column = rows.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        digest.update(name.encode())
        digest.update(orjson.dumps(column.to_pylist()))
    return digest.hexdigest()


@dataclass(frozen=True)
class Footer:
    """What a change file says about itself (its Parquet key-value metadata)."""

    table: str
    table_id: str
    stream_arn: str
    shard_id: str  # ``lambda`` for Lambda-written files
    dt: str
    first_seq: str  # 40 digits
    last_seq: str
    row_count: int
    prev_last_seq: str | None
    content_sha256: str
    prev_chained: bool = False
    erasures: tuple[str, ...] = ()  # ids of the erasures that removed rows from the file
    # Kinesis provenance: stream_arn, shard_id, first/last_sequence_number (Kinesis's),
    # sequence_min/max (the rows' ``sequence_number`` range).
    kinesis: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": FOOTER_FORMAT,
            "table": self.table,
            "table_id": self.table_id,
            "stream_arn": self.stream_arn,
            "shard_id": self.shard_id,
            "dt": self.dt,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "row_count": self.row_count,
            "prev_last_seq": self.prev_last_seq,
            "prev_chained": self.prev_chained,
            "content_sha256": self.content_sha256,
        }
        if self.erasures:
            doc["erasures"] = list(self.erasures)
        if self.kinesis is not None:
            doc["kinesis"] = dict(self.kinesis)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Footer:
        prev = doc.get("prev_last_seq")
        return cls(
            table=str(doc["table"]),
            table_id=str(doc["table_id"]),
            stream_arn=str(doc["stream_arn"]),
            shard_id=str(doc["shard_id"]),
            dt=str(doc["dt"]),
            first_seq=str(doc["first_seq"]),
            last_seq=str(doc["last_seq"]),
            row_count=int(doc["row_count"]),
            prev_last_seq=str(prev) if prev is not None else None,
            prev_chained=bool(doc.get("prev_chained", False)),
            content_sha256=str(doc["content_sha256"]),
            erasures=tuple(str(e) for e in doc.get("erasures") or ()),
            kinesis=dict(doc["kinesis"]) if isinstance(doc.get("kinesis"), Mapping) else None,
        )

    @property
    def sequence_range(self) -> tuple[str, str] | None:
        """The rows' ``sequence_number`` range when the name's range is not it (Kinesis)."""
        if self.kinesis is None:
            return None
        low, high = self.kinesis.get("sequence_min"), self.kinesis.get("sequence_max")
        return (str(low), str(high)) if low and high else None

    @property
    def chained(self) -> bool:
        return self.shard_id != layout.LAMBDA_SHARD


def make_footer(
    rows: pa.Table,
    *,
    table: str,
    dt: str,
    shard_id: str,
    first_seq: str,
    last_seq: str,
    prev_last_seq: str | None,
    prev_chained: bool = False,
    kinesis: Mapping[str, Any] | None = None,
) -> Footer:
    """The footer of a change file about to be written with ``rows``.

    ``kinesis``: the Kinesis provenance of a file whose name counts the shard's records
    (``stream_arn``, ``shard_id``, ``first_sequence_number``, ``last_sequence_number``); the
    rows' ``sequence_number`` range is added here.
    """
    stream_arn = str(rows.column("stream_arn")[0]) if rows.num_rows else ""
    table_id = str(rows.column("table_id")[0]) if rows.num_rows else ""
    if kinesis is not None:
        sequence = rows.column("sequence_number")
        low = pc.min(sequence).as_py() if rows.num_rows else None
        high = pc.max(sequence).as_py() if rows.num_rows else None
        kinesis = {**kinesis, "sequence_min": low, "sequence_max": high}
    return Footer(
        table=table,
        table_id=table_id,
        stream_arn=stream_arn,
        shard_id=shard_id,
        dt=dt,
        first_seq=layout.pad_seq(first_seq),
        last_seq=layout.pad_seq(last_seq),
        row_count=rows.num_rows,
        prev_last_seq=layout.pad_seq(prev_last_seq) if prev_last_seq else None,
        prev_chained=bool(prev_last_seq) and prev_chained,
        content_sha256=content_sha256(rows),
        kinesis=kinesis,
    )


def with_footer(rows: pa.Table, footer: Footer) -> pa.Table:
    """``rows`` carrying ``footer`` in their schema metadata (written into the Parquet footer)."""
    metadata = dict(rows.schema.metadata or {})
    metadata[FOOTER_KEY] = orjson.dumps(footer.to_json(), option=orjson.OPT_SORT_KEYS)
    return rows.replace_schema_metadata(metadata)


def erasures_of(metadata: Mapping[bytes, bytes] | None) -> tuple[str, ...]:
    """The erasures recorded in a file's key-value metadata (its footer's, else
    :data:`ERASURES_KEY`'s); empty for a file no erasure changed."""
    footer = footer_of(metadata)
    if footer is not None:
        return footer.erasures
    raw = (metadata or {}).get(ERASURES_KEY)
    try:
        return tuple(str(e) for e in orjson.loads(raw)) if raw else ()
    except (TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"malformed erasure record: {exc}") from exc


def after_erasure(
    rows: pa.Table, metadata: Mapping[bytes, bytes] | None, erasure_id: str
) -> pa.Table:
    """``rows`` (what is left of a change file after an erasure) carrying the file's metadata,
    updated: the footer's row count and content hash, and ``erasure_id`` among its erasures.
    Name, range and links are the original file's."""
    kept = dict(metadata or {})
    footer = footer_of(kept)
    if footer is not None:
        erasures = footer.erasures + (() if erasure_id in footer.erasures else (erasure_id,))
        updated = dataclasses.replace(
            footer,
            row_count=rows.num_rows,
            content_sha256=content_sha256(rows),
            erasures=erasures,
        )
        kept[FOOTER_KEY] = orjson.dumps(updated.to_json(), option=orjson.OPT_SORT_KEYS)
    else:
        erasures = erasures_of(kept)
        erasures += () if erasure_id in erasures else (erasure_id,)
        kept[ERASURES_KEY] = orjson.dumps(list(erasures))
    return rows.replace_schema_metadata(kept)


def footer_of(metadata: Mapping[bytes, bytes] | None) -> Footer | None:
    """The footer in a Parquet file's key-value metadata; ``None`` for a file written before
    footers existed.

    Raises:
        ValueError: the footer is there but malformed.
    """
    raw = (metadata or {}).get(FOOTER_KEY)
    if raw is None:
        return None
    try:
        return Footer.from_json(orjson.loads(raw))
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"malformed chain footer: {exc}") from exc


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileState:
    """One change file as listed, with what its footer (and Parquet metadata) says."""

    rel: str
    table: str
    dt: str
    name: ChangeFileName
    footer: Footer | None = None
    num_rows: int | None = None
    seq_min: str | None = None
    seq_max: str | None = None
    error: str | None = None  # unreadable: why
    listed_only: bool = False  # footer not read: only the name is known (outside the range)
    erasures: tuple[str, ...] = ()  # erasures that removed rows (``ddb-archiver forget``)

    @property
    def group(self) -> tuple[str, str]:
        return (self.name.label, self.name.shard_id)

    @property
    def chained(self) -> bool:
        return self.footer is not None and self.footer.chained


def parse_change_path(rel: str) -> tuple[str, str, ChangeFileName] | None:
    """``(table, dt, name)`` of a change file path; ``None`` for anything else."""
    parsed = layout.parse_change_file(rel)
    if parsed is None or parsed.name is None:
        return None
    return parsed.table, parsed.dt, parsed.name


def _seq_statistics(metadata: pq.FileMetaData) -> tuple[str | None, str | None]:
    index = metadata.schema.names.index("sequence_number")
    low: str | None = None
    high: str | None = None
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max:
            return None, None
        lo, hi = str(stats.min), str(stats.max)
        low = lo if low is None or lo < low else low
        high = hi if high is None or hi > high else high
    return low, high


def read_state(archive: Archive, rel: str, filesystem: pafs.FileSystem | None = None) -> FileState:
    """Read one change file's footer (Parquet metadata only: no rows)."""
    parsed = parse_change_path(rel)
    if parsed is None:
        raise ValueError(f"not a change file path: {rel}")
    table, dt, name = parsed
    try:
        metadata = pq.read_metadata(archive.path(rel), filesystem=filesystem or archive.arrow_fs)
        footer = footer_of(metadata.metadata)
        erasures = erasures_of(metadata.metadata)
        seq_min, seq_max = _seq_statistics(metadata)
    except FileNotFoundError:
        return FileState(rel, table, dt, name, error="vanished while being checked")
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for a broken file
        return FileState(rel, table, dt, name, error=one_line(exc))
    return FileState(
        rel, table, dt, name, footer, metadata.num_rows, seq_min, seq_max, erasures=erasures
    )


def read_states(
    archive: Archive,
    rels: Iterable[str],
    *,
    workers: int = DEFAULT_WORKERS,
    progress: Callable[[int], None] | None = None,
) -> list[FileState]:
    """:func:`read_state` of many files, in parallel; in the order given."""
    rels = list(rels)
    if not rels:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(rels))) as pool:
        out = []
        filesystem = archive.arrow_fs
        for state in pool.map(lambda rel: read_state(archive, rel, filesystem), rels):
            out.append(state)
            if progress is not None:
                progress(1)
    return out


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and its message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
