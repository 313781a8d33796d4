"""Materialised states: a table at an instant, folded once and kept, keyed for reads.

A state is the fold at T (:class:`replayer.fold.Fold`, the one ``restore`` runs) turned into
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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from archiver.format.timefmt import iso_ms
from replayer.fold import Fold, FoldSettings
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


@dataclass
class State:
    """One table at one instant (see the module doc)."""

    table_at: TableAt
    rows: Rows
    built_seconds: float
    indexes: dict[str, Rows] = field(default_factory=dict)
    users: int = 0
    _table_size: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def schema(self) -> TableSchema:
        return self.table_at.schema

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + sum(index.nbytes for index in self.indexes.values())

    def index(self, schema: IndexSchema) -> Rows:
        """The index's entries (built the first time)."""
        with self._lock:
            found = self.indexes.get(schema.name)
            if found is None:
                found = self.rows.store.build_index(self, schema)
                self.indexes[schema.name] = found
            return found

    def table_size(self) -> int:
        """``TableSizeBytes``: the items' documented sizes, summed (computed once)."""
        with self._lock:
            if self._table_size is None:
                total = 0
                for _, text in self.rows.scan(0, len(self.rows)):
                    total += item_size(orjson.loads(text))
                self._table_size = total
            return self._table_size


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

    @classmethod
    def open(cls, archive: Any, settings: FoldSettings, cache_bytes: int) -> StateStore:
        return cls(Fold(archive, settings, read_only=True), cache_bytes)

    def close(self) -> None:
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
            state = self._build(table_at)
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
                if state.users:
                    continue
                del self._states[key]
                total -= state.nbytes
                dropped += [state.rows.table, *(rows.table for rows in state.indexes.values())]
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

    def _build(self, table_at: TableAt) -> State:
        started = time.monotonic()
        schema = table_at.schema
        with self._build_lock:
            con = self.fold.con
            if not self._installed:
                keys.install(con)
                self._installed = True
            result = self.fold.state_at(table_at.plan)
            name = self._name("state")
            key_sql = keys.sql_item_key("keys", schema.hash_key, schema.range_key)
            try:
                rows = self._sorted_table(name, f"SELECT {key_sql} AS k, item FROM {result.table}")
            finally:
                con.execute(f"DROP TABLE IF EXISTS {result.table}")
        seconds = time.monotonic() - started
        log.info(
            "%s at %s: %d items folded and keyed in %.1f s",
            table_at.table,
            iso_ms(table_at.at),
            len(rows),
            seconds,
        )
        return State(table_at, rows, seconds)

    def build_index(self, state: State, index: IndexSchema) -> Rows:
        """The entries of ``index`` in ``state`` (see the module doc)."""
        schema = state.schema
        parts = [index.hash_key, *([index.range_key] if index.range_key else [])]
        present = " AND ".join(
            f"{keys.sql_value_text('item', name, kind)} IS NOT NULL" for name, kind in parts
        )
        key_sql = keys.sql_item_key("item", index.hash_key, index.range_key)
        tie_sql = keys.sql_tie_breaker("item", schema.hash_key, schema.range_key)
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
        with self._build_lock:
            name = self._name("index")
            return self._sorted_table(
                name,
                f"SELECT {key_sql} || {tie_sql} AS k, {entry_sql} AS item "
                f"FROM {state.rows.table} WHERE {present}",
            )
