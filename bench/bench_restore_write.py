"""Benchmark restore writes: the project's table sink against a plain loop and dynamodump.

    python -m bench.bench_restore_write [--items 20000] [--repeat 1]

Starts moto's server as a separate process on loopback (so it does not share this process's
GIL), generates N items of ~300 bytes (composite key, strings, numbers, a bool, binary, a
map), and writes them into a fresh pay-per-request table three ways, in the same run:

* the project's table sink (``replayer.write.sinks``), as ``ddb-replayer restore`` uses it;
* a plain ``batch_write_item`` loop: 25 items per call, retrying ``UnprocessedItems``;
* dynamodump's restore (``--dataOnly`` into a pre-created table: it cannot create a table
  without GSIs), from a dump in its own format, run by its own virtual environment under
  ``bench-out/dynamodump-venv`` (it pins an older boto3) — created on first use.

Each writer's table is read back afterwards: every item must be there, intact. Prints items/s
for each and the ratios. Target (issue #3): the sink ≥ 0.9× the plain loop.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa

from archiver.aws.clients import AwsSettings
from archiver.format.codec import canonical_json, key_of
from archiver.format.schema import SNAPSHOT_SCHEMA
from demo import isolate_aws_env
from replayer.write.sinks import TableSink

OUT = Path("bench-out")
DD_VENV = OUT / "dynamodump-venv"
REGION = "us-east-1"
Item = dict[str, Any]


# -- environment ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def dynamodump_bin() -> Path:
    """dynamodump in a virtual environment of its own (it pins an older boto3)."""
    binary = DD_VENV / "bin" / "dynamodump"
    if not binary.exists():
        print(f"creating {DD_VENV} with dynamodump (once)…", file=sys.stderr)
        venv.create(DD_VENV, with_pip=True)
        subprocess.run(
            [str(DD_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "dynamodump"],
            check=True,
        )
    return binary


# -- items and tables -----------------------------------------------------------------------


def make_items(n: int, pad: int = 0) -> list[Item]:
    """``n`` items of about 300 bytes of DynamoDB JSON each (wire form: binary as bytes), and
    ``pad`` bytes more in a ``pad`` string when asked."""
    extra = {"pad": {"S": "p" * pad}} if pad else {}
    return [
        {
            "pk": {"S": f"customer#{i % 997:04d}"},
            "sk": {"N": str(i)},
            "email": {"S": f"user{i}@example.com"},
            "name": {"S": f"Customer {i}"},
            "note": {"S": ("lorem ipsum dolor sit amet " * 2)[: 20 + i % 20]},
            "balance": {"N": f"{i * 37 % 100000}.{i % 100:02d}"},
            "active": {"BOOL": i % 3 == 0},
            "avatar": {"B": bytes((i + j) % 256 for j in range(12))},
            "address": {"M": {"city": {"S": "Springfield"}, "zip": {"N": str(10000 + i % 89999)}}},
            **extra,
        }
        for i in range(n)
    ]


def create_table(ddb: Any, name: str) -> None:
    ddb.create_table(
        TableName=name,
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
    ddb.get_waiter("table_exists").wait(TableName=name)


def table_contents(ddb: Any, name: str) -> set[str]:
    """Every item of the table as canonical JSON (equal items ⇔ equal text)."""
    found: set[str] = set()
    for page in ddb.get_paginator("scan").paginate(TableName=name):
        found.update(canonical_json(item) for item in page["Items"])
    return found


# -- writers --------------------------------------------------------------------------------


def write_plain_loop(ddb: Any, table: str, items: list[Item]) -> None:
    """The yardstick: one batch_write_item per 25 items, UnprocessedItems retried."""
    for start in range(0, len(items), 25):
        request = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        delay = 0.05
        while request:
            response = ddb.batch_write_item(RequestItems=request)
            request = response.get("UnprocessedItems") or {}
            if request:
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


def fold_output(items: list[Item], batch_rows: int = 10_000) -> list[pa.RecordBatch]:
    """The items as the fold hands them to a sink: Arrow batches of canonical ``keys``/``item``
    (built before the clock starts, as the fold's work is not the sink's)."""
    keys = [canonical_json(key_of(item, ("pk", "sk"))) for item in items]
    texts = [canonical_json(item) for item in items]
    rows = pa.table({"keys": keys, "item": texts}, schema=SNAPSHOT_SCHEMA)
    return rows.to_batches(max_chunksize=batch_rows)


def write_sink(endpoint: str, table: str, batches: list[pa.RecordBatch]) -> None:
    """The project's table sink, as ``ddb-replayer restore`` drives it (into an existing
    table: ``description=None``), with its default concurrency."""
    client = AwsSettings(endpoint_url=endpoint, region=REGION).client("dynamodb")
    sink = TableSink(client, table, None)
    sink.prepare()
    result = sink.write(batches, total=sum(b.num_rows for b in batches))
    if result.items != sum(b.num_rows for b in batches):
        raise SystemExit(f"sink reported {result.items} items written")


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def prepare_dump(ddb: Any, table: str, items: list[Item], page: int = 3000) -> Path:
    """A dump in dynamodump's own layout: ``<dump>/<table>/schema.json`` and
    ``data/0001.json`` … (Scan responses, binary as base64), ~1 MB pages like its backups."""
    dump = OUT / "dynamodump-dump"
    folder = dump / table
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for old in (folder / "data").glob("*.json"):
        old.unlink()
    schema = ddb.describe_table(TableName=table)
    del schema["ResponseMetadata"]
    (folder / "schema.json").write_text(json.dumps(schema, default=str))
    for n, start in enumerate(range(0, len(items), page), 1):
        chunk = [_json_safe(item) for item in items[start : start + page]]
        body = {"Items": chunk, "Count": len(chunk), "ScannedCount": len(chunk)}
        (folder / "data" / f"{n:04d}.json").write_text(json.dumps(body))
    return dump


def write_dynamodump(endpoint: str, table: str, dump: Path) -> float:
    """Run dynamodump's restore; returns its wall time (process start included)."""
    host, port = endpoint.removeprefix("http://").split(":")
    command = [
        str(dynamodump_bin()), "-m", "restore", "-s", table, "-d", table, "--dataOnly",
        "--skipThroughputUpdate", "--noConfirm", "--host", host, "--port", port,
        "--accessKey", "bench", "--secretKey", "bench", "-r", REGION,
        "--dumpPath", str(dump), "--log", "WARNING",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "AWS_ENDPOINT_URL": endpoint})
    return time.perf_counter() - started


# -- run ------------------------------------------------------------------------------------


def worker(name: str, endpoint: str, table: str, n: int, pad: int = 0) -> float:
    """One writer, timed, in a process of its own: every contender starts from the same clean
    interpreter (a parent holding every item and check set pays for it in garbage collection
    during its own writes), and the data preparation is not timed."""
    isolate_aws_env(endpoint)
    items = make_items(n, pad)
    if name == "sink":
        batches = fold_output(items)
        del items
        gc.collect()
        started = time.perf_counter()
        write_sink(endpoint, table, batches)
    else:
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
        gc.collect()
        started = time.perf_counter()
        write_plain_loop(ddb, table, items)
    return time.perf_counter() - started


def run_worker(name: str, endpoint: str, table: str, n: int, pad: int = 0) -> float:
    command = [sys.executable, "-m", "bench.bench_restore_write", "--worker", name,
               "--endpoint", endpoint, "--table", table, "--items", str(n),
               "--pad", str(pad)]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def process_start_seconds() -> float:
    """How long dynamodump takes to start and exit (``--help``): its wall time includes it."""
    started = time.perf_counter()
    subprocess.run([str(dynamodump_bin()), "--help"], check=True, capture_output=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--pad", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each writer (best kept)")
    parser.add_argument("--skip-dynamodump", action="store_true")
    parser.add_argument(
        "--no-check", action="store_true", help="skip reading each table back (moto scans slowly)"
    )
    parser.add_argument("--worker", choices=("sink", "loop"), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        seconds = worker(args.worker, args.endpoint, args.table, args.items, args.pad)
        print(json.dumps({"seconds": seconds}))
        return 0
    OUT.mkdir(exist_ok=True)
    items = make_items(args.items)
    expected = {canonical_json(item) for item in items}
    size = sum(len(json.dumps(_json_safe(i), separators=(",", ":"))) for i in items) / len(items)
    print(f"{args.items} items, ~{size:.0f} bytes each (DynamoDB JSON)")
    startup = 0.0
    if not args.skip_dynamodump:
        dynamodump_bin()  # create its environment before the clock starts
        startup = min(process_start_seconds() for _ in range(3))
        print(f"dynamodump process start: {startup:.2f} s (subtracted from its times)")
    moto, endpoint = start_moto()
    try:
        isolate_aws_env(endpoint)
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
        best: dict[str, float] = {}
        for run in range(args.repeat):
            contenders: list[tuple[str, Callable[[str], float]]] = [
                ("sink", lambda t: run_worker("sink", endpoint, t, args.items)),
                ("batch_write_item loop", lambda t: run_worker("loop", endpoint, t, args.items)),
            ]
            if not args.skip_dynamodump:
                contenders.append(
                    (
                        "dynamodump",
                        lambda t: (
                            write_dynamodump(endpoint, t, prepare_dump(ddb, t, items)) - startup
                        ),
                    )
                )
            # Rotate the order each run: moto slows down as it serves more, which would
            # otherwise favour whoever goes first.
            shift = run % len(contenders)
            for name, write in contenders[shift:] + contenders[:shift]:
                table = f"bench-{name.split()[0]}-{run}"
                create_table(ddb, table)
                seconds = write(table)
                checked = time.perf_counter()
                found = expected if args.no_check else table_contents(ddb, table)
                checked = time.perf_counter() - checked
                if found != expected:
                    raise SystemExit(
                        f"{name}: the table holds {len(found & expected)} of the {len(items)} "
                        f"items intact and {len(found - expected)} others"
                    )
                ddb.delete_table(TableName=table)
                rate = len(items) / seconds
                note = "" if args.no_check else f"  (read back and checked in {checked:.1f} s)"
                print(f"  run {run + 1}: {name:<22} {seconds:7.2f} s  {rate:9,.0f} items/s{note}")
                best[name] = max(best.get(name, 0.0), rate)
        print("best of runs:")
        for name, rate in best.items():
            print(f"  {name:<22} {rate:9,.0f} items/s")
        plain = best["batch_write_item loop"]
        print(f"sink / batch_write_item loop = {best['sink'] / plain:.2f} (target ≥ 0.9)")
        if "dynamodump" in best:
            print(f"sink / dynamodump            = {best['sink'] / best['dynamodump']:.2f}")
    finally:
        moto.terminate()
        try:
            moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            moto.kill()
            moto.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
