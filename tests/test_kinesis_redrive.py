"""The Kinesis Lambda function's failed batches: read at the on-failure destination as gaps,
redriven into the archive exactly as the function would have written them.

A batch that keeps failing goes, after ``MaximumRetryAttempts``, to the event source mapping's
on-failure destination as an invocation record with ``KinesisBatchInfo`` (AWS Lambda Developer
Guide, "Retain discarded batch records for a Kinesis Data Streams event source in Lambda"); an
S3 destination adds the whole event as ``payload``. moto's event source mappings run no
function, so the tests write those objects where the destination writes them
(``aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/…``), as ``tests/test_lambda_gaps.py`` does for
DynamoDB Streams. Batches that succeed go through the real handler; a payload-less batch is
read again from moto's Kinesis.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from archiver.aws.error_table import EXIT_NEW_GAP, EXIT_OK, EXIT_REFUSED, ArchiverError
from archiver.cli import main as archiver_main
from archiver.format import layout
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow
from archiver.lambda_mode import failures, kinesis_handler
from archiver.lambda_mode import redrive as redriving
from replayer.exceptions import GapInLog
from replayer.planning.lambda_gaps import LambdaChecks, LambdaFailuresUnknown
from tests.conftest import REGION, Crash, create_table
from tests.kinesis_double import DestinationDouble, lambda_event, stream_arn
from tests.kinesis_helpers import History, Step, micros_of, restored, seed_coverage
from tests.replay_helpers import replayer
from tests.test_metrics import emf_lines

TABLE = "orders"
ARN = stream_arn("orders-cdc")
SHARD = "shardId-000000000003"
ESM_UUID = "a1b2c3d4-5678-90ab-cdef-222222222222"
FUNCTION = "ddb-archive-orders-kinesis"
MARGIN = 0.1  # KINESIS_REORDER_SECONDS in these tests


@pytest.fixture
def function(monkeypatch: pytest.MonkeyPatch, archive: Archive) -> DestinationDouble:
    destinations = DestinationDouble()
    destinations.set(TABLE, ARN)
    monkeypatch.setenv("ARCHIVE_URL", archive.url)
    monkeypatch.setenv("TABLE_NAMES", TABLE)
    monkeypatch.setenv("MAX_ITERATOR_AGE_SECONDS", "0.1")
    monkeypatch.setenv("KINESIS_REORDER_SECONDS", str(MARGIN))
    kinesis_handler.reset(destinations=destinations.sync)
    return destinations


def event_records(steps: list[Step], first: int, arn: str = ARN) -> list[dict[str, Any]]:
    """Lambda event records of ``steps``, Kinesis sequence numbers counting from ``first``."""
    return lambda_event(
        arn,
        SHARD,
        [
            (str(49_000_000_000 + first + n), s.doc, datetime.fromtimestamp(s.micros / 1e6, UTC))
            for n, s in enumerate(steps)
        ],
    )["Records"]


def invocation_record(
    records: list[dict[str, Any]], *, payload: bool = True, arn: str = ARN, shard: str = SHARD
) -> dict[str, Any]:
    """The S3 on-failure destination's object for one failed batch of a Kinesis mapping."""
    arrivals = [float(r["kinesis"]["approximateArrivalTimestamp"]) for r in records]
    doc: dict[str, Any] = {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION}",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": iso_ms(utcnow()),
        "KinesisBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": records[0]["kinesis"]["sequenceNumber"],
            "endSequenceNumber": records[-1]["kinesis"]["sequenceNumber"],
            "approximateArrivalOfFirstRecord": iso_ms(datetime.fromtimestamp(min(arrivals), UTC)),
            "approximateArrivalOfLastRecord": iso_ms(datetime.fromtimestamp(max(arrivals), UTC)),
            "batchSize": len(records),
            "streamArn": arn,
        },
    }
    if payload:
        doc["payload"] = json.dumps({"Records": records})
    return doc


def deliver(destination: Path, doc: dict[str, Any]) -> str:
    """Write the object where the destination writes it; returns its path."""
    now = utcnow()
    shard = doc["KinesisBatchInfo"]["shardId"]
    path = destination / (
        f"aws/lambda/{ESM_UUID}/{shard}/{now:%Y/%m/%d}/{now:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json.dumps(doc).encode())
    return str(path)


def change_files(archive: Archive) -> dict[str, bytes]:
    return {rel: archive.get_bytes(rel) for rel in archive.find(layout.CHANGES, ".parquet")}


def rows(archive: Archive) -> list[dict[str, Any]]:
    return [r for rel in change_files(archive) for r in archive.read_parquet(rel).to_pylist()]


def history_with_a_failed_batch(
    ddb: Any, archive: Archive
) -> tuple[History, list[Step], list[Step], list[Step]]:
    """A history of 12 changes to 3 keys: the function archives the first 4 and the last 4;
    the 4 between them are the batch that fails. Returns (history, before, failed, after)."""
    description = create_table(ddb, TABLE, stream=None)
    _, created = seed_coverage(archive, TABLE, description)
    base = micros_of(created) + 50_000
    history = History(TABLE)
    for n in range(12):
        history.write(f"k{n % 3}", base + n * 1_000, f"v{n}")
    steps = history.steps
    before, failed, after = steps[:4], steps[4:8], steps[8:]
    assert kinesis_handler.handler({"Records": event_records(before, 1)}, None) == {
        "batchItemFailures": []
    }
    assert kinesis_handler.handler({"Records": event_records(after, 9)}, None) == {
        "batchItemFailures": []
    }
    time.sleep(max(0.0, (base + 12_000) / 1e6 + 0.4 - time.time()))
    kinesis_handler.handler({"Records": event_records(after[-1:], 12)}, None)  # the watermark
    return history, before, failed, after


def checks(destination: Path) -> LambdaChecks:
    # The function's IteratorAge is not what these tests are about (tests/test_lambda_gaps.py).
    return LambdaChecks(failures_url=str(destination), trust_watermark=True)


# -- with the payload -------------------------------------------------------------------------


def test_a_failed_batch_is_a_gap_until_redriven_then_every_instant_restores_exactly(
    ddb: Any, archive: Archive, function: DestinationDouble, tmp_path: Path
) -> None:
    history, _, failed, _ = history_with_a_failed_batch(ddb, archive)
    other = History("other").write("x", failed[0].micros, "1")
    assert other is not None
    destination = tmp_path / "on-failure"
    records = event_records(failed, 5)
    records.insert(2, event_records([other], 100)[0])  # a shared data stream
    deliver(destination, invocation_record(records))

    # Unknown is not none: with no destination known, every restore is refused.
    with pytest.raises(LambdaFailuresUnknown):
        restored(archive, TABLE, history.instants()[-1], lambda_checks=LambdaChecks())
    # Known: refused from the batch's first record on, with the command that closes it.
    for ms in history.instants():
        at = datetime.fromtimestamp(ms / 1000, UTC)
        if at >= datetime.fromtimestamp(failed[0].micros / 1e6, UTC) - timedelta(seconds=1):
            with pytest.raises(GapInLog, match="ddb-archiver redrive"):
                restored(archive, TABLE, ms, lambda_checks=checks(destination))

    report = redriving.redrive(archive, TABLE, Archive.open(str(destination)))
    assert [o.status for o in report.outcomes] == [failures.STATUS_REDRIVEN]
    archived = rows(archive)
    assert sorted(r["event_id"] for r in archived) == sorted(s.event_id for s in history.steps)
    assert not [r for r in archived if '"x"' in r["keys"]]  # the other table's change
    for ms in history.instants(most=12):
        assert restored(archive, TABLE, ms, lambda_checks=checks(destination)) == (
            history.state_at(ms)
        )

    # Twice: nothing new, and the object is not read again.
    files = change_files(archive)
    again = redriving.redrive(archive, TABLE, Archive.open(str(destination)))
    assert again.outcomes == [] and again.already == 1
    assert change_files(archive) == files


def test_the_redriven_rows_are_the_rows_the_function_writes(
    ddb: Any, archive: Archive, function: DestinationDouble, tmp_path: Path
) -> None:
    """The same records, archived by the function or by redrive, give the same rows: a
    batch the function archived and that also reached the destination adds nothing."""
    _, before, _, _ = history_with_a_failed_batch(ddb, archive)
    destination = tmp_path / "on-failure"
    deliver(destination, invocation_record(event_records(before, 1)))
    files = change_files(archive)
    report = redriving.redrive(archive, TABLE, Archive.open(str(destination)))
    assert [o.status for o in report.outcomes] == [failures.STATUS_REDRIVEN]
    assert change_files(archive) == files


def test_a_crash_between_the_change_file_and_the_redrive_record_loses_nothing(
    ddb: Any, archive: Archive, function: DestinationDouble, tmp_path: Path, crash_after: Any
) -> None:
    history, _, failed, _ = history_with_a_failed_batch(ddb, archive)
    destination = tmp_path / "on-failure"
    deliver(destination, invocation_record(event_records(failed, 5)))
    location = Archive.open(str(destination))
    for n in range(3):
        crash_after(n)
        # A failed change-file write says which records are durable (WriteFailed).
        with contextlib.suppress(Crash, ArchiverError):
            redriving.redrive(archive, TABLE, location)
        crash_after(-1)
    redriving.redrive(archive, TABLE, location)
    report = failures.lambda_failure_gaps(archive, TABLE, location=str(destination))
    assert report.gaps == [] and report.redriven == 1
    event_ids = [r["event_id"] for r in rows(archive)]
    assert sorted(set(event_ids)) == sorted(s.event_id for s in history.steps)
    assert len(event_ids) == len(set(event_ids))  # nothing written twice
    ms = history.instants()[-1]
    assert restored(archive, TABLE, ms, lambda_checks=checks(destination)) == history.state_at(ms)


def test_a_record_the_archive_cannot_take_keeps_the_gap_and_is_named(
    ddb: Any, archive: Archive, function: DestinationDouble, tmp_path: Path
) -> None:
    history, _, failed, _ = history_with_a_failed_batch(ddb, archive)
    del failed[1].doc["dynamodb"]["ApproximateCreationDateTime"]
    destination = tmp_path / "on-failure"
    deliver(destination, invocation_record(event_records(failed, 5)))
    (outcome,) = redriving.redrive(archive, TABLE, Archive.open(str(destination))).outcomes
    assert outcome.status == failures.STATUS_MALFORMED
    assert [m["event_id"] for m in outcome.malformed] == [failed[1].event_id]
    archived = {r["event_id"] for r in rows(archive)}
    assert {failed[0].event_id, failed[2].event_id, failed[3].event_id} <= archived
    (gap,) = failures.lambda_failure_gaps(archive, TABLE, location=str(destination)).gaps
    assert gap["status"] == failures.STATUS_MALFORMED
    with pytest.raises(GapInLog, match=failed[1].event_id):
        restored(archive, TABLE, history.instants()[-1], lambda_checks=checks(destination))


# -- without the payload: read again from the data stream -------------------------------------


@pytest.fixture
def kinesis(aws_env: str) -> Any:
    return boto3.client("kinesis", region_name=REGION, endpoint_url=aws_env)


def test_a_batch_without_payload_is_read_again_from_the_data_stream(
    ddb: Any, archive: Archive, function: DestinationDouble, tmp_path: Path, kinesis: Any
) -> None:
    kinesis.create_stream(StreamName="orders-cdc", ShardCount=1)
    shard = kinesis.list_shards(StreamName="orders-cdc")["Shards"][0]["ShardId"]
    history, _, failed, _ = history_with_a_failed_batch(ddb, archive)
    # The failed batch's records as DynamoDB put them in the data stream, with another
    # table's change between them.
    other = History("other").write("x", failed[0].micros, "1")
    assert other is not None
    sequence_numbers = []
    for step in [failed[0], other, *failed[1:]]:
        answer = kinesis.put_record(
            StreamName="orders-cdc", Data=orjson.dumps(step.doc), PartitionKey=step.pk
        )
        sequence_numbers.append(answer["SequenceNumber"])
    records = event_records(failed, 5)
    records[0]["kinesis"]["sequenceNumber"] = sequence_numbers[0]
    records[-1]["kinesis"]["sequenceNumber"] = sequence_numbers[-1]
    destination = tmp_path / "on-failure"
    deliver(destination, invocation_record(records, payload=False, shard=shard))
    # A metadata-only batch of a data stream the table is not archived from is not its gap.
    elsewhere = stream_arn("payments-cdc")
    records = event_records(failed, 5, arn=elsewhere)
    deliver(destination, invocation_record(records, payload=False, arn=elsewhere))

    report = failures.lambda_failure_gaps(archive, TABLE, location=str(destination))
    (gap,) = report.gaps
    assert gap["stream_arn"] == ARN
    # Its range is the batch's arrivals, moved back by the function's reordering margin.
    first_arrival = datetime.fromtimestamp(failed[0].micros / 1e6, UTC)
    assert gap["from"] <= iso_ms(first_arrival - timedelta(seconds=1 + MARGIN))
    with pytest.raises(GapInLog):
        restored(archive, TABLE, history.instants()[-1], lambda_checks=checks(destination))

    done = redriving.redrive(archive, TABLE, Archive.open(str(destination)), kinesis=kinesis)
    assert [o.status for o in done.outcomes] == [failures.STATUS_REDRIVEN]
    assert {r["event_id"] for r in rows(archive)} == {s.event_id for s in history.steps}
    for ms in history.instants(most=12):
        assert restored(archive, TABLE, ms, lambda_checks=checks(destination)) == (
            history.state_at(ms)
        )


def test_a_batch_without_payload_past_the_stream_stays_a_gap(
    ddb: Any, archive: Archive, function: DestinationDouble, tmp_path: Path, kinesis: Any
) -> None:
    _, _, failed, _ = history_with_a_failed_batch(ddb, archive)
    destination = tmp_path / "on-failure"
    deliver(destination, invocation_record(event_records(failed, 5), payload=False))
    (outcome,) = redriving.redrive(
        archive, TABLE, Archive.open(str(destination)), kinesis=kinesis
    ).outcomes
    assert outcome.status == failures.STATUS_UNAVAILABLE
    assert "no longer holds its range" in outcome.detail
    (gap,) = failures.lambda_failure_gaps(archive, TABLE, location=str(destination)).gaps
    assert gap["status"] == failures.STATUS_UNAVAILABLE


# -- the commands, on an archive in S3 as the stack deploys it --------------------------------


def test_status_restore_and_redrive_through_the_commands(
    ddb: Any,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    function: DestinationDouble,
) -> None:
    s3.create_bucket(Bucket="archive-bucket")
    url = "s3://archive-bucket"
    monkeypatch.setenv("ARCHIVE_URL", url)
    monkeypatch.setenv("DDB_ARCHIVE_TRUST_LAMBDA_WATERMARK", "true")
    kinesis_handler.reset(destinations=function.sync)
    archive = Archive.open(url)
    history, _, failed, _ = history_with_a_failed_batch(ddb, archive)
    doc = invocation_record(event_records(failed, 5))
    now = utcnow()
    s3.put_object(
        Bucket="archive-bucket",
        Key=f"aws/lambda/{ESM_UUID}/{SHARD}/{now:%Y/%m/%d}/{now:%Y-%m-%dT%H.%M.%S}-x",
        Body=json.dumps(doc).encode(),
    )
    at = iso_ms(datetime.fromtimestamp((history.steps[-1].micros + 1000) / 1e6, UTC))
    restore = [
        "restore", "--source-table-name", TABLE, "--archive", url, "--restore-date-time", at,
        "--strategy", "replay", "--no-verify",
    ]  # fmt: skip

    code, _, err = replayer(capsys, *restore, "--target-table-name", "refused")
    assert code == EXIT_REFUSED, err
    assert f"ddb-archiver redrive --table-name {TABLE} --archive {url}" in err
    code, out, err = replayer(capsys, "status", "--archive", url, "--table-name", TABLE)
    assert code == 0, err
    assert "1 Lambda batch(es) not archived" in out

    argv = ["redrive", "--table-name", TABLE, "--archive", url]
    assert archiver_main([*argv, "--dry-run"]) == EXIT_OK
    assert "would archive" in capsys.readouterr().out
    assert archive.find(layout.STATE, "lambda-redrives.jsonl") == []
    assert archiver_main([*argv, "--metrics", "emf"]) == EXIT_OK
    [doc] = emf_lines(capsys.readouterr().out)
    assert (doc["Table"], doc["RecordsArchived"], doc["FilesWritten"]) == (TABLE, len(failed), 1)
    code, _, err = replayer(capsys, *restore, "--target-table-name", "restored")
    assert code == EXIT_OK, err
    items = ddb.scan(TableName="restored")["Items"]
    last = history.state_at(history.steps[-1].micros // 1000 + 1)
    assert len(items) == len(last)


def test_the_function_writes_emf_lines_with_what_it_archived(
    ddb: Any, archive: Archive, function: DestinationDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    description = create_table(ddb, TABLE, stream=None)
    _, created = seed_coverage(archive, TABLE, description)
    history = History(TABLE)
    for n in range(3):
        history.write(f"k{n}", micros_of(created) + 50_000 + n, "v")
    capsys.readouterr()
    answer = kinesis_handler.handler({"Records": event_records(history.steps, 1)}, None)
    assert answer == {"batchItemFailures": []}
    [doc] = emf_lines(capsys.readouterr().out)
    assert (doc["Table"], doc["RecordsArchived"], doc["FilesWritten"]) == (TABLE, 3, 1)
    assert doc["BytesArchived"] == sum(s.doc["dynamodb"]["SizeBytes"] for s in history.steps)
    assert doc["ArchiveLagSeconds"] >= 0
    poison = History(TABLE).write("p", micros_of(created) + 60_000, "v")
    assert poison is not None
    del poison.doc["dynamodb"]["Keys"]
    assert kinesis_handler.handler({"Records": event_records([poison], 9)}, None)[
        "batchItemFailures"
    ]
    [doc] = emf_lines(capsys.readouterr().out)
    assert doc["PoisonRecords"] == 1


def test_the_documented_invocation_record_is_read_exactly() -> None:
    """The object AWS documents for a Kinesis mapping, metadata only: its shard, sequence
    numbers and stream; its range the arrivals, moved back by the reordering margin."""
    doc = {
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
            "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 1,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
            "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": 500,
            "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
        },
    }
    batch = failures.parse_invocation_record(json.dumps(doc).encode(), "s3://b/k")
    assert batch.source == failures.SOURCE_KINESIS and batch.records is None
    assert batch.shard_id == "shardId-000000000001" and batch.batch_size == 500
    assert batch.stream_arn == "arn:aws:kinesis:us-east-2:123456789012:stream/mystream"
    assert batch.concerns("orders", None)
    assert batch.concerns("orders", frozenset({batch.stream_arn}))
    assert not batch.concerns("orders", frozenset({ARN}))
    gap = batch.gap(None, failures.STATUS_PENDING, table="orders")
    assert (gap["from"], gap["to"]) == ("2019-11-14T00:37:03.835Z", "2019-11-14T00:38:06.580Z")
    # With the payload: each table's own records, by their creation times.
    change = {"eventID": "e1", "eventName": "INSERT", "tableName": "orders",
              "dynamodb": {"ApproximateCreationDateTime": 1573691880123456,
                           "Keys": {"pk": {"S": "a"}}, "NewImage": {"pk": {"S": "a"}}}}  # fmt: skip
    data = base64.b64encode(orjson.dumps(change)).decode()
    doc["payload"] = json.dumps(
        {"Records": [{"kinesis": {"data": data, "sequenceNumber": "1"}, "eventSourceARN": ARN}]}
    )
    batch = failures.parse_invocation_record(json.dumps(doc).encode(), "s3://b/k")
    assert batch.concerns("orders") and not batch.concerns("payments")
    gap = batch.gap(None, failures.STATUS_PENDING, table="orders")
    assert (gap["from"], gap["to"]) == ("2019-11-14T00:37:59.123Z", "2019-11-14T00:38:01.123Z")


def test_redrive_says_what_stays_a_gap_with_exit_5(
    ddb: Any, archive: Archive, function: DestinationDouble, tmp_path: Path
) -> None:
    _, _, failed, _ = history_with_a_failed_batch(ddb, archive)
    destination = tmp_path / "on-failure"
    deliver(destination, invocation_record(event_records(failed, 5), payload=False))
    argv = ["redrive", "--table-name", TABLE, "--archive", archive.url, "--from", str(destination)]
    assert archiver_main(argv) == EXIT_NEW_GAP
