"""What the Lambda handler's write path costs per record, on a full batch.

    python -m bench.bench_lambda_batch [--records 10000] [--repeat 5] [--collector default|less]

The event source mapping hands the function its batch already parsed (the Lambda runtime
reads the event with ``json.loads`` before the handler runs), so there is no botocore parser
to skip here: what is left is the handler's own work — checking each record, the change rows
(the codec), the Parquet files. This times
:func:`archiver.lambda_mode.handler.archive_batch` on a batch of ``--records`` records shaped as
the runtime delivers them (the same ~700-byte ``MODIFY`` records as ``bench/live_streams.py``)
into a local folder, and prints CPU microseconds per record (median of ``--repeat`` runs).
``--collector less`` raises the garbage collector's threshold first
(:func:`archiver.capture.raw_records.collect_less`, what the poller does).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from archiver.capture.raw_records import collect_less
from archiver.format.storage import Archive
from archiver.lambda_mode.handler import archive_batch
from bench.live_streams import LiveShard, record_json

STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/bench/stream/2026-01-31T12:00:00.000"


def event(records: int) -> list[dict[str, object]]:
    shard = LiveShard(0, "shardId-1", None, 4 * 10**21, time.time() - records, 1.0)
    text = "[" + ",".join(record_json(shard, i) for i in range(records)) + "]"
    batch: list[dict[str, object]] = json.loads(text)
    for record in batch:
        record["eventSourceARN"] = STREAM
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--collector", choices=["default", "less"], default="default")
    args = parser.parse_args()
    if args.collector == "less":
        collect_less()
    batch = event(args.records)
    timings = []
    with tempfile.TemporaryDirectory() as folder:
        archive = Archive.open(folder)
        for _ in range(args.repeat):
            started = time.process_time()
            archive_batch(archive, "bench", "table-id", STREAM, batch)
            timings.append(time.process_time() - started)
    per_record = statistics.median(timings) / args.records * 1e6
    print(
        f"archive_batch, {args.records} records, collector {args.collector}: "
        f"{per_record:.1f} CPU µs per record (median of {args.repeat})"
    )


if __name__ == "__main__":
    main()
