"""Benchmark: converting a DynamoDB incremental export into change rows (not a test).

    python -m bench.bench_incremental [--lines N ...] [--no-pin]

Writes, for each N, an incremental export of N lines in AWS's layout to local disk
(``manifest-summary.json`` version 2023-08-01, ``manifest-files.json`` with MD5s, 8 gzip data
files of ``{"Metadata":{"WriteTimestampMicros":…},"Keys":…,"NewImage":…,"OldImage":…}`` lines:
~300-byte items holding every attribute type, 75 % with an old image, 10 % deletes) and a full
export of N items of the same shape. Then, each in its own subprocess pinned to one CPU (so its
peak RSS is its own), it converts

* the incremental export with :func:`archiver.format.exports.incremental.convert_incremental`
  (checks the manifests and MD5s, canonicalises keys and both images, writes Parquet change files
  and the window's commit record), and
* the full export with :func:`archiver.format.exports.full.convert_export` — the full-export
  conversion rate in the same run, for comparison.

Lines per CPU-second are the per-core rate (wall time also counts other processes' turns on a
shared machine; both are printed). Memory must stay flat as the export grows 10×. Generating
the exports is not timed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

from archiver.format.exports.full import convert_export, read_export
from archiver.format.exports.incremental import convert_incremental, describe_export
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from bench.bench_codec import CITIES, FIRST, LAST, WORDS

TABLE = "customers"
TABLE_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"
TABLE_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
FILES = 8
START = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = timedelta(hours=24)
FLAT_RSS_SLACK = 1.25
LIVE = {
    "TableArn": TABLE_ARN,
    "TableId": TABLE_ID,
    "TableName": TABLE,
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
}


def _b64(rng: random.Random, size: int) -> str:
    return base64.b64encode(rng.randbytes(size)).decode()


def _image(rng: random.Random, customer: int) -> dict[str, Any]:
    """One ~300-byte item in export form (binary as base64 text, sets in no order)."""
    cents = rng.randrange(1, 10_000_000)
    return {
        "pk": {"S": f"c#{customer:07d}"},
        "sk": {"N": str(customer % 97)},
        "name": {"S": f"{rng.choice(FIRST)} {rng.choice(LAST)}"},
        "balance": {"N": f"{cents // 100}.{cents % 100:02d}".rstrip("0").rstrip(".")},
        "vip": {"BOOL": rng.random() < 0.8},
        "ref": {"NULL": True},
        "pic": {"B": _b64(rng, 12)},
        "tags": {"SS": rng.sample(WORDS, k=rng.randint(1, 3))},
        "nums": {"NS": [str(n) for n in rng.sample(range(-100, 10_000), k=rng.randint(1, 3))]},
        "keys": {"BS": sorted({_b64(rng, rng.randint(3, 6)) for _ in range(rng.randint(1, 2))})},
        "addr": {
            "M": {
                "city": {"S": rng.choice(CITIES)},
                "geo": {"L": [{"N": "51.5072"}, {"N": "-0.1276"}]},
            }
        },
    }


def _write_export(folder: str, lines_of: Any, n: int, summary: dict[str, Any]) -> None:
    export_id = os.path.basename(folder)
    os.makedirs(f"{folder}/data", exist_ok=True)
    entries = []
    counts = [0] * FILES
    with contextlib.ExitStack() as stack:
        handles = [
            stack.enter_context(gzip.open(f"{folder}/data/part-{i}.json.gz", "wb", compresslevel=1))
            for i in range(FILES)
        ]
        for i, line in enumerate(lines_of(n)):
            handles[i % FILES].write(line + b"\n")
            counts[i % FILES] += 1
    for i in range(FILES):
        with open(f"{folder}/data/part-{i}.json.gz", "rb") as data:
            digest = hashlib.md5(data.read(), usedforsecurity=False).digest()
        entries.append(
            {
                "itemCount": counts[i],
                "md5Checksum": base64.b64encode(digest).decode(),
                "etag": digest.hex(),
                "dataFileS3Key": f"bench/AWSDynamoDB/{export_id}/data/part-{i}.json.gz",
            }
        )
    with open(f"{folder}/manifest-files.json", "wb") as out:
        out.write(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    summary = {
        "version": "2020-06-30",
        "exportArn": f"{TABLE_ARN}/export/{export_id}",
        "tableArn": TABLE_ARN,
        "tableId": TABLE_ID,
        "itemCount": n,
        "outputFormat": "DYNAMODB_JSON",
        "startTime": iso_ms(START),
        "endTime": iso_ms(START),
        **summary,
    }
    with open(f"{folder}/manifest-summary.json", "wb") as out:
        out.write(orjson.dumps(summary))


def _incremental_lines(n: int) -> Any:
    rng = random.Random(7)
    start_us = int(START.timestamp() * 1_000_000)
    span_us = int(WINDOW.total_seconds() * 1_000_000)
    for customer in range(n):
        keys = {"pk": {"S": f"c#{customer:07d}"}, "sk": {"N": str(customer % 97)}}
        doc: dict[str, Any] = {
            "Metadata": {"WriteTimestampMicros": {"N": str(start_us + rng.randrange(span_us))}},
            "Keys": keys,
        }
        roll = rng.random()
        if roll < 0.75:
            doc["OldImage"] = _image(rng, customer)
        if roll < 0.9:
            doc["NewImage"] = _image(rng, customer)
        else:
            doc["OldImage"] = _image(rng, customer)
        yield orjson.dumps(doc)


def _full_lines(n: int) -> Any:
    rng = random.Random(7)
    for customer in range(n):
        yield orjson.dumps({"Item": _image(rng, customer)})


def build(root: str, n: int) -> tuple[str, str]:
    """The two export folders for ``n`` lines (built once, reused)."""
    incremental = f"{root}/{n}/AWSDynamoDB/01767225600000-incr{n}"
    full = f"{root}/{n}/AWSDynamoDB/01767225600000-full{n}"
    if not os.path.exists(f"{incremental}/manifest-summary.json"):
        _write_export(
            incremental,
            _incremental_lines,
            n,
            {
                "version": "2023-08-01",
                "exportType": "INCREMENTAL_EXPORT",
                "exportFromTime": iso_ms(START),
                "exportToTime": iso_ms(START + WINDOW),
                "outputView": "NEW_AND_OLD_IMAGES",
            },
        )
    if not os.path.exists(f"{full}/manifest-summary.json"):
        _write_export(
            full, _full_lines, n, {"exportTime": iso_ms(START), "exportType": "FULL_EXPORT"}
        )
    return incremental, full


# -- one measurement (in a subprocess) -----------------------------------------------------


def _pin_to_one_cpu() -> int | None:
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def measure(mode: str, folder: str, out: str, pin: bool) -> dict[str, Any]:
    cpu = _pin_to_one_cpu() if pin else None
    archive = Archive.open(out)
    store = Archive.open(folder)
    started, started_cpu = time.perf_counter(), time.process_time()
    if mode == "incremental":
        window = convert_incremental(
            archive, TABLE, describe_export(read_export(store, "INCREMENTAL_EXPORT")), live=LIVE
        ).window
        lines, files = window.item_count, len(window.files)
    else:
        manifest = convert_export(archive, TABLE, read_export(store), live=LIVE).manifest
        lines, files = int(manifest["item_count"]), len(manifest["files"])
    wall, cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    return {
        "mode": mode,
        "lines": lines,
        "cpu_seconds": cpu_s,
        "seconds": wall,
        "lines_per_s": lines / cpu_s,
        "lines_per_wall_s": lines / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "files": files,
        "cpu": cpu,
    }


def _run(mode: str, folder: str, no_pin: bool) -> dict[str, Any]:
    out = tempfile.mkdtemp(prefix="bench-incremental-out-")
    command = [
        sys.executable,
        "-m",
        "bench.bench_incremental",
        "--worker",
        mode,
        "--folder",
        folder,
        "--out",
        out,
    ]
    if no_pin:
        command.append("--no-pin")
    try:
        done = subprocess.run(command, check=True, capture_output=True, text=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--keep", help="build the exports here and keep them (default: a tmp dir)")
    parser.add_argument("--worker", choices=("incremental", "full"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.folder, args.out, not args.no_pin)))
        return 0
    root = args.keep or tempfile.mkdtemp(prefix="bench-incremental-")
    results = []
    try:
        for n in args.lines:
            started = time.perf_counter()
            incremental, full = build(root, n)
            print(
                f"built exports of {n:,} lines in {time.perf_counter() - started:.1f} s", flush=True
            )
            for mode, folder in (("incremental", incremental), ("full", full)):
                results.append(_run(mode, folder, args.no_pin))
                r = results[-1]
                print(
                    f"{r['mode']:<12} {r['lines']:>10,} lines  {r['lines_per_s']:>9,.0f} "
                    f"lines/s (cpu)  {r['lines_per_wall_s']:>9,.0f} lines/s (wall)  "
                    f"peak RSS {r['peak_rss_mb']:>6.0f} MB  {r['files']} file(s)",
                    flush=True,
                )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    incremental_runs = [r for r in results if r["mode"] == "incremental"]
    by_n = {r["lines"]: r for r in incremental_runs}
    for r in incremental_runs:
        full = next(f for f in results if f["mode"] == "full" and f["lines"] == r["lines"])
        print(
            f"at {r['lines']:,} lines: incremental {r['lines_per_s']:,.0f} lines/s vs full "
            f"export {full['lines_per_s']:,.0f} items/s per core "
            f"({r['lines_per_s'] / full['lines_per_s']:.2f}×)"
        )
    if len(by_n) >= 2:
        small, large = by_n[min(by_n)], by_n[max(by_n)]
        flat = large["peak_rss_mb"] <= small["peak_rss_mb"] * FLAT_RSS_SLACK
        print(
            f"memory      peak RSS {small['peak_rss_mb']:.0f} MB at {small['lines']:,} lines, "
            f"{large['peak_rss_mb']:.0f} MB at {large['lines']:,}: "
            + ("flat" if flat else "NOT flat")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
