"""Benchmark ``ddb-replayer restore`` of several tables, side by side against one after another.

    python -m bench.bench_several_tables [--tables 3] [--items 20000] [--write-workers P[xC]]

Builds one local archive of K tables of N items each (the items of
:mod:`bench.bench_restore_write`, ~300 bytes; each table a base snapshot with its description
and coverage, as :func:`bench.bench_restore_cli.build_archive` makes one), then restores all K
tables to one instant with the real command (a subprocess, ``--no-verify``) against the null
endpoint (:mod:`bench.null_dynamodb`, a process of its own, answering ``BatchWriteItem`` at once
and passing every other call to moto's server, where the targets are created):

* one table alone (the reference: what the biggest table takes);
* the K tables with ``--parallel-tables 1`` (one after the other, as before side by side);
* the K tables with ``--parallel-tables K`` (side by side, a process per table).

Each is timed from starting the command to its exit. The targets start at what a new on-demand
table takes (4,000 write units/s, growing while calls succeed), as on AWS: that per-table
limit, not the endpoint, is what side by side multiplies. Prints the seconds, items/s and the
command's own summary lines; the target (issue #21): K tables side by side take about as long
as one alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from archiver.format.timefmt import iso_ms
from bench.bench_restore_cli import (
    RESTORE_AT,
    build_archive,
    null_endpoint_over_moto,
    replayer_command,
)
from bench.bench_restore_write import make_items


def restore(endpoint: str, archive: Path, tables: list[str], suffix: str, *extra: str) -> float:
    """The command over ``tables`` into ``<table><suffix>``: its wall seconds (its summary
    lines are printed)."""
    command = [*replayer_command(), "restore", "--archive", str(archive), "--restore-date-time",
               iso_ms(RESTORE_AT), "--strategy", "replay", "--no-verify",
               f"--target-table-suffix={suffix}", *extra]  # fmt: skip
    for table in tables:
        command += ["--source-table-name", table]
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"restore exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    lines = done.stdout.splitlines()
    for line in lines[-len(tables) - 1 :]:
        print(f"      {line}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=3)
    parser.add_argument("--items", type=int, default=20_000, help="items per table")
    parser.add_argument("--write-workers", metavar="P[xC]", help="passed to the command")
    args = parser.parse_args(argv)
    extra = ["--write-workers", args.write_workers] if args.write_workers else []
    tables = [f"t{i}" for i in range(args.tables)]
    work = Path(tempfile.mkdtemp(prefix="bench-several-tables-"))
    stack = contextlib.ExitStack()
    try:
        endpoint = stack.enter_context(null_endpoint_over_moto())
        archive = work / "archive"
        items = make_items(args.items)
        for table in tables:
            build_archive(archive, items, table=table, table_id=f"{table}-id")
        k, n = args.tables, args.items
        print(f"{os.cpu_count()} cores; {k} tables of {n:,} items against the null endpoint; "
              f"writers: {args.write_workers or 'the default (one process per core)'}")  # fmt: skip
        runs = [
            ("one table alone", tables[:1], "-alone", []),
            (f"{k} tables, --parallel-tables 1", tables, "-one", ["--parallel-tables", "1"]),
            (f"{k} tables, --parallel-tables {k}", tables, "-side", ["--parallel-tables", str(k)]),
        ]
        seconds = {}
        for label, names, suffix, more in runs:
            print(f"  {label}:")
            seconds[label] = restore(endpoint, archive, names, suffix, *extra, *more)
            total = n * len(names)
            print(f"    {seconds[label]:7.2f} s  {total / seconds[label]:9,.0f} items/s")
        alone, one, side = (seconds[label] for label, *_ in runs)
        print(f"  side by side: {one / side:.2f}× faster than one after the other; "
              f"{side / alone:.2f}× the time of one table alone (target: about 1×)")  # fmt: skip
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
