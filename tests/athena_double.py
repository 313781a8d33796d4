"""A test double of Amazon Athena: the Athena API on loopback, running queries on DuckDB.

moto's Athena accepts queries but executes none, so ``--engine athena`` is tested against
this instead: a small HTTP server speaking the AWS JSON 1.1 protocol (``X-Amz-Target:
AmazonAthena.<Operation>``), reached exactly as production reaches Athena — through a boto3
client, here pointed at it with ``AWS_ENDPOINT_URL_ATHENA``. Production code is not told it
is talking to a double.

What it models:

- ``StartQueryExecution`` (Database, WorkGroup, ResultConfiguration.OutputLocation),
  ``GetQueryExecution`` (Status.State QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED with
  StateChangeReason and AthenaError, Statistics.DataScannedInBytes, EngineExecutionTimeInMillis,
  DataManifestLocation), ``GetQueryResults`` (header row first for a SELECT, pages with
  NextToken) and ``StopQueryExecution`` (a running query ends CANCELLED, writing nothing).
- The exact submitted text runs: sqlglot transpiles it from Trino (Athena engine 3) to DuckDB.
  Table names resolve through Glue (moto's): a name in the query's database that Glue does not
  have fails the query with Athena's ``TABLE_NOT_FOUND`` reason. Each table's data is the
  Parquet under its Glue ``Location``, read with the project's storage (s3fs) and pyarrow,
  with the Glue columns only (``timestamp`` without zone, as Athena types it) and the
  Hive partition columns as strings; partitions outside the ``projection.table_name.values``
  enum are invisible, as with partition projection.
- Partition pruning: literal predicates on partition columns (``=``, ``IN``, ``BETWEEN``)
  decide which objects are read; ``DataScannedInBytes`` is the size of those objects.
- ``UNLOAD (SELECT …) TO 's3://…' WITH (format = 'TEXTFILE', compression = 'GZIP')``:
  the target must be empty (else FAILED); rows are written as GZIP text files (columns joined
  by ``\\x01``, NULL as ``\\N``) split over several objects, a data manifest listing them is
  written to ``<OutputLocation><id>-manifest.csv``, and ``GetQueryResults`` reports the count
  as ``UpdateCount`` with an empty result set, as for Athena's other writes (CTAS, INSERT).
- A SELECT's result is also written as ``<OutputLocation><id>.csv``.
- Knobs for failure tests: ``hold`` (queries stay RUNNING until released or stopped),
  ``fail_with`` (the next query FAILS with that reason), ``cancel_next`` (it ends CANCELLED
  as if stopped elsewhere), ``deny`` (operations answered with AccessDeniedException),
  ``misreport_rows`` (the reported row count is off by this much).

What it cannot model: cost and Athena's billing granularity (bytes scanned are whole objects,
not the columns and row groups Athena reads); concurrency limits, queueing and throttling;
Athena's own type coercions and function semantics where they differ from DuckDB's (sqlglot
translates names, not every corner of behaviour); workgroup settings (enforced result
location, bytes-scanned cutoff, encryption); IAM beyond the ``deny`` knob; Glue partitions
that are not projected; other UNLOAD formats.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

from archiver.format.storage import Archive

_UNLOAD = re.compile(
    r"^\s*UNLOAD\s*\((?P<select>.*)\)\s*TO\s*'(?P<to>(?:[^']|'')*)'\s*WITH\s*\((?P<with>.*)\)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_HIVE_TO_ARROW = {
    "string": pa.string(),
    "timestamp": pa.timestamp("ms"),
    "bigint": pa.int64(),
    "int": pa.int32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
}
PAGE_ROWS = 1000


class QueryFailed(Exception):
    """Ends a query FAILED with this reason (Athena's error category first)."""


@dataclass
class Query:
    query_id: str
    sql: str
    database: str
    workgroup: str
    output: str
    state: str = "QUEUED"
    reason: str = ""
    submitted: float = field(default_factory=time.time)
    finished: float | None = None
    scanned: int = 0
    manifest: str | None = None
    update_count: int | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def describe(self) -> dict[str, Any]:
        status: dict[str, Any] = {"State": self.state, "SubmissionDateTime": self.submitted}
        if self.finished is not None:
            status["CompletionDateTime"] = self.finished
        if self.reason:
            status["StateChangeReason"] = self.reason
        if self.state == "FAILED":
            status["AthenaError"] = {"ErrorCategory": 2, "ErrorType": 1000, "Retryable": False,
                                     "ErrorMessage": self.reason}  # fmt: skip
        elapsed = (self.finished or time.time()) - self.submitted
        stats: dict[str, Any] = {
            "DataScannedInBytes": self.scanned,
            "EngineExecutionTimeInMillis": int(elapsed * 1000),
        }
        if self.manifest:
            stats["DataManifestLocation"] = self.manifest
        return {
            "QueryExecutionId": self.query_id,
            "Query": self.sql,
            "StatementType": "DML",
            "ResultConfiguration": {"OutputLocation": f"{self.output}{self.query_id}.csv"},
            "QueryExecutionContext": {"Database": self.database},
            "Status": status,
            "Statistics": stats,
            "WorkGroup": self.workgroup,
        }


class AthenaDouble:
    """The Athena API on ``127.0.0.1``; ``url`` is its endpoint once :meth:`start` ran.

    Args:
        aws_endpoint: the moto server (Glue and S3).
        region: the region of the Glue client.
        files_per_unload: how many objects an UNLOAD spreads its rows over (at most).
    """

    def __init__(self, aws_endpoint: str, region: str = "us-east-1", files_per_unload: int = 3):
        self.aws_endpoint = aws_endpoint
        self.region = region
        self.files_per_unload = files_per_unload
        self.queries: dict[str, Query] = {}
        self.calls: list[str] = []
        self.hold = threading.Event()  # set: queries stay RUNNING
        self.released = threading.Event()
        self.fail_with: str | None = None
        self.cancel_next = False
        self.misreport_rows = 0
        self.deny: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- server -----------------------------------------------------------------------------

    def start(self) -> str:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                target = self.headers.get("X-Amz-Target", "")
                operation = target.rsplit(".", 1)[-1]
                status, answer = double.handle(operation, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def close(self) -> None:
        self.released.set()
        for query in self.queries.values():
            query.stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- API --------------------------------------------------------------------------------

    def handle(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.calls.append(operation)
        if operation in self.deny:
            return 400, {
                "__type": "AccessDeniedException",
                "Message": f"User: arn:aws:iam::123456789012:user/tester is not authorized to "
                f"perform: athena:{operation} because no identity-based policy allows it",
            }
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            return 400, {"__type": "InvalidRequestException", "Message": f"{operation}?"}
        try:
            return 200, handler(body)
        except KeyError as exc:
            return 400, {"__type": "InvalidRequestException", "Message": str(exc)}

    def _query(self, body: dict[str, Any]) -> Query:
        query_id = str(body.get("QueryExecutionId", ""))
        if query_id not in self.queries:
            raise KeyError(f"QueryExecution {query_id} was not found")
        return self.queries[query_id]

    def _op_StartQueryExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        output = str((body.get("ResultConfiguration") or {}).get("OutputLocation") or "")
        if not output.startswith("s3://"):
            raise KeyError("No output location provided")
        query = Query(
            query_id=str(uuid.uuid4()),
            sql=str(body["QueryString"]),
            database=str((body.get("QueryExecutionContext") or {}).get("Database", "default")),
            workgroup=str(body.get("WorkGroup") or "primary"),
            output=output.rstrip("/") + "/",
        )
        self.queries[query.query_id] = query
        threading.Thread(target=self._execute, args=(query,), daemon=True).start()
        return {"QueryExecutionId": query.query_id}

    def _op_GetQueryExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"QueryExecution": self._query(body).describe()}

    def _op_StopQueryExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        query = self._query(body)
        with self._lock:
            if query.state not in ("SUCCEEDED", "FAILED", "CANCELLED"):
                query.state = "CANCELLED"
                query.reason = "Query was cancelled by user"
                query.finished = time.time()
            query.stopped.set()
        return {}

    def _op_GetQueryResults(self, body: dict[str, Any]) -> dict[str, Any]:
        query = self._query(body)
        if query.state != "SUCCEEDED":
            raise KeyError(f"Query has not yet finished. Current state: {query.state}")
        start = int(body.get("NextToken") or 0)
        rows: list[dict[str, Any]] = []
        if start == 0 and query.columns:
            rows.append({"Data": [{"VarCharValue": c} for c in query.columns]})
        chunk = query.rows[start : start + PAGE_ROWS]
        for row in chunk:
            rows.append({"Data": [{} if v is None else {"VarCharValue": _text(v)} for v in row]})
        answer: dict[str, Any] = {
            "ResultSet": {
                "Rows": rows,
                "ResultSetMetadata": {
                    "ColumnInfo": [{"Name": c, "Type": "varchar"} for c in query.columns]
                },
            },
        }
        if query.update_count is not None:
            answer["UpdateCount"] = query.update_count
        if start + PAGE_ROWS < len(query.rows):
            answer["NextToken"] = str(start + PAGE_ROWS)
        return answer

    # -- execution --------------------------------------------------------------------------

    def _finish(self, query: Query, state: str, reason: str = "") -> None:
        with self._lock:
            if query.state == "CANCELLED":
                return
            query.state = state
            query.reason = reason
            query.finished = time.time()

    def _execute(self, query: Query) -> None:
        with self._lock:
            if query.state == "QUEUED":
                query.state = "RUNNING"
        if self.hold.is_set():
            while not (self.released.is_set() or query.stopped.is_set()):
                time.sleep(0.01)
        if query.stopped.is_set():
            return
        if self.cancel_next:
            self.cancel_next = False
            self._finish(query, "CANCELLED", "Query was cancelled by user")
            return
        if self.fail_with is not None:
            reason, self.fail_with = self.fail_with, None
            self._finish(query, "FAILED", reason)
            return
        try:
            self._run(query)
        except QueryFailed as exc:
            self._finish(query, "FAILED", str(exc))
            return
        except Exception as exc:  # anything else is the double's own bug: say so loudly
            self._finish(query, "FAILED", f"GENERIC_INTERNAL_ERROR: {type(exc).__name__}: {exc}")
            return
        self._finish(query, "SUCCEEDED")

    def _run(self, query: Query) -> None:
        unload = _UNLOAD.match(query.sql)
        select = unload.group("select") if unload else query.sql
        try:
            tree = sqlglot.parse_one(select, read="trino")
        except sqlglot.errors.ParseError as exc:
            raise QueryFailed(f"line 1:1: mismatched input: {exc}".splitlines()[0]) from exc
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        try:
            self._register_tables(con, tree, query)
            try:
                relation = con.sql(tree.sql(dialect="duckdb"))
                columns = list(relation.columns)
                rows = relation.fetchall()
            except duckdb.Error as exc:
                raise QueryFailed(f"SYNTAX_ERROR: {' '.join(str(exc).split())}") from exc
        finally:
            con.close()
        if query.stopped.is_set():
            return
        if unload:
            self._unload(query, unload, rows)
        else:
            query.columns, query.rows = columns, rows
            self._write_csv(query)

    def _register_tables(self, con: duckdb.DuckDBPyConnection, tree: exp.Expression,
                         query: Query) -> None:  # fmt: skip
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        glue = boto3.client("glue", region_name=self.region, endpoint_url=self.aws_endpoint)
        registered: dict[tuple[str, str], str] = {}
        for table in list(tree.find_all(exp.Table)):
            name = table.name
            if not table.db and name in ctes:
                continue
            database = table.db or query.database
            key = (database, name)
            if key not in registered:
                try:
                    glue_table = glue.get_table(DatabaseName=database, Name=name)["Table"]
                except glue.exceptions.EntityNotFoundException as exc:
                    raise QueryFailed(
                        f"TABLE_NOT_FOUND: line 1:1: Table 'awsdatacatalog.{database}.{name}' "
                        "does not exist"
                    ) from exc
                registered[key] = f"_glue_{len(registered)}"
                data, scanned = self._table_data(glue_table, tree)
                query.scanned += scanned
                con.register(registered[key], data)
            alias = table.alias
            replacement = exp.to_table(registered[key])
            replacement.set("alias", exp.TableAlias(this=exp.to_identifier(alias or name)))
            table.replace(replacement)

    def _table_data(self, glue_table: dict[str, Any], tree: exp.Expression) -> tuple[pa.Table, int]:
        descriptor = glue_table["StorageDescriptor"]
        columns = [(c["Name"], _HIVE_TO_ARROW[c["Type"]]) for c in descriptor["Columns"]]
        partitions = [p["Name"] for p in glue_table.get("PartitionKeys", [])]
        params = glue_table.get("Parameters") or {}
        enum = params.get("projection.table_name.values")
        allowed = {v.strip() for v in enum.split(",")} if enum else None
        admitted = _partition_filters(tree, partitions)
        location = Archive.open(descriptor["Location"])
        schema = pa.schema([*columns, *[(p, pa.string()) for p in partitions]])
        pieces = []
        scanned = 0
        for rel, size in location.walk_files("", ".parquet"):
            values = dict(part.split("=", 1) for part in rel.split("/")[:-1] if "=" in part)
            if any(p not in values for p in partitions):
                continue
            if (
                allowed is not None
                and "table_name" in values
                and values["table_name"] not in allowed
            ):
                continue
            if any(p in admitted and values[p] not in admitted[p] for p in partitions):
                continue
            scanned += size
            data = pq.read_table(location.path(rel), filesystem=location.arrow_fs)
            arrays = []
            for name, kind in columns:
                if name in data.column_names:
                    arrays.append(data.column(name).cast(kind))
                else:
                    arrays.append(pa.nulls(data.num_rows, kind))
            for p in partitions:
                arrays.append(pa.array([values[p]] * data.num_rows, pa.string()))
            pieces.append(pa.Table.from_arrays(arrays, schema=schema))
        if not pieces:
            return schema.empty_table(), scanned
        return pa.concat_tables(pieces), scanned

    def _unload(self, query: Query, match: re.Match[str], rows: list[tuple[Any, ...]]) -> None:
        options = dict(
            (k.strip().lower(), v.strip().strip("'").upper())
            for k, v in (o.split("=", 1) for o in match.group("with").split(","))
        )
        if options.get("format") != "TEXTFILE" or options.get("compression") != "GZIP":
            raise QueryFailed(f"NOT_SUPPORTED: the double writes TEXTFILE/GZIP only: {options}")
        target = Archive.open(match.group("to").replace("''", "'"))
        if target.find(""):
            raise QueryFailed(
                f"HIVE_PATH_ALREADY_EXISTS: Target directory for UNLOAD already exists: "
                f"{match.group('to')}. The target location must be empty"
            )
        stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
        written = []
        parts = max(1, min(self.files_per_unload, len(rows)))
        size = -(-len(rows) // parts) if rows else 0
        for n in range(parts if rows else 0):
            chunk = rows[n * size : (n + 1) * size]
            if not chunk:
                continue
            lines = "".join(
                "\x01".join("\\N" if v is None else _text(v) for v in row) + "\n" for row in chunk
            )
            name = f"{stamp}_{n:05d}_{query.query_id[:8]}_{uuid.uuid4()}.gz"
            target.put_bytes(name, gzip.compress(lines.encode("utf-8")))
            written.append(target.uri(name))
        results = Archive.open(query.output)
        manifest = f"{query.query_id}-manifest.csv"
        results.put_bytes(manifest, "".join(f"{url}\n" for url in written).encode())
        query.manifest = results.uri(manifest)
        query.columns, query.rows = [], []
        query.update_count = len(rows) + self.misreport_rows

    def _write_csv(self, query: Query) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(query.columns)
        for row in query.rows:
            writer.writerow(["" if v is None else _text(v) for v in row])
        Archive.open(query.output).put_bytes(f"{query.query_id}.csv", buffer.getvalue().encode())


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _literal_values(node: exp.Expression) -> list[str] | None:
    if isinstance(node, exp.Literal) and node.is_string:
        return [node.this]
    return None


def _partition_filters(tree: exp.Expression, partitions: list[str]) -> dict[str, set[str]]:
    """Partition column → the values its literal predicates admit (pruning, like Athena's)."""
    admitted: dict[str, set[str]] = {}

    def admit(column: str, values: set[str]) -> None:
        admitted[column] = admitted[column] & values if column in admitted else values

    between: dict[str, list[tuple[str, str]]] = {}
    for node in tree.find_all(exp.EQ, exp.In, exp.Between):
        left = node.this if not isinstance(node, exp.EQ) else node.left
        if not isinstance(left, exp.Column) or left.name not in partitions:
            continue
        if isinstance(node, exp.EQ):
            values = _literal_values(node.right)
            if values:
                admit(left.name, set(values))
        elif isinstance(node, exp.In):
            found = [_literal_values(e) for e in node.expressions]
            if found and all(found):
                admit(left.name, {v for vs in found if vs for v in vs})
        else:
            low, high = _literal_values(node.args["low"]), _literal_values(node.args["high"])
            if low and high:
                between.setdefault(left.name, []).append((low[0], high[0]))
    # A BETWEEN admits a range, not a set: checked per value in :func:`_admits`.
    for column, ranges in between.items():
        admitted.setdefault(column, _RangeSet(ranges))  # type: ignore[arg-type]
    return admitted


class _RangeSet(set[str]):
    """The values inside any of some inclusive string ranges (``dt BETWEEN a AND b``)."""

    def __init__(self, ranges: list[tuple[str, str]]) -> None:
        super().__init__()
        self.ranges = ranges

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and any(lo <= value <= hi for lo, hi in self.ranges)


@contextmanager
def running_double(aws_endpoint: str, monkeypatch: Any) -> Iterator[AthenaDouble]:
    """Start a double and point ``AWS_ENDPOINT_URL_ATHENA`` at it for the test; the client
    polls every 20 ms (the double's queries end in well under a second, AWS's in seconds)."""
    from replayer.engines import athena_client as athena

    monkeypatch.setattr(athena, "POLL_FIRST", 0.02)
    monkeypatch.setattr(athena, "POLL_MAX", 0.02)
    double = AthenaDouble(aws_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ATHENA", double.start())
    try:
        yield double
    finally:
        double.close()
