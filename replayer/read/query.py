"""SQL over the archive, locally, with DuckDB.

Two views read the archive in place (nothing is copied or downloaded first):

  changes    every archived change record (event_id, event_name, event_time, sequence_number,
             shard_id, stream_arn, table_id, keys, new_image, old_image, size_bytes,
             user_identity, origin) plus the partition columns table_name and dt (strings)
  snapshots  every committed base snapshot: keys, item, table_name, snapshot_id

Two table functions travel in time (replayer.read.timetravel): state_at('orders', TIMESTAMP
'2026-01-31 12:00:00') is the table as it was then (keys, item), planned and refused exactly
as restore is; history_of('orders', '{"pk": {"S": "a"}}') is one item's every change.

keys, new_image, old_image and item are canonical DynamoDB JSON text: use DuckDB's JSON
functions on them (new_image->>'$.status.S'). Filters on table_name and dt skip the other
partitions' files without opening them; a filter on keys skips row groups. Times are UTC.

Read-only: one SELECT (or EXPLAIN) statement, over these views only. DuckDB's file, network
and extension access is off and its configuration locked before the query runs, so COPY … TO,
read_csv('/etc/passwd'), ATTACH, INSTALL and SET are refused (exit 2), as is more than one
statement.

Examples:
  ddb-replayer query --archive s3://bucket/prefix \\
      "SELECT dt, event_name, count(*) FROM changes WHERE table_name = 'orders' GROUP BY ALL"
  ddb-replayer query --archive ./demo-archive \\
      "SELECT count(*) FROM state_at('orders', TIMESTAMP '2026-01-31 12:00:00')"
  ddb-replayer query --archive ./demo-archive --format csv \\
      "SELECT event_time, keys FROM changes WHERE user_identity = 'Service/dynamodb.amazonaws.com'"
"""

from __future__ import annotations

import base64
import csv
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TextIO

import duckdb
import orjson
import pyarrow as pa
import pyarrow.dataset as ds

from archiver.format import arrow_scan, layout
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from replayer.engines.dataset import (
    archived_object,
    change_files,
    changes_dataset,
    damaged_file,
    duckdb_message_match,
    reading_fs,
    with_relisting,
)
from replayer.exceptions import BadInput, ReplayError

FORMATS = ("table", "csv", "json")
SNAPSHOT_PARTITIONS = pa.schema(
    [pa.field("table_name", pa.string()), pa.field("snapshot_id", pa.string())]
)
SNAPSHOTS_WITH_PARTITIONS = pa.schema(
    [
        pa.field("keys", pa.string()),
        pa.field("item", pa.string()),
        pa.field("table_name", pa.string()),
        pa.field("snapshot_id", pa.string()),
    ]
)
# A cell in --format table is cut to this many characters: images run to kilobytes.
TABLE_CELL_WIDTH = 60
# --format table holds the rows it aligns in memory; past this many it stops and says so.
TABLE_MAX_ROWS = 10_000
_BATCH_ROWS = 10_000

# DuckDB errors that mean "your SQL is wrong" (exit 2), as opposed to an I/O or internal failure.
_BAD_SQL = (
    duckdb.ParserException,
    duckdb.BinderException,
    duckdb.CatalogException,
    duckdb.SyntaxException,
    duckdb.ConversionException,
    duckdb.NotImplementedException,
    duckdb.TypeMismatchException,
    duckdb.OutOfRangeException,
    # The SQL reached for a file, the network or an extension (see lock_down).
    duckdb.PermissionException,
)


# What a read-only query may be: a SELECT (DuckDB parses DESCRIBE, SHOW, SUMMARIZE, VALUES and
# FROM-first queries as SELECTs too) or an EXPLAIN of one.
_READ_ONLY_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})

# ``InvalidInputException`` covers both a missing ``?`` value and a failed read of a
# registered dataset (the views); only its message tells them apart.
_READ_FAILED = re.compile(r"reading the stream registered as '[^']*' failed")


def _bad_sql(exc: BaseException) -> bool:
    """Whether DuckDB rejected the SQL itself (exit 2) rather than failed to read the archive."""
    if isinstance(exc, _BAD_SQL):
        return True
    return (
        isinstance(exc, duckdb.InvalidInputException)
        and duckdb_message_match(exc, _READ_FAILED) is None
    )


def one_line(message: str) -> str:
    """DuckDB's multi-line message (with its caret diagram) as one line."""
    lines = [line.strip() for line in message.splitlines()]
    return " ".join(line for line in lines if line and set(line) != {"^"})


# -- views ---------------------------------------------------------------------------------


def snapshot_files(archive: Archive, table: str | None = None) -> list[str]:
    """Part files of committed snapshots (a folder without ``_manifest.json`` is unfinished)."""
    root = layout.snapshots_table_dir(table) if table is not None else layout.SNAPSHOTS
    found = [(rel, layout.parse_snapshot_file(rel)) for rel in archive.find(root)]
    committed = {path.folder for _, path in found if path is not None and path.is_manifest}
    return [
        rel
        for rel, path in found
        if path is not None and not path.is_manifest and path.folder in committed
    ]


def snapshots_dataset(archive: Archive, files: list[str]) -> ds.Dataset:
    """Snapshot part files with ``table_name`` and ``snapshot_id`` as string columns."""
    return arrow_scan.dataset(
        [archive.path(rel) for rel in files],
        schema=SNAPSHOTS_WITH_PARTITIONS,
        format="parquet",
        filesystem=reading_fs(archive),
        partitioning=ds.partitioning(SNAPSHOT_PARTITIONS, flavor="hive"),
        partition_base_dir=archive.path(layout.SNAPSHOTS),
    )


def connect(
    archive: Archive,
    *,
    table: str | None = None,
    dt_from: date | str | None = None,
    dt_to: date | str | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection (UTC) with the ``changes`` and ``snapshots`` views, locked
    down (:func:`lock_down`) once they are registered.

    ``table`` and the ``dt`` range narrow what is listed (and so what the views can see); they
    are for callers that know what they need, like ``history``.
    """
    con = duckdb.connect(":memory:")
    # Times are shown and compared in UTC whatever the machine's zone is.
    con.execute("SET TimeZone = 'UTC'")
    changes = changes_dataset(archive, change_files(archive, table, dt_from, dt_to))
    snapshots = snapshots_dataset(archive, snapshot_files(archive, table))
    con.register("changes", changes)
    con.register("snapshots", snapshots)
    lock_down(con)
    return con


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Turn off every file, network and extension access of ``con``, for good.

    The views stay readable: they are Arrow datasets that pyarrow reads through the archive's
    own filesystem, so DuckDB never opens a file for them. Locking the configuration makes the
    setting (and the session's UTC time zone) impossible to change from SQL.
    """
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def check_read_only(sql: str) -> None:
    """Refuse ``sql`` unless it is exactly one read-only statement (SELECT or EXPLAIN).

    Raises:
        BadInput: it does not parse, holds several statements, or would change something.
    """
    parser = duckdb.connect(":memory:")
    try:
        statements = parser.extract_statements(sql)
    except duckdb.Error as exc:
        raise BadInput(one_line(str(exc))) from exc
    finally:
        parser.close()
    if len(statements) != 1:
        raise BadInput(
            f"the SQL holds {len(statements)} statements: give exactly one SELECT "
            "(queries over the archive are read-only)"
        )
    kind = statements[0].type
    if kind not in _READ_ONLY_STATEMENTS:
        raise BadInput(
            f"{kind.name} statements are refused: queries over the archive are read-only "
            "(one SELECT or EXPLAIN)"
        )


def check_archive(archive: Archive) -> None:
    """Refuse a root that holds no archive at all: a mistyped ``--archive`` is the usual cause."""
    if not any(archive.exists(top) for top in (layout.CHANGES, layout.SNAPSHOTS, layout.STATE)):
        raise BadInput(
            f"{archive.url} holds no archive (no changes/, snapshots/ or _state/): check --archive"
        )


class QueryResult:
    """Column names and a stream of row tuples; the first batch is already fetched."""

    def __init__(
        self, columns: list[str], first: pa.RecordBatch | None, rest: Any, owner: Any = None
    ) -> None:
        self.columns = columns
        self._first = first
        self._rest = rest
        self._owner = owner  # the DuckDB connection must outlive the reader that streams from it

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self._first is not None:
            yield self._first
        if self._rest is not None:
            yield from self._rest

    def rows(self) -> Iterator[tuple[Any, ...]]:
        for batch in self.batches():
            columns = [column.to_pylist() for column in batch.columns]
            yield from zip(*columns, strict=True)


def run_query(
    archive: Archive,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    table: str | None = None,
    dt_from: date | str | None = None,
    dt_to: date | str | None = None,
) -> QueryResult:
    """Run ``sql`` over the archive's views and return its result as a stream of batches.

    Listing, planning and the first batch happen inside :func:`with_relisting`, so a file that
    compaction removed between listing and reading makes it list again instead of failing.
    Bad SQL, more than one statement, anything but a SELECT or EXPLAIN, and any attempt to
    reach a file, the network or the configuration raise :class:`BadInput` with one line.
    """
    check_read_only(sql)

    def attempt() -> QueryResult:
        con = connect(archive, table=table, dt_from=dt_from, dt_to=dt_to)
        try:
            relation = con.sql(sql, params=_params(params))
        except duckdb.Error as exc:
            if _bad_sql(exc) and damaged_file(archive, exc) is None:
                raise BadInput(one_line(str(exc))) from exc
            raise
        if relation is None:  # the last statement has no result (SET, CREATE VIEW …)
            return QueryResult([], None, None)
        columns = list(relation.columns)
        try:
            reader = relation.to_arrow_reader(_BATCH_ROWS)
            first = reader.read_next_batch()
        except StopIteration:
            return QueryResult(columns, None, None)
        except duckdb.Error as exc:  # e.g. a failing CAST, found while running
            if _bad_sql(exc) and damaged_file(archive, exc) is None:
                raise BadInput(one_line(str(exc))) from exc
            raise
        return QueryResult(columns, first, _guarded(reader, archive), owner=con)

    try:
        return with_relisting(attempt, what="query", archive=archive)
    except duckdb.Error as exc:
        raise ReplayError(f"query failed: {one_line(str(exc))}") from exc


def _params(params: Sequence[Any] | Mapping[str, Any] | None) -> Any:
    if params is None or isinstance(params, Mapping):
        return params
    return list(params)


def _guarded(reader: pa.RecordBatchReader, archive: Archive) -> Iterator[pa.RecordBatch]:
    try:
        yield from reader
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        # Read through DuckDB's Arrow stream, a failure may arrive as a plain OSError.
        archived = archived_object("query", exc)
        if archived is not None:
            raise archived from exc
        damaged = damaged_file(archive, exc)
        if damaged is not None:
            raise damaged from exc
        if isinstance(exc, OSError) and not isinstance(exc, pa.ArrowException):
            raise
        if isinstance(exc, pa.ArrowException):
            raise ReplayError(f"query failed: {one_line(str(exc))}") from exc
        if _bad_sql(exc):
            raise BadInput(one_line(str(exc))) from exc
        raise ReplayError(f"query failed: {one_line(str(exc))}") from exc


# -- output --------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A result value as JSON-safe Python: times as ISO 8601 UTC with milliseconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.isoformat(timespec="milliseconds")
        return iso_ms(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def text_of(value: Any) -> str:
    """How a value appears in a table or CSV cell (NULL is empty)."""
    if value is None:
        return ""
    converted = plain(value)
    if isinstance(converted, str):
        return converted
    if isinstance(converted, bool):
        return "true" if converted else "false"
    if isinstance(converted, dict | list):
        return orjson.dumps(converted).decode("utf-8")
    return str(converted)


def _cut(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def write_table(
    result: QueryResult,
    out: TextIO,
    width: int = TABLE_CELL_WIDTH,
    max_rows: int = TABLE_MAX_ROWS,
) -> int:
    """Aligned columns with a header and a row count; returns the number of rows shown.

    Aligning needs every row in memory, so at most ``max_rows`` are shown (the other formats
    stream any number).
    """
    rows: list[list[str]] = []
    more = False
    for row in result.rows():
        if len(rows) == max_rows:
            more = True
            break
        rows.append([_cut(text_of(v), width) for v in row])
    if not result.columns:
        return 0
    widths = [len(name) for name in result.columns]
    for cells in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, cells, strict=True)]
    line = "  ".join(name.ljust(w) for name, w in zip(result.columns, widths, strict=True))
    out.write(line.rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for cells in rows:
        padded = (cell.ljust(w) for cell, w in zip(cells, widths, strict=True))
        out.write("  ".join(padded).rstrip() + "\n")
    if more:
        out.write(
            f"(first {len(rows)} rows shown; add a LIMIT, or use --format csv or json for all)\n"
        )
    else:
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
    return len(rows)


def write_csv(result: QueryResult, out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    if result.columns:
        writer.writerow(result.columns)
    count = 0
    for row in result.rows():
        writer.writerow([text_of(v) for v in row])
        count += 1
    return count


def write_json_lines(result: QueryResult, out: TextIO) -> int:
    count = 0
    for row in result.rows():
        record = {name: plain(v) for name, v in zip(result.columns, row, strict=True)}
        out.write(orjson.dumps(record).decode("utf-8") + "\n")
        count += 1
    return count


def write_result(result: QueryResult, fmt: str, out: TextIO) -> int:
    if fmt == "csv":
        return write_csv(result, out)
    if fmt == "json":
        return write_json_lines(result, out)
    return write_table(result, out)
