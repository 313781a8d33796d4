"""``ddb-archiver snapshot``: parallel scan and native export into Parquet snapshots."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archiver import cli as archiver_cli
from archiver.aws.clients import AwsSettings
from archiver.format import layout
from archiver.format.codec import canonical_json, key_of
from archiver.format.exports.full import folder_in
from archiver.format.manifests import SnapshotWriter, list_snapshots
from archiver.format.storage import Archive
from archiver.format.tables import table_id_of
from archiver.format.timefmt import parse_iso, utcnow
from archiver.snapshots import base_snapshot as snapshot
from replayer.planning.export_conversion import convert_new_exports
from tests.conftest import create_table
from tests.export_fixtures import BOOKS_KEY_SCHEMA, books, write_export

TABLE = "books"


def put_books(ddb: Any, n: int) -> list[dict[str, Any]]:
    items = books(n)
    # books() repeats keys only if n > 4 * ...: each (pk, sk) pair is unique by construction.
    for item in items:
        ddb.put_item(TableName=TABLE, Item=item)
    return items


def boto3_scan(ddb: Any) -> set[tuple[str, str]]:
    names = [k["AttributeName"] for k in BOOKS_KEY_SCHEMA]
    rows = set()
    for page in ddb.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            rows.add((canonical_json(key_of(item, names)), canonical_json(item)))
    return rows


def snapshot_rows(archive: Archive, manifest: dict[str, Any]) -> set[tuple[str, str]]:
    rows: set[tuple[str, str]] = set()
    for entry in manifest["files"]:
        table = archive.read_parquet(entry["path"])
        assert table.num_rows == entry["item_count"]
        rows.update(zip(table["keys"].to_pylist(), table["item"].to_pylist(), strict=True))
    return rows


def run_cli(*argv: str) -> int:
    return archiver_cli.main(["snapshot", "--table-name", TABLE, *argv])


@pytest.fixture
def books_table(ddb: Any) -> dict[str, Any]:
    return create_table(ddb, TABLE, range_key="sk", key_types=("S", "N"), stream=None)


# -- scan ----------------------------------------------------------------------------------


def test_scan_snapshot_equals_a_boto3_scan(
    ddb: Any, archive: Archive, books_table: dict[str, Any]
) -> None:
    put_books(ddb, 40)
    before = utcnow()

    manifest = asyncio.run(
        snapshot.scan_snapshot(
            AwsSettings(), archive, TABLE, segments=3, part_bytes=8_000, page_size=4
        )
    )

    after = utcnow()
    assert snapshot_rows(archive, manifest) == boto3_scan(ddb)
    assert len(manifest["files"]) > 1  # bounded parts, not one file per table
    assert list_snapshots(archive, TABLE) == [manifest]
    assert archive.read_json(layout.snapshot_manifest(TABLE, manifest["snapshot_id"])) == manifest
    assert set(manifest) == {
        "table",
        "table_id",
        "snapshot_id",
        "method",
        "valid_from",
        "log_from",
        "started_at",
        "finished_at",
        "item_count",
        "key_schema",
        "source",
        "files",
        "created_at",
    }
    assert manifest["table"] == TABLE
    assert manifest["method"] == "scan"
    assert manifest["item_count"] == 40
    assert manifest["table_id"] == table_id_of(ddb.describe_table(TableName=TABLE)["Table"])
    assert manifest["key_schema"] == BOOKS_KEY_SCHEMA
    assert manifest["source"] == books_table["TableArn"]
    started, finished = parse_iso(manifest["started_at"]), parse_iso(manifest["finished_at"])
    assert before - timedelta(milliseconds=1) <= started <= finished <= after
    assert parse_iso(manifest["log_from"]) == started - timedelta(seconds=5)
    assert parse_iso(manifest["valid_from"]) == finished + timedelta(seconds=5)
    assert parse_iso(manifest["created_at"]) >= finished
    for entry in manifest["files"]:
        assert entry["path"].startswith(layout.snapshot_dir(TABLE, manifest["snapshot_id"]))
        assert hashlib.sha256(archive.get_bytes(entry["path"])).hexdigest() == entry["sha256"]


def test_scan_cli_on_an_s3_archive_says_what_it_did(
    ddb: Any,
    s3_archive: Archive,
    books_table: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    put_books(ddb, 8)
    with caplog.at_level(logging.INFO):
        assert run_cli("--archive", s3_archive.url) == 0
    assert "method: scan (point-in-time recovery is off" in caplog.text
    (manifest,) = list_snapshots(s3_archive, TABLE)
    assert snapshot_rows(s3_archive, manifest) == boto3_scan(ddb)
    assert (
        f"snapshot {manifest['snapshot_id']} of {TABLE}: 8 items by scan" in capsys.readouterr().out
    )


def test_empty_table_gives_an_empty_committed_snapshot(
    ddb: Any, archive: Archive, books_table: dict[str, Any]
) -> None:
    manifest = asyncio.run(snapshot.scan_snapshot(AwsSettings(), archive, TABLE))
    assert manifest["item_count"] == 0 and manifest["files"] == []
    assert list_snapshots(archive, TABLE) == [manifest]


def test_unfinished_snapshot_is_ignored(archive: Archive) -> None:
    writer = SnapshotWriter(archive, TABLE, "20260101T000000000Z-abcdef", part_bytes=1)
    writer.add('{"pk":{"S":"a"}}', '{"pk":{"S":"a"}}')
    writer.flush()  # a part is durable, the manifest never came
    assert archive.find(layout.snapshots_table_dir(TABLE)) == [writer.files[0]["path"]]
    assert list_snapshots(archive, TABLE) == []


def test_failed_scan_leaves_no_snapshot(
    ddb: Any, archive: Archive, books_table: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    put_books(ddb, 20)
    flushes = 0
    real_flush = SnapshotWriter.flush

    def flush_then_fail(self: SnapshotWriter) -> None:
        nonlocal flushes
        flushes += 1
        if flushes == 3:
            raise OSError("disk full")
        real_flush(self)

    monkeypatch.setattr(SnapshotWriter, "flush", flush_then_fail)
    with pytest.raises(OSError, match="disk full"):
        asyncio.run(
            snapshot.scan_snapshot(AwsSettings(), archive, TABLE, segments=2, part_bytes=2_000)
        )
    assert list_snapshots(archive, TABLE) == []
    assert archive.find(layout.SNAPSHOTS) == []  # the parts it wrote were removed


def test_table_not_found_is_exit_2(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("--archive", str(archive.root)) == 2
    assert "books does not exist" in capsys.readouterr().err


# -- clock skew ----------------------------------------------------------------------------


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _response(date: str) -> dict[str, Any]:
    return {"ResponseMetadata": {"HTTPHeaders": {"date": date}}}


def test_skew_guard_allows_for_whole_second_dates() -> None:
    guard = snapshot.SkewGuard()
    # Date is truncated to the second: a server at 12:00:00.999 says 12:00:00.
    guard.observe(
        _response("Sun, 31 Jan 2026 12:00:00 GMT"),
        _at("2026-01-31T12:00:02.900"),
        _at("2026-01-31T12:00:02.950"),
    )
    guard.observe(
        _response("Sun, 31 Jan 2026 12:00:02 GMT"),
        _at("2026-01-31T11:59:59.900"),
        _at("2026-01-31T12:00:00.100"),
    )
    with pytest.raises(snapshot.ClockSkew, match="ahead of"):
        guard.observe(
            _response("Sun, 31 Jan 2026 12:00:00 GMT"),
            _at("2026-01-31T12:00:03.100"),
            _at("2026-01-31T12:00:03.200"),
        )
    with pytest.raises(snapshot.ClockSkew, match="behind"):
        guard.observe(
            _response("Sun, 31 Jan 2026 12:00:03 GMT"),
            _at("2026-01-31T12:00:00.800"),
            _at("2026-01-31T12:00:00.900"),
        )
    # A slow response widens the interval: no false refusal.
    guard.observe(
        _response("Sun, 31 Jan 2026 12:00:05 GMT"),
        _at("2026-01-31T12:00:00.000"),
        _at("2026-01-31T12:00:10.000"),
    )


@pytest.mark.parametrize("offset", [10.0, -10.0])
def test_scan_refused_when_the_clock_is_skewed(
    ddb: Any,
    archive: Archive,
    books_table: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    offset: float,
) -> None:
    put_books(ddb, 4)
    monkeypatch.setattr(snapshot, "utcnow", lambda: utcnow() + timedelta(seconds=offset))
    assert run_cli("--archive", str(archive.root), "--method", "scan") == 4
    err = capsys.readouterr().err.strip()
    assert "refusing to snapshot: this machine's clock is at least" in err
    assert len(err.splitlines()) == 1
    assert archive.find("") == []


def test_scan_allowed_within_the_skew_limit(
    ddb: Any, archive: Archive, books_table: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    put_books(ddb, 4)
    monkeypatch.setattr(snapshot, "utcnow", lambda: utcnow() + timedelta(seconds=1.5))
    assert run_cli("--archive", str(archive.root), "--method", "scan") == 0
    assert len(list_snapshots(archive, TABLE)) == 1


# -- native export -------------------------------------------------------------------------


def enable_pitr(ddb: Any) -> None:
    ddb.update_continuous_backups(
        TableName=TABLE,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
    )


def test_export_method_on_moto_converts_with_a_warning(
    ddb: Any,
    s3_archive: Archive,
    books_table: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    put_books(ddb, 10)
    enable_pitr(ddb)
    before = utcnow()
    with caplog.at_level(logging.INFO):
        assert run_cli("--archive", s3_archive.url, "--poll-seconds", "0.05") == 0
    assert "method: export (point-in-time recovery is on)" in caplog.text
    assert "has no manifests" in caplog.text and "could not be checked" in caplog.text
    # moto's DescribeExport gives no ExportTime: the warning says where the time came from.
    assert "LastModified (DescribeExport gave none)" in caplog.text

    (manifest,) = list_snapshots(s3_archive, TABLE)
    assert manifest["method"] == "export"
    assert snapshot_rows(s3_archive, manifest) == boto3_scan(ddb)
    assert manifest["source"].startswith(s3_archive.uri(layout.exports_dir()))
    export_time = parse_iso(manifest["valid_from"]) - timedelta(seconds=60)
    assert parse_iso(manifest["log_from"]) == export_time - timedelta(seconds=60)
    assert before - timedelta(seconds=2) <= export_time <= utcnow()
    assert "items by export" in capsys.readouterr().out
    # The replayer sees the folder in <archive>/exports/ and knows it is converted.
    assert convert_new_exports(s3_archive, TABLE) == []


def test_export_method_with_a_local_archive_needs_s3_prefix(
    ddb: Any,
    s3: Any,
    archive: Archive,
    books_table: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    put_books(ddb, 6)
    enable_pitr(ddb)
    assert run_cli("--archive", str(archive.root), "--method", "export") == 2
    assert "--s3-prefix" in capsys.readouterr().err
    assert archive.find("") == []

    s3.create_bucket(Bucket="exports-bucket")
    assert (
        run_cli(
            "--archive",
            str(archive.root),
            "--method",
            "export",
            "--s3-prefix",
            "s3://exports-bucket/ddb",
            "--poll-seconds",
            "0.05",
        )
        == 0
    )
    (manifest,) = list_snapshots(archive, TABLE)
    assert manifest["source"].startswith("s3://exports-bucket/ddb/AWSDynamoDB/")
    assert snapshot_rows(archive, manifest) == boto3_scan(ddb)


def test_default_method_with_local_archive_and_pitr_is_scan(
    ddb: Any, archive: Archive, books_table: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    put_books(ddb, 3)
    enable_pitr(ddb)
    with caplog.at_level(logging.INFO):
        assert run_cli("--archive", str(archive.root)) == 0
    assert "method: scan (the archive is local and no --s3-prefix" in caplog.text
    assert list_snapshots(archive, TABLE)[0]["method"] == "scan"


def test_export_method_without_pitr_is_exit_2(
    ddb: Any, s3_archive: Archive, books_table: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("--archive", s3_archive.url, "--method", "export") == 2
    assert "point-in-time recovery is not enabled" in capsys.readouterr().err
    assert list_snapshots(s3_archive, TABLE) == []


def test_export_from_converts_an_export_made_by_anyone_once(
    ddb: Any,
    s3: Any,
    archive: Archive,
    books_table: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A scheduled export in another bucket, with AWS's manifests; the live table supplies
    the key schema (its moto table id is derived, so the summary's tableId is taken)."""
    s3.create_bucket(Bucket="scheduled")
    items = books(7)
    export_time = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    fixture = write_export(
        Archive.open("s3://scheduled/nightly"),
        items,
        table_arn=books_table["TableArn"],
        table_id="a1b2c3",
        export_time=export_time,
        output_format="ION",
    )
    assert run_cli("--archive", str(archive.root), "--export-from", fixture.url) == 0
    (manifest,) = list_snapshots(archive, TABLE)
    names = [k["AttributeName"] for k in BOOKS_KEY_SCHEMA]
    assert snapshot_rows(archive, manifest) == {
        (canonical_json(key_of(i, names)), canonical_json(i)) for i in items
    }
    assert manifest["table_id"] == "a1b2c3"
    assert parse_iso(manifest["valid_from"]) == export_time + timedelta(seconds=60)
    assert manifest["source"] == "s3://scheduled/nightly/AWSDynamoDB/" + fixture.export_id
    assert "7 items by export" in capsys.readouterr().out

    assert run_cli("--archive", str(archive.root), "--export-from", fixture.url) == 0
    assert "converted before" in capsys.readouterr().out
    assert len(list_snapshots(archive, TABLE)) == 1


def test_export_from_a_folder_without_manifests_warns_and_converts(
    ddb: Any,
    s3: Any,
    archive: Archive,
    books_table: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    put_books(ddb, 5)
    enable_pitr(ddb)
    s3.create_bucket(Bucket="elsewhere")
    arn = ddb.export_table_to_point_in_time(
        TableArn=books_table["TableArn"], S3Bucket="elsewhere", S3Prefix="p"
    )["ExportDescription"]["ExportArn"]
    while ddb.describe_export(ExportArn=arn)["ExportDescription"]["ExportStatus"] != "COMPLETED":
        pass
    (folder,) = Archive.open("s3://elsewhere/p").listdir("AWSDynamoDB")
    url = f"s3://elsewhere/p/AWSDynamoDB/{folder}/"

    assert run_cli("--archive", str(archive.root), "--export-from", url) == 0

    assert "could not be checked" in caplog.text
    assert "LastModified (the export's ARN is unknown)" in caplog.text
    (manifest,) = list_snapshots(archive, TABLE)
    assert snapshot_rows(archive, manifest) == boto3_scan(ddb)
    assert manifest["item_count"] == 5


def test_export_from_rejects_a_url_that_is_not_an_export_folder(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("--archive", str(archive.root), "--export-from", "s3://b/some/prefix/") == 2
    assert "is not an export folder" in capsys.readouterr().err


def test_export_fixture_written_into_exports_dir_is_found(archive: Archive) -> None:
    # Guard for the fixture itself: the replayer looks where layout says exports are.
    fixture = write_export(
        folder_in(archive, layout.EXPORTS),
        books(1),
        table_arn="arn:aws:dynamodb:us-east-1:1:table/books",
        table_id="t",
        export_time=utcnow(),
    )
    assert archive.listdir(layout.exports_dir()) == [fixture.export_id]
