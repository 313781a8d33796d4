"""The fold as SQL over the Glue tables ``changes`` and ``snapshots``: one source for Athena,
for ``ddb-replayer query``'s ``state_at`` / ``history_of`` and for the named queries.

The semantics are :mod:`replayer.engines.fold`'s (DESIGN.md "Replay semantics"), written once here
in Athena's dialect (Trino):

1. ``log``: the generation's records with ``log_from <= event_time <= T``, each with its
   stream position ``stream_arn || sequence_number``. Every ARN of one table shares the
   prefix up to the stream label, a fixed-width UTC stamp, so this text orders records by
   (stream label, sequence number) — the stream's own order — as the local fold's per-file
   label rank does.
2. ``win``: per key, the highest position.
3. ``latest``: the records at that position, REMOVEs dropped (the key is absent at T);
   duplicates of one record (archived twice) collapse in the ``GROUP BY``.
4. The base snapshot's rows for keys absent from ``win``.

Partition columns are compared with literals (``table_name = 'orders'``, ``dt BETWEEN …``,
``snapshot_id = '…'``) so that Athena's partition projection reads only the partitions in
range: a ``CROSS JOIN`` with a parameter row would not be pruned as reliably. Times are
``TIMESTAMP '…'`` literals in UTC: the Glue column ``event_time`` is a ``timestamp`` without
zone holding UTC.

Planning (coverage, watermark, gaps, the base, the generation) is always done locally
(:mod:`replayer.planning.plan`) and feeds the literals; this SQL checks none of it.

The DuckDB twin of every statement comes from sqlglot (``trino`` → ``duckdb``): ``ddb-replayer
query``'s ``state_at`` / ``history_of``, the tests' Athena double and ``bench/bench_fold.py`` run
exactly that. sqlglot is a runtime dependency imported only in :func:`to_duckdb`, where it
translates: ``--help`` and every command but such a query run without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from archiver.format.layout import dt_of
from archiver.format.timefmt import as_utc
from replayer.planning.model import Plan

TTL_IDENTITY = "Service/dynamodb.amazonaws.com"
UNLOAD_FORMAT = "WITH (format = 'TEXTFILE', compression = 'GZIP')"


def quote(text: str) -> str:
    """A Trino (and DuckDB) string literal."""
    return "'" + text.replace("'", "''") + "'"


def timestamp_literal(at: datetime) -> str:
    """``TIMESTAMP 'YYYY-MM-DD HH:MM:SS.mmm'`` in UTC (Athena's ``timestamp(3)``)."""
    utc = as_utc(at)
    return f"TIMESTAMP '{utc.strftime('%Y-%m-%d %H:%M:%S')}.{utc.microsecond // 1000:03d}'"


@dataclass(frozen=True)
class FoldInputs:
    """What the fold's SQL compares with, each already an SQL expression.

    Attributes:
        table_name: the archived table (partition ``table_name``).
        table_id: the generation alive at T.
        log_from: the first instant of the log window (a timestamp expression).
        at: T, inclusive (a timestamp expression).
        dt_from: the first ``dt`` partition (``'YYYY-MM-DD'``).
        dt_to: the last ``dt`` partition.
        snapshot_id: the base snapshot (partition ``snapshot_id``); None for no base.
    """

    table_name: str
    table_id: str
    log_from: str
    at: str
    dt_from: str
    dt_to: str
    snapshot_id: str | None

    @classmethod
    def of_plan(cls, plan: Plan) -> FoldInputs:
        """Literals for a local plan."""
        lo, hi = plan.dt_range
        return cls(
            table_name=quote(plan.table),
            table_id=quote(plan.table_id),
            log_from=timestamp_literal(plan.log_from),
            at=timestamp_literal(plan.at),
            dt_from=quote(lo.isoformat()),
            dt_to=quote(hi.isoformat()),
            snapshot_id=quote(plan.base.snapshot_id) if plan.base else None,
        )


def state_ctes(v: FoldInputs, *, changes: str = "changes", snapshots: str = "snapshots") -> str:
    """The CTEs ``log``, ``win``, ``latest`` and ``state`` (columns ``keys``, ``item``),
    without the leading ``WITH``."""
    base = ""
    if v.snapshot_id is not None:
        base = (
            "\n  UNION ALL\n"
            "  SELECT base.keys, base.item\n"
            f"  FROM {snapshots} AS base\n"
            f"  WHERE base.table_name = {v.table_name}\n"
            f"    AND base.snapshot_id = {v.snapshot_id}\n"
            "    AND NOT EXISTS (SELECT 1 FROM win WHERE win.keys = base.keys)"
        )
    return (
        "log AS (\n"
        "  SELECT c.keys, concat(c.stream_arn, c.sequence_number) AS ord, c.event_name, "
        "c.new_image\n"
        f"  FROM {changes} AS c\n"
        f"  WHERE c.table_name = {v.table_name}\n"
        f"    AND c.dt BETWEEN {v.dt_from} AND {v.dt_to}\n"
        f"    AND c.table_id = {v.table_id}\n"
        f"    AND c.event_time BETWEEN {v.log_from} AND {v.at}\n"
        "),\n"
        "win AS (\n"
        "  SELECT keys, max(ord) AS ord FROM log GROUP BY keys\n"
        "),\n"
        "latest AS (\n"
        "  SELECT log.keys, arbitrary(log.new_image) AS item\n"
        "  FROM log JOIN win ON log.keys = win.keys AND log.ord = win.ord\n"
        "  WHERE log.event_name <> 'REMOVE'\n"
        "  GROUP BY log.keys\n"
        "),\n"
        "state AS (\n"
        "  SELECT keys, item FROM latest"
        f"{base}\n"
        ")"
    )


def state_select(v: FoldInputs, **tables: str) -> str:
    """The table at T: one row per item, columns ``keys`` and ``item`` (canonical JSON)."""
    return f"WITH {state_ctes(v, **tables)}\nSELECT keys, item FROM state"


def unload_state(v: FoldInputs, location: str) -> str:
    """UNLOAD of the table at T to ``location`` as GZIP JSON lines ``{"Item": …}``.

    The canonical item text *is* DynamoDB JSON, so each line is built by concatenation —
    byte for byte what ``export --format dynamodb-json`` writes, and what ImportTable reads.
    """
    if not location.startswith("s3://"):
        raise ValueError(f"UNLOAD writes to S3, not {location!r}")
    select = f"WITH {state_ctes(v)}\nSELECT concat('{{\"Item\":', item, '}}') AS line FROM state"
    return f"UNLOAD (\n{select}\n)\nTO {quote(location)}\n{UNLOAD_FORMAT}"


def history_select(
    table_name: str,
    keys: str,
    *,
    changes: str = "changes",
    join: str = "",
    dt_from: str | None = None,
    dt_to: str | None = None,
    time_from: str | None = None,
    time_to: str | None = None,
) -> str:
    """Every change to one key (both SQL expressions), in stream order, each record once.

    ``join`` (e.g. ``"CROSS JOIN params AS p"``) brings a parameter row into scope. The
    optional bounds (SQL expressions, inclusive) limit the ``dt`` partitions read and the
    ``event_time`` of the rows: without a ``dt`` bound every partition of the table is read,
    which Athena bills as a scan of the table's whole change log.
    """
    source = f"{changes} AS c" + (f" {join}" if join else "")
    bounds = [
        f"c.dt >= {dt_from}" if dt_from else "",
        f"c.dt <= {dt_to}" if dt_to else "",
        f"c.event_time >= {time_from}" if time_from else "",
        f"c.event_time <= {time_to}" if time_to else "",
    ]
    where = "".join(f"\n    AND {b}" for b in bounds if b)
    return (
        "SELECT event_time, event_name,\n"
        f"  CASE WHEN user_identity = {quote(TTL_IDENTITY)} THEN 'ttl' ELSE 'user' END AS who,\n"
        "  old_image, new_image, table_id, stream_arn, sequence_number, event_id\n"
        "FROM (\n"
        "  SELECT c.*, row_number() OVER (PARTITION BY c.event_id "
        "ORDER BY c.sequence_number) AS copy\n"
        f"  FROM {source}\n"
        f"  WHERE c.table_name = {table_name} AND c.keys = {keys}{where}\n"
        ") AS matching\n"
        "WHERE copy = 1\n"
        "ORDER BY stream_arn, sequence_number"
    )


def history_between(
    table: str, keys: str, time_from: datetime | None, time_to: datetime | None
) -> str:
    """:func:`history_select` with literals: ``keys`` canonical, the bounds (inclusive) in UTC
    and the ``dt`` partitions they span, so that only those are read."""
    return history_select(
        quote(table),
        quote(keys),
        dt_from=quote(dt_of(time_from)) if time_from else None,
        dt_to=quote(dt_of(time_to)) if time_to else None,
        time_from=timestamp_literal(time_from) if time_from else None,
        time_to=timestamp_literal(time_to) if time_to else None,
    )


# -- the named query ----------------------------------------------------------------------

NAMED_STATE_AT = "fold_state_at.sql"
_NAMED_HEADER = """\
-- The table as it was at T, exactly as `ddb-replayer restore --engine athena` folds it:
-- per key the latest change in [log_from, T] of the generation alive at T (absent if it is
-- a REMOVE), else the base snapshot's item. Generated from replayer/engines/athena_sql.py: edit
-- that, not this file (tests/test_athena_fold.py checks they agree).
-- Planning is not in SQL: `ddb-replayer restore --dry-run` prints every value below, after
-- checking coverage, the watermark and gaps. Parameters, in order:
--   1. table name                       orders
--   2. table_id (the generation)        the plan's "generation"
--   3. log_from, ISO 8601 with a zone   the plan's log start
--   4. T, ISO 8601 with a zone          2026-01-31T12:00:00Z
--   5. base snapshot id                 the plan's base ('' for none)
"""


def named_state_at() -> str:
    """deploy/athena/fold_state_at.sql: the fold with ``?`` parameters for the console.

    The ``dt`` bounds are derived from the two times in UTC, and the base's rows are taken
    only when a snapshot id is given.
    """
    v = FoldInputs(
        table_name="p.table_name",
        table_id="p.table_id",
        log_from="p.log_from",
        at="p.at_time",
        dt_from="p.dt_from",
        dt_to="p.dt_to",
        snapshot_id="p.snapshot_id",
    )
    ctes = state_ctes(v)
    # Each comparison with the parameter row needs it in scope.
    ctes = ctes.replace("FROM changes AS c\n", "FROM changes AS c\n  CROSS JOIN params AS p\n")
    ctes = ctes.replace(
        "FROM snapshots AS base\n", "FROM snapshots AS base\n  CROSS JOIN params AS p\n"
    )
    params = (
        "params AS (\n"
        "  SELECT\n"
        "    CAST(? AS varchar) AS table_name,\n"
        "    CAST(? AS varchar) AS table_id,\n"
        "    CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' AS timestamp) AS log_from,\n"
        "    CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' AS timestamp) AS at_time,\n"
        "    CAST(? AS varchar) AS snapshot_id\n"
        "),\n"
        "bounds AS (\n"
        "  SELECT *, date_format(log_from, '%Y-%m-%d') AS dt_from,\n"
        "    date_format(at_time, '%Y-%m-%d') AS dt_to\n"
        "  FROM params\n"
        "),\n"
    )
    ctes = ctes.replace("CROSS JOIN params AS p", "CROSS JOIN bounds AS p")
    return f"{_NAMED_HEADER}WITH {params}{ctes}\nSELECT keys, item FROM state\nORDER BY keys\n"


NAMED_HISTORY_OF = "fold_history_of.sql"
_HISTORY_HEADER = """\
-- One item's every change, in stream order, each record once: what `ddb-replayer query`'s
-- history_of('table', '<key>', '<from>', '<to>') returns. Generated from
-- replayer/engines/athena_sql.py: edit that, not this file (tests/test_timetravel.py checks they
-- agree). Parameters, in order:
--   1. table name                        orders
--   2. the item's key as canonical JSON  {"pk":{"S":"order-42"}}
--      (attribute names sorted, no spaces; `ddb-replayer history` prints it)
--   3. from, ISO 8601 with a zone        2026-01-01T00:00:00Z  ('' for no lower bound)
--   4. to                                2026-01-31T23:59:59Z  ('' for no upper bound)
-- Only the dt partitions from..to spans are read (dt is the UTC date of event_time, so the
-- bounds are taken in UTC). Without bounds every dt partition of the table is read: Athena
-- bills a scan of the table's whole change log.
"""


def named_history_of() -> str:
    """deploy/athena/fold_history_of.sql: ``history_of`` with ``?`` parameters; an empty
    bound is no bound (the earliest and latest instants there can be)."""
    params = (
        "WITH params AS (\n"
        "  SELECT\n"
        "    CAST(? AS varchar) AS table_name,\n"
        "    CAST(? AS varchar) AS item_keys,\n"
        "    CAST(from_iso8601_timestamp(coalesce(nullif(CAST(? AS varchar), ''),\n"
        "      '1970-01-01T00:00:00Z')) AT TIME ZONE 'UTC' AS timestamp) AS time_from,\n"
        "    CAST(from_iso8601_timestamp(coalesce(nullif(CAST(? AS varchar), ''),\n"
        "      '9999-12-31T23:59:59.999Z')) AT TIME ZONE 'UTC' AS timestamp) AS time_to\n"
        "),\n"
        "bounds AS (\n"
        "  SELECT *, date_format(time_from, '%Y-%m-%d') AS dt_from,\n"
        "    date_format(time_to, '%Y-%m-%d') AS dt_to\n"
        "  FROM params\n"
        ")\n"
    )
    body = history_select(
        "p.table_name",
        "p.item_keys",
        join="CROSS JOIN bounds AS p",
        dt_from="p.dt_from",
        dt_to="p.dt_to",
        time_from="p.time_from",
        time_to="p.time_to",
    )
    return f"{_HISTORY_HEADER}{params}{body}\n"


def to_duckdb(sql: str) -> str:
    """The DuckDB twin of one Athena (Trino) statement."""
    import sqlglot  # here, not at the top: only a translation needs it (~35 ms to import)

    return sqlglot.transpile(sql, read="trino", write="duckdb")[0]
