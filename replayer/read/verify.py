"""Compare a table with the archive's state at a time, item by item (canonical JSON).

``ddb-replayer verify`` folds the archive at ``--restore-date-time`` exactly as ``restore``
does, scans the target table (:func:`archiver.aws.scan.parallel_scan`, strongly consistent) into
the same DuckDB session and joins the two on ``keys``: items missing from the target, extra in
it, and different (their canonical JSON differs — equal items have byte-equal text,
DESIGN.md). It prints the counts and a few examples of each, and exits 0 on an exact match, 3
otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import duckdb
import orjson
import pyarrow as pa

from archiver.aws.error_table import ArchiverError
from archiver.aws.scan import parallel_scan
from archiver.format import tables
from archiver.format.codec import canonical_json, key_of
from replayer.engines.fold import (
    ROWS,
    Fold,
    FoldResult,
    FoldSettings,
    load_rows,
)
from replayer.exceptions import BadInput, replay_error

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

DEFAULT_SEGMENTS = 8
EXAMPLES = 3


@dataclass
class Comparison:
    """The outcome of comparing an expected set of items with an actual one."""

    expected: int
    actual: int
    missing: int = 0
    extra: int = 0
    different: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def report(self, expected_name: str, actual_name: str) -> str:
        """Counts and examples, as printed by ``verify`` and ``diff``."""
        head = f"{self.expected:,} items in {expected_name}, {self.actual:,} in {actual_name}"
        if self.identical:
            return f"identical: {head}"
        lines = [
            f"DIFFERENT: {self.missing:,} missing from {actual_name}, {self.extra:,} extra in "
            f"{actual_name}, {self.different:,} different ({head})"
        ]
        lines.extend(f"  {example}" for example in self.examples)
        return "\n".join(lines)


def _short(text: str | None, limit: int = 160) -> str:
    if text is None:
        return "-"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compare(con: duckdb.DuckDBPyConnection, expected: str, actual: str) -> Comparison:
    """Compare two DuckDB tables of ``(keys, item)`` rows (canonical JSON) on ``keys``."""
    joined = f"{expected} AS e FULL OUTER JOIN {actual} AS a ON e.keys = a.keys"
    row = con.execute(
        "SELECT count(e.keys), count(a.keys), "
        "count(*) FILTER (WHERE a.keys IS NULL), count(*) FILTER (WHERE e.keys IS NULL), "
        f"count(*) FILTER (WHERE e.item IS DISTINCT FROM a.item AND e.keys IS NOT NULL "
        f"AND a.keys IS NOT NULL) FROM {joined}"
    ).fetchall()[0]
    result = Comparison(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]))
    if result.identical:
        return result
    samples = con.execute(
        f"""SELECT kind, keys, e_item, a_item FROM (
              SELECT 'missing' AS kind, e.keys AS keys, e.item AS e_item, NULL AS a_item,
                     row_number() OVER (ORDER BY e.keys) AS n
              FROM {joined} WHERE a.keys IS NULL
              UNION ALL
              SELECT 'extra', a.keys, NULL, a.item, row_number() OVER (ORDER BY a.keys)
              FROM {joined} WHERE e.keys IS NULL
              UNION ALL
              SELECT 'different', e.keys, e.item, a.item, row_number() OVER (ORDER BY e.keys)
              FROM {joined}
              WHERE e.keys IS NOT NULL AND a.keys IS NOT NULL AND e.item IS DISTINCT FROM a.item
            ) WHERE n <= {EXAMPLES} ORDER BY kind, keys"""
    ).fetchall()
    for kind, keys, e_item, a_item in samples:
        if kind == "missing":
            result.examples.append(f"missing   {_short(keys)}: expected {_short(e_item)}")
        elif kind == "extra":
            result.examples.append(f"extra     {_short(keys)}: found {_short(a_item)}")
        else:
            result.examples.append(f"different {_short(keys)}: {_attribute_diff(e_item, a_item)}")
    return result


def _attribute_diff(expected: str, found: str, limit: int = 4) -> str:
    """The attributes that differ between two canonical items, e.g.
    ``n: expected {"N":"1"}, found {"N":"2"}; tag: expected -, found {"S":"x"}``."""
    try:
        left, right = orjson.loads(expected), orjson.loads(found)
    except orjson.JSONDecodeError:
        return f"expected {_short(expected)}, found {_short(found)}"
    names = sorted(n for n in set(left) | set(right) if left.get(n) != right.get(n))
    parts = []
    for name in names[:limit]:
        want = _short(orjson.dumps(left[name]).decode(), 60) if name in left else "-"
        got = _short(orjson.dumps(right[name]).decode(), 60) if name in right else "-"
        parts.append(f"{name}: expected {want}, found {got}")
    if len(names) > limit:
        parts.append(f"and {len(names) - limit} more attribute(s)")
    return "; ".join(parts)


# -- scanning a live table ------------------------------------------------------------------


def key_names(client: DynamoDBClient, table_name: str) -> list[str]:
    """The key attribute names of a live table (hash first)."""
    try:
        table = client.describe_table(TableName=table_name)["Table"]
    except Exception as exc:
        raise replay_error(exc, f"table {table_name}") from exc
    return tables.key_names(table["KeySchema"])


def scan_rows(
    client: DynamoDBClient,
    table_name: str,
    *,
    segments: int = DEFAULT_SEGMENTS,
    consistent: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Every item of a live table as ``(keys, item)`` batches, read by
    :func:`archiver.aws.scan.parallel_scan`."""
    names = key_names(client, table_name)
    try:
        for items in parallel_scan(client, table_name, segments=segments, consistent=consistent):
            keys = [canonical_json(key_of(item, names)) for item in items]
            texts = [canonical_json(item) for item in items]
            yield pa.record_batch([keys, texts], schema=ROWS)
    except ArchiverError as exc:
        raise replay_error(exc, f"Scan {table_name}") from exc.__cause__


def selected_rows(
    client: DynamoDBClient, table_name: str, keys: Sequence[str]
) -> Iterator[pa.RecordBatch]:
    """The items of ``keys`` in a live table as ``(keys, item)`` batches (BatchGetItem)."""
    from replayer.read.live_items import get_items

    found = get_items(client, table_name, keys)
    yield pa.record_batch([list(found), list(found.values())], schema=ROWS)


def verify_table(
    client: DynamoDBClient, table_name: str, state: FoldResult, *, segments: int = DEFAULT_SEGMENTS
) -> Comparison:
    """Compare ``table_name`` with a folded state (in the fold's DuckDB session): the whole
    table (scanned), or for a state folded for some keys only, just those items (read by key)."""
    scanned = f"{state.table}_target"
    rows = (
        scan_rows(client, table_name, segments=segments)
        if state.keys is None
        else selected_rows(client, table_name, state.keys.keys)
    )
    load_rows(state.con, scanned, rows)
    try:
        return compare(state.con, state.table, scanned)
    finally:
        state.con.execute(f"DROP TABLE IF EXISTS {scanned}")


def diff_tables(
    client: DynamoDBClient,
    table: str,
    other: str,
    *,
    other_client: DynamoDBClient | None = None,
    segments: int = DEFAULT_SEGMENTS,
    settings: FoldSettings | None = None,
) -> Comparison:
    """Compare two live tables item by item (``table`` is the expected side)."""
    other_client = other_client or client
    names, other_names = key_names(client, table), key_names(other_client, other)
    if names != other_names:
        raise BadInput(
            f"tables {table!r} and {other!r} have different keys ({', '.join(names)} vs "
            f"{', '.join(other_names)}): their items cannot be matched"
        )
    with Fold(None, settings) as session:
        session.load_rows("side_a", scan_rows(client, table, segments=segments))
        session.load_rows("side_b", scan_rows(other_client, other, segments=segments))
        return compare(session.con, "side_a", "side_b")


__all__: Sequence[str] = [
    "Comparison",
    "compare",
    "diff_tables",
    "scan_rows",
    "verify_table",
]
