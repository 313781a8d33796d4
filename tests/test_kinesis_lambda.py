"""The Lambda function behind a Kinesis event source mapping: records base64 in
``kinesis.data``, other tables skipped, duplicates dropped, ties ordered, partial batch
responses naming the Kinesis sequence number to retry from; restores from its files."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from archiver.format import coverage, layout
from archiver.format.storage import Archive
from archiver.lambda_mode import kinesis_handler
from replayer.planning.lambda_gaps import LambdaChecks, LambdaFailuresUnknown
from tests.conftest import create_table
from tests.kinesis_double import DestinationDouble, lambda_event, stream_arn
from tests.kinesis_helpers import History, micros_of, restored, seed_coverage

TABLE = "orders"
ARN = stream_arn("orders-cdc")
SHARD = "shardId-000000000003"


@pytest.fixture
def function(monkeypatch: pytest.MonkeyPatch, archive: Archive) -> DestinationDouble:
    destinations = DestinationDouble()
    destinations.set(TABLE, ARN)
    monkeypatch.setenv("ARCHIVE_URL", archive.url)
    monkeypatch.setenv("TABLE_NAMES", TABLE)
    monkeypatch.setenv("MAX_ITERATOR_AGE_SECONDS", "0.1")
    monkeypatch.setenv("KINESIS_REORDER_SECONDS", "0.1")
    kinesis_handler.reset(destinations=destinations.sync)
    return destinations


def batch(steps: list[Any], first: int = 1) -> dict[str, Any]:
    return lambda_event(
        ARN,
        SHARD,
        [
            (
                str(49_000_000_000 + first + n),
                step.doc,
                datetime.fromtimestamp(step.micros / 1e6, UTC),
            )
            for n, step in enumerate(steps)
        ],
    )


def rows(archive: Archive) -> list[dict[str, Any]]:
    out = []
    for rel in archive.find(layout.changes_table_dir(TABLE), ".parquet"):
        out.extend(archive.read_parquet(rel).to_pylist())
    return out


def test_batches_are_archived_in_time_order_and_restore_exactly(
    ddb: Any, archive: Archive, function: DestinationDouble, tmp_path: Path
) -> None:
    description = create_table(ddb, TABLE, stream=None)
    _, created = seed_coverage(archive, TABLE, description)
    base = micros_of(created) + 50_000
    history = History(TABLE)
    for n in range(12):
        history.write(f"k{n % 3}", base + n * 1_000 + (0 if n != 7 else -1_000), f"v{n}")
    other = History("other").write("x", base, "1")
    assert other is not None
    steps = list(reversed(history.steps))
    assert kinesis_handler.handler(batch([*steps[:6], other]), None) == {"batchItemFailures": []}
    assert kinesis_handler.handler(batch(steps[4:], first=5), None) == {"batchItemFailures": []}

    archived = rows(archive)
    assert sorted({r["event_id"] for r in archived}) == sorted(s.event_id for s in history.steps)
    assert {r["origin"] for r in archived} == {"kinesis"}
    assert {r["shard_id"] for r in archived} == {None}
    assert all(
        layout.is_kinesis_file(f) and "_lambda_" in f for f in archive.find("changes", ".parquet")
    )
    generation = coverage.current(archive, TABLE)
    assert generation is not None and generation["mode"] == "kinesis-lambda"
    time.sleep(max(0.0, (base + 12_000) / 1e6 + 0.4 - time.time()))
    kinesis_handler.handler(batch([]), None)
    assert kinesis_handler.handler(batch(steps[:1], first=1), None) == {"batchItemFailures": []}
    # Where failed batches go is unknown for a local archive: unknown is not none, so every
    # restore is refused until it is given (tests/test_kinesis_redrive.py reads them).
    with pytest.raises(LambdaFailuresUnknown, match="--lambda-failures"):
        restored(archive, TABLE, history.instants(most=1)[0])
    checks = LambdaChecks(failures_url=str(tmp_path / "on-failure"), trust_watermark=True)
    for instant in history.instants(most=6):
        assert restored(archive, TABLE, instant, lambda_checks=checks) == history.state_at(instant)


def test_a_failed_write_names_the_first_record_not_durable(
    ddb: Any, archive: Archive, function: DestinationDouble, crash_after: Any
) -> None:
    description = create_table(ddb, TABLE, stream=None)
    _, created = seed_coverage(archive, TABLE, description)
    base = micros_of(created) + 50_000
    history = History(TABLE)
    for n in range(5):
        history.write(f"k{n}", base + n * 1_000, "v")
    warm, *steps = history.steps
    assert kinesis_handler.handler(batch([warm]), None) == {"batchItemFailures": []}
    crash_after(0)  # the batch's file
    answer = kinesis_handler.handler(batch(steps), None)
    assert answer == {"batchItemFailures": [{"itemIdentifier": str(49_000_000_001)}]}
    crash_after(-1)
    assert kinesis_handler.handler(batch(steps), None) == {"batchItemFailures": []}
    assert sorted(r["event_id"] for r in rows(archive)) == sorted(s.event_id for s in history.steps)


def test_a_poison_record_is_reported_and_the_ones_before_it_are_archived(
    ddb: Any, archive: Archive, function: DestinationDouble
) -> None:
    description = create_table(ddb, TABLE, stream=None)
    _, created = seed_coverage(archive, TABLE, description)
    history = History(TABLE)
    good = history.write("a", micros_of(created) + 50_000, "v")
    bad = history.write("b", micros_of(created) + 51_000, "v")
    assert good is not None and bad is not None
    del bad.doc["dynamodb"]["ApproximateCreationDateTime"]
    answer = kinesis_handler.handler(batch([good, bad]), None)
    assert answer == {"batchItemFailures": [{"itemIdentifier": str(49_000_000_002)}]}
    assert [r["event_id"] for r in rows(archive)] == [good.event_id]


def test_millisecond_precision_and_missing_configuration_fail_every_batch(
    ddb: Any, archive: Archive, function: DestinationDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    description = create_table(ddb, TABLE, stream=None)
    seed_coverage(archive, TABLE, description)
    step = History(TABLE).write("a", micros_of(datetime.now(UTC)), "v")
    assert step is not None
    function.set(TABLE, ARN, precision="MILLISECOND")
    answer = kinesis_handler.handler(batch([step]), None)
    assert answer == {"batchItemFailures": [{"itemIdentifier": str(49_000_000_001)}]}
    assert rows(archive) == []
    monkeypatch.setenv("ACCEPT_MILLISECOND_ORDER", "true")
    kinesis_handler.reset(destinations=function.sync)
    assert kinesis_handler.handler(batch([step]), None) == {"batchItemFailures": []}
    monkeypatch.delenv("TABLE_NAMES")
    with pytest.raises(kinesis_handler.ConfigurationError, match="TABLE_NAMES"):
        kinesis_handler.handler(batch([step]), None)
