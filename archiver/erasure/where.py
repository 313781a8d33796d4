"""``forget --where``: the keys whose rows ever matched a predicate, found safely in DuckDB.

The predicate is one DuckDB expression over a change row — its columns ``event_id``,
``event_name``, ``event_time``, ``sequence_number``, ``shard_id``, ``stream_arn``,
``table_id``, ``keys``, ``new_image``, ``old_image``, ``size_bytes``, ``user_identity``,
``origin`` — e.g. ``new_image->>'$.email.S' = 'a@b.c'``. Snapshot items are rows too, with
the item as ``new_image`` (other columns null), so a key known only from a snapshot is found.

Safety: the text must parse as exactly one expression (no statement, no ``;``, no subquery);
it runs over Arrow datasets registered before DuckDB's file, network and extension access is
turned off and its configuration locked, so it can read nothing but these rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from archiver.aws.error_table import UsageError
from archiver.format import arrow_scan, layout
from archiver.format.manifests import list_snapshots
from archiver.format.schema import CHANGE_SCHEMA, SNAPSHOT_SCHEMA
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc


def _one_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines()]
    return " ".join(line for line in lines if line and set(line) != {"^"})


def _subqueries(node: Any) -> bool:
    if isinstance(node, dict):
        if node.get("class") == "SUBQUERY" or node.get("type") == "SUBQUERY":
            return True
        return any(_subqueries(v) for v in node.values())
    if isinstance(node, list):
        return any(_subqueries(v) for v in node)
    return False


def check_expression(predicate: str) -> None:
    """Refuse anything but one expression.

    Raises:
        UsageError: it does not parse as one expression, or holds a subquery or a ``;``.
    """
    if ";" in predicate:
        raise UsageError("--where takes one expression, not statements (no ';')")
    con = duckdb.connect(":memory:")
    try:
        statements = con.extract_statements(f"SELECT 1 WHERE ({predicate})")
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise UsageError("--where takes one expression")
        tree = con.execute(
            "SELECT json_serialize_sql(?::VARCHAR)", [f"SELECT 1 WHERE ({predicate})"]
        ).fetchone()
    except duckdb.Error as exc:
        raise UsageError(f"--where: {_one_line(str(exc))}") from exc
    finally:
        con.close()
    import orjson

    parsed = orjson.loads(tree[0]) if tree else {}
    if parsed.get("error"):
        raise UsageError(f"--where: {parsed.get('error_message', 'does not parse')}")
    nodes = parsed.get("statements", [{}])[0].get("node", {})
    plain = (
        nodes.get("type") == "SELECT_NODE"
        and not nodes.get("cte_map", {}).get("map")
        and (nodes.get("from_table") or {}).get("type") == "EMPTY"
        and not nodes.get("modifiers")
        and not nodes.get("group_expressions")
        and nodes.get("having") is None
        and nodes.get("qualify") is None
    )
    if not plain:
        raise UsageError("--where takes one expression")
    if _subqueries(nodes.get("where_clause")):
        raise UsageError("--where takes one expression over a change row, without subqueries")


def keys_where(
    archive: Archive,
    table: str,
    predicate: str,
    *,
    after: datetime | None = None,
    until: datetime | None = None,
) -> list[str]:
    """Every key with a change row or snapshot item for which ``predicate`` is true.

    With ``after`` and ``until`` (``ddb-replayer undo``'s window), only the change rows with
    ``after < event_time <= until`` are evaluated, and no snapshot item.

    Raises:
        UsageError: the predicate is not one valid expression, or fails on the rows.
    """
    check_expression(predicate)
    window = after is not None and until is not None
    dt_from = str(as_utc(after).date()) if after is not None else ""
    dt_to = str(as_utc(until).date()) if until is not None else "9999-12-31"
    changes = [
        rel
        for rel in archive.find(layout.changes_table_dir(table), ".parquet")
        if (path := layout.parse_change_file(rel)) is not None
        and path.name is not None
        and (not window or dt_from <= path.dt <= dt_to)
    ]
    parts = (
        []
        if window
        else [str(f["path"]) for m in list_snapshots(archive, table) for f in m["files"]]
    )
    fs = archive.arrow_fs
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        change_rows = (
            arrow_scan.dataset(
                [archive.path(r) for r in changes], schema=CHANGE_SCHEMA, filesystem=fs
            )
            if changes
            else pa.table(
                {
                    n: pa.array([], f.type)
                    for n, f in zip(CHANGE_SCHEMA.names, CHANGE_SCHEMA, strict=True)
                }
            )
        )
        snapshot_rows = (
            arrow_scan.dataset(
                [archive.path(r) for r in parts], schema=SNAPSHOT_SCHEMA, filesystem=fs
            )
            if parts
            else SNAPSHOT_SCHEMA.empty_table()
        )
        con.register("_changes", change_rows)
        con.register("_snapshots", snapshot_rows)
        types = {"event_time": "TIMESTAMPTZ", "size_bytes": "BIGINT"}
        nulls = ", ".join(
            f"NULL::{types.get(n, 'VARCHAR')} AS {n}"
            for n in CHANGE_SCHEMA.names
            if n not in ("keys", "new_image")
        )
        con.execute(
            "CREATE VIEW rows AS SELECT * FROM _changes UNION ALL BY NAME "
            f"SELECT keys, item AS new_image, {nulls} FROM _snapshots"
        )
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        bounds = " AND event_time > $after AND event_time <= $until" if window else ""
        params = {"after": after, "until": until} if window else None
        found = con.execute(
            f"SELECT DISTINCT keys FROM rows WHERE ({predicate}){bounds}", params
        ).fetchall()
    except duckdb.Error as exc:
        raise UsageError(f"--where: {_one_line(str(exc))}") from exc
    finally:
        con.close()
    return sorted(str(row[0]) for row in found)
