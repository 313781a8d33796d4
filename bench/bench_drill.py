"""Benchmark ``ddb-replayer drill``: fold the archive at T, read AWS's copy, compare them.

    python -m bench.bench_drill [--items 200000] [--near 2000] [--memory-limit 1GB]
                                [--out bench-out] [--skip-cli]

Generates (once; reused while the parameters match) under ``bench-out/drill-<items>-<near>/``:

* an **archive** of a table of ``--items`` items of ~300 bytes (composite key, strings,
  numbers, a bool, a string set, a map, a list): a base snapshot written by the archiver's
  ``SnapshotWriter`` with its coverage (the log starting before the base, not at table
  creation), and a **change log around T** written by ``changefiles.write_builder`` as the
  poller writes it — ``--near`` changes (85 % modifies, 10 % deletes, 5 % new items), one per
  key, spread evenly over ``T ± 5 min``, so a fifth of them fall within the export's 60 s
  margin of T;
* **AWS's copy**: a full export at T in AWS's layout on local disk
  (``export/AWSDynamoDB/<id>/``: ``manifest-summary.json``, ``manifest-files.json`` with each
  data file's item count and MD5, gzip DynamoDB JSON lines in several data files) — the state
  at T, except that each key written within 60 s of T is shown as of its own instant within
  that minute (the fuzz a real export has, as the tests' export double models it), so the
  result is identical only because the margin leaves those keys out.

Then, each in a subprocess of its own so that peak RSS is the drill's alone:

* **the drill**: :func:`replayer.drill.run.run_drill` with AWS's side read from that folder
  through :func:`replayer.drill.native.folder_copy` — the path an export takes once it is
  written: manifests read, each data file gunzipped, its MD5 and count checked, every item
  checked and made canonical, loaded into DuckDB. Printed: the fold, the native read and the
  compare as the drill measures them, the whole call, items/s end to end, peak RSS;
* **the command** (unless ``--skip-cli``): ``ddb-replayer drill --at T`` run in-process by the
  CLI's own ``main`` (parsing, the drillable window, the price, the drill, its printout and
  record), timed from the child's start (interpreter, imports) to its exit. Not feasible
  without an S3 (moto or AWS): the command requests an export (``ExportTableToPointInTime``
  into S3) and polls it, so here DynamoDB's calls (``DescribeContinuousBackups``,
  ``DescribeTable``) are answered by a stub and the export request and wait are replaced by
  the folder already written — left out are the request, AWS's minutes of exporting, and
  reading from S3 rather than local disk.

Figures only: a benchmark never asserts timings. It says whether the drill came out identical
(it should: a difference means the generator or the drill is wrong).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from archiver.format import coverage, layout
from archiver.format.changefiles import RunBuilder, write_builder
from archiver.format.codec import canonical_json, key_of, normalize_item
from archiver.format.manifests import SnapshotWriter
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms

TABLE = "drilled"
TABLE_ID = "bench-drill-table-id"
REGION = "us-east-1"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:123456789012:table/{TABLE}"
LABEL = "2026-01-01T00:00:00.000"
STREAM_ARN = f"{TABLE_ARN}/stream/{LABEL}"
KEYS = ("pk", "sk")
KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
CREATED = datetime(2026, 1, 1, tzinfo=UTC)
BASE_AT = CREATED + timedelta(hours=1)
AT = BASE_AT + timedelta(minutes=30)  # T
SPREAD = timedelta(minutes=5)  # the changes fall within T ± this
MARGIN = timedelta(seconds=60)  # the export's
WATERMARK = AT + timedelta(minutes=10)
EXPORT_ID = "01767231000000-0bench00"
EXPORT_PREFIX = "drill"
ITEMS_PER_DATA_FILE = 50_000


# -- the data --------------------------------------------------------------------------------


def make_item(i: int, version: int = 0) -> dict[str, Any]:
    """Item ``i`` (~300 bytes of DynamoDB JSON), as it is at ``version``."""
    return {
        "pk": {"S": f"customer#{i % 997:04d}"},
        "sk": {"N": str(i)},
        "email": {"S": f"user{i}@example.com"},
        "name": {"S": f"Customer {i}"},
        "note": {"S": ("lorem ipsum dolor sit amet " * 2)[: 20 + i % 20]},
        "balance": {"N": f"{(i * 37 + version * 101) % 100000}.5"},
        "active": {"BOOL": (i + version) % 3 == 0},
        "tags": {"SS": sorted({f"t{i % 7}", f"t{(i + version) % 11}", "vip"})},
        "address": {"M": {"city": {"S": "Springfield"}, "zip": {"N": str(10000 + i % 89999)}}},
        "history": {"L": [{"N": str(version)}, {"S": f"v{version}"}]},
    }


def key_text(item: dict[str, Any]) -> str:
    return canonical_json(key_of(item, KEYS))


def item_text(item: dict[str, Any]) -> str:
    return canonical_json(normalize_item(item))


def near_changes(items: int, near: int) -> list[tuple[datetime, int, str]]:
    """``(event time, item number, MODIFY|REMOVE|INSERT)``: one change per key, evenly over
    ``T ± SPREAD``, on keys spread through the table (new items numbered from ``items``)."""
    out = []
    step = max(1, items // max(1, near))
    span_ms = int(2 * SPREAD.total_seconds() * 1000)
    for n in range(near):
        when = AT - SPREAD + timedelta(milliseconds=n * span_ms // max(1, near - 1))
        kind = "REMOVE" if n % 20 in (3, 13) else "INSERT" if n % 20 == 7 else "MODIFY"
        number = items + n if kind == "INSERT" else (n * step + n % step) % items
        out.append((when, number, kind))
    return out


def export_instant(number: int) -> timedelta:
    """Where within ``±MARGIN`` of T the export saw item ``number`` (uniform, fixed per key)."""
    digest = hashlib.sha256(f"{EXPORT_ID}\0{number}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return (2 * fraction - 1) * MARGIN


# -- the archive and the export ----------------------------------------------------------------


def generate(root: Path, items: int, near: int) -> None:
    archive = Archive.open(str(root / "archive"))
    started = time.monotonic()
    coverage.open_generation(
        archive, TABLE, table_arn=TABLE_ARN, table_id=TABLE_ID, table_created_at=CREATED,
        covered_from=BASE_AT - timedelta(minutes=2), from_table_creation=False, mode="poller",
    )  # fmt: skip
    writer = SnapshotWriter(archive, TABLE, layout.new_snapshot_id(BASE_AT))
    for i in range(items):
        item = make_item(i)
        writer.add(key_text(item), item_text(item))
        if writer.full:
            writer.flush()
    writer.commit(
        table_id=TABLE_ID, method="scan", valid_from=BASE_AT,
        log_from=BASE_AT - timedelta(minutes=1), started_at=BASE_AT - timedelta(minutes=1),
        finished_at=BASE_AT, key_schema=KEY_SCHEMA, source="bench",
    )  # fmt: skip
    print(f"  base of {items:,} items in {time.monotonic() - started:.1f} s", file=sys.stderr)

    changes = near_changes(items, near)
    builder = RunBuilder(stream_arn=STREAM_ARN, shard_id="shardId-00000001", table_id=TABLE_ID,
                         origin="stream")  # fmt: skip
    records = []
    for seq, (when, number, kind) in enumerate(changes, 10**20):
        old, new = make_item(number), make_item(number, version=1)
        ddb: dict[str, Any] = {
            "ApproximateCreationDateTime": when,
            "Keys": key_of(new, KEYS),
            "SequenceNumber": str(seq),
            "SizeBytes": 300,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if kind != "REMOVE":
            ddb["NewImage"] = new
        if kind != "INSERT":
            ddb["OldImage"] = old
        records.append({"eventID": f"ev-{seq}", "eventName": kind, "dynamodb": ddb})
    builder.extend(records)
    write_builder(archive, TABLE, builder)
    coverage.advance_watermark(archive, TABLE, TABLE_ID, WATERMARK)

    # The export at T: the base, each changed key as of T — or, within the margin, as of
    # the export's own instant for that key.
    changed: dict[int, dict[str, Any] | None] = {}
    for when, number, kind in changes:
        seen = AT + (export_instant(number) if abs(when - AT) <= MARGIN else timedelta(0))
        if when <= seen:
            changed[number] = None if kind == "REMOVE" else make_item(number, version=1)
    write_export(root / "export", items, changed)
    print(f"generated in {time.monotonic() - started:.1f} s", file=sys.stderr)


def _export_items(items: int, changed: dict[int, dict[str, Any] | None]) -> Iterator[bytes]:
    for i in range(items):
        item = changed[i] if i in changed else make_item(i)
        if item is not None:
            yield orjson.dumps({"Item": item})
    for i in sorted(n for n in changed if n >= items):
        item = changed[i]
        if item is not None:
            yield orjson.dumps({"Item": item})


def write_export(root: Path, items: int, changed: dict[int, dict[str, Any] | None]) -> None:
    """A completed full export in AWS's layout (AWS-FORMATS.md), data files checked by MD5."""
    folder = root / layout.AWS_EXPORTS / EXPORT_ID
    (folder / layout.EXPORT_DATA).mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    lines: list[bytes] = []
    count = 0

    def flush() -> None:
        name = f"{layout.EXPORT_DATA}/{len(entries):05d}-bench.json.gz"
        body = gzip.compress(b"\n".join(lines) + b"\n", compresslevel=6)
        (folder / name).write_bytes(body)
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        entries.append({
            "itemCount": len(lines), "md5Checksum": md5, "etag": hashlib.md5(
                body, usedforsecurity=False).hexdigest(),
            "dataFileS3Key": f"{EXPORT_PREFIX}/{layout.AWS_EXPORTS}/{EXPORT_ID}/{name}",
        })  # fmt: skip
        lines.clear()

    for line in _export_items(items, changed):
        lines.append(line)
        count += 1
        if len(lines) >= ITEMS_PER_DATA_FILE:
            flush()
    if lines:
        flush()
    (folder / layout.EXPORT_FILES).write_bytes(b"\n".join(orjson.dumps(e) for e in entries))
    summary = {
        "version": "2020-06-30",
        "exportArn": f"{TABLE_ARN}/export/{EXPORT_ID}",
        "startTime": iso_ms(AT + timedelta(minutes=1)),
        "endTime": iso_ms(AT + timedelta(minutes=9)),
        "tableArn": TABLE_ARN,
        "tableId": TABLE_ID,
        "exportTime": iso_ms(AT),
        "s3Bucket": "bench",
        "s3Prefix": EXPORT_PREFIX,
        "s3SseAlgorithm": "AES256",
        "manifestFilesS3Key": f"{EXPORT_PREFIX}/{layout.AWS_EXPORTS}/{EXPORT_ID}/"
        f"{layout.EXPORT_FILES}",
        "billedSizeBytes": sum(p.stat().st_size for p in (folder / layout.EXPORT_DATA).iterdir()),
        "itemCount": count,
        "outputFormat": "DYNAMODB_JSON",
        "exportType": "FULL_EXPORT",
    }
    (folder / layout.EXPORT_SUMMARY).write_bytes(orjson.dumps(summary))


def export_folder(root: Path) -> Archive:
    return Archive.open(str(root / "export" / layout.AWS_EXPORTS / EXPORT_ID))


# -- the children ------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_library(root: Path, memory_limit: str) -> dict[str, Any]:
    """``run_drill`` with AWS's side read from the export folder (this process)."""
    from archiver.format.exports.full import read_export
    from replayer.drill import native
    from replayer.drill.run import run_drill
    from replayer.engines.fold import FoldSettings

    archive = Archive.open(str(root / "archive"))
    started = time.monotonic()
    result = run_drill(
        archive,
        TABLE,
        AT,
        method="export",
        native_side=lambda when: native.folder_copy(read_export(export_folder(root)), list(KEYS)),
        fold_settings=FoldSettings(memory_limit=memory_limit),
    )
    total = time.monotonic() - started
    return {
        "total_s": total,
        "fold_s": result.fold_seconds,
        "native_s": result.native_seconds,
        "compare_s": result.compare_seconds,
        "compared": result.items_compared,
        "not_comparable": result.not_comparable,
        "differences": result.differences,
        "peak_rss_mb": _peak_rss_mb(),
    }


class StubDynamoDB:
    """What ``drill`` asks DynamoDB before and around the export: PITR's window and the table."""

    def __init__(self, table_bytes: int) -> None:
        self.table_bytes = table_bytes

    def describe_continuous_backups(self, TableName: str) -> dict[str, Any]:
        return {
            "ContinuousBackupsDescription": {
                "ContinuousBackupsStatus": "ENABLED",
                "PointInTimeRecoveryDescription": {
                    "PointInTimeRecoveryStatus": "ENABLED",
                    "RecoveryPeriodInDays": 35,
                    "EarliestRestorableDateTime": CREATED,
                    "LatestRestorableDateTime": WATERMARK,
                },
            }
        }

    def describe_table(self, TableName: str) -> dict[str, Any]:
        return {
            "Table": {
                "TableName": TABLE,
                "TableArn": TABLE_ARN,
                "TableId": TABLE_ID,
                "KeySchema": KEY_SCHEMA,
                "TableSizeBytes": self.table_bytes,
            }
        }


def run_cli(root: Path, memory_limit: str, items: int) -> dict[str, Any]:
    """``ddb-replayer drill --at T`` through the CLI's ``main``, with the stub and the folder."""
    from archiver.aws.clients import AwsSettings
    from archiver.format.exports.full import read_export
    from replayer import cli
    from replayer.drill import native

    stub = StubDynamoDB(items * 300)
    AwsSettings.client = lambda self, service, **kwargs: stub  # type: ignore[method-assign,assignment]

    def staging(*args: Any, **kwargs: Any) -> Archive:
        return Archive.open(str(root / "staging"))  # never written: the export is there

    def export(ddb: Any, arn: str, table: str, when: datetime, store: Archive,
               **kwargs: Any) -> native.NativeCopy:  # fmt: skip
        return native.folder_copy(read_export(export_folder(root)), list(KEYS))

    native.staging_store = staging  # type: ignore[assignment]
    native.export_copy = export  # type: ignore[assignment]
    started = time.monotonic()
    code = cli.main(["drill", "--table-name", TABLE, "--archive", str(root / "archive"),
                     "--at", iso_ms(AT), "--memory-limit", memory_limit])  # fmt: skip
    return {"code": code, "main_s": time.monotonic() - started, "peak_rss_mb": _peak_rss_mb()}


def _child(mode: str, args: argparse.Namespace) -> tuple[dict[str, Any], float, list[str]]:
    """A child's figures (its last stdout line), its wall time, and its other lines."""
    cmd = [sys.executable, "-m", "bench.bench_drill", "--items", str(args.items), "--near",
           str(args.near), "--memory-limit", args.memory_limit, "--out", args.out,
           "--child", mode]  # fmt: skip
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    started = time.monotonic()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    wall = time.monotonic() - started
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]), wall, lines[:-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200_000, help="items in the table at T")
    parser.add_argument("--near", type=int, default=2_000, help="changes within T ± 5 minutes")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit for the fold")
    parser.add_argument("--out", default="bench-out", help="where the generated files go")
    parser.add_argument("--skip-cli", action="store_true", help="skip the command's run")
    parser.add_argument("--child", choices=["library", "cli"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = Path(args.out) / f"drill-{args.items}-{args.near}"
    if args.child == "library":
        print(json.dumps(run_library(root, args.memory_limit)))
        return 0
    if args.child == "cli":
        figures = run_cli(root, args.memory_limit, args.items)
        print(json.dumps(figures))
        return 0
    marker = root / "_generated"
    if not marker.exists():
        print(f"generating {args.items:,} items and {args.near:,} changes in {root} …",
              file=sys.stderr)  # fmt: skip
        generate(root, args.items, args.near)
        marker.write_text("ok\n")
    drill, _, _ = _child("library", args)
    rest = drill["total_s"] - drill["fold_s"] - drill["native_s"] - drill["compare_s"]
    items = drill["compared"] + drill["not_comparable"]
    print(f"table   {args.items:,} items of ~300 bytes + {args.near:,} changes within T ± "
          f"{SPREAD.total_seconds():g} s; AWS's copy: an export folder of {items:,} items "
          "(gzip DynamoDB JSON, fuzzed ±60 s)")  # fmt: skip
    print(f"drill   run_drill {drill['total_s']:.2f} s: fold {drill['fold_s']:.2f} s, native "
          f"read {drill['native_s']:.2f} s, compare {drill['compare_s']:.2f} s, plan and "
          f"record {rest:.2f} s")  # fmt: skip
    print(f"        {items / drill['total_s']:,.0f} items/s end to end, peak RSS "
          f"{drill['peak_rss_mb']:.0f} MB; {drill['compared']:,} compared, "
          f"{drill['not_comparable']:,} not comparable, "
          f"{drill['differences']} differences")  # fmt: skip
    if not args.skip_cli:
        cli_run, cli_wall, lines = _child("cli", args)
        print(f"command ddb-replayer drill (stub DynamoDB, export folder on disk): exit "
              f"{cli_run['code']}, {cli_wall:.2f} s from process start to exit "
              f"({cli_run['main_s']:.2f} s in main) → {items / cli_wall:,.0f} items/s, peak RSS "
              f"{cli_run['peak_rss_mb']:.0f} MB")  # fmt: skip
        for line in lines:
            print(f"        | {line}")
    if drill["differences"]:
        print("DIFFERENCES: the generated copy and the archive disagree (a bug in either)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
