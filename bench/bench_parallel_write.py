"""Benchmark the restore writers against a null DynamoDB endpoint: the client's own cost.

    python -m bench.bench_parallel_write [--items 60000] [--processes 2] [--repeat 2]

Starts :mod:`bench.null_dynamodb` as a process of its own on loopback (it answers every
``BatchWriteItem`` at once), then writes the same N items of ~300 bytes, in the same run:

* ``boto3 loop`` — the yardstick: one thread, ``batch_write_item`` per 25 items (items as
  boto3's Python form), ``UnprocessedItems`` retried;
* ``parsed sink`` — the writers with each item parsed into Python and serialised again by
  botocore (what the table sink did before bodies were built from the stored text);
* ``writers, 1 process`` — :mod:`replayer.write.batch_writers` as a restore runs it, one partition;
* ``boto3 loop, threads`` — the same loop on C threads sharing one client (calls in flight,
  as the writers have them);
* ``writers, P processes`` — P partitions, one process each (``steady``: timed from the first
  acknowledged chunk, leaving out process start-up).

Prints items/s for each and the ratios against the targets: ≥ 0.9× the loop per process,
≥ 0.8 × P × the one-process figure with P processes. The null endpoint shares the machine's
cores with the writers: on a 2-core machine P = 2 competes with it for CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow as pa

from archiver.format.codec import canonical_json, key_of
from bench.bench_restore_write import make_items
from demo import isolate_aws_env
from replayer.write.batch_writers import PartitionJob, write_partitions
from replayer.write.restore_state import CHUNK_ITEMS

REGION = "us-east-1"
TABLE = "bench"


def start_null_endpoint() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.null_dynamodb"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def partition_files(items: list[dict[str, Any]], partitions: int, folder: Path) -> list[str]:
    """The items as a restore's partition files (canonical keys/item, split by key hash)."""
    keys = [canonical_json(key_of(item, ("pk", "sk"))) for item in items]
    texts = [canonical_json(item) for item in items]
    con = duckdb.connect()
    con.register("rows", pa.table({"keys": keys, "item": texts}))
    paths = []
    for p in range(partitions):
        path = str(folder / f"p{partitions}-{p}.parquet")
        con.execute(
            f"COPY (SELECT keys, item FROM rows WHERE (md5_number(keys) % {partitions})::INTEGER"
            f" = {p} ORDER BY keys) TO '{path}' (FORMAT parquet)"
        )
        paths.append(path)
    return paths


def boto3_loop(endpoint: str, items: list[dict[str, Any]]) -> float:
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    started = time.perf_counter()
    for start in range(0, len(items), CHUNK_ITEMS):
        request = {TABLE: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
        while request:
            request = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
    return time.perf_counter() - started


def boto3_threads(endpoint: str, items: list[dict[str, Any]], threads: int) -> float:
    """The loop on ``threads`` threads sharing one client (calls in flight, as the writers)."""
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    chunks = [items[s : s + CHUNK_ITEMS] for s in range(0, len(items), CHUNK_ITEMS)]

    def one(chunk: list[dict[str, Any]]) -> None:
        request = {TABLE: [{"PutRequest": {"Item": i}} for i in chunk]}
        while request:
            request = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, chunks))
    return time.perf_counter() - started


class ParsedClient:
    """A client proxy without botocore's event system: the writers then parse each item."""

    def __init__(self, endpoint: str) -> None:
        self.client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)

    def batch_write_item(self, **kwargs: Any) -> Any:
        return self.client.batch_write_item(**kwargs)


class RawFactory:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def __call__(self) -> Any:
        return boto3.client("dynamodb", endpoint_url=self.endpoint, region_name=REGION)


class ParsedFactory(RawFactory):
    def __call__(self) -> Any:
        return ParsedClient(self.endpoint)


def writers(
    paths: list[str], factory: Any, total: int, concurrency: int, *, steady: bool = False
) -> float:
    """Seconds the writers took (``steady``: from the first acknowledged chunk, leaving out
    process start-up, which a long restore amortises)."""
    jobs = [
        PartitionJob(p, path, TABLE, concurrency=concurrency, client_factory=factory)
        for p, path in enumerate(paths)
    ]
    stats = write_partitions(jobs, total=total, desc="bench")
    if stats.items != total:
        raise SystemExit(f"wrote {stats.items} of {total}")
    return stats.seconds - (stats.startup_seconds if steady else 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=60_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    items = make_items(args.items)
    proc, endpoint = start_null_endpoint()
    isolate_aws_env(endpoint)
    best: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            one = partition_files(items, 1, Path(tmp))
            many = partition_files(items, args.processes, Path(tmp))
            runs = {
                "boto3 loop": lambda: boto3_loop(endpoint, items),
                "boto3 loop, threads": lambda: boto3_threads(endpoint, items, args.concurrency),
                "parsed sink, 1 process": lambda: writers(
                    one, ParsedFactory(endpoint), args.items, args.concurrency
                ),
                "writers, 1 process": lambda: writers(
                    one, RawFactory(endpoint), args.items, args.concurrency
                ),
                f"writers, {args.processes} processes": lambda: writers(
                    many, RawFactory(endpoint), args.items, args.concurrency
                ),
                f"writers, {args.processes} proc. steady": lambda: writers(
                    many, RawFactory(endpoint), args.items, args.concurrency, steady=True
                ),
            }
            for run in range(args.repeat):
                for name, fn in runs.items():
                    rate = args.items / fn()
                    print(f"  run {run + 1}: {name:<24} {rate:9,.0f} items/s", flush=True)
                    best[name] = max(best.get(name, 0.0), rate)
    finally:
        proc.terminate()
        proc.wait()
    print(
        f"best of {args.repeat} runs, {args.items:,} items of ~300 bytes, {os.cpu_count()} cores:"
    )
    for name, rate in best.items():
        print(f"  {name:<24} {rate:9,.0f} items/s")
    loop, single = best["boto3 loop"], best["writers, 1 process"]
    multi = best[f"writers, {args.processes} processes"]
    steady = best[f"writers, {args.processes} proc. steady"]
    print(f"writers 1 process / boto3 loop = {single / loop:.2f} (target ≥ 0.9)")
    print(f"writers 1 process / boto3 loop on threads = {single / best['boto3 loop, threads']:.2f}")
    print(f"writers {args.processes} proc. steady / ({args.processes} × 1 process) = "
          f"{steady / (args.processes * single):.2f}")  # fmt: skip
    print(f"parsed sink / boto3 loop       = {best['parsed sink, 1 process'] / loop:.2f}")
    print(
        f"writers {args.processes} processes / ({args.processes} × 1 process) = "
        f"{multi / (args.processes * single):.2f} (target ≥ 0.8)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
