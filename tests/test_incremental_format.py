"""Converting incremental exports: names, rows and the checks the manifests allow."""

from __future__ import annotations

import base64
import gzip
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from archiver.format import layout
from archiver.format.exports.full import (
    CorruptExport,
    NotAFullExport,
    NotAnIncrementalExport,
    read_export,
)
from archiver.format.exports.incremental import (
    OverlappingWindow,
    convert_incremental,
    describe_export,
    list_windows,
)
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms

# Neither the format, the codec nor planning talks to AWS (see tests/conftest.py).
pytestmark = pytest.mark.no_aws

A = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
B = A + timedelta(hours=1)  # the window crosses midnight: two dt partitions
LIVE = {
    "TableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/orders",
    "TableId": "tid",
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
}


def _micros(at: datetime) -> str:
    return str(int(at.timestamp()) * 1_000_000 + at.microsecond)


def _line(at: datetime, pk: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> bytes:
    doc: dict[str, Any] = {
        "Metadata": {"WriteTimestampMicros": {"N": _micros(at)}},
        "Keys": {"pk": {"S": pk}},
    }
    if new is not None:
        doc["NewImage"] = new
    if old is not None:
        doc["OldImage"] = old
    return orjson.dumps(doc)


def write_export(
    root: Path,
    lines: list[bytes],
    *,
    start: datetime = A,
    end: datetime = B,
    export_id: str = "01772407800000-abcdef01",
    **summary: Any,
) -> Archive:
    folder = root / "AWSDynamoDB" / export_id
    (folder / "data").mkdir(parents=True)
    body = gzip.compress(b"".join(line + b"\n" for line in lines))
    (folder / "data" / "x.json.gz").write_bytes(body)
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    key = f"p/AWSDynamoDB/{export_id}/data/x.json.gz"
    (folder / "manifest-files.json").write_bytes(
        orjson.dumps({"itemCount": len(lines), "md5Checksum": md5, "dataFileS3Key": key}) + b"\n"
    )
    doc = {
        "version": "2023-08-01",
        "exportArn": f"{LIVE['TableArn']}/export/{export_id}",
        "tableArn": LIVE["TableArn"],
        "tableId": "tid",
        "itemCount": len(lines),
        "outputFormat": "DYNAMODB_JSON",
        "exportType": "INCREMENTAL_EXPORT",
        "exportFromTime": iso_ms(start),
        "exportToTime": iso_ms(end),
        "outputView": "NEW_AND_OLD_IMAGES",
        **summary,
    }
    (folder / "manifest-summary.json").write_bytes(orjson.dumps(doc))
    return Archive.open(str(folder))


def _item(pk: str, v: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "v": {"N": v}}


def test_rows_names_and_the_window_record(tmp_path: Path, archive: Archive) -> None:
    lines = [
        _line(A + timedelta(minutes=10), "a", _item("a", "1.50"), None),  # INSERT, "1.5"
        _line(A + timedelta(minutes=40), "b", _item("b", "2"), _item("b", "1")),  # MODIFY
        _line(A + timedelta(minutes=50), "c", None, _item("c", "3")),  # REMOVE, next day
    ]
    export = describe_export(read_export(write_export(tmp_path, lines), "INCREMENTAL_EXPORT"))
    conversion = convert_incremental(archive, "orders", export, live=LIVE)
    window = conversion.window
    assert conversion.new and (window.start, window.end) == (A, B) and window.item_count == 3
    assert len(window.files) == 2  # one per dt
    assert all(layout.is_incremental_file(f) for f in window.files)
    parsed = layout.IncrementalFileName.parse(window.files[0])
    assert parsed is not None and parsed.window == (A, B)
    rows = sorted(
        (r for f in window.files for r in pq.read_table(archive.path(f)).to_pylist()),
        key=lambda r: r["sequence_number"],
    )
    assert [r["event_name"] for r in rows] == ["INSERT", "MODIFY", "REMOVE"]
    assert {r["origin"] for r in rows} == {"incremental-export"}
    assert rows[0]["new_image"] == '{"pk":{"S":"a"},"v":{"N":"1.5"}}'
    assert rows[1]["sequence_number"] == _micros(A + timedelta(minutes=40)).zfill(40)
    assert rows[2]["shard_id"] == layout.incremental_shard(A, B)
    assert len({r["event_id"] for r in rows}) == 3
    again = convert_incremental(archive, "orders", export, live=LIVE)
    assert not again.new and again.window == window
    assert list_windows(archive, "orders") == [window]


@pytest.mark.parametrize(
    "damage, message",
    [
        ("md5", "does not match"),
        ("count", "counts 1 items but manifest-summary.json says 5"),
        ("outside", "outside the window"),
        ("full", "not an INCREMENTAL_EXPORT"),
    ],
)
def test_what_the_manifests_promise_is_checked(
    tmp_path: Path, archive: Archive, damage: str, message: str
) -> None:
    lines = [_line(A + timedelta(minutes=1), "a", _item("a", "1"), None)]
    if damage == "outside":
        lines.append(_line(B, "b", _item("b", "1"), None))  # B is exclusive
    store = write_export(
        tmp_path, lines, **({"exportType": "FULL_EXPORT"} if damage == "full" else {})
    )
    if damage == "md5":
        data = Path(store.path("data/x.json.gz"))
        data.write_bytes(gzip.compress(lines[0] + b"\n\n"))
    if damage == "count":
        summary = orjson.loads(Path(store.path("manifest-summary.json")).read_bytes())
        Path(store.path("manifest-summary.json")).write_bytes(
            orjson.dumps({**summary, "itemCount": 5})
        )
    with pytest.raises((CorruptExport, NotAnIncrementalExport), match=message):
        folder = read_export(store, "INCREMENTAL_EXPORT")
        convert_incremental(archive, "orders", describe_export(folder), live=LIVE)
    assert list_windows(archive, "orders") == []


def test_an_incremental_export_is_no_base_and_windows_must_chain(
    tmp_path: Path, archive: Archive
) -> None:
    store = write_export(tmp_path / "one", [])
    with pytest.raises(NotAFullExport):
        read_export(store)
    convert_incremental(
        archive, "orders", describe_export(read_export(store, "INCREMENTAL_EXPORT")), live=LIVE
    )
    other = write_export(
        tmp_path / "two",
        [],
        start=A + timedelta(minutes=30),
        end=B + timedelta(minutes=30),
        export_id="01772407800000-abcdef02",
    )
    with pytest.raises(OverlappingWindow, match="must chain"):
        convert_incremental(
            archive, "orders", describe_export(read_export(other, "INCREMENTAL_EXPORT")), live=LIVE
        )
