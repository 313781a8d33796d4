"""Native exports in AWS's layout → Parquet snapshots: content, margins, checks, idempotence."""

from __future__ import annotations

import base64
import gzip
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from archiver import cli as archiver_cli
from archiver.format import layout
from archiver.format.codec import canonical_json, key_of
from archiver.format.exports.full import CorruptExport, folder_in
from archiver.format.manifests import list_snapshots
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from replayer.planning.export_conversion import convert_new_exports, pending_exports
from tests.export_fixtures import (
    BOOKS_KEY_SCHEMA,
    ExportFixture,
    books,
    rewrite_manifest_files,
    write_description,
    write_export,
)

TABLE = "books"
TABLE_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"
TABLE_ID = "12345a12-abcd-123a-ab12-1234abc12345"
EXPORT_TIME = datetime(2026, 11, 4, 7, 28, 34, 28000, tzinfo=UTC)


def exports_root(archive: Archive) -> Archive:
    return folder_in(archive, layout.EXPORTS)


def snapshot_rows(archive: Archive, manifest: dict[str, Any]) -> set[tuple[str, str]]:
    rows: set[tuple[str, str]] = set()
    for entry in manifest["files"]:
        table = archive.read_parquet(entry["path"])
        rows.update(zip(table["keys"].to_pylist(), table["item"].to_pylist(), strict=True))
    return rows


def expected_rows(items: list[dict[str, Any]]) -> set[tuple[str, str]]:
    names = [k["AttributeName"] for k in BOOKS_KEY_SCHEMA]
    return {(canonical_json(key_of(item, names)), canonical_json(item)) for item in items}


def with_description(archive: Archive, table_id: str = TABLE_ID) -> None:
    write_description(archive, TABLE, table_id, BOOKS_KEY_SCHEMA, EXPORT_TIME - timedelta(days=1))


def nothing_registered(archive: Archive) -> bool:
    return list_snapshots(archive, TABLE) == [] and archive.find(layout.SNAPSHOTS) == []


@pytest.mark.parametrize("output_format", ["DYNAMODB_JSON", "ION"])
def test_aws_layout_export_converts_to_canonical_items(
    s3_archive: Archive, output_format: str
) -> None:
    items = books(12)
    with_description(s3_archive)
    fixture = write_export(
        exports_root(s3_archive),
        items,
        table_arn=TABLE_ARN,
        table_id=TABLE_ID,
        export_time=EXPORT_TIME,
        output_format=output_format,
        files=3,
    )

    created = convert_new_exports(s3_archive, TABLE)

    assert len(created) == 1
    (manifest,) = list_snapshots(s3_archive, TABLE)
    assert manifest["snapshot_id"] == created[0]
    assert snapshot_rows(s3_archive, manifest) == expected_rows(items)
    assert manifest["method"] == "export"
    assert manifest["table_id"] == TABLE_ID
    assert manifest["item_count"] == len(items)
    assert manifest["log_from"] == iso_ms(EXPORT_TIME - timedelta(seconds=60))
    assert manifest["valid_from"] == iso_ms(EXPORT_TIME + timedelta(seconds=60))
    assert manifest["started_at"] == fixture.summary["startTime"]
    assert manifest["finished_at"] == fixture.summary["endTime"]
    assert manifest["key_schema"] == BOOKS_KEY_SCHEMA
    assert manifest["source"].rstrip("/").endswith(f"/AWSDynamoDB/{fixture.export_id}")
    for entry in manifest["files"]:
        data = s3_archive.get_bytes(entry["path"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert sum(entry["item_count"] for entry in manifest["files"]) == len(items)
    # Converted once: the planner calls this before every plan.
    assert convert_new_exports(s3_archive, TABLE) == []
    assert len(list_snapshots(s3_archive, TABLE)) == 1


def test_ion_numbers_and_binary_come_out_canonical(archive: Archive) -> None:
    item = {
        "pk": {"S": "book"},
        "sk": {"N": "100"},
        "Id": {"N": "103"},
        "PageCount": {"N": "600"},
        "Cover": {"B": b"\x00\xff\x10"},
        "Authors": {"SS": ["B", "A"]},
    }
    with_description(archive)
    write_export(
        exports_root(archive),
        [item],
        table_arn=TABLE_ARN,
        table_id=TABLE_ID,
        export_time=EXPORT_TIME,
        output_format="ION",
        files=1,
    )
    raw = exports_root(archive).find("AWSDynamoDB", ".ion.gz")
    text = b"".join(gzip.decompress(exports_root(archive).get_bytes(rel)) for rel in raw)
    assert b"Id:103.," in text and b"PageCount:6d2," in text and b"sk:1d2" in text

    convert_new_exports(archive, TABLE)

    (manifest,) = list_snapshots(archive, TABLE)
    ((keys, stored),) = snapshot_rows(archive, manifest)
    assert keys == '{"pk":{"S":"book"},"sk":{"N":"100"}}'
    assert stored == (
        '{"Authors":{"SS":["A","B"]},"Cover":{"B":"AP8Q"},"Id":{"N":"103"},'
        '"PageCount":{"N":"600"},"pk":{"S":"book"},"sk":{"N":"100"}}'
    )


def test_local_archive_finds_exports_copied_into_it(archive: Archive) -> None:
    items = books(5)
    with_description(archive)
    write_export(
        exports_root(archive),
        items,
        table_arn=TABLE_ARN,
        table_id=TABLE_ID,
        export_time=EXPORT_TIME,
    )
    assert len(convert_new_exports(archive, TABLE)) == 1
    (manifest,) = list_snapshots(archive, TABLE)
    assert snapshot_rows(archive, manifest) == expected_rows(items)


def test_discovery_skips_running_incremental_and_other_tables_exports(archive: Archive) -> None:
    with_description(archive)
    root = exports_root(archive)
    root.put_bytes("AWSDynamoDB/01700000000000-running/_started", b"")
    other = "arn:aws:dynamodb:us-east-1:123456789012:table/other"
    write_export(root, books(2), table_arn=other, table_id="x", export_time=EXPORT_TIME)
    write_export(
        root,
        books(2),
        table_arn=TABLE_ARN,
        table_id=TABLE_ID,
        export_time=EXPORT_TIME,
        export_type="INCREMENTAL_EXPORT",
    )
    assert pending_exports(archive, TABLE) == []
    assert convert_new_exports(archive, TABLE) == []
    assert nothing_registered(archive)


# -- corrupted exports: one clear error, exit 2, nothing registered -----------------------


def _fixture(s3_archive: Archive) -> ExportFixture:
    with_description(s3_archive)
    return _export(s3_archive, items=9)


def _export(s3_archive: Archive, items: int = 3) -> ExportFixture:
    """A valid export of ``items`` books, without writing the table's description first."""
    return write_export(
        exports_root(s3_archive),
        books(items),
        table_arn=TABLE_ARN,
        table_id=TABLE_ID,
        export_time=EXPORT_TIME,
    )


def convert_with_cli(archive: Archive, fixture: ExportFixture) -> int:
    """``ddb-archiver snapshot --export-from``: convert the fixture now; the exit code."""
    argv = ["snapshot", "--table-name", TABLE, "--archive", archive.url]
    return archiver_cli.main([*argv, "--export-from", fixture.url])


def _bad_md5(fixture: ExportFixture) -> str:
    def change(entries: list[dict[str, Any]]) -> None:
        entries[1]["md5Checksum"] = "1B2M2Y8AsgTpgAmY7PhCfg=="

    rewrite_manifest_files(fixture, change)
    return "does not match"


def _tampered_data(fixture: ExportFixture) -> str:
    # Same item count, different bytes: only the MD5 can tell.
    rel = fixture.data_keys[0]
    text = gzip.decompress(fixture.store.get_bytes(rel)).replace(b"Book", b"Boot")
    fixture.store.put_bytes(rel, gzip.compress(text))
    return "MD5"


def _file_count_wrong(fixture: ExportFixture) -> str:
    def change(entries: list[dict[str, Any]]) -> None:
        entries[0]["itemCount"] += 1
        entries[1]["itemCount"] -= 1  # the sum still matches the summary

    rewrite_manifest_files(fixture, change)
    return "manifest-files.json says"


def _summary_count_wrong(fixture: ExportFixture) -> str:
    summary = dict(fixture.summary, itemCount=fixture.summary["itemCount"] + 1)
    fixture.store.put_bytes("manifest-summary.json", orjson.dumps(summary))
    return "manifest-summary.json says"


def _invalid_value(fixture: ExportFixture) -> str:
    # A number DynamoDB cannot hold, in a file whose MD5 and count are right.
    rel = fixture.data_keys[0]
    text = gzip.decompress(fixture.store.get_bytes(rel)).replace(b'"N":"103"', b'"N":"1e999"', 1)
    data = gzip.compress(text)
    fixture.store.put_bytes(rel, data)

    def change(entries: list[dict[str, Any]]) -> None:
        entries[0]["md5Checksum"] = base64.b64encode(hashlib.md5(data).digest()).decode()

    rewrite_manifest_files(fixture, change)
    return "item 1"


def _missing_data_file(fixture: ExportFixture) -> str:
    fixture.store.delete(fixture.data_keys[2])
    return "missing"


@pytest.mark.parametrize(
    "corrupt",
    [
        _bad_md5,
        _tampered_data,
        _file_count_wrong,
        _summary_count_wrong,
        _missing_data_file,
        _invalid_value,
    ],
    ids=["bad-md5", "tampered-data", "file-count", "summary-count", "missing-file", "bad-value"],
)
def test_corrupt_export_is_refused_with_exit_2_and_nothing_registered(
    s3_archive: Archive, capsys: pytest.CaptureFixture[str], corrupt: Any
) -> None:
    fixture = _fixture(s3_archive)
    expected_message = corrupt(fixture)

    code = convert_with_cli(s3_archive, fixture)

    err = capsys.readouterr().err
    assert code == 2
    assert expected_message in err
    assert len(err.strip().splitlines()) == 1
    assert nothing_registered(s3_archive)
    with pytest.raises(CorruptExport):
        convert_new_exports(s3_archive, TABLE)
    assert nothing_registered(s3_archive)


def test_export_of_another_table_generation_is_refused(
    s3_archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    with_description(s3_archive, table_id="an-older-generation")
    code = convert_with_cli(s3_archive, _export(s3_archive))
    assert code == 2
    assert "matches no archived description" in capsys.readouterr().err
    assert nothing_registered(s3_archive)


def test_export_without_any_key_schema_source_is_refused(
    s3_archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    code = convert_with_cli(s3_archive, _export(s3_archive))
    assert code == 2
    assert "key schema is unknown" in capsys.readouterr().err
    assert nothing_registered(s3_archive)


def test_a_corrupt_export_does_not_block_the_others(s3_archive: Archive) -> None:
    good = _fixture(s3_archive)
    bad = write_export(
        exports_root(s3_archive),
        books(4),
        table_arn=TABLE_ARN,
        table_id=TABLE_ID,
        export_time=EXPORT_TIME + timedelta(hours=1),
    )
    _missing_data_file(bad)

    with pytest.raises(CorruptExport, match=bad.export_id):
        convert_new_exports(s3_archive, TABLE)

    (manifest,) = list_snapshots(s3_archive, TABLE)
    assert manifest["source"].endswith(good.export_id)
    with pytest.raises(CorruptExport, match=bad.export_id):
        convert_new_exports(s3_archive, TABLE)
    assert len(list_snapshots(s3_archive, TABLE)) == 1


def test_export_from_needs_aws_access_only_without_archived_descriptions(
    archive: Archive,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name)  # no AWS access at all
    fixture = write_export(
        exports_root(archive),
        books(3),
        table_arn=TABLE_ARN,
        table_id=TABLE_ID,
        export_time=EXPORT_TIME,
    )
    argv = ["snapshot", "--table-name", TABLE, "--archive", archive.url, "--export-from"]

    assert archiver_cli.main([*argv, fixture.url]) == 2
    assert "could not describe table books" in caplog.text
    assert "key schema is unknown" in capsys.readouterr().err

    with_description(archive)
    assert archiver_cli.main([*argv, fixture.url]) == 0
    assert len(list_snapshots(archive, TABLE)) == 1
