"""Benchmark: Kinesis pages → change-log Parquet, next to DynamoDB Streams pages (not a test).

    python -m bench.bench_kinesis [--records N] [--flush-records N] [--cpu C]

Feeds N changes, 1,000 a page, through each capture's own sink on one CPU (the process is
pinned to ``--cpu``), and prints records per second for each, measured in the same run:

* **DynamoDB Streams**: boto3-shaped ``GetRecords`` records (binary as ``bytes``, times as
  ``datetime``) into ``archiver.writer.ChangeWriter.records`` — rows built, files flushed every
  ``--flush-records`` records, checkpoints;
* **Kinesis Data Streams**: ``GetRecords`` records of a Kinesis stream (the change document
  as JSON bytes in ``Data``, binary base64 inside it, times in microseconds) through
  ``archiver.capture.kinesis.Intake.take`` (decode, keep the table's records, order,
  drop duplicates) into ``archiver.capture.kinesis_writer.KinesisWriter.page``. One record in
  ten belongs to another table (skipped), one in fifty is a duplicate (dropped);
* **Kinesis, from the HTTP bodies**: the same pages as ``GetRecords`` answers them (JSON,
  ``Data`` as base64 text, arrival times as epoch seconds), each read in the timed loop once by
  botocore's response parser (what the capture did before) and once by the orjson hook the
  capture's client now has (``archiver.capture.raw_records.install_kinesis``), then as above.

The same ~350-byte items (S, N, B, BOOL, SS, M, L; 70 % MODIFY, 20 % INSERT, 10 % REMOVE) in
both; generation is done before timing. Writes go to a local temporary archive.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.parsers
import botocore.session
import orjson

from archiver.capture import raw_records
from archiver.capture.change_writer import ChangeWriter, FlushPolicy, LiveGeneration
from archiver.capture.kinesis import Intake
from archiver.capture.kinesis_order import Orderer
from archiver.capture.kinesis_writer import KinesisWriter
from archiver.capture.streams_api import Page, Shard, StreamInfo
from archiver.format import layout
from archiver.format.storage import Archive

TABLE = "customers"
TABLE_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
START = datetime(2026, 1, 1, tzinfo=UTC)
STREAM_LABEL = "2026-01-01T00:00:00.000"
DDB_STREAM = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/stream/{STREAM_LABEL}"
KINESIS_STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/customers-cdc"
PAGE = 1_000


def item(rng: random.Random, n: int, binary: bool) -> dict[str, Any]:
    photo = bytes(rng.randrange(256) for _ in range(24))
    return {
        "pk": {"S": f"customer-{n % 50_000:06d}"},
        "name": {"S": f"Name {rng.randrange(10**6)}"},
        "balance": {"N": f"{rng.randrange(10**6)}.{rng.randrange(100):02d}"},
        "photo": {"B": photo if binary else base64.b64encode(photo).decode()},
        "active": {"BOOL": rng.random() < 0.5},
        "tags": {"SS": [f"t{rng.randrange(20)}" for _ in range(3)]},
        "address": {"M": {"city": {"S": "Paris"}, "zip": {"S": f"{rng.randrange(10**5):05d}"}}},
        "history": {"L": [{"N": str(rng.randrange(1000))} for _ in range(4)]},
    }


def changes(count: int, seed: int = 7) -> list[tuple[str, int, dict[str, Any], dict[str, Any]]]:
    """(event name, creation µs, new image, old image) for ``count`` changes (binary as
    base64: converted per shape below)."""
    rng = random.Random(seed)
    out = []
    micros = int(START.timestamp() * 1_000_000)
    for n in range(count):
        micros += rng.randrange(1, 400)
        roll = rng.random()
        name = "MODIFY" if roll < 0.7 else "INSERT" if roll < 0.9 else "REMOVE"
        out.append((name, micros, item(rng, n, False), item(rng, n, False)))
    return out


def _as_bytes(image: dict[str, Any]) -> dict[str, Any]:
    return {**image, "photo": {"B": base64.b64decode(image["photo"]["B"])}}


def stream_pages(data: list[Any]) -> list[list[dict[str, Any]]]:
    records = []
    for n, (name, micros, new, old) in enumerate(data):
        ddb: dict[str, Any] = {
            "ApproximateCreationDateTime": datetime.fromtimestamp(micros // 1_000_000, UTC),
            "Keys": {"pk": new["pk"]},
            "SequenceNumber": str(10**20 + n * 7),
            "SizeBytes": 350,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if name != "REMOVE":
            ddb["NewImage"] = _as_bytes(new)
        if name != "INSERT":
            ddb["OldImage"] = _as_bytes(old)
        records.append({"eventID": f"e{n}", "eventName": name, "dynamodb": ddb})
    return [records[i : i + PAGE] for i in range(0, len(records), PAGE)]


def kinesis_pages(data: list[Any]) -> tuple[list[list[dict[str, Any]]], int]:
    records = []
    kept = 0
    rng = random.Random(3)
    for n, (name, micros, new, old) in enumerate(data):
        ddb: dict[str, Any] = {
            "ApproximateCreationDateTime": micros,
            "Keys": {"pk": new["pk"]},
            "SizeBytes": 350,
        }
        if name != "REMOVE":
            ddb["NewImage"] = new
        if name != "INSERT":
            ddb["OldImage"] = old
        table = "other" if n % 10 == 9 else TABLE
        kept += table == TABLE
        doc = {
            "awsRegion": "us-east-1",
            "eventID": f"e{n}",
            "eventName": name,
            "userIdentity": None,
            "recordFormat": "application/json",
            "tableName": table,
            "dynamodb": ddb,
            "eventSource": "aws:dynamodb",
        }
        data_bytes = orjson.dumps(doc)
        arrival = datetime.fromtimestamp(micros / 1_000_000, UTC)
        copies = 2 if rng.random() < 0.02 else 1
        for _ in range(copies):
            records.append(
                {
                    "SequenceNumber": str(
                        49590338271490256608559692538361571095921575989136588898 + len(records)
                    ),
                    "ApproximateArrivalTimestamp": arrival,
                    "Data": data_bytes,
                    "PartitionKey": "p",
                }
            )
    return [records[i : i + PAGE] for i in range(0, len(records), PAGE)], kept


def kinesis_bodies(pages: list[list[dict[str, Any]]]) -> list[bytes]:
    """The pages as ``GetRecords`` sends them over HTTP."""
    return [
        orjson.dumps(
            {
                "Records": [
                    {
                        "SequenceNumber": r["SequenceNumber"],
                        "ApproximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                        "Data": base64.b64encode(r["Data"]).decode(),
                        "PartitionKey": r["PartitionKey"],
                    }
                    for r in page
                ],
                "NextShardIterator": "AAAAAAAAAAH" * 20,
                "MillisBehindLatest": 0,
            }
        )
        for page in pages
    ]


def body_parser(which: str) -> Callable[[bytes], Mapping[str, Any]]:
    """How a ``GetRecords`` body becomes a page: botocore's parser, or the capture's hook."""
    if which == "orjson":
        return lambda body: raw_records.kinesis_records_page(body) or {}
    shape = botocore.session.get_session().get_service_model("kinesis")
    output = shape.operation_model("GetRecords").output_shape
    parser = botocore.parsers.create_parser("json")
    return lambda body: parser.parse({"status_code": 200, "headers": {}, "body": body}, output)


def generation() -> LiveGeneration:
    created = START - timedelta(days=1)
    return LiveGeneration(TABLE_ID, created, covered_from=created)


async def through_streams(archive: Archive, pages: list[Any], flush: int) -> float:
    writer = ChangeWriter(archive, TABLE, generation(), FlushPolicy(records=flush))
    writer.prepare([])
    stream = StreamInfo(DDB_STREAM, STREAM_LABEL, TABLE)
    shard = Shard(DDB_STREAM, "shardId-00000001767225600000-0a1b2c3d", None, "1", None)
    started = time.perf_counter()
    for page in pages:
        await writer.records(stream, shard, Page(page, None))
    await writer.finish()
    return time.perf_counter() - started


async def through_kinesis(
    archive: Archive,
    pages: list[Any],
    flush: int,
    parse: Callable[[bytes], Mapping[str, Any]] | None = None,
) -> float:
    writer = KinesisWriter(
        archive, TABLE, generation(), FlushPolicy(records=flush), margin=timedelta(seconds=60)
    )
    info = StreamInfo(KINESIS_STREAM, layout.KINESIS_STREAM_LABEL, TABLE)
    writer.prepare([info])
    name = layout.kinesis_chain_shard(KINESIS_STREAM, START, "shardId-000000000000")
    shard = Shard(KINESIS_STREAM, name, None, None, None)
    writer.load_shard(info, shard, "shardId-000000000000")
    intake = Intake(archive, TABLE, generation(), Orderer())
    started = time.perf_counter()
    for page in pages:
        if parse is not None:
            page = parse(page)["Records"]
        items = await intake.take(page, name)
        last = page[-1]
        arrival = last["ApproximateArrivalTimestamp"]
        if not isinstance(arrival, datetime):  # epoch seconds, from a body read by orjson
            arrival = datetime.fromtimestamp(arrival, UTC)
        await writer.page(info, shard, items, last["SequenceNumber"], arrival)
    await writer.finish()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--flush-records", type=int, default=50_000)
    parser.add_argument("--cpu", type=int, default=0, help="the CPU to pin the process to")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    data = changes(args.records)
    streams = stream_pages(data)
    kinesis, kept = kinesis_pages(data)
    bodies = kinesis_bodies(kinesis)
    total = sum(len(p) for p in kinesis)
    # The generated pages are input, not the capture's own objects: keep the collector from
    # scanning them again and again while it measures.
    gc.collect()
    gc.freeze()
    # As `ddb-archiver run` does, in both modes (archiver.commands.run): a process that reads
    # pages collects cyclic garbage less often.
    raw_records.collect_less()
    folder = tempfile.mkdtemp(prefix="bench-kinesis-")
    try:
        seconds = asyncio.run(
            through_streams(Archive.open(f"{folder}/s"), streams, args.flush_records)
        )
        print(
            f"DynamoDB Streams pages -> Parquet: {args.records:,} records in {seconds:.2f} s = "
            f"{args.records / seconds:,.0f} records/s on one core"
        )
        seconds = asyncio.run(
            through_kinesis(Archive.open(f"{folder}/k"), kinesis, args.flush_records)
        )
        print(
            f"Kinesis pages -> Parquet:          {total:,} records ({kept:,} of the table, the "
            f"rest other tables' and duplicates) in {seconds:.2f} s = {total / seconds:,.0f} "
            f"records/s read, {kept / seconds:,.0f} archived/s on one core"
        )
        for which in ("botocore", "orjson"):
            seconds = asyncio.run(
                through_kinesis(
                    Archive.open(f"{folder}/{which}"),
                    bodies,
                    args.flush_records,
                    body_parser(which),
                )
            )
            print(
                f"Kinesis GetRecords bodies -> Parquet, read by {which + ':':9} {total:,} records "
                f"in {seconds:.2f} s = {total / seconds:,.0f} records/s read, "
                f"{kept / seconds:,.0f} archived/s on one core"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
