"""The Kinesis capture against a double that reshards as AWS does (moto's SplitShard keeps
routing records to the closed parent): parents before children, merges' two parents, expired
iterators, throttling, paged shard listings — nothing lost, nothing doubled."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from archiver.format import chain, changefiles, layout
from archiver.format.storage import Archive
from tests.conftest import create_table
from tests.kinesis_double import DestinationDouble, KinesisDouble
from tests.kinesis_helpers import (
    History,
    capture,
    micros_of,
    restored,
    seed_coverage,
    shuffled_with_duplicates,
)

TABLE = "orders"


def setup(
    ddb: Any, archive: Archive, **double: Any
) -> tuple[KinesisDouble, DestinationDouble, int]:
    description = create_table(ddb, TABLE, stream=None)
    _, created = seed_coverage(archive, TABLE, description)
    stream = KinesisDouble(**double)
    destinations = DestinationDouble()
    destinations.set(TABLE, stream.arn)
    return stream, destinations, micros_of(created) + 50_000


def history_in(history: History, base: int, count: int, start: int = 0) -> list[Any]:
    steps = []
    for n in range(start, start + count):
        step = history.write(f"k{n % 4}", base + n * 3_000, None if n % 5 == 4 else f"v{n}")
        if step is not None:
            steps.append(step)
    return steps


def wait_past(micros: int) -> None:
    time.sleep(max(0.0, micros / 1e6 + 0.4 - time.time()))


def file_rows(archive: Archive) -> list[dict[str, Any]]:
    rows = []
    for rel in archive.find("changes", ".parquet"):
        rows.extend(archive.read_parquet(rel).to_pylist())
    return rows


def test_a_split_and_a_merge_mid_way_read_parents_first_and_lose_nothing(
    ddb: Any, archive: Archive
) -> None:
    stream, destinations, base = setup(ddb, archive, page_size=5)
    history = History(TABLE)
    first = history_in(history, base, 12)
    for step in shuffled_with_duplicates(first, seed=1):
        stream.put(step.doc)
    wait_past(first[-1].micros)
    assert (
        capture(archive, TABLE, stream.arn, destinations, kinesis_client=stream, flush_records=4)
        == 0
    )

    # A split: the parent closes (one more record lands in it first), records go to the
    # children; then the children merge.
    second = history_in(history, base, 12, start=12)
    stream.put(second[0].doc)
    left, right = stream.split("shardId-000000000000")
    for n, step in enumerate(shuffled_with_duplicates(second[1:8], seed=2)):
        stream.put(step.doc, shard=left if n % 2 else right)
    merged = stream.merge(left, right)
    for step in shuffled_with_duplicates(second[8:], seed=3):
        stream.put(step.doc, shard=merged)
    wait_past(second[-1].micros)
    assert (
        capture(archive, TABLE, stream.arn, destinations, kinesis_client=stream, flush_records=4)
        == 0
    )

    # Each shard's first read comes after each of its parents ended.
    ends = {shard: i for i, (shard, _, ended) in enumerate(stream.reads) if ended}
    starts: dict[str, int] = {}
    for i, (shard, _, _) in enumerate(stream.reads):
        starts.setdefault(shard, i)
    assert (
        ends["shardId-000000000000"] < starts[left] and ends["shardId-000000000000"] < starts[right]
    )
    assert max(ends[left], ends[right]) < starts[merged]

    assert sorted(r["event_id"] for r in file_rows(archive)) == sorted(
        s.event_id for s in history.steps
    )
    for instant in history.instants():
        assert restored(archive, TABLE, instant) == history.state_at(instant), instant
    files = archive.find("changes", ".parquet")
    assert chain.verify_files(archive, files, context=files) == []
    checkpoints = changefiles.read_checkpoints(archive, TABLE, layout.KINESIS_LABEL)
    closed = {doc["kinesis_shard_id"] for doc in checkpoints.values() if doc["closed"]}
    assert closed == {"shardId-000000000000", left, right}
    # The chain of each shard counts its records from 1: names are a function of content.
    by_shard: dict[str, list[str]] = {}
    for rel in files:
        name = layout.ChangeFileName.parse(rel)
        assert name is not None
        by_shard.setdefault(name.shard_id, []).append(name.first_seq)
    assert all(min(firsts) == layout.pad_seq(1) for firsts in by_shard.values())


def test_expired_iterators_throttling_and_paged_listings_lose_and_double_nothing(
    ddb: Any, archive: Archive
) -> None:
    stream, destinations, base = setup(ddb, archive, shards=3, page_size=2)
    history = History(TABLE)
    steps = history_in(history, base, 30)
    for n, step in enumerate(shuffled_with_duplicates(steps, seed=4)):
        stream.put(step.doc, shard=n % 3)
    stream.fail_next("GetRecords", "ExpiredIteratorException", 2)
    stream.fail_next("GetRecords", "ProvisionedThroughputExceededException", 3)
    stream.fail_next("GetRecords", "InternalFailure", 1)
    stream.fail_next("ListShards", "LimitExceededException", 2)
    stream.fail_next("GetShardIterator", "ProvisionedThroughputExceededException", 1)
    wait_past(steps[-1].micros)
    assert (
        capture(archive, TABLE, stream.arn, destinations, kinesis_client=stream, flush_records=3)
        == 0
    )
    ids = [r["event_id"] for r in file_rows(archive)]
    assert sorted(set(ids)) == sorted(s.event_id for s in steps)
    for instant in history.instants():
        assert restored(archive, TABLE, instant) == history.state_at(instant), instant
    assert stream.calls.count("ListShards") >= 4  # three shards, two a page, two throttled


def test_records_of_other_tables_and_foreign_data_are_skipped_and_the_position_moves_on(
    ddb: Any, archive: Archive, caplog: Any
) -> None:
    stream, destinations, base = setup(ddb, archive)
    history = History(TABLE)
    steps = history_in(history, base, 3)
    other = History("other")
    for step in steps:
        stream.put(step.doc)
    for n in range(5):
        foreign = other.write(f"x{n}", base + n, "v")
        assert foreign is not None
        stream.put(foreign.doc)
    stream.put(b"not json at all")
    wait_past(steps[-1].micros)
    with caplog.at_level("INFO", logger="archiver.run"):
        assert capture(archive, TABLE, stream.arn, destinations, kinesis_client=stream) == 0
    assert len(file_rows(archive)) == 3
    summary = [r.getMessage() for r in caplog.records if "done:" in r.getMessage()]
    assert "5 records of 1 other table(s) skipped" in summary[0]
    assert "1 records that are not DynamoDB changes skipped" in summary[0]
    doc = next(iter(changefiles.read_checkpoints(archive, TABLE, layout.KINESIS_LABEL).values()))
    last = stream.shards["shardId-000000000000"].records[-1].sequence_number
    assert doc["kinesis_sequence_number"] == str(last)  # past the other tables' records
    assert datetime.now(UTC) > datetime.fromtimestamp(steps[-1].micros / 1e6, UTC)
