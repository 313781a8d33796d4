"""The watermark trails a long-running poller by the flush interval, splits included.

A split used to stall the watermark: new child shards had nothing to go by until each had a
file, so for a flush interval after every split (AWS rolls shards over every few hours) the
watermark stood still. A child holds it just before its first buffered record, or — not read
yet — just before its parent's last record; the watermark still never claims a record that is
not in a file. Run against the Streams test double (``tests/streams_double.py``) with records
arriving all the time and DescribeTable from moto.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from archiver.aws.clients import AwsSettings
from archiver.aws.retry import RetryPolicy
from archiver.capture.change_writer import FlushPolicy
from archiver.capture.runner import RunConfig, execute
from archiver.format import coverage, layout
from archiver.format.storage import Archive
from archiver.format.timefmt import parse_iso, utcnow
from tests.conftest import create_table
from tests.streams_double import DoubleShard, DoubleStream, StreamsDouble

TABLE = "orders"
FLUSH_SECONDS = 5.0
# What the watermark may trail by besides the flush interval: its 2 s margin, AWS's whole
# seconds, the once-a-second write of coverage.json, a page's round trip.
SLACK_SECONDS = 5.0


def archived_ranges(archive: Archive) -> dict[str, list[tuple[str, str]]]:
    """Per shard, the (first, last) sequence numbers of every change file."""
    ranges: dict[str, list[tuple[str, str]]] = {}
    for rel in archive.find(layout.changes_table_dir(TABLE), ".parquet"):
        parsed = layout.parse_change_file(rel)
        if parsed is not None and parsed.name is not None:
            name = parsed.name
            ranges.setdefault(name.shard_id, []).append((name.first_seq, name.last_seq))
    return ranges


def unarchived_claims(stream: DoubleStream, archive: Archive, watermark: datetime) -> list[str]:
    """Records the watermark claims (event time ≤ watermark) that are in no file."""
    ranges = archived_ranges(archive)
    missing = []
    for shard in list(stream.shards.values()):
        for record in list(shard.records):
            ddb = record["dynamodb"]
            if ddb["ApproximateCreationDateTime"] > watermark:
                continue
            seq = layout.pad_seq(ddb["SequenceNumber"])
            if not any(first <= seq <= last for first, last in ranges.get(shard.shard_id, [])):
                missing.append(f"{shard.shard_id} {ddb['SequenceNumber']}")
    return missing


@pytest.mark.slow
def test_a_split_during_a_long_run_keeps_the_lag_under_the_flush_interval(
    ddb: Any, archive: Archive
) -> None:
    table = create_table(ddb, TABLE)
    double = StreamsDouble()
    stream = double.add_stream(TABLE, table["LatestStreamLabel"])
    open_shards: list[DoubleShard] = [stream.add_shard(), stream.add_shard()]
    config = RunConfig(
        table_name=TABLE,
        archive_url=archive.url,
        flush=FlushPolicy(records=1_000_000, seconds=FLUSH_SECONDS, bytes=1 << 30),
        poll_seconds=0.05,
        discover_seconds=0.5,
        # The periodic persist is slower than the flush interval on purpose: the watermark
        # must follow the files as they become durable, not this timer.
        persist_seconds=60.0,
        progress_seconds=60.0,
        retry=RetryPolicy(base_seconds=0.005, cap_seconds=0.02, give_up_after_seconds=20),
    )
    split_at = FLUSH_SECONDS * 2 + 1
    run_for = split_at + FLUSH_SECONDS * 2 + 4
    lags: list[tuple[float, float]] = []
    wrong_claims: list[str] = []
    children: list[DoubleShard] = []

    async def feed(started: float) -> None:
        n = 0
        while asyncio.get_running_loop().time() - started < run_for:
            if not children and asyncio.get_running_loop().time() - started >= split_at:
                children.extend(stream.split(open_shards[0]))
                open_shards[:] = [open_shards[1], *children]
            for shard in open_shards:
                key = {"pk": {"S": f"k{n % 50}"}}
                stream.put(shard, key, new={**key, "n": {"N": str(n)}}, at=utcnow())
                n += 1
            await asyncio.sleep(0.05)

    async def watch(started: float) -> None:
        while True:
            await asyncio.sleep(0.25)
            current = coverage.current(archive, TABLE) or {}
            if not current.get("watermark"):
                continue
            watermark = parse_iso(current["watermark"])
            elapsed = asyncio.get_running_loop().time() - started
            lags.append((elapsed, (utcnow() - watermark).total_seconds()))
            wrong_claims.extend(unarchived_claims(stream, archive, watermark))

    async def go() -> int:
        stop = asyncio.Event()
        started = asyncio.get_running_loop().time()
        feeder = asyncio.create_task(feed(started))
        watcher = asyncio.create_task(watch(started))
        poller = asyncio.create_task(
            execute(config, AwsSettings(), archive, stop=stop, streams_client=double)
        )
        await feeder
        stop.set()
        code = await poller
        watcher.cancel()
        return code

    assert asyncio.run(go()) == 0
    assert children, "the split happened"
    assert not wrong_claims, f"the watermark claimed records in no file: {wrong_claims[:5]}"
    # From when the first files are written on, through the split and the children's first
    # flushes: never further behind than the flush interval and the slack.
    steady = [(at, lag) for at, lag in lags if at >= FLUSH_SECONDS + 2]
    assert [at for at, _ in steady if at > split_at + FLUSH_SECONDS + 2], "sampled after the split"
    worst = max(steady, key=lambda sample: sample[1])
    assert worst[1] <= FLUSH_SECONDS + SLACK_SECONDS, (
        f"watermark {worst[1]:.1f} s behind at {worst[0]:.1f} s (split at {split_at:.0f} s)"
    )
    # Each child was read, after its parent.
    read = {p.shard_id for p in double.pages if p.records}
    assert {c.shard_id for c in children} <= read
