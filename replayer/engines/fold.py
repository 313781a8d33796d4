"""The fold: a table's state at ``T`` from a base snapshot plus the change log, in DuckDB.

DESIGN.md "Replay semantics": per key, the latest change record in ``[log_from, T]`` in stream
order — ``(stream label, sequence_number)`` — wins; a REMOVE means absent; a key with no such
record keeps the base's item. Duplicates (the same record archived twice) count once.

How it runs (the shape matters for speed and memory; see ``bench/bench_fold.py``):

1. ``win``: per key, the highest stream position in the window — a hash aggregate over the
   narrow columns only (``keys``, ``sequence_number``), which spills to disk when large.
2. ``latest``: a second scan joins every record back against ``win`` and keeps the winners'
   images. Carrying every image through an ``arg_max`` instead costs ten times more: each
   new maximum copies a string into the aggregate state.
3. The base's rows for keys absent from ``win`` (an anti join), appended.

The result is materialised once in a table of the session's in-memory DuckDB database
(spilled to ``temp_directory`` past ``memory_limit``), so it can be counted (progress bars
with an ETA), streamed out as Arrow record batches any number of times, and joined against a
scan of a target table by ``replayer.read.verify`` — and so that every archive file has been read
before the first item is written: a file that compaction deletes between listing and reading
makes the whole fold re-list and run again (:func:`replayer.engines.dataset.with_relisting`), never
a half-written target.

Stream order: a change file's name starts with its stream's label, so each file's stream is
known from the listing. Records of one stream are ordered by ``sequence_number`` (zero-padded
text); when a window spans several streams (a stream disabled and re-enabled) each file's
order key is prefixed with its stream's rank by label, a constant per file rather than a
per-record string operation.

Local archives are read by DuckDB's own Parquet reader; ``s3://`` archives through pyarrow
datasets over s3fs (``replayer.engines.dataset``), since DuckDB's httpfs extension cannot be
installed offline.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from archiver.format import coverage, layout
from archiver.format import erasure_log as erasures
from archiver.format.exports.incremental import EVENT_ID_PREFIX as INCREMENTAL_EVENT_ID_PREFIX
from archiver.format.schema import CHANGE_SCHEMA, SNAPSHOT_SCHEMA
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc
from replayer.engines import dataset
from replayer.engines.key_rows import RowsRead, read_rows
from replayer.exceptions import NoUsableBase
from replayer.planning.key_selection import KeySelection
from replayer.planning.log_files import drop_later_streams
from replayer.planning.model import LogPlan, Plan
from replayer.planning.segments import STREAM, LogSegment

log = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = "1GB"
DEFAULT_BATCH_ROWS = 10_000
# Rows as a fold gives them and :meth:`Fold.load_rows` takes them: canonical key and item.
ROWS = pa.schema([pa.field("keys", pa.string()), pa.field("item", pa.string())])
_LOAD_ROWS = 50_000  # rows buffered per INSERT when loading rows into a session
# No change file in the range: an empty log, still taking the statement's parameters.
_EMPTY_LOG = (
    "SELECT NULL::VARCHAR AS keys, NULL::VARCHAR AS ord, NULL::VARCHAR AS event_name, "
    "NULL::VARCHAR AS new_image WHERE false AND $table_id::VARCHAR IS NULL "
    "AND $lo::TIMESTAMPTZ IS NULL AND $hi::TIMESTAMPTZ IS NULL"
)

# The same for a plan made of segments, whose bounds are in the statement.
_EMPTY_SEGMENTS = (
    "SELECT NULL::VARCHAR AS keys, NULL::VARCHAR AS ord, NULL::VARCHAR AS event_name, "
    "NULL::VARCHAR AS new_image WHERE false AND $table_id::VARCHAR IS NULL"
)


@dataclass(frozen=True)
class FoldSettings:
    """What a fold reads (every key, or a selection) and its DuckDB resources.

    Attributes:
        memory_limit: DuckDB's ``memory_limit`` (e.g. ``"1GB"``); past it, work spills to disk.
        temp_directory: where DuckDB spills; a private temporary folder when None.
        threads: DuckDB worker threads (default: one per core).
        keys: fold only these keys, reading only the row groups that can hold them
            (:mod:`replayer.engines.key_rows`); None: every key.
    """

    memory_limit: str = DEFAULT_MEMORY_LIMIT
    temp_directory: str | None = None
    threads: int | None = None
    keys: KeySelection | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FoldSettings:
        """What :func:`add_fold_arguments`' flags said (defaults where a command has none),
        and the selection :func:`replayer.planning.key_selection.select_keys` resolved."""
        return cls(
            memory_limit=getattr(args, "memory_limit", None) or DEFAULT_MEMORY_LIMIT,
            temp_directory=getattr(args, "temp_directory", None),
            keys=getattr(args, "key_selection", None),
        )


def add_fold_arguments(parser: argparse.ArgumentParser) -> None:
    """``--memory-limit`` and ``--temp-directory``: the fold's DuckDB resources."""
    group = parser.add_argument_group("fold resources")
    group.add_argument(
        "--memory-limit",
        default=DEFAULT_MEMORY_LIMIT,
        help="DuckDB memory limit for the fold; beyond it, work spills to --temp-directory",
    )
    group.add_argument(
        "--temp-directory",
        help="where the fold spills to disk (default: a private folder in the system temp dir)",
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class _Source:
    """One stream's change files, with the constant its order keys are prefixed with."""

    files: tuple[str, ...]
    ord_sql: str


def stream_sources(files: Sequence[str]) -> list[_Source]:
    """Group change files by stream (label in their name) and give each its order key."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for rel in files:
        parsed = layout.ChangeFileName.parse(rel)
        if parsed is None:
            # An unknown name says nothing about its stream: order every record by its own
            # stream ARN (whose last part is the label) instead. Slower, always right.
            return [_Source(tuple(files), "stream_arn || sequence_number")]
        by_label[parsed.label].append(rel)
    if len(by_label) <= 1:
        return [_Source(tuple(group), "sequence_number") for group in by_label.values()]
    return [
        _Source(tuple(by_label[label]), f"'{rank:05d}' || sequence_number")
        for rank, label in enumerate(sorted(by_label))
    ]


def may_hold_duplicates(files: Sequence[str]) -> bool:
    """Whether two files may hold the same record (then winners are deduplicated).

    A file holds one shard's contiguous range of records, named by its first and last
    sequence numbers, so files of one shard whose ranges do not overlap cannot share a record.
    Overlaps come from compaction (inputs still present during their grace period),
    re-archiving with other batch boundaries, or poller and Lambda both archiving a stream.
    Rows captured from Kinesis Data Streams always may: Kinesis delivers a record more than
    once, and a duplicate read after a restart is archived again (same ``event_id``, same
    ``sequence_number``).
    """
    ranges: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    shards: dict[str, set[str]] = defaultdict(set)
    for rel in files:
        parsed = layout.ChangeFileName.parse(rel)
        if parsed is None or parsed.label == layout.KINESIS_LABEL:
            return True
        ranges[(parsed.label, parsed.shard_id)].append((parsed.first_seq, parsed.last_seq))
        shards[parsed.label].add(parsed.shard_id)
    for names in shards.values():
        if layout.LAMBDA_SHARD in names and len(names) > 1:
            return True
    for spans in ranges.values():
        spans.sort()
        for (_, last), (first, _) in itertools.pairwise(spans):
            if first <= last:
                return True
    return False


class FoldResult:
    """A folded state (or log tail) materialised in a DuckDB table: ``keys`` and ``item`` columns.

    ``item`` is canonical DynamoDB JSON; in a log tail (:meth:`Fold.log_changes`) it is NULL
    for a key whose latest change deleted it. Valid while its :class:`Fold` is open.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        count: int,
        keys: KeySelection | None = None,
    ) -> None:
        self.con = con
        self.table = table
        self.count = count
        self.keys = keys  # folded for these keys only (None: every key)

    def batches(
        self, batch_rows: int = DEFAULT_BATCH_ROWS, *, ordered: bool = False
    ) -> Iterator[pa.RecordBatch]:
        """The rows as Arrow record batches of at most ``batch_rows`` rows (streamed);
        ``ordered``: by ``keys``, the same order on every run (resumable exports)."""
        # A cursor of its own, so the connection stays free for other work while this streams.
        cursor = self.con.cursor()
        order = " ORDER BY keys" if ordered else ""
        try:
            yield from cursor.sql(f"SELECT keys, item FROM {self.table}{order}").to_arrow_reader(
                batch_rows
            )
        finally:
            cursor.close()

    def write_units(self) -> int:
        """Write units a restore of these items takes: one per started KB of each item's
        canonical text (a little longer than DynamoDB's own measure, so an upper bound)."""
        rows = self.con.execute(
            f"SELECT coalesce(sum(ceil(strlen(item) / 1024.0)), 0)::BIGINT FROM {self.table} "
            "WHERE item IS NOT NULL"
        ).fetchall()
        return int(rows[0][0])

    def invalid_item(self, key_schema: Sequence[tuple[str, str]]) -> str | None:
        """Why the first item that DynamoDB would reject is wrong (None: all are fine).

        Each item must parse as a JSON object and carry every key attribute with the key's
        type (``S``, ``N`` or ``B``, a non-empty string). Checked before a target is created,
        so bad data never leaves a half-written table behind.
        """
        checks = ["json_type(item) = 'OBJECT'"]
        for name, kind in key_schema:
            path = _quote("$." + json.dumps(name) + "." + kind)
            checks.append(f"coalesce(json_type(item, {path}) = 'VARCHAR', false)")
            checks.append(f"coalesce(length(json_extract_string(item, {path})) > 0, false)")
        good = " AND ".join(checks)
        sql = (
            f"SELECT keys, json_valid(item) AS parses FROM {self.table} WHERE item IS NOT NULL "
            f"AND NOT (CASE WHEN json_valid(item) THEN ({good}) ELSE false END) LIMIT 1"
        )
        rows = self.con.execute(sql).fetchall()
        if not rows:
            return None
        keys, parses = rows[0]
        wanted = ", ".join(f"{name} ({kind})" for name, kind in key_schema)
        if not parses:
            return f"the item of key {keys} is not valid JSON"
        return f"the item of key {keys} is not an object carrying the key attributes {wanted}"

    def partition_files(self, partitions: int, directory: str) -> list[tuple[str, int]]:
        """Split the rows by key hash into ``partitions`` Parquet files, each ordered by key;
        returns (path, rows) per partition. The same rows give the same files on every run.

        The partition of each row is computed once, into a column added for the while (the
        hash is most of the cost: once per row rather than once per row and partition)."""
        os.makedirs(directory, exist_ok=True)
        column = "_partition"
        self.con.execute(f"ALTER TABLE {self.table} ADD COLUMN {column} INTEGER")
        try:
            self.con.execute(
                f"UPDATE {self.table} SET {column} = "
                f"(md5_number(keys) % {int(partitions)})::INTEGER"
            )
            out = []
            for p in range(partitions):
                path = os.path.join(directory, f"partition-{p:04d}.parquet")
                rows = self.con.execute(
                    f"COPY (SELECT keys, item FROM {self.table} WHERE {column} = {p} "
                    f"ORDER BY keys) TO {_quote(path)} (FORMAT parquet)"
                ).fetchall()
                out.append((path, int(rows[0][0])))
        finally:
            self.con.execute(f"ALTER TABLE {self.table} DROP COLUMN {column}")
        return out


def load_rows(
    con: duckdb.DuckDBPyConnection, name: str, batches: Iterable[pa.RecordBatch]
) -> FoldResult:
    """Table ``name`` (keys, item) of a fold's session, filled from record batches of
    :data:`ROWS` (a scanned table, an Athena result) some 50,000 rows at a time; returned as a
    result like a fold's, to compare or write from."""
    con.execute(f"CREATE OR REPLACE TABLE {name} (keys VARCHAR, item VARCHAR)")
    count = 0
    buffered: list[pa.RecordBatch] = []
    rows = 0

    def flush() -> None:
        chunk = pa.Table.from_batches(buffered, schema=ROWS)
        con.register("_incoming", chunk)
        try:
            con.execute(f"INSERT INTO {name} SELECT keys, item FROM _incoming")
        finally:
            con.unregister("_incoming")

    for batch in batches:
        buffered.append(batch)
        rows += batch.num_rows
        count += batch.num_rows
        if rows >= _LOAD_ROWS:
            flush()
            buffered, rows = [], 0
    if buffered:
        flush()
    return FoldResult(con, name, count)


class Fold:
    """A DuckDB session that folds an archive; use as a context manager.

    Example::

        plan = plan_restore(archive, "orders", at)
        with Fold(archive) as fold:
            state = fold.state_at(plan)
            for batch in state.batches():
                ...  # columns keys, item (canonical DynamoDB JSON)
    """

    def __init__(
        self,
        archive: Archive | None,
        settings: FoldSettings | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        """``archive`` may be None for a session that only compares tables (``diff``).

        ``read_only``: never write to the archive (``serve``): a disproved
        ``from_table_creation`` claim is reported, not recorded in coverage.json.
        """
        self.archive = archive
        self.settings = settings or FoldSettings()
        self.read_only = read_only
        self._con: duckdb.DuckDBPyConnection | None = None
        self._own_temp: str | None = None
        self._results = 0
        self._registered = 0
        self.rows_read = RowsRead()  # what reads over a key selection read, so far

    # -- session ----------------------------------------------------------------------------

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection (opened on first use)."""
        if self._con is None:
            temp = self.settings.temp_directory
            if temp is None:
                temp = self._own_temp = tempfile.mkdtemp(prefix="ddb-replayer-")
            else:
                os.makedirs(temp, exist_ok=True)
            con = duckdb.connect(":memory:")
            con.execute(f"SET memory_limit = {_quote(self.settings.memory_limit)}")
            con.execute(f"SET temp_directory = {_quote(temp)}")
            # Output order is meaningless here; not keeping it lets DuckDB stream and spill.
            con.execute("SET preserve_insertion_order = false")
            if self.settings.threads:
                con.execute(f"SET threads = {int(self.settings.threads)}")
            self._con = con
        return self._con

    @property
    def temp_directory(self) -> str:
        """Where this session keeps its spill and scratch files."""
        self.con  # noqa: B018 (opening the session creates its folder)
        return self.settings.temp_directory or str(self._own_temp)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        if self._own_temp is not None:
            shutil.rmtree(self._own_temp, ignore_errors=True)
            self._own_temp = None

    def __enter__(self) -> Fold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load_rows(self, name: str, batches: Iterable[pa.RecordBatch]) -> FoldResult:
        """Table ``name`` of this session filled from record batches: :func:`load_rows`."""
        return load_rows(self.con, name, batches)

    # -- sources ----------------------------------------------------------------------------

    def _relation(self, files: Sequence[str], kind: str) -> str:
        """SQL naming a relation over archive files (``changes`` or ``snapshot`` schema)."""
        if self.archive is None:
            raise ValueError("this fold session has no archive")
        if self.settings.keys is not None:
            self._registered += 1
            name = f"_{kind}_{self._registered}"
            schema = CHANGE_SCHEMA if kind == "changes" else SNAPSHOT_SCHEMA
            rows = read_rows(self.archive, files, schema, self.settings.keys, self.rows_read)
            self.con.register(name, rows)
            return name
        direct = self.archive.duckdb_paths(files)
        if direct is not None:
            paths = ", ".join(_quote(path) for path in direct)
            return f"read_parquet([{paths}], hive_partitioning = false)"
        self._registered += 1
        name = f"_{kind}_{self._registered}"
        listing = list(files)
        if kind == "changes":
            self.con.register(name, dataset.changes_dataset(self.archive, listing))
        else:
            self.con.register(name, dataset.snapshot_dataset(self.archive, listing))
        return name

    def _log_sql(
        self, files: Sequence[str], lower_inclusive: bool, columns: str = "event_name, new_image"
    ) -> str:
        if not files:
            return _EMPTY_LOG
        lower = ">=" if lower_inclusive else ">"
        parts = [
            f"SELECT keys, {source.ord_sql} AS ord, {columns} "
            f"FROM {self._relation(source.files, 'changes')} "
            f"WHERE table_id = $table_id AND event_time {lower} $lo AND event_time <= $hi"
            for source in stream_sources(files)
        ]
        return "\nUNION ALL\n".join(parts)

    def _segments_sql(self, segments: Sequence[LogSegment]) -> str:
        """The log of a plan made of segments: each segment's order keys are prefixed with its
        rank, so a later segment's record outranks any earlier one's
        (replayer.planning.segments)."""
        parts = []
        for rank, segment in enumerate(segments):
            if not segment.files:
                continue
            lo = _timestamp(segment.lo)
            hi = _timestamp(segment.hi)
            for source in stream_sources(segment.files):
                parts.append(
                    f"SELECT keys, '{rank:05d}' || {source.ord_sql} AS ord, event_name, "
                    f"new_image FROM {self._relation(source.files, 'changes')} "
                    f"WHERE table_id = $table_id AND event_time >= {lo} AND event_time <= {hi}"
                )
        if not parts:
            return _EMPTY_SEGMENTS
        return "\nUNION ALL\n".join(parts)

    def _fold_sql(
        self,
        files: Sequence[str],
        base_files: Sequence[str] | None,
        *,
        lower_inclusive: bool,
        segments: Sequence[LogSegment] = (),
    ) -> str:
        """The fold as one statement: a state (with ``base_files``) or a log tail (None)."""
        log_sql = (
            self._segments_sql(segments) if segments else self._log_sql(files, lower_inclusive)
        )
        # The log's SELECT is written out where it is read rather than named once in a CTE:
        # over a registered Arrow dataset (an S3 archive) DuckDB does not inline even a
        # ``NOT MATERIALIZED`` CTE read twice, and materialises every record, images
        # included (3 M changes: 1.2 GB spilled, 1.7× the time; docs/performance.md).
        join = f"FROM (\n{log_sql}\n) AS log JOIN win ON log.keys = win.keys AND log.ord = win.ord"
        if base_files is None:
            # A log tail keeps deletions, as NULL items.
            latest = (
                "SELECT log.keys, CASE WHEN log.event_name = 'REMOVE' THEN NULL "
                f"ELSE log.new_image END AS item {join}"
            )
        else:
            # A key whose winner is a REMOVE finds no partner here and so stays absent (and
            # its base row is dropped by the anti join below, as for every key in ``win``).
            # Filtering on event_name, which DuckDB pushes into the scan, rather than on the
            # image after the join: that filter it pushes down too, and then evaluates on
            # every record's image before the join, ten times slower.
            latest = (
                f"SELECT log.keys, log.new_image AS item {join} WHERE log.event_name <> 'REMOVE'"
            )
        if may_hold_duplicates(files):
            latest = f"SELECT keys, any_value(item) AS item FROM ({latest}) GROUP BY keys"
        sql = (
            f"WITH win AS MATERIALIZED (SELECT keys, max(ord) AS ord FROM (\n{log_sql}\n) "
            "GROUP BY keys)\n"
            f"{latest}"
        )
        if base_files:
            sql += (
                f"\nUNION ALL\nSELECT base.keys, base.item FROM "
                f"{self._relation(base_files, 'snapshot')} AS base "
                "ANTI JOIN win ON base.keys = win.keys"
            )
        return sql

    def _materialise(
        self,
        what: str,
        build: Any,
        params: dict[str, Any],
    ) -> FoldResult:
        """Run the fold into a temporary table, re-listing when a file vanished."""
        self._results += 1
        table = f"fold_{self._results}"
        attempt = {"n": 0}

        def action() -> FoldResult:
            attempt["n"] += 1
            sql = build(attempt["n"] > 1)
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
            # A plain table of the in-memory database (not TEMP, which is private to one
            # connection): cursors that stream it or join it see it too.
            self.con.execute(f"CREATE TABLE {table} AS {sql}", params)
            rows = self.con.execute(f"SELECT count(*) FROM {table}").fetchall()
            return FoldResult(self.con, table, int(rows[0][0]), self.settings.keys)

        result = dataset.with_relisting(action, what=what, archive=self.archive)
        keys = self.settings.keys
        if keys is not None:
            keys.say(f"{what} for {keys.describe()}: {self.rows_read.describe()}")
        return result

    # -- folds ------------------------------------------------------------------------------

    def state_at(self, plan: Plan) -> FoldResult:
        """The table as it was at ``plan.at``: one row per item (``keys``, ``item``).

        Raises:
            NoUsableBase: the plan has no base (the log claims to start at table creation)
                but some key's first record is not an INSERT: the claim is false, and is
                recorded as such in coverage.json.
        """
        self.check_from_table_creation(plan)
        base_files = list(plan.base.files) if plan.base else []

        def build(relist: bool) -> str:
            if plan.segments:
                segments = _relist_segments(self.archive, plan) if relist else plan.segments
                files = [f for segment in segments for f in segment.files]
                return self._fold_sql(files, base_files, lower_inclusive=True, segments=segments)
            files = (
                _relist(self.archive, plan.table, plan.log_from, plan.at)
                if relist
                else list(plan.change_files)
            )
            return self._fold_sql(files, base_files, lower_inclusive=True)

        params = _params(plan)
        return self._materialise(f"folding {plan.table}", build, params)

    def check_from_table_creation(self, plan: Plan) -> None:
        """For a plan without a base: a log that starts at table creation begins every key
        with an INSERT; a key whose first record is a MODIFY or REMOVE disproves it (the
        stream started after the table had items, or records are missing). One narrow
        aggregate over the log, run on this machine whichever engine folds (the Athena
        engine calls it before its query, as it plans locally), so both refuse alike.

        Raises:
            NoUsableBase: the claim is false; the evidence is recorded in coverage.json.

        A record from an incremental export is a key's last change in its window, so a key
        created and deleted there first appears as a REMOVE, and a ``NEW_IMAGE`` export names
        every change a MODIFY: such a first record disproves the claim only when it carries an
        old image (the key existed before the window that first shows it). Erased keys
        (``ddb-archiver forget``) lost their earlier records by design and are exempt."""
        archive = self.archive
        if plan.base is not None or archive is None or not plan.change_files:
            return
        params = {"table_id": plan.table_id, "lo": as_utc(plan.log_from), "hi": as_utc(plan.at)}
        erased = erasures.erased_key_test(archive, plan.table)
        attempt = {"n": 0}

        def action() -> list[tuple[Any, ...]]:
            attempt["n"] += 1
            files = (
                _relist(archive, plan.table, plan.log_from, plan.at)
                if attempt["n"] > 1
                else list(plan.change_files)
            )
            sql = self._log_sql(
                files, True, "event_name, event_id, event_time, old_image IS NOT NULL AS had_old"
            )
            cursor = self.con.execute(
                "SELECT keys, arg_min(event_name, ord) AS first, arg_min(event_id, ord) AS id, "
                f"arg_min(event_time, ord), arg_min(had_old, ord) AS first_old FROM ({sql}) "
                "GROUP BY keys HAVING first <> 'INSERT' "
                f"AND (first_old OR NOT starts_with(id, '{INCREMENTAL_EVENT_ID_PREFIX}'))"
                + ("" if erased else " LIMIT 1"),
                params,
            )
            while rows := cursor.fetchmany(1024):
                for row in rows:
                    if erased is None or not erased(str(row[0])):
                        return [row]
            return []

        found = dataset.with_relisting(
            action, what=f"checking the log of {plan.table}", archive=archive
        )
        if not found:
            return
        keys, event_name, event_id, event_time, _ = found[0]
        if self.read_only:
            raise NoUsableBase(
                f"table {plan.table!r}: a state without a base snapshot needs the log from "
                f"table creation, but key {coverage.key_hash(str(keys))} first appears as a "
                f"{event_name} (event id {event_id}), so it does not start there"
            )
        evidence = coverage.refute_from_table_creation(
            archive,
            plan.table,
            plan.table_id,
            keys=str(keys),
            event_id=str(event_id),
            event_name=str(event_name),
            event_time=as_utc(event_time),
            detected_by="replayer",
        )
        raise NoUsableBase(
            f"table {plan.table!r}: a restore without a base snapshot needs the log from table "
            f"creation, but key {evidence['key_sha256']} first appears as a {event_name} "
            f"(event id {event_id}, {evidence['event_time']}), so it does not start there: "
            "take a base snapshot with `ddb-archiver snapshot` and restore to a time after it"
        )

    def log_changes(self, plan: LogPlan) -> FoldResult:
        """Per key changed in ``(plan.after, plan.until]`` (``[after, until]`` with
        ``plan.lower_inclusive``), its latest image (NULL: deleted)."""

        def build(relist: bool) -> str:
            files = (
                _relist(self.archive, plan.table, plan.after, plan.until)
                if relist
                else list(plan.change_files)
            )
            return self._fold_sql(files, None, lower_inclusive=plan.lower_inclusive)

        params = {"table_id": plan.table_id, "lo": as_utc(plan.after), "hi": as_utc(plan.until)}
        return self._materialise(f"reading the log of {plan.table}", build, params)

    def count_records(self, plan: Plan) -> dict[str, int]:
        """What a plan will read: records in its window and the keys they touch (dry runs)."""

        def action() -> dict[str, int]:
            if plan.segments:
                sql = self._segments_sql(plan.segments)
            else:
                sql = self._log_sql(list(plan.change_files), True)
            rows = self.con.execute(
                f"SELECT count(*), count(DISTINCT keys) FROM ({sql})", _params(plan)
            ).fetchall()
            return {"log records": int(rows[0][0]), "keys changed": int(rows[0][1])}

        return dataset.with_relisting(
            action, what=f"counting the log of {plan.table}", attempts=1, archive=self.archive
        )


def _params(plan: Plan) -> dict[str, Any]:
    if plan.segments:
        return {"table_id": plan.table_id}
    return {"table_id": plan.table_id, "lo": as_utc(plan.log_from), "hi": as_utc(plan.at)}


def _timestamp(value: datetime) -> str:
    """A SQL literal of an instant (microseconds kept)."""
    return f"TIMESTAMPTZ '{as_utc(value).isoformat()}'"


def _relist_segments(archive: Archive | None, plan: Plan) -> tuple[LogSegment, ...]:
    """The plan's segments with the stream's files listed again (a window's files come from
    its commit record and are not compacted)."""
    out = []
    for segment in plan.segments:
        if segment.kind == STREAM:
            files = tuple(_relist(archive, plan.table, segment.lo, segment.hi))
            segment = LogSegment(segment.kind, files, segment.lo, segment.hi, segment.window)
        out.append(segment)
    return tuple(out)


def _relist(archive: Archive | None, table: str, start: datetime, end: datetime) -> list[str]:
    if archive is None:
        raise ValueError("this fold session has no archive")
    files = dataset.change_files(archive, table, as_utc(start).date(), as_utc(end).date())
    return drop_later_streams(files, start, end)
