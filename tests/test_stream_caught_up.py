"""When a shard counts as caught up, against runs of empty pages the Streams double answers.

AWS's ``GetRecords`` "might take multiple calls to get to a portion of the shard that
contains stream records": empty pages do not prove a shard is at its end. The model: three
root shards, one closing and splitting into two children, ``DescribeStream`` paging, an
expired iterator, throttling, and runs of empty pages in a closed parent's range or before an
open shard's first records.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archiver.aws.error_table import EXIT_OK
from archiver.capture.change_writer import FlushPolicy
from archiver.capture.reader import ConsumerConfig
from archiver.format import layout
from archiver.format.changefiles import read_checkpoints
from archiver.format.storage import Archive
from archiver.format.timefmt import parse_iso, utcnow
from tests.conftest import create_table
from tests.streams_double import DoubleShard, DoubleStream, StreamsDouble
from tests.test_stream_lineage import TABLE, archived_rows, event_ids, put, run, stream_of


@pytest.fixture
def table(ddb: Any) -> dict[str, Any]:
    return create_table(ddb, TABLE)


@dataclass
class Model:
    """Three root shards; ``parent`` closed and split into ``children``; ``quiet`` open."""

    double: StreamsDouble
    stream: DoubleStream
    parent: DoubleShard
    children: list[DoubleShard]
    busy: DoubleShard
    quiet: DoubleShard
    written: list[dict[str, Any]] = field(default_factory=list)


def build_model(
    table: dict[str, Any],
    *,
    parent_empty_pages: int = 0,
    quiet_empty_pages: int = 0,
    at: datetime | None = None,
) -> Model:
    """With ``at``, every record carries that event_time (records written since the stream
    was created); by default they are minutes old."""
    double = StreamsDouble(describe_page_size=2)
    stream = stream_of(double, table)
    start = at or utcnow() - timedelta(minutes=10)
    step = 0.0 if at else 10.0
    parent, busy, quiet = stream.add_shard(), stream.add_shard(), stream.add_shard()
    written = put(stream, parent, 10, start, step=step / 10)
    if parent_empty_pages:
        parent.empty_run(parent_empty_pages, before=5)  # in the middle of its range
    children = stream.split(parent)
    for child in children:
        written += put(stream, child, 4, start + timedelta(seconds=12 * step), step=step / 10)
    written += put(stream, busy, 20, start, step=step)
    if quiet_empty_pages:
        quiet.empty_run(quiet_empty_pages, before=0)  # before its first records
    written += put(stream, quiet, 6, start + timedelta(seconds=6 * step), step=step / 10)
    # Throttling and an expired iterator along the way.
    double.fail("get_records", "LimitExceededException", 2, shard_id=parent.shard_id)
    double.fail("get_records", "ProvisionedThroughputExceededException", 1)
    calls = {"n": 0}

    def expire_once(_: DoubleShard, call: int) -> None:
        if call == 4 and not calls["n"]:
            calls["n"] = 1
            double.expire_iterators()

    double.before_get_records = expire_once
    return Model(double, stream, parent, children, busy, quiet, written)


def end_of(model: Model, shard: DoubleShard) -> float:
    """When the reader reached the closed shard's end: the page without a
    ``NextShardIterator``, or the one holding its last record (its EndingSequenceNumber)."""
    last = len(shard.records)
    return min(
        p.at for p in model.double.pages_of(shard) if p.ended or (p.records and p.position == last)
    )


def first_read_of(model: Model, shard: DoubleShard) -> float:
    return min(
        at
        for at, name, kw in model.double.calls
        if name == "get_records" and kw.get("ShardId") == shard.shard_id
    )


def assert_children_waited(model: Model) -> None:
    parent_end = end_of(model, model.parent)
    for child in model.children:
        assert first_read_of(model, child) > parent_end
    # Reading the parent to its end took every record of it: nothing was skipped.
    assert sum(p.records for p in model.double.pages_of(model.parent)) == 10


def assert_each_record_once(model: Model, archive: Archive) -> None:
    rows = archived_rows(archive)
    assert sorted(r["event_id"] for r in rows) == sorted(event_ids(model.written))
    assert len({r["event_id"] for r in rows}) == len(rows)


def watermark_of(archive: Archive) -> datetime | None:
    doc = archive.read_json_or(layout.coverage(TABLE))
    return parse_iso(doc["watermark"]) if doc and doc.get("watermark") else None


def unarchived_times(archive: Archive, written: list[dict[str, Any]]) -> list[datetime]:
    archived = {r["event_id"] for r in archived_rows(archive)}
    return [
        r["dynamodb"]["ApproximateCreationDateTime"]
        for r in written
        if r["eventID"] not in archived
    ]


# -- closed shards: caught up only at their end ---------------------------------------------


@pytest.mark.parametrize("empty_pages", [3, 12])
def test_a_closed_parent_is_read_to_its_end_through_empty_pages_before_its_children(
    table: dict[str, Any], archive: Archive, empty_pages: int
) -> None:
    model = build_model(table, parent_empty_pages=empty_pages)
    assert run(model.double, archive) == EXIT_OK
    # The parent answered the whole run of empty pages in the middle of its range …
    parent_pages = model.double.pages_of(model.parent)
    assert sum(1 for p in parent_pages if not p.records and not p.ended) >= empty_pages
    # … and its children were first read strictly after its end.
    assert_children_waited(model)
    assert_each_record_once(model, archive)
    assert model.double.faults == []


def test_a_closed_shard_with_empty_pages_before_its_end_is_not_ended_early(
    table: dict[str, Any], archive: Archive
) -> None:
    model = build_model(table, parent_empty_pages=3)
    model.parent.empty_run(5)  # after its last record, before the page that ends it
    assert run(model.double, archive) == EXIT_OK
    assert_children_waited(model)
    assert_each_record_once(model, archive)


# -- open shards: never caught up on pages alone while others show records ------------------


def stream_created(table: dict[str, Any]) -> datetime:
    """The stream's creation, to the second: the earliest event_time a record in it can have."""
    label = datetime.fromisoformat(table["LatestStreamLabel"])
    return label.replace(tzinfo=UTC, microsecond=0)


@pytest.mark.parametrize("empty_pages", [3, 12])
def test_an_open_shard_with_empty_pages_before_its_first_records_is_archived(
    table: dict[str, Any], archive: Archive, empty_pages: int
) -> None:
    model = build_model(
        table, parent_empty_pages=3, quiet_empty_pages=empty_pages, at=stream_created(table)
    )
    assert run(model.double, archive) == EXIT_OK
    assert_each_record_once(model, archive)
    assert_children_waited(model)
    quiet_pages = model.double.pages_of(model.quiet)
    assert sum(1 for p in quiet_pages if not p.records) >= empty_pages


def test_the_watermark_never_passes_records_behind_empty_pages(
    table: dict[str, Any], archive: Archive
) -> None:
    created = stream_created(table)
    model = build_model(table, at=created)
    assert run(model.double, archive) == EXIT_OK
    assert_each_record_once(model, archive)
    # The quiet shard resumes after its last record, walks five empty pages and then finds
    # records the busy shard's newer ones say may be there.
    later = utcnow().replace(microsecond=0)  # written now, after the first run
    model.quiet.empty_run(5)
    model.written += put(model.stream, model.quiet, 3, later, step=0)
    model.written += put(model.stream, model.busy, 3, later, step=0)
    time.sleep(3.2)  # a claim made now would put the watermark past those records
    samples: list[tuple[datetime | None, list[datetime]]] = []

    def sample(shard: DoubleShard, call: int) -> None:
        samples.append((watermark_of(archive), unarchived_times(archive, model.written)))

    model.double.before_get_records = sample
    assert (
        run(model.double, archive, flush=FlushPolicy(records=1, seconds=60, bytes=1 << 30))
        == EXIT_OK
    )
    assert_each_record_once(model, archive)
    assert any(missing for _, missing in samples)
    for watermark, missing in samples:
        if watermark is not None and missing:
            assert watermark < min(missing), (watermark, min(missing))
    assert watermark_of(archive) is not None


def test_once_leaves_an_open_shard_without_records_unclaimed_while_others_have_them(
    table: dict[str, Any], archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    model = build_model(table, quiet_empty_pages=10_000, at=stream_created(table))
    with caplog.at_level(logging.WARNING):
        assert run(model.double, archive) == EXIT_OK
    assert model.quiet.shard_id in caplog.text and "not caught up" in caplog.text
    quiet_ids = set(event_ids(model.quiet.records))
    archived = {r["event_id"] for r in archived_rows(archive)}
    assert archived == set(event_ids(model.written)) - quiet_ids
    # No claim for the quiet shard: the watermark did not move at all.
    assert watermark_of(archive) is None
    checkpoints = read_checkpoints(archive, TABLE, layout.label_stamp(model.stream.label))
    assert checkpoints.get(model.quiet.shard_id, {}).get("caught_up_at") is None

    model.quiet.empty_runs.clear()
    assert run(model.double, archive) == EXIT_OK
    assert_each_record_once(model, archive)
    assert watermark_of(archive) is not None


def test_the_progress_line_names_shards_reading_on_through_empty_pages(
    table: dict[str, Any], archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    model = build_model(table, parent_empty_pages=60)
    with caplog.at_level(logging.INFO, logger="archiver.run"):
        assert run(model.double, archive) == EXIT_OK
    assert f"{model.parent.shard_id} closed, reading on to its end" in caplog.text
    assert_children_waited(model)


def test_empty_pages_cost_once_little_when_no_shard_is_behind(
    table: dict[str, Any], archive: Archive
) -> None:
    """One shard, records read at once: three empty pages end it, as before."""
    double = StreamsDouble()
    stream = stream_of(double, table)
    shard = stream.add_shard()
    written = put(stream, shard, 5, stream_created(table), step=0)
    assert run(double, archive) == EXIT_OK
    assert [r["event_id"] for r in archived_rows(archive)] == event_ids(written)
    pages = double.pages_of(shard)
    assert [p.records for p in pages] == [5] + [0] * ConsumerConfig().caught_up_pages


def test_a_shard_that_closes_while_read_is_read_to_its_end_before_its_children(
    table: dict[str, Any], archive: Archive
) -> None:
    # Slow pages: the split is listed while the first shard is still answering empty pages.
    double = StreamsDouble(latency=0.05)
    stream = stream_of(double, table)
    splitting, ending = stream.add_shard(), stream.add_shard()
    start = utcnow() - timedelta(minutes=10)
    written = put(stream, splitting, 5, start)
    written += put(stream, ending, 5, start + timedelta(minutes=1))  # newer: the other is behind
    stream.close(ending)
    children: list[DoubleShard] = []

    def split_on_first_read(shard: DoubleShard, _: int) -> None:
        if shard is splitting and not children:
            children.extend(stream.split(splitting))
            splitting.empty_run(30)  # before its end
            for child in children:
                written.extend(put(stream, child, 2, start + timedelta(minutes=2)))

    double.before_get_records = split_on_first_read
    # The other shard ends at once, so the split is listed while the first is still read as
    # an open shard: its reader must see it closed and read on to its end.
    assert run(double, archive) == EXIT_OK
    # Its last page (at its end, and never read again) came before any child's first.
    last_page = max(p.at for p in double.pages_of(splitting))
    for child in children:
        assert min(p.at for p in double.pages_of(child)) > last_page
    assert sorted(r["event_id"] for r in archived_rows(archive)) == sorted(event_ids(written))
