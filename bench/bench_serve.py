"""Benchmark ``ddb-replayer serve``: a large state served through DynamoDB's API, next to moto.

    python -m bench.bench_serve [--items 1000000] [--changes 200000] [--partition 100]
                                [--requests 300] [--moto-items 20000] [--memory-limit 2GB]

Generates (once; reused while the parameters match) a local archive under
``bench-out/serve-<items>-<changes>/``: a table ``orders`` (partition key ``pk`` S, sort key
``sk`` N; ``--partition`` items per partition key) as a base snapshot of ``--items`` items
(~250 bytes each) plus ``--changes`` change records over them (5 % deletions), written with
DuckDB as the archiver lays them out, and the table's description. Then, in this process:

* the fold alone, as ``restore`` runs it (``plan_restore`` → ``Fold.state_at``), best of two —
  the yardstick;
* the endpoint started over the archive, and the time to its first answer (a GetItem at the
  latest restorable time: everything a first client waits for — the plan and the fold; a
  GetItem is answered from the fold's own table while the state is sorted by key in the
  background), then the time until the sorted state is ready (Query and Scan wait for it);
* ``--requests`` GetItems of random keys and Queries of random partitions (``Limit`` 100, so
  about 100 items each), p50 and p99 as boto3 sees them (HTTP on loopback included), once
  the state is sorted;
* a full Scan, paged by DynamoDB's 1 MB rule: items per second;
* the same GetItems, Queries and Scan against moto's server, loaded with ``--moto-items``
  items of the same shape (moto holds its items in Python objects; a smaller table is fair
  to it: its GetItem is a dictionary lookup, its Query a sort of the partition).

Targets: GetItem p50 ≤ 5 ms, Query p50 ≤ 20 ms, first answer ≤ the fold's time + 20 %.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow.parquet as pq
from botocore.config import Config

from archiver.format import coverage, layout, tables
from archiver.format.manifests import write_manifest
from archiver.format.schema import CHANGE_SCHEMA, COMPRESSION, ROW_GROUP_ROWS, SNAPSHOT_SCHEMA
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms

TABLE = "orders"
TABLE_ID = "bench-serve-table-id"
LABEL = "2026-01-01T00:00:00.000"
STREAM_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/stream/{LABEL}"
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
SNAPSHOT_AT = DAY0 - timedelta(minutes=30)
ROWS_PER_FILE = 250_000
CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=900)


def _key_sql(i: str, partition: int) -> tuple[str, str]:
    return f"'c' || ({i} // {partition})::VARCHAR", f"({i} % {partition})::VARCHAR"


def _item_sql(i: str, salt: str, partition: int) -> str:
    pk, sk = _key_sql(i, partition)
    return (
        '\'{"email":{"S":"\' || md5((' + i + " + " + salt + ")::VARCHAR) || '@example.com\"},"
        '"n":{"N":"\' || ((' + i + " + " + salt + ") % 100000)::VARCHAR || '\"},"
        '"note":{"S":"\' || repeat(substr(md5(' + i + "::VARCHAR), 1, 16), 6) || '\"},"
        '"pk":{"S":"\' || ' + pk + " || '\"},"
        '"sk":{"N":"\' || ' + sk + " || '\"},"
        '"tags":{"SS":["blue","\' || substr(md5(' + i + "::VARCHAR), 9, 8) || '\"]}}'"
    )


def _keys_sql(i: str, partition: int) -> str:
    pk, sk = _key_sql(i, partition)
    return '\'{"pk":{"S":"\' || ' + pk + ' || \'"},"sk":{"N":"\' || ' + sk + " || '\"}}'"


def generate(root: Path, items: int, changes: int, partition: int) -> None:
    """The archive (snapshot, change files, coverage, description) under ``root``."""
    archive = Archive.open(str(root))
    con = duckdb.connect()
    started = time.monotonic()
    snapshot_id = layout.new_snapshot_id(SNAPSHOT_AT)
    rel = layout.snapshot_part(TABLE, snapshot_id, 0)
    os.makedirs(os.path.dirname(archive.path(rel)), exist_ok=True)
    sql = f"""SELECT {_keys_sql("i", partition)} AS keys, {_item_sql("i", "0", partition)} AS item
              FROM range(0, {items}) t(i)"""
    with pq.ParquetWriter(archive.path(rel), SNAPSHOT_SCHEMA, compression=COMPRESSION) as writer:
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
            "item_count": items,
            "key_schema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "source": "bench",
            "files": [{"path": rel, "item_count": items, "sha256": ""}],
            "created_at": iso_ms(SNAPSHOT_AT),
        },
    )
    day_ms = 86_400_000
    for f, lo in enumerate(range(0, changes, ROWS_PER_FILE)):
        hi = min(changes, lo + ROWS_PER_FILE)
        target = f"((i * 7919) % {items})"
        sql = f"""
        SELECT 'ev-' || i::VARCHAR AS event_id,
          CASE WHEN i % 20 = 7 THEN 'REMOVE' ELSE 'MODIFY' END AS event_name,
          make_timestamptz(({int(DAY0.timestamp() * 1000)} + i * {day_ms} // {changes}) * 1000)
            AS event_time,
          lpad((100000000000000000000 + i)::VARCHAR, 40, '0') AS sequence_number,
          'shardId-00000001' AS shard_id, '{STREAM_ARN}' AS stream_arn, '{TABLE_ID}' AS table_id,
          {_keys_sql(target, partition)} AS keys,
          CASE WHEN i % 20 = 7 THEN NULL ELSE {_item_sql(target, "i", partition)} END AS new_image,
          {_item_sql(target, "0", partition)} AS old_image,
          250::BIGINT AS size_bytes, NULL::VARCHAR AS user_identity, 'stream' AS origin
        FROM range({lo}, {hi}) t(i)
        """
        rel = layout.change_file(
            TABLE,
            DAY0.strftime("%Y-%m-%d"),
            LABEL,
            "shardId-00000001",
            str(10**20 + lo),
            str(10**20 + hi - 1),
        )
        os.makedirs(os.path.dirname(archive.path(rel)), exist_ok=True)
        with pq.ParquetWriter(archive.path(rel), CHANGE_SCHEMA, compression=COMPRESSION) as w:
            for batch in con.sql(sql).to_arrow_reader(ROW_GROUP_ROWS):
                w.write_batch(batch.cast(CHANGE_SCHEMA), row_group_size=ROW_GROUP_ROWS)
        print(f"  change file {f + 1}", file=sys.stderr, end="\r")
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
    coverage.advance_watermark(archive, TABLE, TABLE_ID, DAY0 + timedelta(days=1))
    description = {
        "TableName": TABLE,
        "TableId": TABLE_ID,
        "TableArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
        "CreationDateTime": DAY0 - timedelta(days=30),
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
    }
    tables.store_description(
        archive,
        tables.description_document(TABLE, description, captured_at=DAY0 - timedelta(days=30)),
    )
    print(f"generated in {time.monotonic() - started:.1f} s{' ' * 20}", file=sys.stderr)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def timed(requests: int, call: Callable[[int], Any]) -> list[float]:
    out = []
    for n in range(requests):
        started = time.perf_counter()
        call(n)
        out.append(time.perf_counter() - started)
    return out


def measure(client: Any, name: str, items: int, partition: int, requests: int) -> dict[str, Any]:
    """GetItem and 100-item Query latencies, and a full Scan's rate, against one endpoint."""
    rng = random.Random(7)
    keys = [rng.randrange(items) for _ in range(requests)]

    def get(n: int) -> None:
        i = keys[n]
        client.get_item(
            TableName=name,
            Key={"pk": {"S": f"c{i // partition}"}, "sk": {"N": str(i % partition)}},
        )

    def query(n: int) -> None:
        answer = client.query(
            TableName=name,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": f"c{keys[n] // partition}"}},
            Limit=100,
        )
        assert answer["Count"] >= 90, answer["Count"]  # 5 % of the items were deleted

    get_p50, get_p99 = percentiles(timed(requests, get))
    query_p50, query_p99 = percentiles(timed(requests, query))
    started = time.perf_counter()
    scanned = 0
    pages = client.get_paginator("scan").paginate(TableName=name)
    for page in pages:
        scanned += page["Count"]
    scan_s = time.perf_counter() - started
    return {
        "get_p50_ms": get_p50,
        "get_p99_ms": get_p99,
        "query_p50_ms": query_p50,
        "query_p99_ms": query_p99,
        "scan_items": scanned,
        "scan_items_per_s": scanned / scan_s,
    }


def bench_serve(root: Path, memory_limit: str, partition: int, requests: int) -> dict[str, Any]:
    from replayer.engines.fold import Fold, FoldSettings
    from replayer.planning.plan import latest_restorable_time, plan_restore
    from replayer.serve.catalog import Catalog, ReadOnlyArchive
    from replayer.serve.endpoint import Endpoint
    from replayer.serve.http_server import Server
    from replayer.serve.state import StateStore

    archive = ReadOnlyArchive.of(Archive.open(str(root)))
    at = latest_restorable_time(archive, TABLE)
    settings = FoldSettings(memory_limit=memory_limit)
    folds = []
    for _ in range(2):  # the best of two: the first also warms the page cache
        started = time.monotonic()
        with Fold(archive, settings) as fold:
            count = fold.state_at(plan_restore(archive, TABLE, at, convert=False)).count
        folds.append(time.monotonic() - started)
    fold_s = min(folds)

    firsts = []
    for attempt in range(2):  # the best of two, as for the fold
        catalog = Catalog(archive)
        store = StateStore.open(archive, settings, 8 << 30)
        server = Server(Endpoint(catalog, store), "127.0.0.1", 0).start()
        client = boto3.client(
            "dynamodb",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=CONFIG,
        )
        client.list_tables()  # botocore's first call loads its models: not the server's time
        started = time.monotonic()
        catalog.start()
        client.get_item(TableName=TABLE, Key={"pk": {"S": "c0"}, "sk": {"N": "1"}})
        firsts.append(time.monotonic() - started)
        # reads by range wait for the state's sorted table, built right after the fold
        (state,) = store.states()
        state.rows  # noqa: B018 (waits for it)
        sorted_s = time.monotonic() - started
        if attempt == 0:
            server.stop()
            store.close()
    first_s = min(firsts)
    try:
        figures = measure(client, TABLE, count, partition, requests)
    finally:
        server.stop()
        store.close()
    return {
        "items": count,
        "fold_s": fold_s,
        "first_answer_s": first_s,
        "sorted_s": sorted_s,
        **figures,
    }


def bench_moto(items: int, partition: int, requests: int) -> dict[str, Any]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        client = boto3.client(
            "dynamodb",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=CONFIG,
        )
        client.create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        con = duckdb.connect()
        rows = con.sql(
            f"SELECT {_item_sql('i', '0', partition)} AS item FROM range(0, {items}) t(i)"
        ).fetchall()
        import orjson

        batch: list[Any] = []
        for (text,) in rows:
            batch.append({"PutRequest": {"Item": orjson.loads(text)}})
            if len(batch) == 25:
                client.batch_write_item(RequestItems={TABLE: batch})
                batch = []
        if batch:
            client.batch_write_item(RequestItems={TABLE: batch})
        return {"items": items, **measure(client, TABLE, items, partition, requests)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--partition", type=int, default=100)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--moto-items", type=int, default=20_000)
    parser.add_argument("--memory-limit", default="2GB")
    args = parser.parse_args()
    root = Path("bench-out") / f"serve-{args.items}-{args.changes}-{args.partition}"
    if not (root / "_state").exists():
        generate(root, args.items, args.changes, args.partition)
    served = bench_serve(root, args.memory_limit, args.partition, args.requests)
    moto = bench_moto(args.moto_items, args.partition, args.requests)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"state: {served['items']:,} items; moto: {moto['items']:,} items; peak RSS {rss:.0f} MB")
    print(f"fold alone (restore's)        {served['fold_s']:8.2f} s")
    print(
        f"serve: first answer           {served['first_answer_s']:8.2f} s  "
        f"({served['first_answer_s'] / served['fold_s']:.2f} x the fold; target <= 1.20)"
    )
    print(f"serve: sorted by key (Query, Scan ready) {served['sorted_s']:8.2f} s")
    print(f"{'':30}{'serve':>12}{'moto':>12}   target")
    for label, field, target in (
        ("GetItem p50 (ms)", "get_p50_ms", "<= 5"),
        ("GetItem p99 (ms)", "get_p99_ms", ""),
        ("Query 100 items p50 (ms)", "query_p50_ms", "<= 20"),
        ("Query 100 items p99 (ms)", "query_p99_ms", ""),
        ("Scan (items/s)", "scan_items_per_s", ""),
    ):
        print(f"{label:30}{served[field]:12.1f}{moto[field]:12.1f}   {target}")


if __name__ == "__main__":
    main()
