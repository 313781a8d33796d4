"""Benchmark: stream records → change-log Parquet, the archiver's hot path (not a test).

    python -m bench.bench_codec [--records N ...] [--baseline-records N] [--flush-records N]

Converts N boto3-shaped ``GetRecords`` records (binary as ``bytes``, times as ``datetime`` in
the local zone, ~300-byte images holding every attribute type, sets in arbitrary order; 70 %
MODIFY with old and new images, 20 % INSERT, 10 % REMOVE, some of them TTL deletions) into
Parquet files on local disk with the archiver's own code path:
:class:`archiver.format.records.ChangeRows` then
:meth:`archiver.format.storage.Archive.write_parquet`, one file per ``--flush-records`` records,
named by :func:`archiver.format.layout.change_file`.

Next to it, in the same run and on the same records, a naive baseline: ``json.dumps`` per image
(``sort_keys``, a ``default`` for bytes) and ``pyarrow.Table.from_pylist`` — which does less
(no set ordering, no number normalisation) and is still slower.

Each measurement runs in its own subprocess pinned to one CPU, so its peak RSS (``ru_maxrss``)
is its own: memory must stay flat from 100k to 1M records. Records are generated lazily, 1,000 at
a time; generation time is measured separately and excluded from records/s.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
from dateutil.tz import tzlocal

from archiver.format import layout
from archiver.format.records import ChangeRows, _JsonColumn
from archiver.format.schema import CHANGE_SCHEMA
from archiver.format.storage import Archive

TABLE = "customers"
STREAM_LABEL = "2026-01-01T00:00:00.000"
STREAM_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/stream/{STREAM_LABEL}"
SHARD_ID = "shardId-00000001767225600000-0a1b2c3d"
TABLE_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
GENERATE_BATCH = 1_000
START = datetime(2026, 1, 1, tzinfo=UTC)

TARGET_RECORDS_PER_S = 100_000
TARGET_SPEEDUP = 3.0
# "Flat": the 1M run may use at most this much more than the 100k run.
FLAT_RSS_SLACK = 1.25

WORDS = [
    *("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"),
    *("juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo"),
    *("sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "vip"),
    *("gold", "silver", "bronze", "trial", "churned", "beta", "früh", "ünïcødé", "東京", "🚀"),
]
CITIES = ("London", "Paris", "Zürich", "São Paulo", "Tokyo", "Nairobi", "Austin", "Oslo")
FIRST = ("Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia")
LAST = ("Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")


# -- workload ------------------------------------------------------------------------------


def _money(rng: random.Random) -> str:
    cents = rng.randrange(1, 10_000_000)
    return f"{cents // 100}.{cents % 100:02d}".rstrip("0").rstrip(".")


def _image(rng: random.Random, customer: int) -> dict[str, Any]:
    """One ~300-byte item (canonical JSON) holding all ten attribute types, as GetRecords
    returns it: numbers in DynamoDB's normal form, binary as bytes, sets in no particular order."""
    return {
        "pk": {"S": f"c#{customer:06d}"},
        "sk": {"N": str(customer % 97)},
        "name": {"S": f"{rng.choice(FIRST)} {rng.choice(LAST)}"},
        "balance": {"N": _money(rng)},
        "vip": {"BOOL": rng.random() < 0.8},
        "ref": {"NULL": True},
        "pic": {"B": rng.randbytes(12)},
        "tags": {"SS": rng.sample(WORDS, k=rng.randint(1, 3))},
        "nums": {"NS": [str(n) for n in rng.sample(range(-100, 10_000), k=rng.randint(1, 3))]},
        "keys": {"BS": list({rng.randbytes(rng.randint(3, 6)) for _ in range(rng.randint(1, 2))})},
        "addr": {
            "M": {
                "city": {"S": rng.choice(CITIES)},
                "geo": {"L": [{"N": _coordinate(rng, 90)}, {"N": _coordinate(rng, 180)}]},
            }
        },
    }


def _coordinate(rng: random.Random, limit: int) -> str:
    return f"{rng.uniform(-limit, limit):.4f}".rstrip("0").rstrip(".")


def _modified(rng: random.Random, old: dict[str, Any]) -> dict[str, Any]:
    new = dict(old)
    new["balance"] = {"N": _money(rng)}
    if rng.random() < 0.3:
        new["tags"] = {"SS": rng.sample(WORDS, k=rng.randint(1, 4))}
    return new


def generate(n: int, seed: int = 7) -> Iterator[list[dict[str, Any]]]:
    """``n`` records in batches of :data:`GENERATE_BATCH`, built lazily (memory stays flat)."""
    rng = random.Random(seed)
    local = tzlocal()
    sequence = 4_000_000_000_000_000_000_0  # 21 digits, like AWS's
    done = 0
    while done < n:
        batch = []
        for i in range(done, min(n, done + GENERATE_BATCH)):
            customer = rng.randrange(50_000)
            roll = rng.random()
            ddb: dict[str, Any] = {
                # botocore parses the epoch number into a datetime in the local zone
                "ApproximateCreationDateTime": (START + timedelta(seconds=i // 100)).astimezone(
                    local
                ),
                "SequenceNumber": str(sequence),
                "SizeBytes": rng.randint(250, 450),
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            }
            record: dict[str, Any] = {
                "eventID": f"{rng.getrandbits(128):032x}",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": ddb,
            }
            old = _image(rng, customer)
            ddb["Keys"] = {"pk": old["pk"], "sk": old["sk"]}
            if roll < 0.7:
                record["eventName"] = "MODIFY"
                ddb["OldImage"], ddb["NewImage"] = old, _modified(rng, old)
            elif roll < 0.9:
                record["eventName"] = "INSERT"
                ddb["NewImage"] = old
            else:
                record["eventName"] = "REMOVE"
                ddb["OldImage"] = old
                if roll > 0.98:
                    record["userIdentity"] = {
                        "Type": "Service",
                        "PrincipalId": "dynamodb.amazonaws.com",
                    }
            batch.append(record)
            sequence += rng.randint(1, 1_000)
        done += len(batch)
        yield batch


# -- the two converters --------------------------------------------------------------------


def _file_path(first: dict[str, Any], last: dict[str, Any]) -> str:
    event_time = first["dynamodb"]["ApproximateCreationDateTime"]
    return layout.change_file(
        TABLE,
        layout.dt_of(event_time),
        STREAM_LABEL,
        SHARD_ID,
        first["dynamodb"]["SequenceNumber"],
        last["dynamodb"]["SequenceNumber"],
    )


class Ours:
    """The archiver's path: ChangeRows.append per record (as the writer calls it), then
    ChangeRows.to_table → Archive.write_parquet per flush."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.rows = ChangeRows()
        self.first: dict[str, Any] | None = None
        self.last: dict[str, Any] | None = None

    def add(self, batch: list[dict[str, Any]]) -> None:
        self.first = self.first or batch[0]
        self.last = batch[-1]
        # as the writer does: record by record, then a look at the size once per page
        for record in batch:
            self.rows.append(
                record, stream_arn=STREAM_ARN, shard_id=SHARD_ID, table_id=TABLE_ID, origin="stream"
            )
        assert self.rows.nbytes > 0

    def pending(self) -> int:
        return len(self.rows)

    def flush(self) -> int:
        assert self.first is not None and self.last is not None
        size = self.archive.write_parquet(_file_path(self.first, self.last), self.rows.to_table())
        self.rows, self.first, self.last = ChangeRows(), None, None
        return size


class Floor:
    """Not a converter: the cost no converter can go below here — orjson.dumps of the keys and
    images (sorted keys, binary to base64) into Parquet, with no canonicalisation at all."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.columns = {name: _JsonColumn() for name in ("keys", "new_image", "old_image")}
        self.count = 0
        self.first: dict[str, Any] | None = None
        self.last: dict[str, Any] | None = None

    def add(self, batch: list[dict[str, Any]]) -> None:
        self.first = self.first or batch[0]
        self.last = batch[-1]
        self.count += len(batch)
        for name, part in (("keys", "Keys"), ("new_image", "NewImage"), ("old_image", "OldImage")):
            images = [record["dynamodb"].get(part) for record in batch]
            self.columns[name].extend(
                [None if image is None else _dumps(image) for image in images]
            )

    def pending(self) -> int:
        return self.count

    def flush(self) -> int:
        assert self.first is not None and self.last is not None
        field = pa.field("x", pa.string())
        table = pa.table({name: column.to_array(field) for name, column in self.columns.items()})
        size = self.archive.write_parquet(_file_path(self.first, self.last), table)
        self.columns = {name: _JsonColumn() for name in self.columns}
        self.count, self.first, self.last = 0, None, None
        return size


def _dumps(image: dict[str, Any]) -> bytes:
    return orjson.dumps(image, default=_b64, option=orjson.OPT_SORT_KEYS)


def _b64(value: Any) -> str:
    return base64.b64encode(value).decode("ascii")


def _naive_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


class Naive:
    """What one writes first: json.dumps per image, a dict per row, Table.from_pylist."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.rows: list[dict[str, Any]] = []
        self.first: dict[str, Any] | None = None
        self.last: dict[str, Any] | None = None

    def add(self, batch: list[dict[str, Any]]) -> None:
        self.first = self.first or batch[0]
        self.last = batch[-1]
        for record in batch:
            ddb = record["dynamodb"]
            new, old = ddb.get("NewImage"), ddb.get("OldImage")
            identity = record.get("userIdentity")
            self.rows.append(
                {
                    "event_id": record["eventID"],
                    "event_name": record["eventName"],
                    "event_time": ddb["ApproximateCreationDateTime"],
                    "sequence_number": ddb["SequenceNumber"].zfill(40),
                    "shard_id": SHARD_ID,
                    "stream_arn": STREAM_ARN,
                    "table_id": TABLE_ID,
                    "keys": json.dumps(ddb["Keys"], sort_keys=True, default=_naive_default),
                    "new_image": None
                    if new is None
                    else json.dumps(new, sort_keys=True, default=_naive_default),
                    "old_image": None
                    if old is None
                    else json.dumps(old, sort_keys=True, default=_naive_default),
                    "size_bytes": ddb["SizeBytes"],
                    "user_identity": None
                    if identity is None
                    else f"{identity['Type']}/{identity['PrincipalId']}",
                    "origin": "stream",
                }
            )

    def pending(self) -> int:
        return len(self.rows)

    def flush(self) -> int:
        assert self.first is not None and self.last is not None
        table = pa.Table.from_pylist(self.rows, schema=CHANGE_SCHEMA)
        size = self.archive.write_parquet(_file_path(self.first, self.last), table)
        self.rows, self.first, self.last = [], None, None
        return size


# -- one measurement (in a subprocess) -----------------------------------------------------


def _pin_to_one_cpu() -> int | None:
    """Run on one core (and keep Arrow's thread pools at one thread): the target is per core."""
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def measure(mode: str, n: int, flush_records: int, out: str, pin: bool) -> dict[str, Any]:
    """Convert ``n`` records with ``mode`` ("ours" or "naive"); timings exclude generation."""
    cpu = _pin_to_one_cpu() if pin else None
    rss_start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    archive = Archive.open(out)
    kinds: dict[str, type[Ours] | type[Naive] | type[Floor]] = {
        "ours": Ours, "naive": Naive, "floor": Floor,
    }  # fmt: skip
    converter = kinds[mode](archive)
    generation = conversion = conversion_cpu = 0.0
    files = bytes_written = 0
    records = generate(n)
    while True:
        started = time.perf_counter()
        batch = next(records, None)
        generation += time.perf_counter() - started
        if batch is None:
            break
        started, started_cpu = time.perf_counter(), time.process_time()
        converter.add(batch)
        if converter.pending() >= flush_records:
            bytes_written += converter.flush()
            files += 1
        conversion += time.perf_counter() - started
        conversion_cpu += time.process_time() - started_cpu
    if converter.pending():
        started, started_cpu = time.perf_counter(), time.process_time()
        bytes_written += converter.flush()
        files += 1
        conversion += time.perf_counter() - started
        conversion_cpu += time.process_time() - started_cpu
    return {
        "mode": mode,
        "records": n,
        "seconds": conversion,
        "cpu_seconds": conversion_cpu,
        # CPU time, not wall time: on a shared machine the wall clock also counts other
        # processes' turns on this core. Both are reported.
        "records_per_s": n / conversion_cpu,
        "records_per_wall_s": n / conversion,
        "generation_seconds": generation,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "startup_rss_mb": rss_start_kb / 1024,
        "files": files,
        "mb_written": bytes_written / 1e6,
        "cpu": cpu,
    }


def _run_subprocess(mode: str, n: int, args: argparse.Namespace, out: str) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "bench.bench_codec", "--worker", mode,
        "--records", str(n), "--flush-records", str(args.flush_records), "--out", out,
    ]  # fmt: skip
    if args.no_pin:
        command.append("--no-pin")
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return result


_COLUMNS = (
    ("mode", 6), ("records", 10), ("rec/s (cpu)", 12), ("rec/s (wall)", 13),
    ("convert cpu s", 14), ("generate s", 11), ("peak RSS MB", 12), ("files", 6), ("MB out", 7),
)  # fmt: skip


def _line(cells: tuple[str, ...]) -> str:
    return " ".join(
        cell.ljust(width) if i == 0 else cell.rjust(width)
        for i, (cell, (_, width)) in enumerate(zip(cells, _COLUMNS, strict=True))
    )


def _report(results: list[dict[str, Any]]) -> list[str]:
    print(_line(tuple(name for name, _ in _COLUMNS)))
    for r in results:
        print(_line((
            r["mode"], f"{r['records']:,}", f"{r['records_per_s']:,.0f}",
            f"{r['records_per_wall_s']:,.0f}", f"{r['cpu_seconds']:.2f}",
            f"{r['generation_seconds']:.2f}", f"{r['peak_rss_mb']:.0f}", str(r["files"]),
            f"{r['mb_written']:.1f}",
        )))  # fmt: skip
    ours = {r["records"]: r for r in results if r["mode"] == "ours"}
    naive = {r["records"]: r for r in results if r["mode"] == "naive"}
    verdicts = []
    slowest = min(r["records_per_s"] for r in ours.values())
    verdicts.append(
        f"throughput  {slowest:,.0f} records/s on one core (target ≥ {TARGET_RECORDS_PER_S:,}): "
        + ("met" if slowest >= TARGET_RECORDS_PER_S else "MISSED")
    )
    for n, base in sorted(naive.items()):
        if n in ours:
            speedup = ours[n]["records_per_s"] / base["records_per_s"]
            verdicts.append(
                f"speed-up    {speedup:.1f}× the naive baseline at {n:,} records "
                f"(target ≥ {TARGET_SPEEDUP:.0f}×): "
                + ("met" if speedup >= TARGET_SPEEDUP else "MISSED")
            )
    for n, floor in sorted((r["records"], r) for r in results if r["mode"] == "floor"):
        if n in ours:
            share = ours[n]["records_per_s"] / floor["records_per_s"]
            verdicts.append(
                f"context     orjson.dumps + Parquet alone (no canonicalisation) runs at "
                f"{floor['records_per_s']:,.0f} records/s: ours does {share:.0%} of that"
            )
    if len(ours) > 1:
        small, large = ours[min(ours)], ours[max(ours)]
        ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
        verdicts.append(
            f"memory      peak RSS {small['peak_rss_mb']:.0f} MB at {small['records']:,} → "
            f"{large['peak_rss_mb']:.0f} MB at {large['records']:,} records (×{ratio:.2f}; "
            f"flat means ≤ ×{FLAT_RSS_SLACK}): " + ("met" if ratio <= FLAT_RSS_SLACK else "MISSED")
        )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_codec",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--records", type=int, nargs="+", default=[100_000, 1_000_000],
        help="record counts to convert, each in its own subprocess (default: 100000 1000000)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-records", type=int, default=None,
        help="records for the naive baseline (default: the smallest --records; 0 skips it)",
    )  # fmt: skip
    parser.add_argument(
        "--flush-records", type=int, default=50_000,
        help="records per Parquet file, as the archiver's --flush-records (default: 50000)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default=None,
        help="folder for the Parquet files, wiped after each run (default: a temporary folder)",
    )  # fmt: skip
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a target is missed (for CI)"
    )
    parser.add_argument("--worker", choices=("ours", "naive", "floor"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(n <= 0 for n in args.records) or args.flush_records <= 0:
        parser.error("--records and --flush-records must be > 0")

    if args.worker:
        pin = not args.no_pin
        print(json.dumps(measure(args.worker, args.records[0], args.flush_records, args.out, pin)))
        return 0

    root = args.out or tempfile.mkdtemp(prefix="bench-codec-")
    baseline = min(args.records) if args.baseline_records is None else args.baseline_records
    plan = [("ours", n) for n in args.records]
    if baseline:
        plan += [("naive", baseline), ("floor", baseline)]
    if baseline and baseline not in args.records:
        plan.append(("ours", baseline))
    print(
        f"stream records → Parquet ({args.flush_records:,} records per file), one core each, "
        f"each run in its own process; records/s excludes generating the records",
        flush=True,
    )
    results = []
    for mode, n in plan:
        print(f"  running {mode} with {n:,} records …", flush=True)
        results.append(_run_subprocess(mode, n, args, os.path.join(root, f"{mode}-{n}")))
    if not args.out:
        shutil.rmtree(root, ignore_errors=True)
    print()
    verdicts = _report(results)
    print()
    for line in verdicts:
        print(line)
    missed = any(line.endswith("MISSED") for line in verdicts)
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    raise SystemExit(main())
