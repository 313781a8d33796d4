"""Benchmark the integrity checks: ``ddb-archiver check`` and the chain check restores add.

    python -m bench.bench_check [--files 10000] [--changes 10000000] [--keys 1000000]

1. ``check`` (footers only, no ``--deep``) over ``--files`` chained change files on local
   disk (generated once under ``bench-out/check-<files>/``, written by the archiver's own
   ``changefiles.write_builder``, a few records each, spread over shards and days): seconds
   and files/s.
2. The chain check ``plan_restore`` runs before a fold (``replayer.planning.log_files.check_chain``:
   a listing, the checkpoints and the footers of the files in range), on the archive of
   ``bench.bench_fold`` (its generator, reused while the parameters match), against the fold
   itself (``bench.bench_fold``'s fold child). Target: under 5 % of the fold.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver.format import coverage
from archiver.format.changefiles import RunBuilder, write_builder
from archiver.format.storage import Archive
from archiver.integrity.check import run_checks
from bench import bench_fold

TABLE = "checked"
LABEL = "2026-01-01T00:00:00.000"
STREAM_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/stream/{LABEL}"
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
SHARDS = 20
RECORDS_PER_FILE = 3


def generate_chained(root: Path, files: int) -> None:
    """``files`` chained change files: ``SHARDS`` shards, one file per shard and 10 minutes."""
    archive = Archive.open(str(root))
    coverage.open_generation(
        archive,
        TABLE,
        table_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
        table_id="bench-table-id",
        table_created_at=DAY0,
        covered_from=DAY0,
        from_table_creation=True,
        mode="poller",
    )
    prev: dict[int, str | None] = {s: None for s in range(SHARDS)}
    seq = 10**20
    started = time.monotonic()
    for n in range(files):
        shard = n % SHARDS
        at = DAY0 + timedelta(minutes=10 * (n // SHARDS))
        builder = RunBuilder(
            stream_arn=STREAM_ARN,
            shard_id=f"shardId-{shard:08d}",
            table_id="bench-table-id",
            origin="stream",
            prev_last_seq=prev[shard],
            prev_chained=prev[shard] is not None,
        )
        for r in range(RECORDS_PER_FILE):
            seq += 1
            key = {"pk": {"S": f"k{n}-{r}"}}
            builder.add(
                {
                    "eventID": f"ev-{seq}",
                    "eventName": "INSERT",
                    "dynamodb": {
                        "ApproximateCreationDateTime": at + timedelta(seconds=r),
                        "Keys": key,
                        "NewImage": {**key, "v": {"N": str(seq)}},
                        "SequenceNumber": str(seq),
                        "SizeBytes": 50,
                    },
                }
            )
        write_builder(archive, TABLE, builder)
        prev[shard] = builder.last_seq
        if n % 500 == 0:
            print(f"  change file {n + 1}/{files}", file=sys.stderr, end="\r")
    print(f"generated in {time.monotonic() - started:.1f} s{' ' * 20}", file=sys.stderr)


def bench_check(root: Path, files: int, repeat: int) -> None:
    archive = Archive.open(str(root))
    times = []
    for _ in range(repeat):
        started = time.monotonic()
        result = run_checks(archive, TABLE)
        times.append(time.monotonic() - started)
        assert not result.problems, [p.line() for p in result.problems[:3]]
        assert result.files == files, result.files
    best, median = min(times), statistics.median(times)
    print(f"check   {files:,} change files (footers only, local disk): best {best:.2f} s, "
          f"median {median:.2f} s → {files / median:,.0f} files/s")  # fmt: skip


def bench_restore_check(args: argparse.Namespace, repeat: int) -> bool:
    from replayer.planning.log_files import check_chain
    from replayer.planning.plan import plan_restore

    root = Path(args.out) / f"fold-{args.changes}-{args.keys}"
    marker = root / "_generated"
    if not marker.exists():
        print(f"generating {args.changes:,} changes over {args.keys:,} keys in {root} …",
              file=sys.stderr)  # fmt: skip
        bench_fold.generate(root, args.changes, args.keys)
        marker.write_text("ok\n")
    archive = Archive.open(str(root))
    at = bench_fold.restore_time(args.changes)
    plan = plan_restore(archive, bench_fold.TABLE, at, convert=False)
    times = []
    for _ in range(repeat):
        started = time.monotonic()
        files = check_chain(archive, bench_fold.TABLE, plan.log_from, at)
        times.append(time.monotonic() - started)
    chain_s = statistics.median(times)
    fold = bench_fold._child("fold", root, args)
    share = chain_s / fold["fold_s"]
    print(f"restore chain check: {len(files)} files in range, median {chain_s * 1000:.1f} ms "
          f"({len(files) / chain_s:,.0f} files/s); fold {fold['fold_s']:.2f} s "
          f"→ {share * 100:.2f} % of the fold")  # fmt: skip
    return share < 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="change files for `check`")
    parser.add_argument("--changes", type=int, default=10_000_000, help="bench_fold's changes")
    parser.add_argument("--keys", type=int, default=1_000_000, help="bench_fold's keys")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit for the fold")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--out", default="bench-out", help="where generated archives go")
    args = parser.parse_args(argv)
    root = Path(args.out) / f"check-{args.files}"
    marker = root / "_generated"
    if not marker.exists():
        print(f"generating {args.files:,} chained change files in {root} …", file=sys.stderr)
        generate_chained(root, args.files)
        marker.write_text("ok\n")
    bench_check(root, args.files, args.repeat)
    ok = bench_restore_check(args, args.repeat)
    print("target met (restore check < 5 % of the fold)" if ok else "TARGET MISSED (< 5 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
