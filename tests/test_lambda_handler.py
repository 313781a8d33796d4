"""The Lambda archiver: same rows as the poller, deterministic files, partial batch responses.

Events are built from real stream records read from moto and reshaped as the Lambda event
source mapping delivers them: binary values as base64 text, ``ApproximateCreationDateTime``
as epoch seconds, ``userIdentity`` in lower camel case, plus ``eventSourceARN``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from archiver.aws import describe
from archiver.aws.clients import AwsSettings
from archiver.cli import main as archiver_main
from archiver.format import coverage, gap_log, layout, tables
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow
from archiver.lambda_mode import handler as lh
from tests.conftest import create_table
from tests.helpers import lambda_value, stream_records

TABLE = "orders"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts as a cold Lambda container."""
    lh.reset()
    monkeypatch.setenv("MAX_ITERATOR_AGE_SECONDS", "600")


def write_workload(ddb: Any, table: str = TABLE) -> None:
    """Puts, updates and deletes with every attribute type, binary nested too."""
    items = [
        {
            "pk": {"S": "a"},
            "bin": {"B": b"\x00\xff\x10"},
            "bins": {"BS": [b"\x02", b"\x01"]},
            "nums": {"NS": ["10", "1.50", "2"]},
            "strs": {"SS": ["b", "a"]},
            "map": {"M": {"inner": {"B": b"\x01\x02"}, "n": {"N": "007"}}},
            "list": {"L": [{"S": "x"}, {"N": "1"}, {"NULL": True}, {"BOOL": False}]},
        },
        {"pk": {"S": "b"}, "v": {"N": "1"}},
        {"pk": {"S": "c"}, "v": {"N": "12345678901234567890123456789012345678"}},
    ]
    for item in items:
        ddb.put_item(TableName=table, Item=item)
    ddb.update_item(
        TableName=table,
        Key={"pk": {"S": "b"}},
        UpdateExpression="SET v = :v, extra = :e",
        ExpressionAttributeValues={":v": {"N": "2"}, ":e": {"B": b"\x09"}},
    )
    ddb.delete_item(TableName=table, Key={"pk": {"S": "c"}})
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"N": "-0.10"}})


def lambda_event(stream_arn: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The event the event source mapping would deliver for ``records`` (plain JSON)."""
    out = []
    for record in records:
        shaped = lambda_value(record)
        identity = shaped.pop("userIdentity", None)
        if identity:
            shaped["userIdentity"] = {
                "type": identity["Type"],
                "principalId": identity["PrincipalId"],
            }
        shaped["eventSourceARN"] = stream_arn
        out.append(shaped)
    return json.loads(json.dumps({"Records": out}))


def all_rows(archive: Archive, table: str = TABLE) -> pa.Table:
    files = archive.find(layout.changes_table_dir(table), ".parquet")
    rows = pa.concat_tables([archive.read_parquet(f) for f in files])
    return rows.sort_by("sequence_number")


def test_same_records_give_the_same_rows_as_the_poller(
    ddb: Any, archive: Archive, s3_archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_table(ddb, TABLE)
    write_workload(ddb)
    stream_arn, _, records = stream_records(TABLE)
    assert len(records) == 6
    # The poller, through its real code path, into a local archive.
    argv = [
        "run",
        "--table-name",
        TABLE,
        "--archive",
        archive.url,
        "--once",
        "--poll-seconds",
        "0.05",
    ]
    assert archiver_main(argv) == 0
    # The Lambda handler, into S3 (as deployed), from a Lambda-shaped event.
    monkeypatch.setenv("ARCHIVE_URL", s3_archive.url)
    assert lh.handler(lambda_event(stream_arn, records), None) == {"batchItemFailures": []}

    poller, handler = all_rows(archive), all_rows(s3_archive)
    assert handler.num_rows == poller.num_rows == 6
    same = [c for c in poller.column_names if c not in {"shard_id", "origin"}]
    assert handler.select(same).equals(poller.select(same))
    assert set(handler["origin"].to_pylist()) == {"lambda"}
    assert set(handler["shard_id"].to_pylist()) == {None}
    assert set(poller["origin"].to_pylist()) == {"stream"}
    # Binary inside a map survives as one base64 encoding, not two.
    first = json.loads(handler["new_image"][0].as_py())
    assert first["map"]["M"]["inner"] == {"B": base64.b64encode(b"\x01\x02").decode()}
    assert first["nums"] == {"NS": ["1.5", "2", "10"]}

    # One file per batch and dt, named by the batch's first and last sequence numbers.
    (path,) = s3_archive.find(layout.CHANGES, ".parquet")
    name = layout.ChangeFileName.parse(path)
    assert name is not None and name.shard_id == layout.LAMBDA_SHARD
    seqs = [r["dynamodb"]["SequenceNumber"] for r in records]
    assert path == layout.change_file(
        TABLE,
        layout.dt_of(records[0]["dynamodb"]["ApproximateCreationDateTime"]),
        layout.stream_label_of(stream_arn),
        layout.LAMBDA_SHARD,
        seqs[0],
        seqs[-1],
    )


def test_a_retried_batch_rewrites_the_same_file(
    ddb: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_table(ddb, TABLE)
    write_workload(ddb)
    stream_arn, _, records = stream_records(TABLE)
    monkeypatch.setenv("ARCHIVE_URL", archive.url)
    event = lambda_event(stream_arn, records)
    lh.handler(event, None)
    first = {rel: archive.read_parquet(rel) for rel in archive.find(layout.CHANGES, ".parquet")}
    lh.reset()
    lh.handler(event, None)
    again = {rel: archive.read_parquet(rel) for rel in archive.find(layout.CHANGES, ".parquet")}
    assert list(again) == list(first)
    assert all(again[rel].equals(first[rel]) for rel in first)


def test_a_failed_write_reports_the_first_record_not_durable(
    ddb: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_table(ddb, TABLE)
    write_workload(ddb)
    stream_arn, _, records = stream_records(TABLE)
    event = lambda_event(stream_arn, records)
    # The batch spans midnight: its last three records fall on the next day (two files).
    for shaped in event["Records"][3:]:
        shaped["dynamodb"]["ApproximateCreationDateTime"] += 86400
    next_day = layout.dt_of(
        records[3]["dynamodb"]["ApproximateCreationDateTime"] + timedelta(days=1)
    )
    real_write = Archive.write_parquet

    def failing_next_day(self: Archive, rel: str, table: pa.Table) -> int:
        if f"dt={next_day}" in rel:
            raise OSError("S3 is having a bad day")
        return real_write(self, rel, table)

    monkeypatch.setenv("ARCHIVE_URL", archive.url)
    monkeypatch.setattr(Archive, "write_parquet", failing_next_day)
    response = lh.handler(event, None)
    fourth = event["Records"][3]["dynamodb"]["SequenceNumber"]
    assert response == {"batchItemFailures": [{"itemIdentifier": fourth}]}
    assert all_rows(archive).num_rows == 3  # the first day's file is durable
    assert coverage.current(archive, TABLE)["watermark"] is None  # nothing claimed
    # The event source mapping retries from the reported record: everything lands once.
    monkeypatch.undo()
    monkeypatch.setenv("ARCHIVE_URL", archive.url)
    retry = {
        "Records": [
            r for r in event["Records"] if int(r["dynamodb"]["SequenceNumber"]) >= int(fourth)
        ]
    }
    assert lh.handler(retry, None) == {"batchItemFailures": []}
    assert all_rows(archive)["event_id"].to_pylist() == [r["eventID"] for r in records]


def test_cold_start_captures_the_description_once_and_keeps_coverage(
    ddb: Any, s3_archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    description = create_table(ddb, TABLE)
    write_workload(ddb)
    stream_arn, _, records = stream_records(TABLE)
    monkeypatch.setenv("ARCHIVE_URL", s3_archive.url)
    calls: list[str] = []
    real_capture = describe.capture_description

    async def counting(settings: AwsSettings, archive: Archive, name: str, **kw: Any) -> Any:
        calls.append(name)
        return await real_capture(settings, archive, name, **kw)

    monkeypatch.setattr(describe, "capture_description", counting)
    event = lambda_event(stream_arn, records)
    before = utcnow()
    lh.handler({"Records": event["Records"][:3]}, None)
    lh.handler({"Records": event["Records"][3:]}, None)
    after = utcnow()
    assert calls == [TABLE]  # once per table per container
    (doc,) = tables.list_descriptions(s3_archive, TABLE)
    assert doc["table_id"] == tables.table_id_of(description)
    state = coverage.current(s3_archive, TABLE)
    assert state is not None
    assert state["mode"] == "lambda"
    assert state["table_id"] == doc["table_id"]
    assert state["from_table_creation"] is True  # the stream came with this new table
    watermark = parse_iso(state["watermark"])
    assert before - timedelta(seconds=600) <= watermark <= after - timedelta(seconds=600)
    lh.reset()  # a new container describes the table again
    lh.handler({"Records": event["Records"][:1]}, None)
    assert calls == [TABLE, TABLE]


def test_a_stream_without_new_images_is_refused(
    ddb: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_table(ddb, TABLE, stream="KEYS_ONLY")
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}})
    stream_arn, _, records = stream_records(TABLE)
    monkeypatch.setenv("ARCHIVE_URL", archive.url)
    response = lh.handler(lambda_event(stream_arn, records), None)
    assert response == {
        "batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]
    }
    assert archive.find(layout.CHANGES, ".parquet") == []
    assert coverage.current(archive, TABLE) is None  # nothing claimed for a refused table


def test_configuration_errors_fail_the_invocation(
    ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_table(ddb, TABLE)
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}})
    stream_arn, _, records = stream_records(TABLE)
    event = lambda_event(stream_arn, records)
    monkeypatch.delenv("ARCHIVE_URL", raising=False)
    with pytest.raises(lh.ConfigurationError, match="ARCHIVE_URL"):
        lh.handler(event, None)
    assert lh.handler({"Records": []}, None) == {"batchItemFailures": []}
    assert lh.table_of(stream_arn) == TABLE
    with pytest.raises(lh.ConfigurationError):
        lh.table_of("arn:aws:kinesis:us-east-1:123456789012:stream/x")


def test_a_re_enabled_stream_records_a_gap(
    ddb: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table's earlier description names an older stream: writes between the archive's
    watermark and the new stream's creation have no record, and that hole is recorded."""
    import asyncio

    create_table(ddb, TABLE)
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}})
    stream_arn, _, records = stream_records(TABLE)
    created = lh.stream_created_at(stream_arn)
    doc = asyncio.run(describe.describe(AwsSettings(), TABLE))
    old_label = (created - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    old = json.loads(json.dumps(doc))
    old["Table"]["LatestStreamArn"] = stream_arn.rsplit("/", 1)[0] + "/" + old_label
    old["captured_at"] = iso_ms(created - timedelta(hours=3))
    old["Table"]["StreamSpecification"]["StreamViewType"] = "NEW_IMAGE"  # a settings change
    tables.store_description(archive, old)
    table_created = parse_iso(str(doc["Table"]["CreationDateTime"]))
    coverage.open_generation(
        archive,
        TABLE,
        table_arn=doc["table_arn"],
        table_id=doc["table_id"],
        table_created_at=table_created,
        covered_from=table_created,
        from_table_creation=True,
        mode="lambda",
    )
    watermark = created - timedelta(hours=2)
    coverage.advance_watermark(archive, TABLE, doc["table_id"], watermark)
    monkeypatch.setenv("ARCHIVE_URL", archive.url)
    assert lh.handler(lambda_event(stream_arn, records), None) == {"batchItemFailures": []}
    (gap,) = gap_log.read_gaps(archive, TABLE)
    assert gap["reason"] == gap_log.GAP_STREAM_REENABLED
    assert gap["stream_arn"] == stream_arn
    assert (gap["from"], gap["to"]) == (iso_ms(watermark), iso_ms(created))
    lh.reset()
    lh.handler(lambda_event(stream_arn, records), None)
    assert len(gap_log.read_gaps(archive, TABLE)) == 1  # recorded once


def test_the_handler_imports_neither_duckdb_nor_the_replayer() -> None:
    code = (
        "import sys\n"
        "import archiver.lambda_mode.handler\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in {'duckdb', 'replayer'}]\n"
        "print(','.join(sorted(bad)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == ""


def test_event_times_are_epoch_seconds_in_utc() -> None:
    at = datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)
    assert (
        lambda_event("arn", [{"dynamodb": {"ApproximateCreationDateTime": at}}])["Records"][0][
            "dynamodb"
        ]["ApproximateCreationDateTime"]
        == at.timestamp()
    )
