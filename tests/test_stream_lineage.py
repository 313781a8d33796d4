"""The stream consumer against AWS behaviour moto lacks, through the Streams test double.

DescribeTable comes from moto (the table exists there with a stream); every DynamoDB Streams
call goes to :class:`tests.streams_double.StreamsDouble`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_NEW_GAP, EXIT_OK
from archiver.aws.retry import RetryPolicy
from archiver.capture.change_writer import FlushPolicy
from archiver.capture.reader import ConsumerConfig
from archiver.capture.runner import RunConfig, execute
from archiver.format import layout
from archiver.format.changefiles import read_checkpoints
from archiver.format.coverage import WATERMARK_MARGIN
from archiver.format.gap_log import read_gaps
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow
from tests.conftest import create_table
from tests.streams_double import DoubleShard, DoubleStream, StreamsDouble

TABLE = "orders"


@pytest.fixture
def table(ddb: Any) -> dict[str, Any]:
    return create_table(ddb, TABLE)


@pytest.fixture
def double() -> StreamsDouble:
    return StreamsDouble(describe_page_size=2)


def stream_of(double: StreamsDouble, table: dict[str, Any], **kwargs: Any) -> DoubleStream:
    """A stream with the label moto gave the table (so it is the table's current stream)."""
    return double.add_stream(TABLE, table["LatestStreamLabel"], **kwargs)


def put(
    stream: DoubleStream, shard: DoubleShard, n: int, start: datetime, step: float = 1.0
) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        key = {"pk": {"S": f"{shard.shard_id[-8:]}-{len(shard.records)}"}}
        new = {**key, "n": {"N": str(i)}, "b": {"M": {"x": {"B": bytes([i % 256])}}}}
        out.append(stream.put(shard, key, new=new, at=start + timedelta(seconds=i * step)))
    return out


def run(
    double: StreamsDouble,
    archive: Archive,
    *,
    once: bool = True,
    stop_when: Callable[[], bool] | None = None,
    flush: FlushPolicy | None = None,
) -> int:
    config = RunConfig(
        table_name=TABLE,
        archive_url=archive.url,
        once=once,
        flush=flush or FlushPolicy(records=100_000, seconds=60, bytes=1 << 30),
        poll_seconds=0.02,
        discover_seconds=0.2,
        persist_seconds=0.1,
        progress_seconds=0.5,
        retry=RetryPolicy(base_seconds=0.005, cap_seconds=0.02, give_up_after_seconds=20),
    )

    async def go() -> int:
        stop = asyncio.Event()

        async def watch() -> None:
            while stop_when is not None and not stop_when():
                await asyncio.sleep(0.02)
            stop.set()

        watcher = asyncio.create_task(watch()) if stop_when is not None else None
        try:
            return await execute(config, AwsSettings(), archive, stop=stop, streams_client=double)
        finally:
            if watcher is not None:
                watcher.cancel()

    return asyncio.run(go())


def archived_rows(archive: Archive) -> list[dict[str, Any]]:
    rows = []
    for rel in archive.find(layout.changes_table_dir(TABLE), ".parquet"):
        rows.extend(pq.read_table(archive.path(rel)).to_pylist())
    return sorted(rows, key=lambda r: (r["stream_arn"], r["sequence_number"]))


def event_ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["eventID"] for r in records]


def first_call_index(double: StreamsDouble, method: str, shard: DoubleShard) -> int:
    return min(
        i
        for i, (_, name, kw) in enumerate(double.calls)
        if name == method and kw.get("ShardId") == shard.shard_id
    )


def last_call_index(double: StreamsDouble, method: str, shard: DoubleShard) -> int:
    return max(
        i
        for i, (_, name, kw) in enumerate(double.calls)
        if name == method and kw.get("ShardId") == shard.shard_id
    )


def test_split_parent_is_read_to_its_end_before_its_children(
    table: dict[str, Any], double: StreamsDouble, archive: Archive
) -> None:
    stream = stream_of(double, table)
    parent = stream.add_shard()
    # Across midnight: a file never spans two dt partitions.
    midnight = datetime(2026, 1, 1, tzinfo=UTC)
    written = put(stream, parent, 4, midnight - timedelta(seconds=2))
    left, right = stream.split(parent)
    written += put(stream, left, 3, midnight + timedelta(minutes=1))
    written += put(stream, right, 3, midnight + timedelta(minutes=1))
    (grandchild,) = stream.split(right, children=1)
    written += put(stream, grandchild, 2, midnight + timedelta(minutes=2))

    assert run(double, archive) == EXIT_OK

    rows = archived_rows(archive)
    assert sorted(r["event_id"] for r in rows) == sorted(event_ids(written))
    assert len({r["event_id"] for r in rows}) == len(rows)
    # Parent before children, child before grandchild.
    for earlier, later in [(parent, left), (parent, right), (right, grandchild)]:
        assert last_call_index(double, "get_records", earlier) < first_call_index(
            double, "get_shard_iterator", later
        )
    # DescribeStream was paged (2 shards a page) and kept under 10 calls/s.
    describes = [kw for kw in double.calls_to("describe_stream")]
    assert any("ExclusiveStartShardId" in kw for kw in describes)
    times = [t for t, name, _ in double.calls if name == "describe_stream"]
    assert all(sum(1 for u in times if t <= u < t + 1.0) <= 10 for t in times)
    # One file per shard and dt, named by its content.
    files = archive.find(layout.changes_table_dir(TABLE), ".parquet")
    parent_files = [f for f in files if parent.shard_id in f]
    assert [f.split("/")[2] for f in parent_files] == ["dt=2025-12-31", "dt=2026-01-01"]
    for rel in files:
        name = layout.ChangeFileName.parse(rel)
        assert name is not None
        content = pq.read_table(archive.path(rel)).to_pylist()
        assert {r["shard_id"] for r in content} == {name.shard_id}
        assert (content[0]["sequence_number"], content[-1]["sequence_number"]) == (
            name.first_seq,
            name.last_seq,
        )
        assert {layout.dt_of(r["event_time"]) for r in content} == {rel.split("/")[2][3:]}
    # Closed, drained shards are checkpointed as closed; open ones are not.
    checkpoints = read_checkpoints(archive, TABLE, layout.label_stamp(stream.label))
    assert {k: v["closed"] for k, v in checkpoints.items()} == {
        parent.shard_id: True,
        right.shard_id: True,
        left.shard_id: False,
        grandchild.shard_id: False,
    }

    # A second run does not read the drained shards again.
    double.calls.clear()
    assert run(double, archive) == EXIT_OK
    read_again = {kw["ShardId"] for kw in double.calls_to("get_shard_iterator")}
    assert read_again == {left.shard_id, grandchild.shard_id}
    assert len(archived_rows(archive)) == len(written)


def test_new_shards_are_picked_up_while_running(
    table: dict[str, Any], double: StreamsDouble, archive: Archive
) -> None:
    stream = stream_of(double, table)
    parent = stream.add_shard()
    written = put(stream, parent, 5, utcnow() - timedelta(minutes=5))
    children: list[DoubleShard] = []

    def split_during_first_read(shard: DoubleShard, call: int) -> None:
        if shard is parent and not children:
            children.extend(stream.split(parent))
            for child in children:
                written.extend(put(stream, child, 3, utcnow() - timedelta(minutes=4)))

    double.before_get_records = split_during_first_read
    assert run(double, archive) == EXIT_OK
    assert sorted(r["event_id"] for r in archived_rows(archive)) == sorted(event_ids(written))
    assert len(written) == 11


def test_shards_are_read_concurrently_one_reader_each(
    table: dict[str, Any], archive: Archive
) -> None:
    double = StreamsDouble(latency=0.02)
    stream = stream_of(double, table)
    written = []
    for _ in range(4):
        shard = stream.add_shard()
        written += put(stream, shard, 50, utcnow() - timedelta(minutes=3))
    assert run(double, archive) == EXIT_OK
    assert double.max_in_flight_total >= 2
    assert double.max_in_flight_per_shard == 1  # AWS throttles past 2 readers per shard
    assert sorted(r["event_id"] for r in archived_rows(archive)) == sorted(event_ids(written))


def test_expired_iterator_resumes_after_the_last_record_read(
    table: dict[str, Any], double: StreamsDouble, archive: Archive
) -> None:
    stream = stream_of(double, table)
    shard = stream.add_shard()
    written = put(stream, shard, 2500, utcnow() - timedelta(hours=2), step=0.5)

    def expire_on_second_page(_: DoubleShard, call: int) -> None:
        if call == 2:
            double.expire_iterators()

    double.before_get_records = expire_on_second_page
    # The first 1,000 records are still in the buffer (not flushed) when the iterator expires.
    assert run(double, archive) == EXIT_OK
    iterators = double.calls_to("get_shard_iterator")
    assert [kw["ShardIteratorType"] for kw in iterators] == [
        "TRIM_HORIZON",
        "AFTER_SEQUENCE_NUMBER",
    ]
    assert iterators[1]["SequenceNumber"] == written[999]["dynamodb"]["SequenceNumber"]
    rows = archived_rows(archive)
    assert [r["event_id"] for r in rows] == event_ids(written)


def test_throttling_and_server_errors_are_retried_with_backoff(
    table: dict[str, Any], double: StreamsDouble, archive: Archive
) -> None:
    stream = stream_of(double, table)
    shard = stream.add_shard()
    written = put(stream, shard, 30, utcnow() - timedelta(minutes=10))
    double.fail("list_streams", "ThrottlingException", 1)
    double.fail("describe_stream", "LimitExceededException", 2)
    double.fail("get_shard_iterator", "InternalServerError", 1, status=500)
    double.fail("get_records", "LimitExceededException", 2)
    double.fail("get_records", "ProvisionedThroughputExceededException", 2)
    double.fail("get_records", "InternalServerError", 2, status=500)
    assert run(double, archive) == EXIT_OK
    assert double.faults == []  # every injected failure was met, and retried
    assert [r["event_id"] for r in archived_rows(archive)] == event_ids(written)


def test_backoff_is_exponential_with_full_jitter() -> None:
    policy = RetryPolicy(base_seconds=0.1, cap_seconds=2.0)
    for attempt in range(8):
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= min(2.0, 0.1 * 2**attempt) for d in delays)
        assert len(set(delays)) > 100  # jittered, not a fixed schedule
    assert max(policy.delay(6) for _ in range(200)) > 1.0


def test_checkpoint_behind_the_trim_horizon_records_a_gap_and_exits_5(
    table: dict[str, Any], double: StreamsDouble, archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    stream = stream_of(double, table)
    shard = stream.add_shard()
    start = utcnow() - timedelta(hours=20)
    first = put(stream, shard, 10, start)
    assert run(double, archive) == EXIT_OK
    later = put(stream, shard, 10, start + timedelta(seconds=10))
    shard.trim(15)  # 5 records the archiver never read are gone

    with caplog.at_level(logging.WARNING):
        assert run(double, archive) == EXIT_NEW_GAP
    assert "RECORDS LOST" in caplog.text
    (gap,) = read_gaps(archive, TABLE)
    assert gap["reason"] == "trimmed"
    assert gap["shard_id"] == shard.shard_id
    assert gap["stream_arn"] == stream.arn
    assert gap["from"] == iso_ms(first[-1]["dynamodb"]["ApproximateCreationDateTime"])
    assert gap["to"] == iso_ms(later[5]["dynamodb"]["ApproximateCreationDateTime"])
    assert [r["event_id"] for r in archived_rows(archive)] == event_ids(first + later[5:])
    # Nothing new is lost on the next run: no new gap, exit 0.
    assert run(double, archive) == EXIT_OK
    assert len(read_gaps(archive, TABLE)) == 1


def test_records_trimmed_while_reading_record_a_gap(
    table: dict[str, Any], double: StreamsDouble, archive: Archive
) -> None:
    stream = stream_of(double, table)
    shard = stream.add_shard()
    written = put(stream, shard, 2500, utcnow() - timedelta(hours=23), step=1)

    def trim_under_the_reader(_: DoubleShard, call: int) -> None:
        if call == 2:
            shard.trim(1500)

    double.before_get_records = trim_under_the_reader
    assert run(double, archive) == EXIT_NEW_GAP
    (gap,) = read_gaps(archive, TABLE)
    assert (gap["from"], gap["to"]) == (
        iso_ms(written[999]["dynamodb"]["ApproximateCreationDateTime"]),
        iso_ms(written[1500]["dynamodb"]["ApproximateCreationDateTime"]),
    )
    assert [r["event_id"] for r in archived_rows(archive)] == event_ids(
        written[:1000] + written[1500:]
    )


def test_shard_expired_while_the_archiver_was_down_is_a_gap(
    table: dict[str, Any], double: StreamsDouble, archive: Archive
) -> None:
    stream = stream_of(double, table)
    shard = stream.add_shard()
    start = utcnow() - timedelta(hours=30)
    first = put(stream, shard, 3, start)
    assert run(double, archive) == EXIT_OK
    put(stream, shard, 3, start + timedelta(hours=1))  # never read
    (child,) = stream.split(shard, children=1)
    later = put(stream, child, 3, start + timedelta(hours=7))
    shard.listed = False  # 24 h after closing, the shard is gone from DescribeStream

    assert run(double, archive) == EXIT_NEW_GAP
    (gap,) = read_gaps(archive, TABLE)
    assert gap["reason"] == "shard-lost"
    assert gap["shard_id"] == shard.shard_id
    assert gap["from"] == iso_ms(first[-1]["dynamodb"]["ApproximateCreationDateTime"])
    assert gap["to"] == iso_ms(later[0]["dynamodb"]["ApproximateCreationDateTime"])
    assert [r["event_id"] for r in archived_rows(archive)] == event_ids(first + later)
    assert run(double, archive) == EXIT_OK
    assert len(read_gaps(archive, TABLE)) == 1


def test_stream_disabled_and_reenabled_old_stream_first_then_gap(
    table: dict[str, Any], double: StreamsDouble, archive: Archive
) -> None:
    created = parse_iso(iso_ms(table["CreationDateTime"]))
    old = stream_of(double, table, status="DISABLED")
    old_shard = old.add_shard()
    old_records = put(old, old_shard, 4, created + timedelta(seconds=1))
    old.close(old_shard)
    new_label = (
        (created + timedelta(seconds=30)).replace(tzinfo=None).isoformat(timespec="microseconds")
    )
    new = double.add_stream(TABLE, new_label)
    new_shard = new.add_shard()
    new_records = put(new, new_shard, 4, created + timedelta(seconds=31))

    assert run(double, archive) == EXIT_NEW_GAP
    # The older stream was drained before the current one was read.
    assert last_call_index(double, "get_records", old_shard) < first_call_index(
        double, "get_shard_iterator", new_shard
    )
    (gap,) = read_gaps(archive, TABLE)
    assert gap["reason"] == "stream-disabled-and-reenabled"
    assert gap["stream_arn"] == new.arn and gap["shard_id"] is None
    assert gap["from"] == iso_ms(old_records[-1]["dynamodb"]["ApproximateCreationDateTime"])
    assert gap["to"] == iso_ms(created + timedelta(seconds=30))
    rows = archived_rows(archive)
    assert sorted(r["event_id"] for r in rows) == sorted(event_ids(old_records + new_records))
    assert {r["stream_arn"] for r in rows} == {old.arn, new.arn}
    assert run(double, archive) == EXIT_OK
    assert len(read_gaps(archive, TABLE)) == 1


def test_watermark_is_held_back_by_a_lagging_shard(
    table: dict[str, Any], double: StreamsDouble, archive: Archive, tmp_path: Path
) -> None:
    stream = stream_of(double, table)
    idle = stream.add_shard()
    lagging = stream.add_shard()
    an_hour_ago = utcnow().replace(microsecond=0) - timedelta(hours=1)
    written = put(stream, lagging, 5, an_hour_ago)
    calls = {"lagging": 0}

    def throttle_after_first_page(shard: DoubleShard, _: int) -> None:
        if shard is lagging:
            calls["lagging"] += 1
            if calls["lagging"] > 1:
                double.fail(
                    "get_records",
                    "ProvisionedThroughputExceededException",
                    shard_id=lagging.shard_id,
                )

    double.before_get_records = throttle_after_first_page

    def idle_caught_up_and_lagging_throttled() -> bool:
        idle_pages = sum(
            1 for kw in double.calls_to("get_records") if kw["ShardId"] == idle.shard_id
        )
        # It never returned a record: it is caught up after the wary count of empty pages.
        return idle_pages >= ConsumerConfig().wary_pages + 2 and calls["lagging"] >= 5

    # Long-running mode, stopped once the idle shard is caught up and the other is stuck.
    assert (
        run(double, archive, once=False, stop_when=idle_caught_up_and_lagging_throttled) == EXIT_OK
    )
    coverage_doc = archive.read_json(layout.coverage(TABLE))
    last_event = written[-1]["dynamodb"]["ApproximateCreationDateTime"]
    assert coverage_doc["watermark"] == iso_ms(last_event - WATERMARK_MARGIN)
    idle_checkpoint = read_checkpoints(archive, TABLE, layout.label_stamp(stream.label))[
        idle.shard_id
    ]
    assert idle_checkpoint["caught_up_at"] is not None
    # The flush on stop kept every record read.
    assert [r["event_id"] for r in archived_rows(archive)] == event_ids(written)

    double.before_get_records = None
    double.faults.clear()
    assert run(double, archive) == EXIT_OK
    watermark = parse_iso(archive.read_json(layout.coverage(TABLE))["watermark"])
    assert utcnow() - watermark < timedelta(seconds=10)
