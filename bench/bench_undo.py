"""Benchmark ``ddb-replayer undo``: a bad window that touched 1 % of a table's keys.

    python -m bench.bench_undo [--keys 1000000] [--touched 0.01] [--new-image]

Generates (once; reused while the parameters match) a local archive under
``bench-out/undo-<keys>-<touched>[-new-image]/`` with DuckDB's vectorised SQL, laid out and
named as the archiver writes it: a base snapshot of every key (sorted by key, ~200-byte items),
then the change log — one MODIFY per touched key inside the window (T1, T2] (old image: its
item at T1, new image: garbage), and one later MODIFY after T2 for 1 % of those (they are the
conflicts); change files sorted by key, as compaction leaves them (the poller's are in stream
order, so their key statistics span every key and prune nothing). With ``--new-image`` the
records carry no old image, so the undo folds the archive at T1 for the touched keys (reading
only the row groups whose key statistics can hold them).

The live table is the null endpoint (``bench/null_dynamodb.py``), in a process of its own: it
answers ``DescribeTable`` and ``BatchGetItem`` from the window's final items, and takes every
conditional ``PutItem`` without evaluating it; the drain archives the undo's writes as a change
file, as a stream and ``run --once`` would, so the post-write check for concurrent changes runs
too. What is measured is the undo's own cost: no network, no DynamoDB latency.

Prints: the keys in the table, the change records of the window read (and, with
``--new-image``, the rows the fold at T1 read), the writes and the conflicts, seconds to plan
(drain, plan_log, the window's query, the live reads) and to write (including the second drain
and its check), and items/s; then what ``restore --key`` of one item at T2 reads.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from archiver.aws.clients import AwsSettings
from archiver.format import coverage, layout
from archiver.format.codec import canonical_json
from archiver.format.manifests import write_manifest
from archiver.format.schema import CHANGE_SCHEMA, COMPRESSION, ROW_GROUP_ROWS, SNAPSHOT_SCHEMA
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow
from bench.null_dynamodb import NullDynamoDB
from demo import isolate_aws_env

TABLE = "bench"
TABLE_ID = "bench-undo-table-id"
LABEL = "2026-01-01T00:00:00.000"
SHARD = "shardId-00000001"
STREAM_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/stream/{LABEL}"
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE_AT = DAY0 + timedelta(hours=9)
T1 = DAY0 + timedelta(hours=10)
T2 = T1 + timedelta(minutes=30)
LATER = T2 + timedelta(minutes=30)


def _key(i: str) -> str:
    return "'user#' || lpad(" + i + "::VARCHAR, 8, '0')"


def _image(i: str, tag: str) -> str:
    """SQL for a ~200-byte item (canonical DynamoDB JSON: attributes in name order)."""
    return (
        '\'{"email":{"S":"\' || md5(' + i + "::VARCHAR) || '@example.com\"},"
        '"note":{"S":"' + tag + " ' || repeat(substr(md5(" + i + "::VARCHAR), 1, 16), 4) || '\"},"
        '"pk":{"S":"\' || ' + _key(i) + " || '\"},"
        '"v":{"N":"\' || ' + i + "::VARCHAR || '\"}}'"
    )


def _write(con: duckdb.DuckDBPyConnection, path: str, sql: str, schema: pa.Schema) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with pq.ParquetWriter(path, schema, compression=COMPRESSION) as writer:
        for batch in con.sql(sql).to_arrow_reader(ROW_GROUP_ROWS):
            writer.write_batch(batch.cast(schema), row_group_size=ROW_GROUP_ROWS)


def generate(root: Path, keys: int, every: int, new_image: bool) -> None:
    """The base snapshot and the change log (window, then later changes) under ``root``."""
    archive = Archive.open(str(root))
    con = duckdb.connect()
    started = time.monotonic()
    snapshot_id = layout.new_snapshot_id(BASE_AT)
    part = layout.snapshot_part(TABLE, snapshot_id, 0)
    _write(con, archive.path(part),
           f"SELECT '{{\"pk\":{{\"S\":\"' || {_key('i')} || '\"}}}}' AS keys, "
           f"{_image('i', 'good')} AS item FROM range(0, {keys}) t(i) ORDER BY i",
           SNAPSHOT_SCHEMA)  # fmt: skip
    write_manifest(archive, TABLE, {
        "table": TABLE, "table_id": TABLE_ID, "snapshot_id": snapshot_id, "method": "scan",
        "valid_from": iso_ms(BASE_AT + timedelta(seconds=5)),
        "log_from": iso_ms(BASE_AT - timedelta(seconds=5)),
        "started_at": iso_ms(BASE_AT - timedelta(seconds=5)), "finished_at": iso_ms(BASE_AT),
        "item_count": keys, "key_schema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "source": "bench", "files": [{"path": part, "item_count": keys, "sha256": ""}],
        "created_at": iso_ms(BASE_AT),
    })  # fmt: skip
    touched = f"(SELECT i, row_number() OVER (ORDER BY i) AS n FROM range(0, {keys}, {every}) t(i))"
    window_ms = int((T2 - T1).total_seconds() * 1000) - 1000
    count = (keys + every - 1) // every
    old = "NULL" if new_image else _image("i", "good")
    records = [
        # the bad deploy: one MODIFY per touched key, spread over the window
        (T1 + timedelta(seconds=1), 1, f"SELECT * FROM {touched}",
         f"(n * {window_ms} // {count})", _image("i", "garbage"), old),
        # good writes after the window: 1 % of the touched keys, changed again
        (LATER, 1 + count, f"SELECT * FROM {touched} WHERE n % 100 = 0",
         "n", _image("i", "fixed by hand"), "NULL" if new_image else _image("i", "garbage")),
    ]  # fmt: skip
    for start, first_seq, rows, offset_ms, new, old_sql in records:
        start_ms = int(start.timestamp() * 1000)
        sql = f"""
        SELECT 'ev-{first_seq}-' || n::VARCHAR AS event_id, 'MODIFY' AS event_name,
          make_timestamptz(({start_ms} + {offset_ms}) * 1000) AS event_time,
          lpad(({10**20 + first_seq} + n)::VARCHAR, 40, '0') AS sequence_number,
          '{SHARD}' AS shard_id, '{STREAM_ARN}' AS stream_arn, '{TABLE_ID}' AS table_id,
          '{{"pk":{{"S":"' || {_key("i")} || '"}}}}' AS keys,
          {new} AS new_image, {old_sql} AS old_image,
          200::BIGINT AS size_bytes, NULL::VARCHAR AS user_identity, 'stream' AS origin
        FROM ({rows}) ORDER BY n"""
        low, high = con.sql(f"SELECT min(n), max(n) FROM ({rows})").fetchall()[0]
        first, last = str(10**20 + first_seq + low), str(10**20 + first_seq + high)
        rel = layout.change_file(TABLE, str(start.date()), LABEL, SHARD, first, last)
        _write(con, archive.path(rel), sql, CHANGE_SCHEMA)
    coverage.open_generation(
        archive, TABLE, table_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
        table_id=TABLE_ID, table_created_at=DAY0 - timedelta(days=30),
        covered_from=BASE_AT - timedelta(hours=1), from_table_creation=False, mode="poller",
    )  # fmt: skip
    print(f"generated in {time.monotonic() - started:.1f} s", file=sys.stderr)


def live_items(root: Path) -> dict[str, dict[str, Any]]:
    """Each touched key's latest item, as the null endpoint keys them."""
    con = duckdb.connect()
    files = [str(p) for p in (root / layout.changes_table_dir(TABLE)).rglob("*.parquet")]
    rows = con.execute(
        "SELECT keys, arg_max(new_image, sequence_number) FROM read_parquet($files) GROUP BY keys",
        {"files": files},
    ).fetchall()
    import orjson

    return {NullDynamoDB.key_text(orjson.loads(k)): orjson.loads(item) for k, item in rows}


class ArchivingDrain:
    """The stream for the null endpoint: archives the writes it took as one change file."""

    def __init__(self, archive: Archive, endpoint: NullDynamoDB) -> None:
        self.archive, self.endpoint, self.seq = archive, endpoint, 10**21

    def __call__(self) -> datetime:
        writes = self.endpoint.take_writes()
        now = utcnow().replace(microsecond=0) + timedelta(seconds=1)
        if writes:
            first = self.seq + 1
            self.seq += len(writes)
            rows = {
                "event_id": [f"undo-{first + n}" for n in range(len(writes))],
                "event_name": ["REMOVE" if item is None else "MODIFY" for _, item in writes],
                "event_time": [now] * len(writes),
                "sequence_number": [str(first + n).zfill(40) for n in range(len(writes))],
                "shard_id": [SHARD] * len(writes),
                "stream_arn": [STREAM_ARN] * len(writes),
                "table_id": [TABLE_ID] * len(writes),
                "keys": [key for key, _ in writes],
                "new_image": [None if item is None else canonical_json(item) for _, item in writes],
                "old_image": [None] * len(writes),
                "size_bytes": [200] * len(writes),
                "user_identity": [None] * len(writes),
                "origin": ["stream"] * len(writes),
            }
            rel = layout.change_file(
                TABLE, str(now.date()), LABEL, SHARD, str(first), str(self.seq)
            )
            self.archive.write_parquet(rel, pa.table(rows, schema=CHANGE_SCHEMA))
        coverage.advance_watermark(self.archive, TABLE, TABLE_ID, now)
        return now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument(
        "--touched", type=float, default=0.01, help="fraction of keys in the window"
    )
    parser.add_argument("--new-image", action="store_true", help="records without old images")
    parser.add_argument("--threads", type=int, default=16, help="concurrent writes")
    args = parser.parse_args(argv)
    every = max(1, round(1 / args.touched))
    root = Path("bench-out") / f"undo-{args.keys}-{every}{'-new-image' if args.new_image else ''}"
    if not (root / "_generated").exists():
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        generate(root, args.keys, every, args.new_image)
        (root / "_generated").write_text("")
    archive = Archive.open(str(root))
    for rel in archive.find(layout.changes_table_dir(TABLE), ".parquet"):
        where = layout.parse_change_file(rel)
        if where is not None and where.dt != str(DAY0.date()):
            archive.delete(rel)  # an earlier run's undo, archived by its drain
    items = live_items(root)
    description = {
        "TableName": TABLE, "TableId": TABLE_ID, "TableStatus": "ACTIVE",
        "TableArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "CreationDateTime": (DAY0 - timedelta(days=30)).timestamp(),
    }  # fmt: skip
    from replayer.rollback.undo import Undo, pruned_fold_states

    endpoint = NullDynamoDB(table=description, items=items)
    server = endpoint.serve_in_process()  # its own GIL: the figures are the client's
    try:
        isolate_aws_env(endpoint.url)
        undo = Undo(
            ddb=AwsSettings(endpoint_url=endpoint.url).client("dynamodb"),
            archive=archive,
            table=TABLE,
            after=T1,
            until=T2,
            drain=ArchivingDrain(archive, endpoint),
            states_at=pruned_fold_states(archive, TABLE, say=print),
            threads=args.threads,
        )
        started = time.monotonic()
        plan = undo.prepare()
        planned = time.monotonic()
        report = undo.execute(plan)
        finished = time.monotonic()
    finally:
        server.kill()
    counts = plan.counts()
    plan_s, write_s, total_s = planned - started, finished - planned, finished - started
    view = "NEW_IMAGE" if args.new_image else "NEW_AND_OLD_IMAGES"
    print(f"table            {args.keys:,} keys ({view})")
    print(
        f"window           {plan.window_keys:,} keys, {plan.window_records:,} change records read"
    )
    print(f"plan             restore {counts['restore']:,}, conflicts {counts['conflicts']:,}")
    print(f"written          {report.written:,} items, {len(report.conflicts):,} conflicts left")
    print(f"seconds          plan {plan_s:.2f}, write {write_s:.2f}, total {total_s:.2f}")
    print(f"items/s          {report.written / write_s:,.0f} written, "
          f"{plan.window_keys / total_s:,.0f} window keys overall")  # fmt: skip
    one_key(archive)
    return 0


def one_key(archive: Archive) -> None:
    """What ``restore --key`` of one item at T2 reads: the row groups that can hold it."""
    from replayer.engines.fold import Fold, FoldSettings
    from replayer.planning.key_selection import KeySelection
    from replayer.planning.plan import plan_restore

    started = time.monotonic()
    plan = plan_restore(archive, TABLE, T2, convert=False)
    selection = KeySelection.of(['{"pk":{"S":"user#00000100"}}'], "--key", say=lambda _: None)
    with Fold(archive, FoldSettings(keys=selection)) as fold:
        state = fold.state_at(plan)
        read = fold.rows_read
    print(f"one key at T2    {state.count} item in {time.monotonic() - started:.2f} s: "
          f"{read.describe()}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
