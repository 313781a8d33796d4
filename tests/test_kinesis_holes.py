"""Holes in a log captured from Kinesis: records that passed the stream's retention unread, a
destination disabled and re-enabled, the stream deleted — each a gap in gaps.jsonl with its
reason, recorded before any record after it reaches a file; and the watermark held back by
the reordering margin."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archiver.aws.error_table import EXIT_NEW_GAP, UsageError
from archiver.format import coverage, gap_log, layout
from archiver.format.storage import Archive
from archiver.format.timefmt import parse_iso
from replayer.exceptions import GapInLog
from tests.conftest import create_table
from tests.kinesis_double import DestinationDouble, KinesisDouble
from tests.kinesis_helpers import (
    History,
    capture,
    capture_async,
    micros_of,
    restored,
    seed_coverage,
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


def run(archive: Archive, stream: KinesisDouble, destinations: DestinationDouble, **kw: Any) -> int:
    return capture(archive, TABLE, stream.arn, destinations, kinesis_client=stream, **kw)


def gaps(archive: Archive) -> list[dict[str, Any]]:
    return gap_log.read_gaps(archive, TABLE)


def settle(micros: int) -> None:
    time.sleep(max(0.0, micros / 1e6 + 0.4 - time.time()))


@pytest.mark.parametrize("resumed", ["long after", "after a trim"])
def test_records_past_the_retention_unread_are_a_gap_before_the_next_record(
    ddb: Any, archive: Archive, resumed: str
) -> None:
    stream, destinations, base = setup(ddb, archive)
    history = History(TABLE)
    first = history.write("a", base, "1")
    assert first is not None
    # "long after": the last record read arrived more than the retention period ago;
    # "after a trim": it is recent, but the stream no longer holds it (the retention was
    # shortened): the iterator after it answers empty pages a retention period behind.
    age = timedelta(hours=23, minutes=56) if resumed == "long after" else timedelta(hours=1)
    stream.put(first.doc, arrival=datetime.now(UTC) - age)
    settle(base)
    assert run(archive, stream, destinations) == 0
    lost = history.write("a", base + 1_000, "lost")
    stream.put(lost.doc, arrival=datetime.now(UTC) - timedelta(minutes=30))  # type: ignore[union-attr]
    stream.trim(datetime.now(UTC) - timedelta(minutes=10))
    after = history.write("a", base + 2_000, "after")
    assert after is not None
    stream.put(after.doc)
    settle(after.micros)

    assert run(archive, stream, destinations) == EXIT_NEW_GAP

    (gap,) = gaps(archive)
    assert gap["reason"] == gap_log.GAP_KINESIS_RETENTION
    assert gap["stream_arn"] == stream.arn and "shardId-000000000000" in gap["shard_id"]
    assert parse_iso(gap["from"]) <= datetime.fromtimestamp(base / 1e6, UTC)
    assert parse_iso(gap["to"]) >= datetime.fromtimestamp((after.micros // 1000) / 1e3, UTC)
    with pytest.raises(GapInLog):
        restored(archive, TABLE, after.micros // 1000)
    assert restored(archive, TABLE, after.micros // 1000, allow_gaps=True) == history.state_at(
        after.micros // 1000
    )


def test_a_destination_disabled_and_enabled_again_is_a_gap_across_runs(
    ddb: Any, archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    stream, destinations, _ = setup(ddb, archive)
    assert run(archive, stream, destinations) == 0
    seen_active = parse_iso(archive.read_json(layout.kinesis_state(TABLE))["active_seen_at"])
    destinations.set(TABLE, stream.arn, status="DISABLED")
    with caplog.at_level("WARNING"):
        assert run(archive, stream, destinations) == 0
    assert any("is DISABLED" in r.getMessage() for r in caplog.records)
    assert gaps(archive) == []
    destinations.set(TABLE, stream.arn, status="ACTIVE")
    assert run(archive, stream, destinations) == EXIT_NEW_GAP
    (gap,) = gaps(archive)
    assert gap["reason"] == gap_log.GAP_KINESIS_DISABLED
    assert parse_iso(gap["from"]) == seen_active and parse_iso(gap["to"]) > seen_active
    assert run(archive, stream, destinations) == 0  # recorded once


def test_a_destination_disabled_while_running_is_noticed_by_the_poll(
    ddb: Any, archive: Archive
) -> None:
    stream, destinations, _ = setup(ddb, archive)

    async def scenario() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(
            capture_async(
                archive,
                TABLE,
                stream.arn,
                destinations,
                kinesis_client=stream,
                once=False,
                stop=stop,
            )
        )
        await asyncio.sleep(0.6)
        destinations.set(TABLE, stream.arn, status="DISABLING")
        await asyncio.sleep(0.6)
        destinations.set(TABLE, stream.arn, status="ACTIVE")
        await asyncio.sleep(0.6)
        stop.set()
        return await task

    assert asyncio.run(scenario()) == EXIT_NEW_GAP
    assert [g["reason"] for g in gaps(archive)] == [gap_log.GAP_KINESIS_DISABLED]


def test_the_stream_deleted_while_running_is_a_gap(ddb: Any, archive: Archive) -> None:
    stream, destinations, base = setup(ddb, archive)
    step = History(TABLE).write("a", base, "1")
    assert step is not None
    stream.put(step.doc)
    settle(base)
    assert run(archive, stream, destinations) == 0

    async def scenario() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(
            capture_async(
                archive,
                TABLE,
                stream.arn,
                destinations,
                kinesis_client=stream,
                once=False,
                stop=stop,
            )
        )
        await asyncio.sleep(0.5)
        stream.delete()
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(scenario()) == EXIT_NEW_GAP
    (gap,) = gaps(archive)
    assert gap["reason"] == gap_log.GAP_KINESIS_DELETED
    assert parse_iso(gap["from"]) == parse_iso(coverage.current(archive, TABLE)["watermark"])
    # Started again: the hole is on record already; the stream named does not exist.
    with pytest.raises(UsageError, match="does not exist"):
        run(archive, stream, destinations)
    assert len(gaps(archive)) == 1


def test_the_stream_deleted_between_runs_is_a_gap_at_the_next_start(
    ddb: Any, archive: Archive
) -> None:
    stream, destinations, _ = setup(ddb, archive)
    assert run(archive, stream, destinations) == 0
    stream.delete()
    assert run(archive, stream, destinations) == EXIT_NEW_GAP
    assert [g["reason"] for g in gaps(archive)] == [gap_log.GAP_KINESIS_DELETED]
    with pytest.raises(UsageError):
        run(archive, stream, destinations)
    assert len(gaps(archive)) == 1


def test_the_watermark_trails_the_arrivals_by_the_reordering_margin(
    ddb: Any, archive: Archive
) -> None:
    stream, destinations, base = setup(ddb, archive)
    step = History(TABLE).write("a", base, "1")
    assert step is not None
    stream.put(step.doc)
    settle(base)
    before = datetime.now(UTC)
    assert run(archive, stream, destinations, margin=30) == 0
    after = datetime.now(UTC)
    watermark = parse_iso(coverage.current(archive, TABLE)["watermark"])
    assert before - timedelta(seconds=30.1) <= watermark <= after - timedelta(seconds=30)
