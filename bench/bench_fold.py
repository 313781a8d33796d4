"""Benchmark the replay fold: N change records over K keys plus a K-item base snapshot.

    python -m bench.bench_fold [--changes 10000000] [--keys 1000000] [--memory-limit 1GB]

Generates (once; reused while the parameters match) a local archive under
``bench-out/fold-<changes>-<keys>/`` with DuckDB's vectorised SQL: change files laid out and
named as the archiver writes them (``dt`` partitions, one shard, 5 % REMOVEs, ~250-byte new
and old images), a base snapshot of every key with its manifest, and coverage.json. Then, each
in a subprocess of its own so that peak RSS is the fold's alone, it runs:

* the fold exactly as ``ddb-replayer restore`` does (``plan_restore`` → ``Fold.state_at``)
  and streams the whole result out as Arrow batches;
* a plain DuckDB scan of the same change and snapshot files (count + sum of the lengths of
  the columns the fold reads), as the yardstick.

With ``--athena-sql`` it also runs the Athena fold (``replayer.engines.athena_sql``, the SQL that
``--engine athena`` submits) through the same sqlglot translation to DuckDB that the tests'
Athena double uses, over the same files as Hive-partitioned views ``changes`` and
``snapshots``, and checks that it gives the native fold's result (count and an
order-independent hash of every ``keys``/``item`` pair), printing its time beside the fold's.

With ``--python-fs`` the fold reads the same local files the way it reads an S3 archive:
through fsspec (``ArrowFSWrapper``) and pyarrow's ``PyFileSystem``, its sources registered in
DuckDB as Arrow datasets (``replayer.engines.dataset``) instead of DuckDB's own Parquet reader,
so every open and read calls back into Python; no network, so it times that read path alone.

With ``--s3`` the fold reads the same files from S3 itself: the archive is uploaded to a moto
server on loopback (in this process; the fold runs in its child) and opened as
``s3://bench-fold/…``, so every file goes through s3fs as a user's restore does. Loopback has
no latency, so the time is not a real bucket's; what transfers is the S3 traffic the fold
makes, counted by moto: requests by kind and the bytes of the objects it sends.

Targets: ≥ 1M change records/s, peak RSS ≤ 2 GB, fold ≤ 3× the plain scan.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from archiver.format import coverage, layout
from archiver.format.manifests import write_manifest
from archiver.format.schema import CHANGE_SCHEMA, COMPRESSION, ROW_GROUP_ROWS, SNAPSHOT_SCHEMA
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms

TABLE = "bench"
TABLE_ID = "bench-table-id"
LABEL = "2026-01-01T00:00:00.000"
STREAM_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/stream/{LABEL}"
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
SNAPSHOT_AT = DAY0 - timedelta(minutes=30)
FILES_PER_DAY = 10
ROWS_PER_FILE = 250_000


def _image(i: str, key: str) -> str:
    """SQL for a ~250-byte item image (DynamoDB JSON text) varying with ``i``."""
    return (
        '\'{"email":{"S":"\' || md5(' + i + "::VARCHAR) || '@example.com\"},"
        '"n":{"N":"\' || (' + i + " % 100000)::VARCHAR || '\"},"
        '"note":{"S":"\' || md5(('
        + i
        + " + 1)::VARCHAR) || repeat(substr(md5("
        + i
        + "::VARCHAR), 1, 16), 3) || '\"},"
        '"pk":{"S":"\' || ' + key + " || '\"},"
        '"tags":{"SS":["blue","\' || substr(md5(' + i + "::VARCHAR), 9, 8) || '\"]},"
        '"v":{"N":"\' || ' + i + "::VARCHAR || '\"}}'"
    )


def generate(root: Path, changes: int, keys: int) -> None:
    """Write the archive (change files, base snapshot, coverage) under ``root``."""
    archive = Archive.open(str(root))
    con = duckdb.connect()
    files = max(1, changes // ROWS_PER_FILE)
    per_file = changes // files
    per_day = per_file * FILES_PER_DAY
    day_ms = 86_400_000
    started = time.monotonic()
    for f in range(files):
        day = f // FILES_PER_DAY
        lo, hi = f * per_file, (f + 1) * per_file
        key = f"'user#' || ((i * 7919) % {keys})::VARCHAR"
        start_ms = int((DAY0 + timedelta(days=day)).timestamp() * 1000)
        sql = f"""
        SELECT 'ev-' || i::VARCHAR AS event_id,
          CASE WHEN i % 20 = 7 THEN 'REMOVE' WHEN i < {keys} THEN 'INSERT' ELSE 'MODIFY' END
            AS event_name,
          make_timestamptz(({start_ms} + (i - {day * per_day}) * {day_ms} // {per_day}) * 1000)
            AS event_time,
          lpad((100000000000000000000 + i)::VARCHAR, 40, '0') AS sequence_number,
          'shardId-00000001' AS shard_id,
          '{STREAM_ARN}' AS stream_arn,
          '{TABLE_ID}' AS table_id,
          '{{"pk":{{"S":"' || {key} || '"}}}}' AS keys,
          CASE WHEN i % 20 = 7 THEN NULL ELSE {_image("i", key)} END AS new_image,
          {_image("(i - 1)", key)} AS old_image,
          250::BIGINT AS size_bytes, NULL::VARCHAR AS user_identity, 'stream' AS origin
        FROM range({lo}, {hi}) t(i)
        """
        dt = (DAY0 + timedelta(days=day)).strftime("%Y-%m-%d")
        rel = layout.change_file(
            TABLE, dt, LABEL, "shardId-00000001", str(10**20 + lo), str(10**20 + hi - 1)
        )
        path = archive.path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with pq.ParquetWriter(path, CHANGE_SCHEMA, compression=COMPRESSION) as writer:
            for batch in con.sql(sql).to_arrow_reader(ROW_GROUP_ROWS):
                writer.write_batch(batch.cast(CHANGE_SCHEMA), row_group_size=ROW_GROUP_ROWS)
        print(f"  change file {f + 1}/{files}", file=sys.stderr, end="\r")
    snapshot_id = layout.new_snapshot_id(SNAPSHOT_AT)
    rel = layout.snapshot_part(TABLE, snapshot_id, 0)
    path = archive.path(rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    key = "'user#' || i::VARCHAR"
    sql = f"""SELECT '{{"pk":{{"S":"' || {key} || '"}}}}' AS keys, {_image("(i + 7)", key)} AS item
              FROM range(0, {keys}) t(i)"""
    with pq.ParquetWriter(path, SNAPSHOT_SCHEMA, compression=COMPRESSION) as writer:
        for batch in con.sql(sql).to_arrow_reader(ROW_GROUP_ROWS):
            writer.write_batch(batch.cast(SNAPSHOT_SCHEMA), row_group_size=ROW_GROUP_ROWS)
    write_manifest(
        archive,
        TABLE,
        {
            "table": TABLE,
            "table_id": TABLE_ID,
            "snapshot_id": snapshot_id,
            "method": "scan",
            "valid_from": iso_ms(SNAPSHOT_AT + timedelta(seconds=5)),
            "log_from": iso_ms(SNAPSHOT_AT - timedelta(seconds=10)),
            "started_at": iso_ms(SNAPSHOT_AT - timedelta(seconds=5)),
            "finished_at": iso_ms(SNAPSHOT_AT),
            "item_count": keys,
            "key_schema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "source": "bench",
            "files": [{"path": rel, "item_count": keys, "sha256": ""}],
            "created_at": iso_ms(SNAPSHOT_AT),
        },
    )
    coverage.open_generation(
        archive,
        TABLE,
        table_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
        table_id=TABLE_ID,
        table_created_at=DAY0 - timedelta(days=30),
        covered_from=DAY0 - timedelta(hours=1),
        from_table_creation=False,
        mode="poller",
    )
    days = (files + FILES_PER_DAY - 1) // FILES_PER_DAY
    coverage.advance_watermark(archive, TABLE, TABLE_ID, DAY0 + timedelta(days=days))
    print(f"generated in {time.monotonic() - started:.1f} s{' ' * 20}", file=sys.stderr)


def restore_time(changes: int) -> datetime:
    """A time after every generated change: the fold reads all of them."""
    files = max(1, changes // ROWS_PER_FILE)
    return (
        DAY0 + timedelta(days=(files + FILES_PER_DAY - 1) // FILES_PER_DAY) - timedelta(seconds=1)
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _archive(root: Path, python_fs: bool) -> Archive:
    """The generated archive; with ``python_fs``, read as an S3 archive is (see the module);
    from S3 when the parent serves it there (``--s3``)."""
    served = os.environ.get(_S3_ARCHIVE)
    if served:
        return Archive.open(served)
    if not python_fs:
        return Archive.open(str(root))
    import pyarrow.fs as pafs
    from fsspec.implementations.arrow import ArrowFSWrapper

    path = str(root.resolve())
    return Archive(ArrowFSWrapper(pafs.LocalFileSystem()), path, f"file://{path}")


def run_fold(
    root: Path, changes: int, memory_limit: str, python_fs: bool = False
) -> dict[str, float]:
    """The fold as restore runs it, streaming every resulting item out (this process)."""
    from replayer.engines.fold import Fold, FoldSettings
    from replayer.planning.plan import plan_restore

    archive = _archive(root, python_fs)
    started = time.monotonic()
    plan = plan_restore(archive, TABLE, restore_time(changes), convert=False)
    planned = time.monotonic()
    with Fold(archive, FoldSettings(memory_limit=memory_limit)) as fold:
        state = fold.state_at(plan)
        folded = time.monotonic()
        items = 0
        text = 0
        for batch in state.batches(50_000):
            items += batch.num_rows
            text += sum(len(v) for v in batch.column("item").to_pylist()[:1])  # touch it
        streamed = time.monotonic()
        digest = state.con.execute(_DIGEST.format(f"SELECT keys, item FROM {state.table}"))
        digest_value = digest.fetchall()[0][1]
    return {
        "items": items,
        "count": state.count,
        "digest": int(digest_value or 0),
        "plan_s": planned - started,
        "fold_s": folded - planned,
        "stream_s": streamed - folded,
        "total_s": streamed - started,
        "peak_rss_mb": _peak_rss_mb(),
    }


# Order-independent: the same set of (keys, item) rows gives the same digest.
_DIGEST = "SELECT count(*), bit_xor(hash(keys || chr(1) || item)) FROM ({})"


def run_athena_sql(root: Path, changes: int, memory_limit: str) -> dict[str, float]:
    """The Athena fold's SQL, translated to DuckDB, over Hive-partitioned views."""
    from replayer.engines.athena_sql import FoldInputs, state_select, to_duckdb
    from replayer.planning.plan import plan_restore

    archive = Archive.open(str(root))
    started = time.monotonic()
    plan = plan_restore(archive, TABLE, restore_time(changes), convert=False)
    sql = to_duckdb(state_select(FoldInputs.of_plan(plan)))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    for view, partition in (("changes", "dt"), ("snapshots", "snapshot_id")):
        con.execute(
            f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{root}/{view}/**/*.parquet', "
            f"hive_partitioning = true, hive_types = {{'table_name': VARCHAR, "
            f"'{partition}': VARCHAR}})"
        )
    planned = time.monotonic()
    con.execute(f"CREATE TABLE state AS {sql}")
    folded = time.monotonic()
    count, digest = con.execute(_DIGEST.format("SELECT keys, item FROM state")).fetchall()[0]
    return {
        "count": int(count),
        "digest": int(digest or 0),
        "plan_s": planned - started,
        "fold_s": folded - planned,
        "total_s": folded - started,
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_scan(root: Path) -> dict[str, float]:
    """A plain DuckDB scan of the same files: the columns the fold reads, counted."""
    archive = Archive.open(str(root))
    change_files = [
        archive.path(r) for r in archive.find(layout.changes_table_dir(TABLE), ".parquet")
    ]
    snapshot_files = [
        archive.path(r) for r in archive.find(layout.snapshots_table_dir(TABLE), ".parquet")
    ]
    con = duckdb.connect()
    started = time.monotonic()
    changes = con.execute(
        "SELECT count(*), sum(length(keys) + length(sequence_number) "
        "+ coalesce(length(new_image), 0)) FROM read_parquet($f)",
        {"f": change_files},
    ).fetchall()
    base = con.execute(
        "SELECT count(*), sum(length(keys) + length(item)) FROM read_parquet($f)",
        {"f": snapshot_files},
    ).fetchall()
    return {
        "rows": int(changes[0][0]) + int(base[0][0]),
        "scan_s": time.monotonic() - started,
        "peak_rss_mb": _peak_rss_mb(),
    }


_S3_ARCHIVE = "BENCH_FOLD_S3_ARCHIVE"
_BUCKET = "bench-fold"


class S3Served:
    """The generated archive uploaded to a moto server on loopback, which counts the requests
    it answers (by HTTP method) and the bytes of the GET bodies it sends."""

    def __init__(self, root: Path) -> None:
        import logging

        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.env = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            _S3_ARCHIVE: f"s3://{_BUCKET}/{root.name}",
        }
        self.requests: dict[str, int] = {}
        self.bytes_sent = 0
        wsgi = self.server._server
        assert wsgi is not None
        answer = wsgi.app

        def counting(environ: Any, start_response: Any) -> Any:
            method = environ["REQUEST_METHOD"]
            self.requests[method] = self.requests.get(method, 0) + 1
            body = answer(environ, start_response)
            if method == "GET":
                body = list(body)
                self.bytes_sent += sum(len(chunk) for chunk in body)
            return body

        wsgi.app = counting
        s3 = boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        s3.create_bucket(Bucket=_BUCKET)
        self.parquet_bytes = 0
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name != "_generated":
                s3.upload_file(str(path), _BUCKET, f"{root.name}/{path.relative_to(root)}")
                if path.suffix == ".parquet":
                    self.parquet_bytes += path.stat().st_size
        self.parquet_files = sum(1 for _ in root.rglob("*.parquet"))
        self.requests = {}
        self.bytes_sent = 0

    def stop(self) -> None:
        self.server.stop()


def _child(
    mode: str, root: Path, args: argparse.Namespace, env: dict[str, str] | None = None
) -> dict[str, float]:
    cmd = [
        *(sys.executable, "-m", "bench.bench_fold", "--changes", str(args.changes)),
        *(["--athena-sql"] if args.athena_sql else []),
        *(["--python-fs"] if args.python_fs else []),
        *("--keys", str(args.keys), "--memory-limit", args.memory_limit, "--out", args.out),
        *("--child", mode),
    ]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=10_000_000, help="change records")
    parser.add_argument("--keys", type=int, default=1_000_000, help="distinct keys (= base items)")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit for the fold")
    parser.add_argument("--out", default="bench-out", help="where the generated archive goes")
    parser.add_argument(
        "--athena-sql",
        action="store_true",
        help="also run the Athena fold's SQL translated to DuckDB, and compare its result",
    )
    parser.add_argument(
        "--python-fs",
        action="store_true",
        help="fold through fsspec and pyarrow's PyFileSystem, as an S3 archive is read",
    )
    parser.add_argument(
        "--s3",
        action="store_true",
        help="fold from S3 (the archive served by moto on loopback) and count its S3 requests",
    )
    parser.add_argument("--child", choices=["fold", "scan", "athena"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = Path(args.out) / f"fold-{args.changes}-{args.keys}"
    if args.child == "fold":
        print(json.dumps(run_fold(root, args.changes, args.memory_limit, args.python_fs)))
        return 0
    if args.child == "scan":
        print(json.dumps(run_scan(root)))
        return 0
    if args.child == "athena":
        print(json.dumps(run_athena_sql(root, args.changes, args.memory_limit)))
        return 0
    marker = root / "_generated"
    if not marker.exists():
        print(f"generating {args.changes:,} changes over {args.keys:,} keys in {root} …",
              file=sys.stderr)  # fmt: skip
        generate(root, args.changes, args.keys)
        marker.write_text("ok\n")
    scan = _child("scan", root, args)
    served = S3Served(root) if args.s3 else None
    try:
        fold = _child("fold", root, args, served.env if served else None)
    finally:
        if served is not None:
            served.stop()
    rate = args.changes / fold["total_s"]
    print(f"changes {args.changes:,} over {args.keys:,} keys + a {args.keys:,}-item base")
    how = " (through fsspec and PyFileSystem, as from S3)" if args.python_fs else ""
    how = " (from S3: moto on loopback)" if served else how
    print(f"fold    {fold['total_s']:.2f} s (plan {fold['plan_s']:.2f}, fold {fold['fold_s']:.2f}, "
          f"stream {fold['stream_s']:.2f}) → {fold['items']:,} items{how}")  # fmt: skip
    print(f"        {rate / 1e6:.2f} M change records/s, peak RSS {fold['peak_rss_mb']:.0f} MB")
    if served is not None:
        asked = ", ".join(f"{n} {m}" for m, n in sorted(served.requests.items()))
        print(f"S3      {asked} for {served.parquet_files} Parquet files; "
              f"{served.bytes_sent / 1e6:.1f} MB sent for {served.parquet_bytes / 1e6:.1f} MB "
              "of Parquet")  # fmt: skip
    print(f"scan    {scan['scan_s']:.2f} s for {scan['rows']:,} rows, "
          f"peak RSS {scan['peak_rss_mb']:.0f} MB")  # fmt: skip
    print(f"ratio   fold / plain scan = {fold['total_s'] / scan['scan_s']:.2f}×")
    ok = rate >= 1e6 and fold["peak_rss_mb"] <= 2048 and fold["total_s"] <= 3 * scan["scan_s"]
    if args.athena_sql:
        twin = _child("athena", root, args)
        same = twin["count"] == fold["count"] and twin["digest"] == fold["digest"]
        print(f"athena  {twin['total_s']:.2f} s (plan {twin['plan_s']:.2f}, fold "
              f"{twin['fold_s']:.2f}) → {twin['count']:,} items, the Athena fold's SQL on "
              f"DuckDB; {twin['total_s'] / fold['total_s']:.2f}× the native fold, peak RSS "
              f"{twin['peak_rss_mb']:.0f} MB")  # fmt: skip
        print("        same result as the native fold" if same else
              "        RESULTS DIFFER from the native fold")  # fmt: skip
        ok = ok and same
    print("targets met" if ok else "TARGETS MISSED (≥1M records/s, ≤2 GB, ≤3× scan)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
