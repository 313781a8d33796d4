"""``ddb-archiver run --kinesis-stream-arn`` end to end: moto serves DynamoDB and Kinesis (the
records are DynamoDB-shaped documents the tests put themselves), a double answers
``DescribeKinesisStreamingDestination``; restores of the archive are compared with the table's
true history at every millisecond it changed."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from archiver.format import chain, coverage, gap_log, layout
from archiver.format.storage import Archive
from tests.conftest import REGION, create_table
from tests.kinesis_double import DestinationDouble, change_doc
from tests.kinesis_helpers import (
    History,
    capture,
    micros_of,
    restored,
    seed_coverage,
    shuffled_with_duplicates,
)

TABLE = "orders"


@pytest.fixture
def kinesis(aws_env: str) -> Any:
    return boto3.client("kinesis", region_name=REGION, endpoint_url=aws_env)


def make_stream(kinesis: Any, name: str = "orders-cdc", shards: int = 2) -> str:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    return str(
        kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    )


def put(kinesis: Any, arn: str, doc: dict[str, Any], shard: int) -> None:
    """Put one document into shard ``shard`` of moto's stream (by its hash key range)."""
    kinesis.put_record(
        StreamARN=arn,
        Data=orjson.dumps(doc),
        PartitionKey="p",
        ExplicitHashKey=str(shard * 2**127 + 12345),
    )


def rows(archive: Archive, table: str = TABLE) -> list[dict[str, Any]]:
    out = []
    for rel in archive.find(layout.changes_table_dir(table), ".parquet"):
        out.extend(archive.read_parquet(rel).to_pylist())
    return out


def test_out_of_order_duplicated_records_of_two_shards_restore_exactly_at_every_instant(
    ddb: Any, kinesis: Any, archive: Archive
) -> None:
    description = create_table(ddb, TABLE, stream=None)
    _, created = seed_coverage(archive, TABLE, description)
    arn = make_stream(kinesis)
    destinations = DestinationDouble()
    destinations.set(TABLE, arn)
    history = History(TABLE)
    base = micros_of(created) + 100_000
    for n in range(40):  # rewrites, deletes and re-inserts of five keys, 7 ms apart
        value = None if n % 7 == 3 else f"v{n}"
        history.write(f"k{n % 5}", base + n * 7_000 + n % 3, value)
    # Another table's records share the stream; the table's own arrive scrambled, some twice,
    # across both shards.
    for n, step in enumerate(shuffled_with_duplicates(history.steps, seed=7)):
        put(kinesis, arn, step.doc, shard=n % 2)
        if n % 5 == 0:
            other = change_doc(
                "other", {"pk": {"S": "x"}}, micros=step.micros, new={"pk": {"S": "x"}}
            )
            put(kinesis, arn, other, shard=(n + 1) % 2)
    time.sleep(max(0.0, (base + 40 * 7_000) / 1e6 + 0.5 - time.time()))

    assert capture(archive, TABLE, arn, destinations, flush_records=17) == 0

    archived = rows(archive)
    assert {r["event_id"] for r in archived} == {s.event_id for s in history.steps}
    assert {r["origin"] for r in archived} == {"kinesis"}
    assert {r["stream_arn"] for r in archived} == {arn}
    assert not any(r["table_id"] != archived[0]["table_id"] for r in archived)
    for instant in history.instants():
        assert restored(archive, TABLE, instant) == history.state_at(instant), instant
    # Every change file is chained per Kinesis shard and checks clean; a second run adds nothing.
    files = [r for r in archive.find("changes", ".parquet")]
    assert files and all(layout.is_kinesis_file(f) for f in files)
    assert chain.verify_files(archive, files, context=files) == []
    assert capture(archive, TABLE, arn, destinations) == 0
    assert len(rows(archive)) == len(archived)
    watermark = coverage.current(archive, TABLE)["watermark"]
    assert (
        watermark is not None
        and watermark
        >= datetime.fromtimestamp(history.steps[-1].micros / 1e6, UTC).isoformat()[:19]
    )


def test_millisecond_precision_is_refused_unless_accepted(
    ddb: Any, kinesis: Any, archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    create_table(ddb, TABLE, stream=None)
    arn = make_stream(kinesis, shards=1)
    destinations = DestinationDouble()
    destinations.set(TABLE, arn, precision="MILLISECOND")
    from archiver.capture.kinesis_run import MillisecondOrder

    with pytest.raises(MillisecondOrder) as refused:
        capture(archive, TABLE, arn, destinations)
    assert refused.value.exit_code == 4
    assert "--accept-millisecond-order" in str(refused.value)
    assert not archive.exists(layout.coverage(TABLE))
    assert capture(archive, TABLE, arn, destinations, accept_millisecond_order=True) == 0


def test_cli_run_with_a_kinesis_stream(
    ddb: Any,
    kinesis: Any,
    archive_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from archiver.capture import kinesis_run
    from archiver.cli import main

    create_table(ddb, TABLE, stream=None)
    arn = make_stream(kinesis, shards=1)
    destinations = DestinationDouble()
    destinations.set(TABLE, arn)

    original = kinesis_run.describe_destination

    async def describe(_source: Any, table: str, stream: str) -> Any:
        return await original(destinations, table, stream)

    monkeypatch.setattr(kinesis_run, "describe_destination", describe)
    step = History(TABLE).write("a", micros_of(datetime.now(UTC)), "1")
    assert step is not None
    put(kinesis, arn, step.doc, shard=0)
    code = main(
        ["run", "--table-name", TABLE, "--archive", str(archive_path), "--once",
         "--poll-seconds", "0.05", "--kinesis-stream-arn", arn]
    )  # fmt: skip
    assert code == 0
    assert [r["event_id"] for r in rows(Archive.open(str(archive_path)))] == [step.event_id]
    assert main(["run", "--table-name", TABLE, "--table-name", "b", "--archive",
                 str(archive_path), "--kinesis-stream-arn", arn]) == 2  # fmt: skip
    assert "archives one table" in capsys.readouterr().err
    assert main(["run", "--table-name", TABLE, "--archive", str(archive_path),
                 "--kinesis-stream-arn", "arn:aws:dynamodb:x"]) == 2  # fmt: skip


def test_a_lost_file_is_read_again_from_the_kinesis_stream_by_check_repair(
    ddb: Any, kinesis: Any, archive: Archive
) -> None:
    from archiver.cli import main

    description = create_table(ddb, TABLE, stream=None)
    _, created = seed_coverage(archive, TABLE, description)
    arn = make_stream(kinesis, shards=1)
    destinations = DestinationDouble()
    destinations.set(TABLE, arn)
    history = History(TABLE)
    base = micros_of(created) + 100_000
    for n in range(12):
        history.write(f"k{n % 3}", base + n * 5_000, f"v{n}")
    time.sleep(max(0.0, (base + 60_000) / 1e6 + 0.5 - time.time()))
    delivered = list(shuffled_with_duplicates(history.steps, seed=11))
    for part in range(3):  # three runs, three files
        for step in delivered[part * len(delivered) // 3 : (part + 1) * len(delivered) // 3]:
            put(kinesis, arn, step.doc, shard=0)
        assert capture(archive, TABLE, arn, destinations) == 0
    files = sorted(archive.find("changes", ".parquet"), key=lambda f: f.rsplit("_", 2)[-2])
    assert len(files) >= 3
    lost = archive.read_parquet(files[1]).to_pylist()
    archive.delete(files[1])

    check = ["check", "--table-name", TABLE, "--archive", archive.url]
    assert main(check) == 3
    assert main([*check, "--repair"]) == 0
    assert main(check) == 0
    restored_files = sorted(archive.find("changes", ".parquet"), key=lambda f: f.rsplit("_", 2)[-2])
    assert restored_files == files  # the same names: the same records, counted the same
    assert archive.read_parquet(files[1]).to_pylist() == lost
    last = history.instants()[-1]
    assert restored(archive, TABLE, last) == history.state_at(last)
    assert gap_log.read_gaps(archive, TABLE) == []
