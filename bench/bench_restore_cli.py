"""Benchmark ``ddb-replayer restore`` end to end (the real command, a subprocess) against a loop.

    python -m bench.bench_restore_cli [--items 20000] [--null-items 150000] [--repeat 1]
                                      [--skip-moto] [--skip-null] [--pad 0]
                                      [--write-workers P[xC]]

Builds a local archive of N items of ~300 bytes (the items of :mod:`bench.bench_restore_write`:
composite key, strings, numbers, a bool, binary, a map; ``--pad B`` adds a B-byte string to
each, for both sides: ``--pad 700`` makes them ~1 KB) as a base snapshot with its table
description and coverage — what ``ddb-archiver snapshot`` leaves — then, in the same run:

* **into moto** (its server, a process of its own on loopback): a plain one-thread
  ``batch_write_item`` loop (25 items per call, ``UnprocessedItems`` retried) into a fresh
  table, next to ``ddb-replayer restore --strategy replay`` of the same items into a new table,
  once with its verification and once with ``--no-verify``;
* **against the null endpoint** (:mod:`bench.null_dynamodb`, a process of its own, answering
  ``BatchWriteItem`` at once and passing every other operation to moto, where the target is
  created): the same loop, next to the restore with ``--no-verify`` (nothing is stored to
  verify), once as it starts by default — at the 4,000 write units/s of a new on-demand
  table — and once with ``--target-minutes 0.05``, which creates the target warm at the
  account's table quota (40,000 write units/s), as a table that takes anything should be
  described.

What each side includes: the loop is timed around its calls only, in a process of its own that
built its items before the clock started (its process start and item preparation are left
out). The restore is timed from starting the command to its exit: process start, imports,
planning, the fold in DuckDB, creating the table, starting the writer processes, the writes,
the verification (when on) and exit. From the command's own output lines (stdout, unbuffered,
time-stamped as they arrive) the bench splits that into: start and fold (until "restoring …"),
cutting the partitions and creating the table (until "write rate: …"), writing (until
"wrote …"; the command's own figure is printed too), verifying (until "verify: …") and exit.

Targets (issue #19): the command ≥ 0.9× the loop into moto at 20,000 items; ≥ 0.9× the loop
per writer process against the null endpoint at 150,000 items.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from archiver.format import coverage, layout, tables
from archiver.format.codec import canonical_json, key_of
from archiver.format.manifests import SnapshotWriter
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from bench.bench_restore_write import REGION, create_table, make_items, run_worker, start_moto
from demo import isolate_aws_env

TABLE = "bench"
TABLE_ID = "bench-table-id"
CREATED = datetime(2026, 1, 1, tzinfo=UTC)
SNAPSHOT_AT = CREATED + timedelta(minutes=10)
RESTORE_AT = CREATED + timedelta(minutes=20)
KEYS = ("pk", "sk")


# -- the archive -----------------------------------------------------------------------------


def build_archive(
    root: Path, items: list[dict[str, Any]], table: str = TABLE, table_id: str = TABLE_ID
) -> None:
    """A base snapshot of ``items`` valid at ``SNAPSHOT_AT``, the on-demand table's description
    and coverage up to ``RESTORE_AT`` (one table of the archive at ``root``)."""
    archive = Archive.open(str(root))
    arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/{table}"
    coverage.open_generation(
        archive, table, table_arn=arn, table_id=table_id, table_created_at=CREATED,
        covered_from=CREATED, from_table_creation=True, mode="poller",
    )  # fmt: skip
    coverage.advance_watermark(archive, table, table_id, RESTORE_AT + timedelta(minutes=1))
    description = {
        "TableName": table,
        "TableArn": arn,
        "TableId": table_id,
        "TableStatus": "ACTIVE",
        "CreationDateTime": CREATED,
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0},
    }
    tables.store_description(
        archive, tables.description_document(table, description, captured_at=CREATED, tags=[])
    )
    writer = SnapshotWriter(archive, table, layout.new_snapshot_id(SNAPSHOT_AT))
    for item in items:
        writer.add(canonical_json(key_of(item, KEYS)), canonical_json(item))
        if writer.full:
            writer.flush()
    writer.commit(
        table_id=table_id, method="scan", valid_from=SNAPSHOT_AT,
        log_from=SNAPSHOT_AT - timedelta(minutes=1), started_at=SNAPSHOT_AT - timedelta(minutes=1),
        finished_at=SNAPSHOT_AT, key_schema=[{"AttributeName": k, "KeyType": t}
                                             for k, t in zip(KEYS, ("HASH", "RANGE"), strict=True)],
        source="bench",
    )  # fmt: skip


# -- the command -----------------------------------------------------------------------------


def replayer_command() -> list[str]:
    """``ddb-replayer`` as installed beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("ddb-replayer")
    return [str(script)] if script.exists() else [sys.executable, "-m", "replayer.cli"]


STEPS = (
    ("start, plan, fold", "restoring "),
    ("partition, create table", "write rate: "),
    ("write", "wrote "),
    ("verify", "verify: "),
)


@dataclass
class CliRun:
    """One run of the command: wall time, when each step's line appeared, its own figures."""

    seconds: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)
    written_seconds: float = 0.0
    processes: int = 0
    lines: list[str] = field(default_factory=list)

    def steps(self) -> list[tuple[str, float]]:
        out, last = [], 0.0
        for name, _ in STEPS:
            if name in self.marks:
                out.append((name, self.marks[name] - last))
                last = self.marks[name]
        out.append(("exit", self.seconds - last))
        return out


WORKERS: list[str] = []  # --write-workers passed on, when the bench is given one


def run_restore(endpoint: str, archive: Path, target: str, *extra: str) -> CliRun:
    """``ddb-replayer restore`` into ``target``, timed from start to exit."""
    command = [
        *replayer_command(), "restore", "--source-table-name", TABLE,
        "--target-table-name", target, "--archive", str(archive),
        "--restore-date-time", iso_ms(RESTORE_AT), "--strategy", "replay", *WORKERS, *extra,
    ]  # fmt: skip
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "PYTHONUNBUFFERED": "1"}
    run = CliRun()
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        now = time.perf_counter() - started
        run.lines.append(line.rstrip())
        for name, prefix in STEPS:
            if line.startswith(prefix) and name not in run.marks:
                run.marks[name] = now
        found = re.match(r"wrote [\d,]+ items .* in ([\d.]+) s \(.* with (\d+) process", line)
        if found:
            run.written_seconds = float(found.group(1))
            run.processes = int(found.group(2))
    err = proc.stderr.read()
    code = proc.wait()
    run.seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"restore exited {code}:\n" + "\n".join(run.lines) + "\n" + err)
    return run


class Best:
    """The best rate of each contender over the runs (items/s), and its processes."""

    def __init__(self) -> None:
        self.rates: dict[str, float] = {}
        self.processes: dict[str, int] = {}

    def add(self, name: str, rate: float, processes: int = 1) -> None:
        if rate > self.rates.get(name, 0.0):
            self.rates[name] = rate
            self.processes[name] = processes

    def summary(self, runs: int, per_process: bool = False) -> None:
        loop = self.rates["loop"]
        print(f"  best of {runs} run(s):")
        for name, rate in self.rates.items():
            line = f"    {name:<46} {rate:9,.0f} items/s  {rate / loop:4.2f}× loop"
            processes = self.processes[name]
            if per_process and name != "loop":
                line += f"; per process ({processes}): {rate / processes / loop:4.2f}× loop"
            print(line)


def report(name: str, items: int, run: CliRun, loop_rate: float, best: Best) -> float:
    rate = items / run.seconds
    best.add(name, rate, run.processes)
    best.add(f"{name} (write phase)", items / max(run.written_seconds, 1e-9), run.processes)
    steps = ", ".join(f"{step} {seconds:.2f}" for step, seconds in run.steps())
    print(f"  {name:<34} {run.seconds:7.2f} s {rate:9,.0f} items/s  {rate / loop_rate:4.2f}× loop")
    print(f"  {'':<34} steps (s): {steps}")
    print(
        f"  {'':<34} its write phase: {run.written_seconds:.2f} s, "
        f"{items / max(run.written_seconds, 1e-9):,.0f} items/s with {run.processes} process(es) "
        f"= {items / max(run.written_seconds, 1e-9) / loop_rate:.2f}× loop"
    )
    for line in run.lines:
        if line.startswith("write rate: "):
            print(f"  {'':<34} {line}")
    return rate


# -- runs ------------------------------------------------------------------------------------


def bench_moto(n: int, archive: Path, repeat: int, pad: int) -> None:
    moto, endpoint = start_moto()
    try:
        isolate_aws_env(endpoint)
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
        print(f"into moto, {n:,} items:")
        best = Best()
        for run in range(repeat):
            table = f"loop-{run}"
            create_table(ddb, table)
            loop = run_worker("loop", endpoint, table, n, pad)
            ddb.delete_table(TableName=table)
            loop_rate = n / loop
            best.add("loop", loop_rate)
            print(f"  run {run + 1}: batch_write_item loop {loop:7.2f} s {loop_rate:9,.0f} items/s")
            for extra in ((), ("--no-verify",)):
                target = f"restored-{run}-{len(extra)}"
                done = run_restore(endpoint, archive, target, *extra)
                label = "ddb-replayer restore" + (" --no-verify" if extra else "")
                report(label, n, done, loop_rate, best)
                if not extra:
                    # What verification's scan costs here: moto's own scan, one thread.
                    started = time.perf_counter()
                    pages = ddb.get_paginator("scan").paginate(TableName=target)
                    scanned = sum(page["Count"] for page in pages)
                    print(f"  {'':<34} (a plain one-thread scan of the {scanned:,} items: "
                          f"{time.perf_counter() - started:.2f} s)")  # fmt: skip
                ddb.delete_table(TableName=target)
        best.summary(repeat)
        print("  target: ddb-replayer restore --no-verify ≥ 0.9× loop")
    finally:
        moto.terminate()
        moto.wait()


@contextlib.contextmanager
def null_endpoint_over_moto() -> Iterator[str]:
    """The null endpoint in its own process, forwarding table calls to a moto server; the AWS
    settings of this process point at it. Yields its URL."""
    moto, moto_url = start_moto()
    null = subprocess.Popen(
        [sys.executable, "-m", "bench.null_dynamodb", "--forward", moto_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert null.stdout is not None
        endpoint = null.stdout.readline().strip()
        isolate_aws_env(endpoint)
        yield endpoint
    finally:
        null.terminate()
        null.wait()
        moto.terminate()
        moto.wait()


def bench_null(n: int, archive: Path, repeat: int, pad: int) -> None:
    with null_endpoint_over_moto() as endpoint:
        print(f"against the null endpoint, {n:,} items:")
        best = Best()
        for run in range(repeat):
            loop = run_worker("loop", endpoint, "null", n, pad)
            loop_rate = n / loop
            best.add("loop", loop_rate)
            print(f"  run {run + 1}: batch_write_item loop {loop:7.2f} s {loop_rate:9,.0f} items/s")
            for label, extra in (
                ("restore, default start", ()),
                ("restore, --target-minutes 0.05", ("--target-minutes", "0.05")),
            ):
                done = run_restore(endpoint, archive, f"null-{run}-{len(extra)}", "--no-verify",
                                   *extra)  # fmt: skip
                rate = report(label, n, done, loop_rate, best)
                per_process = rate / max(done.processes, 1)
                print(
                    f"  {'':<34} per process: {per_process:,.0f} items/s = "
                    f"{per_process / loop_rate:.2f}× loop"
                )
        best.summary(repeat, per_process=True)
        print("  target: restore, --target-minutes 0.05 ≥ 0.9× loop per process (the default "
              "start is what a new on-demand table takes: 4,000 write units/s)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000, help="items restored into moto")
    parser.add_argument(
        "--null-items", type=int, default=150_000, help="items against the null endpoint"
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-moto", action="store_true")
    parser.add_argument("--skip-null", action="store_true")
    parser.add_argument("--pad", type=int, default=0, help="bytes added to every item")
    parser.add_argument("--write-workers", metavar="P[xC]", help="passed to the command")
    args = parser.parse_args(argv)
    if args.write_workers:
        WORKERS[:] = ["--write-workers", args.write_workers]
    size = len(canonical_json(make_items(1, args.pad)[0]))
    workers = args.write_workers or "its default writer processes"
    print(f"{os.cpu_count()} cores; items of ~{size} bytes (canonical DynamoDB JSON); the "
          f"command runs {workers}")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-restore-cli-"))
    try:
        if not args.skip_moto:
            archive = work / "moto"
            build_archive(archive, make_items(args.items, args.pad))
            bench_moto(args.items, archive, args.repeat, args.pad)
        if not args.skip_null:
            archive = work / "null"
            build_archive(archive, make_items(args.null_items, args.pad))
            bench_null(args.null_items, archive, args.repeat, args.pad)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
