"""Materialised states: a table at an instant, folded once and kept, keyed for reads.

A state is the fold at T (:class:`replayer.engines.fold.Fold`, the one ``restore`` runs) turned into
a DuckDB table sorted by each item's key text (:mod:`replayer.serve.keys`): row ``i`` is the
``i``-th item in DynamoDB's read order. Python keeps only the sorted key texts (an Arrow
array); a GetItem is a binary search there and one row read, a Query or a Scan segment a
contiguous range of rows read in chunks. A secondary index is built the first time it is read:
its entries (projected as the index projects them, only for items that have its keys) in a
table of their own, sorted the same way.

All states live in one in-memory DuckDB database under ``--memory-limit``: beyond it DuckDB
spills their blocks to ``--temp-directory``, as the fold does. ``--cache-size`` bounds the
states kept: past it the least recently used state not being read is dropped (and folded
again if asked for). States are built one at a time; a request for a state being built waits
for it. The database's connection is not shared between threads: each reading thread has a
cursor of its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from archiver.format.timefmt import iso_ms
from replayer.engines.fold import Fold, FoldSettings
from replayer.serve import keys
from replayer.serve.catalog import TableAt
from replayer.serve.schema import IndexSchema, TableSchema
from replayer.serve.values import item_size

log = logging.getLogger(__name__)

_FIRST_CHUNK = 64
_MAX_CHUNK = 4096


class KeyArray:
    """Sorted key texts, binary-searchable (``bisect`` on an Arrow array, no copy)."""

    def __init__(self, array: pa.Array) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> str:
        return str(self.array[index].as_py())

    def left(self, text: str, lo: int = 0, hi: int | None = None) -> int:
        """The first position whose key is ≥ ``text``."""
        hi = len(self) if hi is None else hi
        while lo < hi:
            mid = (lo + hi) // 2
            if self[mid] < text:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def right(self, text: str, lo: int = 0, hi: int | None = None) -> int:
        """The first position whose key is > ``text``."""
        hi = len(self) if hi is None else hi
        while lo < hi:
            mid = (lo + hi) // 2
            if text < self[mid]:
                hi = mid
            else:
                lo = mid + 1
        return lo

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


@dataclass
class Rows:
    """A sorted DuckDB table (``k``, ``item``) and its keys; ``item`` is canonical JSON."""

    store: StateStore
    table: str
    keys: KeyArray
    nbytes: int

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, position: int) -> str:
        cursor = self.store.cursor()
        row = cursor.execute(
            f"SELECT item FROM {self.table} WHERE rowid = ?", [position]
        ).fetchone()
        assert row is not None
        return str(row[0])

    def many(self, positions: list[int]) -> dict[int, str]:
        """The rows at ``positions`` (any order; each read once)."""
        if not positions:
            return {}
        cursor = self.store.cursor()
        wanted = sorted(set(positions))
        rows = cursor.execute(
            f"SELECT rowid, item FROM {self.table} WHERE rowid IN (SELECT unnest(?::BIGINT[]))",
            [wanted],
        ).fetchall()
        return {int(position): str(text) for position, text in rows}

    def scan(self, start: int, stop: int, reverse: bool = False) -> Iterator[tuple[int, str]]:
        """``(position, item)`` for positions in ``[start, stop)``, ascending (or descending),
        read in growing chunks: a small page costs a small read."""
        chunk = _FIRST_CHUNK
        cursor = self.store.cursor()
        low, high = start, stop
        while low < high:
            if reverse:
                lo, hi = max(low, high - chunk), high
            else:
                lo, hi = low, min(high, low + chunk)
            order = "DESC" if reverse else "ASC"
            rows = cursor.execute(
                f"SELECT rowid, item FROM {self.table} WHERE rowid >= ? AND rowid < ? "
                f"ORDER BY rowid {order}",
                [lo, hi],
            ).fetchall()
            for position, text in rows:
                yield int(position), str(text)
            if reverse:
                high = lo
            else:
                low = hi
            chunk = min(chunk * 4, _MAX_CHUNK)


class State:
    """One table at one instant (see the module doc).

    Right after the fold a state answers reads by key from the fold's own table (its ``keys``
    column is the key's canonical JSON, an exact match); its sorted table is built in the
    background and reads by range (Query, Scan, indexes) wait for it.
    """

    def __init__(self, table_at: TableAt, store: StateStore, fold_table: str, count: int) -> None:
        self.table_at = table_at
        self.store = store
        self.count = count
        self.indexes: dict[str, Rows] = {}
        self.users = 0
        self.folded_seconds = 0.0
        self.sorted_seconds = 0.0
        self._fold_table: str | None = fold_table
        self._fold_readers = 0
        self._rows: Rows | None = None
        self._failure: BaseException | None = None
        self._sorted = threading.Event()
        self._phase = threading.Condition()
        self._lock = threading.Lock()
        self._table_size: int | None = None

    @property
    def schema(self) -> TableSchema:
        return self.table_at.schema

    @property
    def rows(self) -> Rows:
        """The sorted rows (waiting for them if they are being built)."""
        self._sorted.wait()
        if self._rows is None:
            raise RuntimeError(f"keying the state failed: {self._failure}") from self._failure
        return self._rows

    @property
    def nbytes(self) -> int:
        rows = self._rows
        own = rows.nbytes if rows is not None else 0
        return own + sum(index.nbytes for index in self.indexes.values())

    def lookup(self, key_json: str, key_text: str) -> str | None:
        """The item with this key (its canonical JSON, its sort text), or None."""
        with self._phase:
            fold_table = self._fold_table if not self._sorted.is_set() else None
            if fold_table is not None:
                self._fold_readers += 1
        if fold_table is None:
            rows = self.rows
            position = rows.keys.left(key_text)
            if position < len(rows) and rows.keys[position] == key_text:
                return rows.get(position)
            return None
        try:
            found = (
                self.store.cursor()
                .execute(f"SELECT item FROM {fold_table} WHERE keys = ?", [key_json])
                .fetchone()
            )
            return None if found is None else str(found[0])
        finally:
            with self._phase:
                self._fold_readers -= 1
                self._phase.notify_all()

    def sorted_(self, rows: Rows | None, failure: BaseException | None) -> str | None:
        """Switch to the sorted rows; returns the fold's table, once no reader uses it."""
        with self._phase:
            self._rows, self._failure = rows, failure
            self._sorted.set()
            while self._fold_readers:
                self._phase.wait()
            fold_table, self._fold_table = self._fold_table, None
        return fold_table

    def index(self, schema: IndexSchema) -> Rows:
        """The index's entries (built the first time)."""
        rows = self.rows
        with self._lock:
            found = self.indexes.get(schema.name)
            if found is None:
                found = self.store.build_index(self, rows, schema)
                self.indexes[schema.name] = found
            return found

    def table_size(self) -> int:
        """``TableSizeBytes``: the items' documented sizes, summed (computed once)."""
        rows = self.rows
        with self._lock:
            if self._table_size is None:
                total = 0
                for _, text in rows.scan(0, len(rows)):
                    total += item_size(orjson.loads(text))
                self._table_size = total
            return self._table_size

    def tables(self) -> list[str]:
        """The DuckDB tables this state holds."""
        names = [rows.table for rows in self.indexes.values()]
        if self._rows is not None:
            names.append(self._rows.table)
        if self._fold_table is not None:
            names.append(self._fold_table)
        return names


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class StateStore:
    """The states the endpoint keeps (see the module doc).

    Args:
        fold: a read-only fold session over the archive; its database holds the states.
        cache_bytes: the most the kept states may take together (their items and keys).
    """

    def __init__(self, fold: Fold, cache_bytes: int) -> None:
        self.fold = fold
        self.cache_bytes = cache_bytes
        self._states: OrderedDict[tuple[str, datetime], State] = OrderedDict()
        self._building: dict[tuple[str, datetime], threading.Event] = {}
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._local = threading.local()
        self._names = 0
        self._installed = False
        self._sorters: list[threading.Thread] = []

    @classmethod
    def open(cls, archive: Any, settings: FoldSettings, cache_bytes: int) -> StateStore:
        return cls(Fold(archive, settings, read_only=True), cache_bytes)

    def close(self) -> None:
        for sorter in self._sorters:
            sorter.join()
        self.fold.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the states' database."""
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self.fold.con.cursor()
            self._local.cursor = cursor
        return cursor

    # -- using states --------------------------------------------------------------------

    @contextlib.contextmanager
    def use(self, table_at: TableAt) -> Iterator[State]:
        """The state of ``table_at`` (built if needed), kept while the block runs."""
        state = self._acquire(table_at)
        try:
            yield state
        finally:
            with self._lock:
                state.users -= 1
            self._evict()

    def _acquire(self, table_at: TableAt) -> State:
        key = table_at.key
        while True:
            with self._lock:
                state = self._states.get(key)
                if state is not None:
                    self._states.move_to_end(key)
                    state.users += 1
                    return state
                waiting = self._building.get(key)
                if waiting is None:
                    self._building[key] = threading.Event()
                    break
            waiting.wait()
        try:
            state = self._fold(table_at)
            with self._lock:
                self._states[key] = state
                state.users += 1
            return state
        finally:
            with self._lock:
                self._building.pop(key).set()

    def _evict(self) -> None:
        """Drop least recently used states not being read while the kept exceed the cache
        (the newest is always kept, however large)."""
        dropped: list[str] = []
        with self._lock:
            total = sum(state.nbytes for state in self._states.values())
            for key in list(self._states):
                if total <= self.cache_bytes or len(self._states) <= 1:
                    break
                state = self._states[key]
                if state.users or not state._sorted.is_set():
                    continue
                del self._states[key]
                total -= state.nbytes
                dropped += state.tables()
        for name in dropped:
            with self._build_lock:
                self.fold.con.execute(f"DROP TABLE IF EXISTS {name}")

    def states(self) -> list[State]:
        with self._lock:
            return list(self._states.values())

    # -- building ------------------------------------------------------------------------

    def _name(self, kind: str) -> str:
        self._names += 1
        return f"serve_{kind}_{self._names}"

    def _sorted_table(self, name: str, select_sql: str) -> Rows:
        """``CREATE TABLE name AS select_sql ORDER BY k`` with rows stored in that order, and
        the sorted keys read back."""
        con = self.fold.con
        # Rows are stored in the query's order only while insertion order is preserved (the
        # fold turns that off for its own speed).
        con.execute("SET preserve_insertion_order = true")
        try:
            con.execute(f"CREATE TABLE {name} AS {select_sql} ORDER BY k")
        finally:
            con.execute("SET preserve_insertion_order = false")
        table = con.sql(f"SELECT k FROM {name} ORDER BY rowid").to_arrow_table()
        array = table.column(0).combine_chunks() if table.num_rows else pa.array([], pa.string())
        if len(array) > 1 and pc.any(pc.less(array[1:], array[:-1])).as_py():
            raise RuntimeError(f"{name}: rows were not stored in key order")
        row = con.execute(f"SELECT coalesce(sum(strlen(k) + strlen(item)), 0) FROM {name}")
        size = row.fetchone()
        return Rows(self, name, KeyArray(array), int(size[0]) if size else 0)

    def _fold(self, table_at: TableAt) -> State:
        """Fold the state; its sorted table follows in the background."""
        started = time.monotonic()
        with self._build_lock:
            if not self._installed:
                keys.install(self.fold.con)
                self._installed = True
            result = self.fold.state_at(table_at.plan)
        state = State(table_at, self, result.table, result.count)
        state.folded_seconds = time.monotonic() - started
        sorter = threading.Thread(
            target=self._sort, args=(state, result.table), name="serve-sort", daemon=True
        )
        self._sorters = [t for t in self._sorters if t.is_alive()] + [sorter]
        sorter.start()
        return state

    def _sort(self, state: State, fold_table: str) -> None:
        started = time.monotonic()
        schema = state.schema
        rows: Rows | None = None
        failure: BaseException | None = None
        try:
            with self._build_lock:
                key_sql = keys.sql_keyed(
                    fold_table,
                    "keys",
                    [schema.hash_key, *([schema.range_key] if schema.range_key else [])],
                    keep=["item"],
                )
                rows = self._sorted_table(self._name("state"), key_sql)
        except BaseException as exc:  # reported to every reader of the state
            log.exception("keying %s failed", state.table_at.requested)
            failure = exc
        state.sorted_seconds = time.monotonic() - started
        dropped = state.sorted_(rows, failure)
        if dropped is not None and rows is not None:
            with self._build_lock:
                self.fold.con.execute(f"DROP TABLE IF EXISTS {dropped}")
        log.info(
            "%s at %s: %d items folded in %.1f s, sorted by key in %.1f s more",
            state.table_at.table,
            iso_ms(state.table_at.at),
            state.count,
            state.folded_seconds,
            state.sorted_seconds,
        )

    def build_index(self, state: State, rows: Rows, index: IndexSchema) -> Rows:
        """The entries of ``index`` in ``state`` (see the module doc)."""
        schema = state.schema
        entry_sql = "item"
        if index.projection != "ALL":
            wanted = set(schema.key_names) | set(index.key_names)
            if index.projection == "INCLUDE":
                wanted |= set(index.non_key_attributes)
            members = ", ".join(
                f"CASE WHEN json_exists(item, {keys.json_path(attribute)}) THEN "
                f"{_sql_string(orjson.dumps(attribute).decode())} || ':' || "
                f"json_extract(item, {keys.json_path(attribute)})::VARCHAR END"
                for attribute in sorted(wanted)
            )
            entry_sql = f"'{{' || concat_ws(',', {members}) || '}}'"
        table_key = [schema.hash_key, *([schema.range_key] if schema.range_key else [])]
        index_key = [index.hash_key, *([index.range_key] if index.range_key else [])]
        select = keys.sql_keyed(
            f"(SELECT {entry_sql} AS item FROM {rows.table})",
            "item",
            index_key,
            tie=table_key,
            keep=["item"],
            where_present=True,
        )
        with self._build_lock:
            return self._sorted_table(self._name("index"), select)
