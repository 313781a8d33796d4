"""``ddb-replayer restore`` end to end over moto: the real archiver (``run --once``), the real
``snapshot --method scan`` and native-export conversion, then restore and a scan of the target
compared with the table's recorded state at T.

Workloads run in phases; ``Workload.instant`` records the exact table state at a whole second
strictly between two phases (stream event times are whole seconds on AWS). The archiver's
watermark trails its catching up by 2 s, so each test lets 2 s pass after its last instant
before the final ``run --once``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from archiver.aws.error_table import EXIT_DIFFERENCES, EXIT_REFUSED, EXIT_USAGE
from archiver.format import coverage, gap_log, tables
from archiver.format.codec import normalize_item
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow
from replayer.write.sinks import TableSink
from tests.conftest import create_table
from tests.export_fixtures import write_export
from tests.replay_helpers import (
    Change,
    archive_table,
    at,
    canon,
    item,
    key,
    replayer,
    snapshot_table,
    write_changes,
    write_coverage,
    write_description,
    write_snapshot,
)
from tests.workload import Instant, Workload, scan_state


def settle(instant: Instant) -> None:
    """Wait until the archiver's watermark can pass ``instant`` (it trails by 2 s)."""
    time.sleep(max(0.0, instant.at.timestamp() + 2.2 - time.time()))


def restore(
    capsys: pytest.CaptureFixture[str],
    source: str,
    target: str,
    archive: Path | str,
    when: str,
    *extra: str,
) -> tuple[int, str, str]:
    return replayer(
        capsys,
        "restore",
        "--source-table-name",
        source,
        "--target-table-name",
        target,
        "--archive",
        str(archive),
        "--restore-date-time",
        when,
        *extra,
    )


def tables_now(ddb: Any) -> set[str]:
    return set(ddb.list_tables()["TableNames"])


def test_restore_without_base_gives_the_table_at_each_instant(
    ddb: Any, archive_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    work = Workload(ddb, "orders", seed=1)
    work.phase(25)
    first = work.instant()
    work.phase(25)  # deletes, re-inserts and rewrites of the same keys
    second = work.instant()
    work.phase(10)
    settle(second)
    archive_table("orders", str(archive_path))
    for n, instant in enumerate((first, second)):
        code, out, err = restore(capsys, "orders", f"orders-{n}", archive_path, instant.iso)
        assert code == 0, err
        assert "base: none" not in out and "no base" in out
        assert "verify: identical" in out
        assert scan_state(ddb, f"orders-{n}") == instant.state


def test_restore_from_a_scan_snapshot_with_composite_keys_and_a_gsi(
    ddb: Any, archive_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Items written before the stream was enabled exist only in the snapshot."""
    gsi = {
        "IndexName": "by-group",
        "KeySchema": [{"AttributeName": "grp", "KeyType": "HASH"},
                      {"AttributeName": "sk", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "ALL"},
    }  # fmt: skip
    create_table(ddb, "ledger", range_key="sk", key_types=("S", "N"), stream=None, gsis=[gsi],
                 extra_attributes=[{"AttributeName": "grp", "AttributeType": "S"}])  # fmt: skip
    created = time.time()
    work = Workload(ddb, "ledger", key_types=("S", "N"), range_key=True, keys=16, seed=2,
                    extra={"grp": "S"})  # fmt: skip
    work.phase(40)  # no stream yet: only a snapshot can bring these back
    before_stream = work.instant()
    time.sleep(max(0.0, created + 1.2 - time.time()))  # the stream is not "created with" it
    ddb.update_table(TableName="ledger", StreamSpecification={
        "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})  # fmt: skip
    enabled = time.time()  # the log covers the table from here on
    time.sleep(max(0.0, enabled + 5.2 - time.time()))  # a scan needs the log from start − 5 s
    snapshot_table("ledger", str(archive_path))
    snapped = time.time()
    work.phase(12, slots=range(6))  # most keys keep their pre-stream items
    time.sleep(max(0.0, snapped + 5.1 - time.time()))  # valid from its end + 5 s
    first = work.instant()
    work.phase(20)
    second = work.instant()
    settle(second)
    archive_table("ledger", str(archive_path))

    code, out, err = restore(capsys, "ledger", "early", archive_path, before_stream.iso)
    assert code == EXIT_REFUSED
    assert "no snapshot of table 'ledger' is valid" in err and len(err.splitlines()) == 1
    assert "early" not in tables_now(ddb)

    for name, instant in (("ledger-1", first), ("ledger-2", second)):
        code, out, err = restore(capsys, "ledger", name, archive_path, instant.iso)
        assert code == 0, err
        assert "snapshot" in out and "verify: identical" in out
        assert scan_state(ddb, name) == instant.state
    pre_stream_only = {k: v for k, v in before_stream.state.items() if second.state.get(k) == v}
    assert pre_stream_only, "the workload should leave some pre-stream items untouched"

    target = ddb.describe_table(TableName="ledger-2")["Table"]
    source = ddb.describe_table(TableName="ledger")["Table"]
    assert target["KeySchema"] == source["KeySchema"]
    assert [(g["IndexName"], g["KeySchema"], g["Projection"])
            for g in target["GlobalSecondaryIndexes"]] == [
        (g["IndexName"], g["KeySchema"], g["Projection"]) for g in source["GlobalSecondaryIndexes"]
    ]  # fmt: skip
    grouped = ddb.query(TableName="ledger-2", IndexName="by-group",
                        KeyConditionExpression="grp = :g",
                        ExpressionAttributeValues={":g": {"S": "g1"}})["Items"]  # fmt: skip
    expected = [v for v in second.state.values() if '"grp":{"S":"g1"}' in v]
    assert len(grouped) == len(expected)


def test_restore_from_a_converted_native_export_in_ion(
    ddb: Any, archive_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A native export (AWS layout, ION: ``103.``, ``6d2``, blobs) becomes the base on first use.

    The export's margins are a minute each way, which a test cannot wait for: its export time
    is set 61 s before the state it holds was read (a base may claim an earlier time than its
    content: records re-applied over it are harmless), and coverage is moved back to before
    that — as if the stream had been archived for a while. Binary range keys throughout (moto
    cannot scan a binary *hash* key by segments, and garbles binary ``Keys`` in stream records:
    the archiver takes keys from the images, so the stream needs old images for REMOVEs).
    """
    create_table(ddb, "blobs", range_key="sk", key_types=("S", "B"), stream=None)
    created = time.time()
    work = Workload(ddb, "blobs", key_types=("S", "B"), range_key=True, seed=3)
    work.phase(30)  # before the stream: only the export holds these
    time.sleep(max(0.0, created + 1.2 - time.time()))
    ddb.update_table(TableName="blobs", StreamSpecification={
        "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})  # fmt: skip
    archive_table("blobs", str(archive_path))
    work.phase(15)
    archive = Archive.open(str(archive_path))
    description = tables.latest_description(archive, "blobs")
    assert description is not None
    # As AWS holds them: numbers normalised (moto keeps ``007`` as written)
    items = [normalize_item(i) for i in ddb.scan(TableName="blobs", ConsistentRead=True)["Items"]]
    read_at = utcnow()
    fixture = write_export(
        Archive.open(str(archive_path / "exports")),
        items,
        table_arn=description["table_arn"],
        table_id=description["table_id"],
        export_time=read_at.replace(microsecond=0) - pa.scalar(61, pa.duration("s")).as_py(),
        output_format="ION",
    )
    work.phase(15)
    instant = work.instant()
    settle(instant)
    archive_table("blobs", str(archive_path))

    code, out, err = restore(capsys, "blobs", "blobs-x", archive_path, instant.iso)
    assert code == EXIT_REFUSED and "needs the log from" in err  # coverage is too short…
    state = archive.read_json("_state/blobs/coverage.json")
    state["covered_from"] = iso_ms(read_at - pa.scalar(200, pa.duration("s")).as_py())
    archive.write_json("_state/blobs/coverage.json", state)  # …unless archived for longer

    code, out, err = restore(capsys, "blobs", "blobs-2", archive_path, instant.iso, "--dry-run")
    assert code == 0, err
    assert "(export," in out and str(len(items)) + " items" in out
    manifests = [archive.read_json(p) for p in archive.find("snapshots", "_manifest.json")]
    assert [m["source"].rstrip("/").rsplit("/", 1)[-1] for m in manifests] == [fixture.export_id]
    code, out, err = restore(capsys, "blobs", "blobs-2", archive_path, instant.iso)
    assert code == 0, err
    assert scan_state(ddb, "blobs-2") == instant.state
    numbers = [v for v in instant.state.values() if '"N":"' in v]
    assert numbers, "ION numbers should be in the data"


def test_a_table_deleted_and_recreated_under_the_same_name(
    ddb: Any, archive_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "cycle")
    first_gen = Workload(ddb, "cycle", seed=4)
    first_gen.phase(20)
    first = first_gen.instant()
    first_gen.phase(5)
    settle(first)
    archive_table("cycle", str(archive_path))
    ddb.delete_table(TableName="cycle")
    create_table(ddb, "cycle", range_key="sk")  # another generation, other keys even
    second_gen = Workload(ddb, "cycle", range_key=True, seed=5)
    second_gen.phase(20)
    second = second_gen.instant()
    settle(second)
    archive_table("cycle", str(archive_path))
    generations = coverage.generations(Archive.open(str(archive_path)), "cycle")
    assert len(generations) == 2

    for name, instant in (("cycle-1", first), ("cycle-2", second)):
        code, _, err = restore(capsys, "cycle", name, archive_path, instant.iso)
        assert code == 0, err
        assert scan_state(ddb, name) == instant.state
    assert len(ddb.describe_table(TableName="cycle-1")["Table"]["KeySchema"]) == 1
    assert len(ddb.describe_table(TableName="cycle-2")["Table"]["KeySchema"]) == 2


def test_every_refusal_exits_4_and_creates_nothing(
    ddb: Any,
    archive_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    create_table(ddb, "guarded")
    work = Workload(ddb, "guarded", seed=6)
    work.phase(15)
    instant = work.instant()
    settle(instant)
    archive_table("guarded", str(archive_path))
    archive = Archive.open(str(archive_path))
    watermark = coverage.current(archive, "guarded")["watermark"]  # type: ignore[index]
    before = tables_now(ddb)

    code, out, err = restore(capsys, "guarded", "guarded", archive_path, instant.iso)
    assert code == EXIT_REFUSED and "target table 'guarded' already exists" in err
    assert len(err.strip().splitlines()) == 1

    code, out, err = restore(capsys, "guarded", "new", archive_path, "2100-01-01T00:00:00Z")
    assert code == EXIT_REFUSED and f"after the watermark {watermark}" in err

    code, out, err = restore(capsys, "guarded", "new", archive_path, "yesterday")
    assert code == EXIT_USAGE and "malformed time" in err

    code, out, err = restore(capsys, "guarded", "no/slashes", archive_path, instant.iso)
    assert code == EXIT_USAGE and "not a valid table name" in err

    code, out, err = restore(capsys, "missing", "new", archive_path, instant.iso)
    assert code == EXIT_REFUSED and "holds no coverage of table 'missing'" in err

    code, out, err = restore(capsys, "guarded", "new", archive_path, instant.iso, "--strategy",
                             "pitr")  # fmt: skip
    assert code == EXIT_REFUSED and "point-in-time recovery is not enabled" in err

    code, out, err = restore(capsys, "guarded", "new", archive_path, instant.iso, "--dry-run")
    assert code == 0, err
    assert "base           none" in out and "log records" in out and "dry run" in out
    assert tables_now(ddb) == before

    table_id = coverage.current(archive, "guarded")["table_id"]  # type: ignore[index]
    gap_log.append_gap(archive, "guarded", table_id=table_id, stream_arn="s", shard_id=None,
                        start=instant.at - pa.scalar(3, pa.duration("s")).as_py(), end=instant.at,
                        reason=gap_log.GAP_TRIMMED)  # fmt: skip
    code, out, err = restore(capsys, "guarded", "new", archive_path, instant.iso)
    assert code == EXIT_REFUSED and "has a gap" in err and "--allow-gaps" in err
    assert tables_now(ddb) == before

    with caplog.at_level(logging.WARNING):
        code, out, err = restore(capsys, "guarded", "new", archive_path, instant.iso,
                                 "--allow-gaps")  # fmt: skip
    assert code == 0, err
    assert "changes in it are MISSING" in caplog.text
    assert scan_state(ddb, "new") == instant.state  # the gap held nothing, in truth


def test_restore_to_the_latest_restorable_time_from_a_new_image_stream(
    ddb: Any, archive_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "latest", stream="NEW_IMAGE")  # REMOVEs carry no image at all
    work = Workload(ddb, "latest", seed=7)
    work.phase(20)
    instant = work.instant()
    settle(instant)
    archive_table("latest", str(archive_path))
    code, out, err = replayer(capsys, "restore", "--source-table-name", "latest",
                              "--target-table-name", "copy", "--archive", str(archive_path),
                              "--use-latest-restorable-time", "--no-verify")  # fmt: skip
    assert code == 0, err
    assert "verify" not in out
    assert scan_state(ddb, "copy") == instant.state == scan_state(ddb, "latest")


# -- the table sink against a double that throttles ----------------------------------------


class FlakyDynamoDB:
    """A BatchWriteItem double that models throttling: it returns part of each batch as
    UnprocessedItems, and sometimes fails the whole call with
    ProvisionedThroughputExceededException, as DynamoDB does under load."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        self.calls = 0
        self.lock = threading.Lock()

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        with self.lock:
            self.calls += 1
            calls = self.calls
        if calls % 5 == 0:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "BatchWriteItem",
            )
        ((table, requests),) = RequestItems.items()
        assert len(requests) <= 25
        done, back = requests[: len(requests) // 2 + 1], requests[len(requests) // 2 + 1 :]
        with self.lock:
            for request in done:
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    self.items[item["pk"]["S"]] = item
                else:
                    self.items.pop(request["DeleteRequest"]["Key"]["pk"]["S"], None)
        return {"UnprocessedItems": {table: back} if back else {}}


def _rows(pairs: Sequence[tuple[str, str | None]]) -> pa.RecordBatch:
    return pa.record_batch(
        [[k for k, _ in pairs], [v for _, v in pairs]],
        schema=pa.schema([("keys", pa.string()), ("item", pa.string())]),
    )


def test_the_table_sink_retries_until_every_item_is_written() -> None:
    client = FlakyDynamoDB()
    client.items["old"] = {"pk": {"S": "old"}}
    puts = [(f'{{"pk":{{"S":"k{i}"}}}}', f'{{"b":{{"B":"AAE="}},"pk":{{"S":"k{i}"}}}}')
            for i in range(300)]  # fmt: skip
    sleeps: list[float] = []
    sink = TableSink(client, "t", None, workers=4, sleep=sleeps.append)
    result = sink.write([_rows(puts[:120]), _rows([*puts[120:], ('{"pk":{"S":"old"}}', None)])])
    assert (result.items, result.deletes) == (300, 1)
    assert sorted(client.items) == sorted(f"k{i}" for i in range(300))
    assert client.items["k7"]["b"] == {"B": b"\x00\x01"}  # binary as bytes for boto3
    assert sink.retries > 0 and len(sleeps) == sink.retries
    assert all(0 <= s <= 5.0 for s in sleeps)


def test_the_table_sink_honours_max_write_rate() -> None:
    client = FlakyDynamoDB()
    client.batch_write_item = lambda RequestItems: {"UnprocessedItems": {}}  # type: ignore[method-assign]
    rows = _rows([(f'{{"pk":{{"S":"k{i}"}}}}', f'{{"pk":{{"S":"k{i}"}}}}') for i in range(100)])
    started = time.monotonic()
    TableSink(client, "t", None, max_write_rate=200, workers=8).write([rows])
    assert time.monotonic() - started >= 0.35  # 100 items at 200/s, the first batch free


def test_a_non_retryable_error_stops_the_write_with_its_message() -> None:
    from botocore.exceptions import ClientError

    class Rejecting(FlakyDynamoDB):
        def batch_write_item(self, RequestItems: Any) -> Any:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "too big"}},
                              "BatchWriteItem")  # fmt: skip

    sink = TableSink(Rejecting(), "t", None, workers=2)
    with pytest.raises(Exception, match="too big") as exc:
        sink.write([_rows([('{"pk":{"S":"a"}}', '{"pk":{"S":"a"}}')])])
    assert getattr(exc.value, "exit_code", None) == EXIT_USAGE
    assert EXIT_DIFFERENCES != EXIT_USAGE


def test_restore_from_an_archive_on_s3(
    ddb: Any, s3_archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same restore with the archive in S3 (read through s3fs and pyarrow datasets)."""
    write_coverage(s3_archive, covered_from=at(0), from_table_creation=False, watermark=at(1000))
    write_description(s3_archive)
    write_snapshot(s3_archive, [item("a", v=0), item("b", v=0)], valid_from=at(20), log_from=at(5))
    write_changes(s3_archive, [
        Change(1, key("b"), None, at(30)),
        Change(2, key("c"), item("c", v=1, note="ünïcødé"), at(40), "INSERT"),
    ])  # fmt: skip
    code, out, err = restore(capsys, "orders", "from-s3", s3_archive.url, iso_ms(at(100)))
    assert code == 0, err
    assert "verify: identical" in out
    assert scan_state(ddb, "from-s3") == canon([item("a", v=0), item("c", v=1, note="ünïcødé")])


def test_the_target_is_created_with_the_sources_settings(ddb: Any) -> None:
    """Provisioned capacity, GSIs with their own capacity, LSIs, SSE with a customer key,
    table class and deletion protection carry over from the archived description."""
    from replayer.write.target_table import create_table_request

    kms = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    source = {
        "TableName": "src",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                      {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "N"},
                                 {"AttributeName": "g", "AttributeType": "S"},
                                 {"AttributeName": "l", "AttributeType": "B"}],
        "ProvisionedThroughput": {"ReadCapacityUnits": 7, "WriteCapacityUnits": 3,
                                  "NumberOfDecreasesToday": 0},
        "GlobalSecondaryIndexes": [{
            "IndexName": "by-g", "IndexStatus": "ACTIVE", "ItemCount": 5,
            "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["x"]},
            "ProvisionedThroughput": {"ReadCapacityUnits": 2, "WriteCapacityUnits": 1},
        }],
        "LocalSecondaryIndexes": [{
            "IndexName": "by-l",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                          {"AttributeName": "l", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }],
        "SSEDescription": {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": kms},
        "TableClassSummary": {"TableClass": "STANDARD_INFREQUENT_ACCESS"},
        "DeletionProtectionEnabled": True,
    }  # fmt: skip
    request = create_table_request(source, "dst")
    assert request["BillingMode"] == "PROVISIONED"
    assert request["ProvisionedThroughput"] == {"ReadCapacityUnits": 7, "WriteCapacityUnits": 3}
    assert request["GlobalSecondaryIndexes"] == [{
        "IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["x"]},
        "ProvisionedThroughput": {"ReadCapacityUnits": 2, "WriteCapacityUnits": 1},
    }]  # fmt: skip
    assert request["LocalSecondaryIndexes"][0]["IndexName"] == "by-l"
    assert request["SSESpecification"] == {"Enabled": True, "SSEType": "KMS",
                                           "KMSMasterKeyId": kms}  # fmt: skip
    assert request["TableClass"] == "STANDARD_INFREQUENT_ACCESS"
    assert request["DeletionProtectionEnabled"] is True

    # moto knows no such KMS key: create it with the default encryption
    created = TableSink(ddb, "dst", {**source, "SSEDescription": None}, workers=2)
    created.prepare()
    table = ddb.describe_table(TableName="dst")["Table"]
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 7
    assert [i["IndexName"] for i in table["LocalSecondaryIndexes"]] == ["by-l"]
    assert table["GlobalSecondaryIndexes"][0]["Projection"]["NonKeyAttributes"] == ["x"]
    assert table.get("DeletionProtectionEnabled") is True
    ddb.update_table(TableName="dst", DeletionProtectionEnabled=False)
