"""``ddb-replayer export`` and the sinks' shared contract."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archiver.aws.error_table import EXIT_REFUSED
from archiver.format.codec import canonical_json, key_of
from archiver.format.storage import Archive
from replayer.commands.export import FORMATS
from replayer.exceptions import Refused
from replayer.read.verify import scan_rows
from replayer.write.sinks import Sink, TableSink, file_sink, sink_class
from tests.conftest import create_table
from tests.export_fixtures import read_dynamodb_json
from tests.replay_helpers import (
    TABLE,
    Change,
    at,
    canon,
    key,
    replayer,
    write_changes,
    write_coverage,
    write_description,
)

RICH: list[dict[str, Any]] = [
    {"pk": {"S": "a"}, "bin": {"B": b"\x00\xff\x10"}, "n": {"N": "1.50"},
     "nested": {"M": {"l": {"L": [{"B": b"\x01"}, {"N": "007"}, {"NULL": True}]}}},
     "ss": {"SS": ["y", "x"]}, "ns": {"NS": ["10", "2"]}, "bs": {"BS": [b"\x02", b"\x01"]}},
    {"pk": {"S": "b"}, "empty": {"S": ""}, "flag": {"BOOL": False}},
    {"pk": {"S": "c"}, "big": {"N": "12345678901234567890123456789012345678"}},
]  # fmt: skip


@pytest.fixture
def history(archive: Archive) -> Archive:
    """Three items at T=100 (one deleted and re-inserted), one more later."""
    write_coverage(archive, watermark=at(1000))
    write_description(archive)
    write_changes(archive, [
        Change(1, key("a"), RICH[0], at(10), "INSERT"),
        Change(2, key("b"), RICH[1], at(20), "INSERT"),
        Change(3, key("c"), {"pk": {"S": "c"}}, at(30), "INSERT"),
        Change(4, key("c"), None, at(40)),
        Change(5, key("c"), RICH[2], at(50), "INSERT"),
        Change(6, key("d"), {"pk": {"S": "d"}}, at(200), "INSERT"),
    ])  # fmt: skip
    return archive


def export(
    capsys: pytest.CaptureFixture[str], archive: Archive, output: str, *extra: str
) -> tuple[int, str, str]:
    when = at(100).isoformat()
    return replayer(
        capsys,
        "export",
        "--table-name",
        TABLE,
        "--archive",
        archive.url,
        "--restore-date-time",
        when,
        "--output",
        output,
        *extra,
    )


def test_export_parquet_holds_the_state_at_t(
    history: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = export(capsys, history, str(tmp_path / "out"))
    assert code == 0, err
    assert "exported 3 items" in out
    rows = pq.read_table(tmp_path / "out" / "data" / "part-00000.parquet").to_pylist()
    assert {r["keys"]: r["item"] for r in rows} == canon(RICH)
    summary = orjson.loads((tmp_path / "out" / "export.json").read_bytes())
    assert summary["item_count"] == 3 and summary["format"] == "parquet"
    assert summary["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]

    code, out, err = export(capsys, history, str(tmp_path / "out"))
    assert code == EXIT_REFUSED and "already holds files" in err


def test_export_dynamodb_json_is_accepted_by_import_table(
    history: Archive, s3: Any, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s3.create_bucket(Bucket="exports")
    code, out, err = export(capsys, history, "s3://exports/orders-at-100", "--format",
                            "dynamodb-json")  # fmt: skip
    assert code == 0, err
    assert "import with: aws dynamodb import-table" in out
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="exports")["Contents"]]
    assert "orders-at-100/export.json" in keys
    lines = gzip.decompress(
        s3.get_object(Bucket="exports", Key="orders-at-100/data/part-00000.json.gz")["Body"].read()
    ).splitlines()
    assert all(line.startswith(b'{"Item":{') for line in lines) and len(lines) == 3

    started = ddb.import_table(
        S3BucketSource={"S3Bucket": "exports", "S3KeyPrefix": "orders-at-100/data/"},
        InputFormat="DYNAMODB_JSON",
        InputCompressionType="GZIP",
        TableCreationParameters={
            "TableName": "imported",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )
    arn = started["ImportTableDescription"]["ImportArn"]
    for _ in range(100):  # the import runs in the background
        described = ddb.describe_import(ImportArn=arn)["ImportTableDescription"]
        if described["ImportStatus"] != "IN_PROGRESS":
            break
        time.sleep(0.05)
    assert described["ImportStatus"] == "COMPLETED"
    assert described.get("ErrorCount", 0) == 0
    rows = [r for b in scan_rows(ddb, "imported", segments=1) for r in b.to_pylist()]
    assert {r["keys"]: r["item"] for r in rows} == canon(RICH)


# -- the sink contract ---------------------------------------------------------------------


def _batches(items: list[dict[str, Any]]) -> list[pa.RecordBatch]:
    schema = pa.schema([("keys", pa.string()), ("item", pa.string())])
    rows = [(canonical_json(key_of(i, ["pk"])), canonical_json(i)) for i in items]
    half = len(rows) // 2
    return [
        pa.record_batch([[k for k, _ in part], [v for _, v in part]], schema=schema)
        for part in (rows[:half], rows[half:])
    ]


class SinkContract:
    """What every sink promises: everything written can be read back exactly, and an existing
    destination is refused before anything is written."""

    kind: ClassVar[str]

    def make(self, request: pytest.FixtureRequest) -> Sink:
        raise NotImplementedError

    def read_back(self, sink: Sink) -> dict[str, str]:
        raise NotImplementedError

    def test_registered_under_its_kind(self, request: pytest.FixtureRequest) -> None:
        sink = self.make(request)
        assert sink_class(self.kind) is type(sink)
        assert sink.kind == self.kind

    def test_round_trip_of_every_type(self, request: pytest.FixtureRequest) -> None:
        items = RICH + [{"pk": {"S": f"k{i}"}, "n": {"N": str(i)}} for i in range(60)]
        sink = self.make(request)
        sink.prepare()
        result = sink.write(_batches(items), total=len(items))
        assert result.items == len(items)
        assert self.read_back(sink) == canon(items)

    def test_an_existing_destination_is_refused(self, request: pytest.FixtureRequest) -> None:
        first = self.make(request)
        first.prepare()
        first.write(_batches(RICH))
        with pytest.raises(Refused) as exc:
            self.make(request).prepare()
        assert exc.value.exit_code == EXIT_REFUSED


class TestTableSink(SinkContract):
    kind = "table"

    def make(self, request: pytest.FixtureRequest) -> Sink:
        ddb = request.getfixturevalue("ddb")
        if "source" not in ddb.list_tables()["TableNames"]:
            create_table(ddb, "source")
        description = ddb.describe_table(TableName="source")["Table"]
        return TableSink(ddb, "target", description, workers=4)

    def read_back(self, sink: Sink) -> dict[str, str]:
        assert isinstance(sink, TableSink)
        batches = scan_rows(sink.client, "target")
        return {r["keys"]: r["item"] for b in batches for r in b.to_pylist()}


class FileContract(SinkContract):
    def test_offered_by_export(self) -> None:
        assert self.kind in FORMATS

    def make(self, request: pytest.FixtureRequest) -> Sink:
        output = Archive.open(str(request.getfixturevalue("tmp_path") / "out"))
        return file_sink(self.kind, output, items_per_file=25)

    def files(self, sink: Sink) -> list[str]:
        output = sink.output  # type: ignore[attr-defined]
        found: list[str] = output.find("data")
        assert len(found) == 3  # 63 items, 25 per file
        return found


class TestParquetSink(FileContract):
    kind = "parquet"

    def read_back(self, sink: Sink) -> dict[str, str]:
        out = {}
        for rel in self.files(sink):
            for row in sink.output.read_parquet(rel).to_pylist():  # type: ignore[attr-defined]
                out[row["keys"]] = row["item"]
        return out


class TestDynamoDBJsonSink(FileContract):
    kind = "dynamodb-json"

    def read_back(self, sink: Sink) -> dict[str, str]:
        out = {}
        for rel in self.files(sink):
            for item in read_dynamodb_json(sink.output.get_bytes(rel)):  # type: ignore[attr-defined]
                out.update(canon([item]))
        return out
