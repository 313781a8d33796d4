"""Lambda mode knows its own holes: failed batches and a stalled function are gaps until fixed.

The table lives in moto; the archive is in moto's S3 as the stack deploys it
(``s3://<bucket>``, on-failure objects under ``s3://<bucket>/aws/lambda/``). Batches go
through the real handler; a "failed" batch is written into S3 as the event source mapping's
S3 on-failure destination writes it (AWS Lambda Developer Guide, "Retain discarded records
for a DynamoDB event source in Lambda"): the invocation record with ``DDBStreamBatchInfo``
and the whole event as a JSON string in ``payload``, at
``aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<UUID>``. moto's event
source mappings do not run functions, so nothing but the test writes those objects.
IteratorAge datapoints are put into moto's CloudWatch, as Lambda would emit them.
"""

from __future__ import annotations

import http.server
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from archiver.aws.error_table import EXIT_DIFFERENCES, EXIT_NEW_GAP, EXIT_OK, EXIT_REFUSED
from archiver.cli import main as archiver_main
from archiver.format import coverage, layout
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow
from archiver.lambda_mode import failures as lambda_failures
from archiver.lambda_mode import handler as lh
from replayer.exceptions import GapInLog
from replayer.planning import lambda_gaps
from replayer.planning import plan as planning
from tests import changes_builder
from tests.conftest import REGION, create_table
from tests.helpers import stream_records
from tests.replay_helpers import (
    LABEL,
    T0,
    TABLE_ID,
    Change,
    at,
    item,
    key,
    replayer,
    write_changes,
    write_description,
)
from tests.test_lambda_handler import lambda_event
from tests.workload import scan_state

ROOT = Path(__file__).resolve().parents[1]
TABLE = "orders"


def stream_arn() -> str:
    return changes_builder.stream_arn(TABLE, LABEL)


BUCKET = "archive-bucket"
ARCHIVE_URL = f"s3://{BUCKET}"
FUNCTION = "ddb-archive-orders-archiver"
ESM_UUID = "a1b2c3d4-5678-90ab-cdef-111111111111"
SHARD = "shardId-00000001700000000000-abcdef01"


@pytest.fixture(autouse=True)
def lambda_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold container of the deployed function, with a 1 s iterator-age threshold (so the
    watermark passes records written a moment ago)."""
    lh.reset()
    monkeypatch.setenv("MAX_ITERATOR_AGE_SECONDS", "1")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)


def arrival(record: dict[str, Any]) -> str:
    """``approximateArrivalOf…Record`` as AWS writes it for DynamoDB: whole seconds, ``Z``."""
    seconds = float(record["dynamodb"]["ApproximateCreationDateTime"])
    return datetime.fromtimestamp(int(seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def invocation_record(
    arn: str,
    records: Sequence[dict[str, Any]],
    *,
    shard_id: str = SHARD,
    payload: bool = True,
) -> dict[str, Any]:
    """The S3 on-failure destination's object for one failed batch of Lambda-event records."""
    doc: dict[str, Any] = {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION}",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 101,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": iso_ms(utcnow()),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": arrival(records[0]),
            "approximateArrivalOfLastRecord": arrival(records[-1]),
            "batchSize": len(records),
            "streamArn": arn,
        },
    }
    if payload:
        doc["payload"] = json.dumps({"Records": list(records)})
    return doc


def failure_key(shard_id: str = SHARD, when: datetime | None = None) -> str:
    when = when or utcnow()
    return (
        f"aws/lambda/{ESM_UUID}/{shard_id}/{when:%Y/%m/%d}/{when:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"
    )


def deliver_failure(s3: Any, doc: dict[str, Any], bucket: str = BUCKET) -> str:
    """Put the object where the stack's on-failure destination puts it; returns its key."""
    object_key = failure_key(doc["DDBStreamBatchInfo"]["shardId"])
    s3.put_object(Bucket=bucket, Key=object_key, Body=json.dumps(doc).encode())
    return object_key


def write_workload(ddb: Any) -> None:
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "b"}, "v": {"N": "1"}})
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "c"}, "v": {"N": "1"}})
    # The batch that will fail:
    ddb.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "b"}},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"N": "2"}},
    )
    ddb.delete_item(TableName=TABLE, Key={"pk": {"S": "c"}})
    # After it:
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "d"}, "v": {"N": "1"}})


def archive_with_a_failed_batch(
    ddb: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, list[dict[str, Any]], str]:
    """The function archives the first and last batches; the middle one goes to the
    on-failure destination. Returns (stream ARN, the failed Lambda records, object key)."""
    s3.create_bucket(Bucket=BUCKET)
    create_table(ddb, TABLE)
    write_workload(ddb)
    arn, _, records = stream_records(TABLE)
    assert len(records) == 6
    events = lambda_event(arn, records)["Records"]
    time.sleep(1.2)  # the watermark (now − 1 s) passes every record
    monkeypatch.setenv("ARCHIVE_URL", ARCHIVE_URL)
    assert lh.handler({"Records": events[:3]}, None) == {"batchItemFailures": []}
    object_key = deliver_failure(s3, invocation_record(arn, events[3:5]))
    assert lh.handler({"Records": events[5:]}, None) == {"batchItemFailures": []}
    return arn, events[3:5], object_key


def change_files(archive_url: str = ARCHIVE_URL) -> dict[str, bytes]:
    archive = Archive.open(archive_url)
    return {rel: archive.get_bytes(rel) for rel in archive.find(layout.CHANGES, ".parquet")}


def restore_latest(capsys: pytest.CaptureFixture[str], target: str, *extra: str) -> Any:
    return replayer(
        capsys,
        "restore",
        "--source-table-name",
        TABLE,
        "--target-table-name",
        target,
        "--archive",
        ARCHIVE_URL,
        "--use-latest-restorable-time",
        "--strategy",
        "replay",
        *extra,
    )


# -- failed batches -------------------------------------------------------------------------


def test_a_restore_across_a_failed_batch_is_refused_until_redriven(
    ddb: Any,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    archive_with_a_failed_batch(ddb, s3, monkeypatch)
    truth = scan_state(ddb, TABLE)

    code, _, err = restore_latest(capsys, "orders-restored")
    assert code == EXIT_REFUSED, err
    assert "lambda-batch-failed" not in err  # said for people, not as a code
    assert "went to the on-failure destination" in err
    assert f"ddb-archiver redrive --table-name {TABLE} --archive {ARCHIVE_URL}" in err
    assert "orders-restored" not in ddb.list_tables()["TableNames"]

    # Status lists the batch and the command that archives it.
    code, out, err = replayer(capsys, "status", "--archive", ARCHIVE_URL, "--table-name", TABLE)
    assert code == 0, err
    assert "1 Lambda batch(es) not archived" in out
    assert f"redrive: ddb-archiver redrive --table-name {TABLE}" in out

    # --allow-gaps restores the wrong table, loudly: the failed changes are missing.
    with caplog.at_level(logging.WARNING):
        code, _, err = restore_latest(capsys, "orders-with-gap", "--allow-gaps", "--no-verify")
    assert code == EXIT_OK, err
    assert "changes in it are MISSING" in caplog.text
    partial = scan_state(ddb, "orders-with-gap")
    assert partial != truth
    assert len(partial) == 4  # c was deleted in the failed batch, so it is still there

    before = change_files()
    assert archiver_main(["redrive", "--table-name", TABLE, "--archive", ARCHIVE_URL]) == EXIT_OK
    after = change_files()
    assert len(after) == len(before) + 1  # the batch's one dt: one file, named by its records

    code, _, err = restore_latest(capsys, "orders-restored")
    assert code == EXIT_OK, err
    assert scan_state(ddb, "orders-restored") == truth

    code, out, _ = replayer(
        capsys, "status", "--archive", ARCHIVE_URL, "--table-name", TABLE, "--json"
    )
    failed = json.loads(out)["tables"][0]["lambda_failures"]
    assert failed["open"] == [] and failed["redriven"] == 1


def test_redriving_twice_adds_nothing(
    ddb: Any, s3: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    archive_with_a_failed_batch(ddb, s3, monkeypatch)
    argv = ["redrive", "--table-name", TABLE, "--archive", ARCHIVE_URL]
    assert archiver_main([*argv, "--dry-run"]) == EXIT_OK
    assert archiver_main(argv) == EXIT_OK
    archive = Archive.open(ARCHIVE_URL)
    files, state = change_files(), archive.get_bytes(layout.lambda_redrives(TABLE))
    capsys.readouterr()
    assert archiver_main(argv) == EXIT_OK
    assert "0 failed batch(es) archived, 1 redriven before" in capsys.readouterr().out
    assert change_files() == files
    assert archive.get_bytes(layout.lambda_redrives(TABLE)) == state

    # Forgetting that it was redriven and redriving again rewrites the same objects.
    archive.delete(layout.lambda_redrives(TABLE))
    assert archiver_main(argv) == EXIT_OK
    assert change_files() == files


def test_the_redriven_rows_are_the_rows_the_function_writes(
    ddb: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, failed, _ = archive_with_a_failed_batch(ddb, s3, monkeypatch)
    assert archiver_main(["redrive", "--table-name", TABLE, "--archive", ARCHIVE_URL]) == EXIT_OK
    redriven = change_files()
    # The same batch, had the function archived it, into a second archive.
    s3.create_bucket(Bucket="other")
    monkeypatch.setenv("ARCHIVE_URL", "s3://other")
    lh.reset()
    assert lh.handler({"Records": failed}, None) == {"batchItemFailures": []}
    (rel,) = change_files("s3://other")
    assert rel in redriven
    archive, other = Archive.open(ARCHIVE_URL), Archive.open("s3://other")
    assert archive.read_parquet(rel).equals(other.read_parquet(rel))


def test_a_malformed_record_stays_a_gap_with_its_event_id(
    ddb: Any, s3: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    create_table(ddb, TABLE)
    write_workload(ddb)
    arn, _, records = stream_records(TABLE)
    events = lambda_event(arn, records)["Records"]
    time.sleep(1.2)
    monkeypatch.setenv("ARCHIVE_URL", ARCHIVE_URL)
    assert lh.handler({"Records": events[:3] + events[5:]}, None) == {"batchItemFailures": []}
    bad = json.loads(json.dumps(events[4]))
    bad["dynamodb"]["OldImage"]["v"] = {"N": "not-a-number"}
    deliver_failure(s3, invocation_record(arn, [events[3], bad]))

    capsys.readouterr()
    assert archiver_main(["redrive", "--table-name", TABLE, "--archive", ARCHIVE_URL]) == (
        EXIT_NEW_GAP
    )
    out = capsys.readouterr().out
    assert f"MALFORMED record(s), the gap stays: {bad['eventID']}" in out

    code, out, _ = replayer(
        capsys, "status", "--archive", ARCHIVE_URL, "--table-name", TABLE, "--json"
    )
    (gap,) = json.loads(out)["tables"][0]["lambda_failures"]["open"]
    assert gap["status"] == "malformed"
    assert [m["event_id"] for m in gap["malformed"]] == [bad["eventID"]]
    code, out, _ = replayer(capsys, "status", "--archive", ARCHIVE_URL, "--table-name", TABLE)
    assert f"malformed record {bad['eventID']}" in out

    code, _, err = restore_latest(capsys, "orders-restored")
    assert code == EXIT_REFUSED
    assert f"malformed record(s) {bad['eventID']}" in err
    # The batch's good record was archived: --allow-gaps gets b's update.
    code, _, err = restore_latest(capsys, "orders-gappy", "--allow-gaps", "--no-verify")
    assert code == EXIT_OK, err
    assert scan_state(ddb, "orders-gappy")['{"pk":{"S":"b"}}'] == '{"pk":{"S":"b"},"v":{"N":"2"}}'


def test_a_record_without_payload_is_redriven_from_the_stream(
    ddb: Any, s3: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQS/SNS-style metadata only: the range is re-read by sequence number while retained."""
    s3.create_bucket(Bucket=BUCKET)
    create_table(ddb, TABLE)
    write_workload(ddb)
    arn, _, records = stream_records(TABLE)
    events = lambda_event(arn, records)["Records"]
    shard = boto3.client("dynamodbstreams", region_name=REGION).describe_stream(StreamArn=arn)[
        "StreamDescription"
    ]["Shards"][0]["ShardId"]
    time.sleep(1.2)
    monkeypatch.setenv("ARCHIVE_URL", ARCHIVE_URL)
    assert lh.handler({"Records": events[:3] + events[5:]}, None) == {"batchItemFailures": []}
    deliver_failure(s3, invocation_record(arn, events[3:5], shard_id=shard, payload=False))
    truth = scan_state(ddb, TABLE)
    assert restore_latest(capsys, "orders-refused")[0] == EXIT_REFUSED
    assert archiver_main(["redrive", "--table-name", TABLE, "--archive", ARCHIVE_URL]) == EXIT_OK
    code, _, err = restore_latest(capsys, "orders-restored")
    assert code == EXIT_OK, err
    assert scan_state(ddb, "orders-restored") == truth


def test_the_documented_invocation_record_is_read_exactly() -> None:
    arn = stream_arn()
    records = [
        {
            "eventID": "e1",
            "eventName": "INSERT",
            "eventSourceARN": arn,
            "dynamodb": {
                "ApproximateCreationDateTime": at(10).timestamp(),
                "Keys": key("a"),
                "NewImage": item("a"),
                "SequenceNumber": "4421584500000000017450439091",
                "SizeBytes": 26,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        },
        {
            "eventID": "e2",
            "eventName": "INSERT",
            "eventSourceARN": arn,
            "dynamodb": {
                "ApproximateCreationDateTime": at(20).timestamp(),
                "Keys": key("b"),
                "NewImage": item("b"),
                "SequenceNumber": "4421584500000000017450439092",
                "SizeBytes": 26,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        },
    ]
    doc = invocation_record(arn, records)
    batch = lambda_failures.parse_invocation_record(json.dumps(doc).encode(), "s3://b/k")
    assert (batch.stream_arn, batch.shard_id, batch.batch_size) == (arn, SHARD, 2)
    assert batch.start_sequence_number == "4421584500000000017450439091"
    assert batch.end_sequence_number == "4421584500000000017450439092"
    assert batch.condition == "RetryAttemptsExhausted"
    assert [r["eventID"] for r in batch.records or ()] == ["e1", "e2"]
    assert (batch.first_time, batch.last_time) == (at(10), at(20))
    gap = batch.gap(TABLE_ID, "pending")
    assert (gap["from"], gap["to"]) == (iso_ms(at(9)), iso_ms(at(21)))
    # The payload as an object (as some emulators write it) reads the same.
    doc["payload"] = json.loads(doc["payload"])
    again = lambda_failures.parse_invocation_record(json.dumps(doc).encode(), "s3://b/k")
    assert again.records == batch.records
    with pytest.raises(lambda_failures.MalformedInvocationRecord, match="DDBStreamBatchInfo"):
        lambda_failures.parse_invocation_record(b'{"version": "1.0"}', "s3://b/k")


# -- planning on a built archive: which instants a failed batch refuses ---------------------


def lambda_archive(archive: Archive, watermark: datetime) -> None:
    """A Lambda-mode archive of ``orders`` from table creation (T0), as the function leaves it."""
    write_description(archive)
    coverage.open_generation(
        archive,
        TABLE,
        table_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
        table_id=TABLE_ID,
        table_created_at=T0,
        covered_from=T0,
        from_table_creation=True,
        mode="lambda",
    )
    coverage.advance_watermark(archive, TABLE, TABLE_ID, watermark, mode="lambda")
    archive.write_json(
        layout.lambda_deployment(TABLE),
        {"function_name": FUNCTION, "max_iterator_age_seconds": 600.0},
    )


def test_a_failed_batch_refuses_every_instant_from_its_first_record_on(
    archive: Archive, tmp_path: Any
) -> None:
    lambda_archive(archive, watermark=at(3600))
    write_changes(archive, [Change(1, key("a"), item("a", v=1), at(10))])
    failed = [
        {
            "eventID": f"e{seq}",
            "eventName": "MODIFY",
            "eventSourceARN": stream_arn(),
            "dynamodb": {
                "ApproximateCreationDateTime": at(seconds).timestamp(),
                "Keys": key("a"),
                "NewImage": item("a", v=seq),
                "SequenceNumber": str(seq),
                "SizeBytes": 10,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        }
        for seq, seconds in ((2, 100), (3, 110))
    ]
    failures = Archive.open(str(tmp_path / "on-failure"))
    failures.write_json(failure_key(), invocation_record(stream_arn(), failed))
    checks = lambda_gaps.LambdaChecks(failures_url=failures.url, trust_watermark=True)

    plan = planning.plan_restore(archive, TABLE, at(98), lambda_checks=checks)
    assert plan.gaps == ()
    for seconds in (100, 105, 110, 1000):
        with pytest.raises(GapInLog, match="redrive"):
            planning.plan_restore(archive, TABLE, at(seconds), lambda_checks=checks)
        with pytest.raises(GapInLog):
            planning.plan_log(archive, TABLE, at(50), at(seconds), lambda_checks=checks)
    allowed = planning.plan_restore(archive, TABLE, at(1000), allow_gaps=True, lambda_checks=checks)
    (gap,) = allowed.gaps
    assert (gap["from"], gap["to"]) == (iso_ms(at(99)), iso_ms(at(111)))
    assert gap["shard_id"] == SHARD
    # A log that starts after the batch does not meet it.
    assert planning.plan_log(archive, TABLE, at(200), at(1000), lambda_checks=checks).gaps == ()


# -- an on-failure destination nobody named -------------------------------------------------


def lambda_archive_with_a_failed_batch(archive: Archive, failures: Archive) -> str:
    """A local Lambda-mode archive of 10 items; 20 more went in a batch to the on-failure
    destination ``failures``. Returns the object's URI."""
    lambda_archive(archive, watermark=at(3600))
    write_changes(
        archive, [Change(n + 1, key(f"k{n:02}"), item(f"k{n:02}", v=n), at(10)) for n in range(10)]
    )
    failed = [
        {
            "eventID": f"failed-{n}",
            "eventName": "INSERT",
            "eventSourceARN": stream_arn(),
            "dynamodb": {
                "ApproximateCreationDateTime": at(100 + n).timestamp(),
                "Keys": key(f"f{n:02}"),
                "NewImage": item(f"f{n:02}", v=n),
                "SequenceNumber": str(100 + n),
                "SizeBytes": 10,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        }
        for n in range(20)
    ]
    rel = failure_key()
    failures.write_json(rel, invocation_record(stream_arn(), failed))
    return failures.uri(rel)


def test_a_restore_whose_failed_batches_cannot_be_found_is_refused(
    archive: Archive,
    tmp_path: Path,
    ddb: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Unknown is not none: without --lambda-failures or DDB_ARCHIVE_LAMBDA_FAILURES a local
    Lambda-mode archive cannot say whether a batch failed, so nothing is restored from it."""
    failures = Archive.open(str(tmp_path / "on-failure"))
    lambda_archive_with_a_failed_batch(archive, failures)
    argv = ["restore", "--source-table-name", TABLE, "--target-table-name", "orders-restored",
            "--archive", archive.url, "--restore-date-time", iso_ms(at(1000)),
            "--strategy", "replay", "--trust-lambda-watermark"]  # fmt: skip

    code, out, err = replayer(capsys, *argv)
    assert code == EXIT_REFUSED, out + err
    (line,) = err.strip().splitlines()
    assert "failed batches go is unknown" in line
    assert "--lambda-failures" in line and lambda_failures.ENV_LOCATION in line
    assert "verify: identical" not in out
    assert "orders-restored" not in ddb.list_tables()["TableNames"]
    # --allow-gaps is about known gaps: it does not make the unknown known.
    assert replayer(capsys, *argv, "--allow-gaps")[0] == EXIT_REFUSED
    # Told where the batches go, the plan sees the failed one: a gap, refused as such.
    code, _, err = replayer(capsys, *argv, "--lambda-failures", failures.url)
    assert code == EXIT_REFUSED and "went to the on-failure destination" in err
    monkeypatch.setenv(lambda_failures.ENV_LOCATION, failures.url)
    code, _, err = replayer(capsys, *argv)
    assert code == EXIT_REFUSED and "went to the on-failure destination" in err
    assert "orders-restored" not in ddb.list_tables()["TableNames"]


def test_status_says_unknown_not_none_when_the_destination_is_not_known(
    archive: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failures = Archive.open(str(tmp_path / "on-failure"))
    lambda_archive_with_a_failed_batch(archive, failures)
    argv = ["status", "--archive", archive.url, "--table-name", TABLE]
    code, out, err = replayer(capsys, *argv)
    assert code == 0, err
    (line,) = [line for line in out.splitlines() if line.strip().startswith("failed")]
    assert "unknown" in line and "none" not in line
    assert "--lambda-failures" in line and lambda_failures.ENV_LOCATION in line
    code, out, _ = replayer(capsys, *argv, "--json")
    failed = json.loads(out)["tables"][0]["lambda_failures"]
    assert failed["location"] is None and failed["open"] == [] and failed["unknown"]
    # Told where, it lists the batch.
    code, out, _ = replayer(capsys, *argv, "--lambda-failures", failures.url)
    assert "1 Lambda batch(es) not archived" in out


def test_check_lists_open_failed_batches_and_an_unknown_destination(
    archive: Archive,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    failures = Archive.open(str(tmp_path / "on-failure"))
    uri = lambda_archive_with_a_failed_batch(archive, failures)
    argv = ["check", "--table-name", TABLE, "--archive", archive.url]

    capsys.readouterr()
    assert archiver_main([*argv, "--json"]) == EXIT_DIFFERENCES
    (problem,) = json.loads(capsys.readouterr().out)["problems"]
    assert problem["kind"] == "lambda-failures-unknown"
    assert lambda_failures.ENV_LOCATION in problem["detail"]

    monkeypatch.setenv(lambda_failures.ENV_LOCATION, failures.url)
    assert archiver_main(argv) == EXIT_DIFFERENCES
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("lambda-batch-failed")]
    assert uri in line and "20 record(s)" in line
    assert f"ddb-archiver redrive --table-name {TABLE} --archive {archive.url}" in line
    assert "1 problem(s)" in out


# -- a stalled function ---------------------------------------------------------------------


def put_iterator_age(cloudwatch: Any, when: datetime, milliseconds: float) -> None:
    cloudwatch.put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "IteratorAge",
                "Dimensions": [{"Name": "FunctionName", "Value": FUNCTION}],
                "Timestamp": when,
                "Value": milliseconds,
                "Unit": "Milliseconds",
            }
        ],
    )


def test_an_iterator_age_above_the_threshold_refuses_the_range_it_covers(
    ddb: Any,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    create_table(ddb, TABLE)
    write_workload(ddb)
    arn, _, records = stream_records(TABLE)
    time.sleep(1.2)
    # The datapoints fall after the table's creation and before the function's watermark:
    # inside the range a restore to the latest time checks.
    measured = utcnow() - timedelta(milliseconds=500)
    monkeypatch.setenv("ARCHIVE_URL", ARCHIVE_URL)
    assert lh.handler(lambda_event(arn, records), None) == {"batchItemFailures": []}
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    put_iterator_age(cloudwatch, measured, 800)  # below the 1 s threshold
    code, _, err = restore_latest(capsys, "orders-fine")
    assert code == EXIT_OK, err

    put_iterator_age(cloudwatch, measured + timedelta(milliseconds=100), 45_000)
    code, out, err = restore_latest(capsys, "orders-stalled")
    assert code == EXIT_REFUSED, (out, err)
    assert "IteratorAge reached 45 s, above 1 s" in err
    assert "MaxIteratorAgeSeconds" in err
    assert "orders-stalled" not in ddb.list_tables()["TableNames"]
    # The interval named: 45 s before the datapoint, to the end of its minute.
    assert iso_ms(measured + timedelta(milliseconds=100) - timedelta(seconds=45))[:16] in err
    # Trusting the watermark skips the check, loudly.
    with caplog.at_level(logging.WARNING):
        code, _, err = restore_latest(capsys, "orders-trusted", "--trust-lambda-watermark")
    assert code == EXIT_OK, err
    assert "not checking the function's IteratorAge" in caplog.text


def test_a_stall_refuses_the_records_it_delayed_and_nothing_before(
    archive: Archive, tmp_path: Path
) -> None:
    """IteratorAge A at t: records written from t − A were handled late (up to t + period)."""
    now = utcnow().replace(microsecond=0)
    start = now - timedelta(hours=1)
    write_description(archive, captured=start)
    coverage.open_generation(
        archive,
        TABLE,
        table_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
        table_id=TABLE_ID,
        table_created_at=start,
        covered_from=start,
        from_table_creation=True,
        mode="lambda",
    )
    coverage.advance_watermark(archive, TABLE, TABLE_ID, now - timedelta(minutes=5))
    archive.write_json(
        layout.lambda_deployment(TABLE),
        {"function_name": FUNCTION, "max_iterator_age_seconds": 60.0},
    )
    write_changes(archive, [Change(1, key("a"), item("a", v=1), start + timedelta(seconds=5))])
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    stalled_at = now - timedelta(minutes=30)
    put_iterator_age(cloudwatch, stalled_at, 120_000)  # 2 min behind, threshold 1 min
    put_iterator_age(cloudwatch, now - timedelta(minutes=45), 30_000)  # within the threshold
    # No batch failed: the (empty) on-failure destination says so.
    nothing_failed = str(tmp_path / "on-failure")
    checks = lambda_gaps.LambdaChecks(cloudwatch=cloudwatch, failures_url=nothing_failed)

    assert planning.plan_restore(archive, TABLE, now - timedelta(minutes=33), lambda_checks=checks)
    for minutes in (31, 29, 10):
        with pytest.raises(GapInLog, match="IteratorAge reached 120 s, above 60 s"):
            planning.plan_restore(
                archive, TABLE, now - timedelta(minutes=minutes), lambda_checks=checks
            )
    allowed = planning.plan_restore(
        archive, TABLE, now - timedelta(minutes=10), allow_gaps=True, lambda_checks=checks
    )
    (gap,) = allowed.gaps
    assert gap["from"] == iso_ms(stalled_at - timedelta(minutes=2))
    assert gap["to"] == iso_ms(stalled_at + timedelta(minutes=1))
    # A log range after the delayed records does not meet the stall.
    after = planning.plan_log(
        archive, TABLE, now - timedelta(minutes=25), now - timedelta(minutes=10),
        lambda_checks=checks,
    )  # fmt: skip
    assert after.gaps == ()


class DeniedCloudWatch:
    """CloudWatch as a principal without ``cloudwatch:GetMetricStatistics`` sees it."""

    def get_metric_statistics(self, **kwargs: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "not authorized"}},
            "GetMetricStatistics",
        )


def test_unreadable_cloudwatch_refuses_and_names_the_override(
    archive: Archive, tmp_path: Path
) -> None:
    lambda_archive(archive, watermark=at(3600))
    write_changes(archive, [Change(1, key("a"), item("a", v=1), at(10))])
    nothing_failed = str(tmp_path / "on-failure")  # the (empty) on-failure destination
    denied = lambda_gaps.LambdaChecks(cloudwatch=DeniedCloudWatch(), failures_url=nothing_failed)
    with pytest.raises(lambda_gaps.LambdaHealthUnknown) as refused:
        planning.plan_restore(archive, TABLE, at(100), lambda_checks=denied)
    assert refused.value.exit_code == EXIT_REFUSED
    assert "AccessDenied" in str(refused.value)
    assert "--trust-lambda-watermark" in str(refused.value)
    assert "cloudwatch:GetMetricStatistics" in str(refused.value)
    # --allow-gaps is about known gaps; an unknown stall needs the named override.
    with pytest.raises(lambda_gaps.LambdaHealthUnknown):
        planning.plan_restore(archive, TABLE, at(100), allow_gaps=True, lambda_checks=denied)
    trusted = lambda_gaps.LambdaChecks(
        cloudwatch=DeniedCloudWatch(), trust_watermark=True, failures_url=nothing_failed
    )
    assert planning.plan_restore(archive, TABLE, at(100), lambda_checks=trusted).gaps == ()


@pytest.fixture
def denying_endpoint() -> Iterator[str]:
    """An HTTP endpoint that answers every request 403 AccessDenied."""

    class Deny(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = (
                b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                b"<Message>not authorized</Message></Error></ErrorResponse>"
            )
            self.send_response(403)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Deny)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_cloudwatch_endpoint_that_denies_refuses_the_restore(
    ddb: Any,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    denying_endpoint: str,
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    create_table(ddb, TABLE)
    write_workload(ddb)
    arn, _, records = stream_records(TABLE)
    time.sleep(1.2)
    monkeypatch.setenv("ARCHIVE_URL", ARCHIVE_URL)
    assert lh.handler(lambda_event(arn, records), None) == {"batchItemFailures": []}
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", denying_endpoint)
    code, _, err = restore_latest(capsys, "orders-denied")
    assert code == EXIT_REFUSED
    assert "cannot read AWS/Lambda IteratorAge" in err
    assert "--trust-lambda-watermark" in err
    assert "orders-denied" not in ddb.list_tables()["TableNames"]
    code, _, err = restore_latest(capsys, "orders-trusted", "--trust-lambda-watermark")
    assert code == EXIT_OK, err
    assert scan_state(ddb, "orders-trusted") == scan_state(ddb, TABLE)


def test_the_function_records_which_function_and_threshold(
    ddb: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    create_table(ddb, TABLE)
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}})
    arn, _, records = stream_records(TABLE)
    monkeypatch.setenv("ARCHIVE_URL", ARCHIVE_URL)
    lh.handler(lambda_event(arn, records), None)
    doc = Archive.open(ARCHIVE_URL).read_json(layout.lambda_deployment(TABLE))
    assert (doc["function_name"], doc["max_iterator_age_seconds"]) == (FUNCTION, 1.0)


# -- the stack's scheduled redrive ----------------------------------------------------------


def test_the_stack_can_redrive_daily_with_the_same_code(
    ddb: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cfnlint.decode import decode

    from archiver.lambda_mode import redrive

    template, problems = decode(str(ROOT / "deploy" / "template.yaml"))
    assert not problems
    assert template["Parameters"]["ScheduleRedrive"]["Default"] == "false"
    function = template["Resources"]["RedriveFunction"]
    assert function["Condition"] == "ScheduleRedrive"
    assert function["Properties"]["ImageConfig"]["Command"] == [
        "archiver.lambda_mode.redrive.handler"
    ]
    (event,) = function["Properties"]["Events"].values()
    assert event["Properties"]["ScheduleExpression"] == "rate(1 day)"

    archive_with_a_failed_batch(ddb, s3, monkeypatch)
    monkeypatch.setenv("TABLE_NAME", TABLE)
    result = redrive.handler({}, None)
    assert len(result["redriven"]) == 1 and result["still_gaps"] == []
    assert redrive.handler({}, None)["redriven_before"] == 1
    report = lambda_failures.lambda_failure_gaps(Archive.open(ARCHIVE_URL), TABLE)
    assert report.gaps == [] and report.redriven == 1


def test_redrive_imports_neither_duckdb_nor_the_replayer() -> None:
    code = (
        "import sys\n"
        "import archiver.lambda_mode.redrive\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in {'duckdb', 'replayer'}]\n"
        "print(','.join(sorted(bad)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == ""
