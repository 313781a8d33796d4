"""Benchmark ``forget`` of one key in a large change archive on local disk.

    python -m bench.bench_forget [--changes 2000000] [--keys 100000] [--compacted]

Generates (once, with ``bench.bench_fold``'s generator: change files as the archiver writes
them, keys in arrival order, plus a base snapshot of every key) under
``bench-out/fold-<changes>-<keys>/``, copies it, and erases one key from the copy, reporting
what the search read (Parquet row groups whose ``keys`` statistics could hold the key, read
as the ``keys`` column only) and what it rewrote. ``--compacted`` first runs
``ddb-archiver compact`` over the copy: compacted files are sorted by key, so row-group
statistics skip almost every row group.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from archiver.erasure.forget import forget
from archiver.format.storage import Archive
from archiver.format.timefmt import utcnow
from archiver.integrity.compaction import compact
from bench.bench_fold import TABLE, generate


def run(root: Path, keys: int, compacted: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-forget-") as work:
        copy = Path(work) / "archive"
        shutil.copytree(root, copy)
        archive = Archive.open(str(copy))
        compact_s = 0.0
        if compacted:
            started = time.monotonic()
            compact(archive, TABLE, grace_seconds=0, now=utcnow())
            compact_s = time.monotonic() - started
        key = '{"pk":{"S":"user#' + str(keys // 2) + '"}}'
        started = time.monotonic()
        (outcome,) = forget(archive, TABLE, [key], names=["pk"])
        seconds = time.monotonic() - started
        found = outcome.found
        assert found is not None
        return {
            "compacted": compacted,
            "compact_s": round(compact_s, 2),
            "objects_listed": found.objects_listed,
            "row_groups": found.row_groups,
            "row_groups_read": found.row_groups_read,
            "objects_rewritten": len(outcome.targets),
            "rows_removed": outcome.rows_removed,
            "forget_s": round(seconds, 2),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=2_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--compacted", action="store_true")
    args = parser.parse_args()
    root = Path("bench-out") / f"fold-{args.changes}-{args.keys}"
    if not (root / "_state").exists():
        generate(root, args.changes, args.keys)
    print(json.dumps(run(root, args.keys, args.compacted)))


if __name__ == "__main__":
    main()
