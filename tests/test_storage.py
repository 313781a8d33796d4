"""The archive root works the same on a local folder and on S3."""

from __future__ import annotations

import pyarrow as pa
import pytest

from archiver.format.storage import Archive


@pytest.fixture(params=["local", "s3"])
def any_archive(request: pytest.FixtureRequest) -> Archive:
    fixture = "archive" if request.param == "local" else "s3_archive"
    archive: Archive = request.getfixturevalue(fixture)
    return archive


def test_json_parquet_and_listing_round_trip(any_archive: Archive) -> None:
    any_archive.write_json("_state/t/coverage.json", {"a": 1})
    any_archive.append_jsonl("_state/t/gaps.jsonl", {"n": 1})
    any_archive.append_jsonl("_state/t/gaps.jsonl", {"n": 2})
    table = pa.table({"x": ["a", "b"]})
    size = any_archive.write_parquet("changes/table_name=007/dt=2026-01-01/f.parquet", table)
    assert size > 0
    assert any_archive.read_json("_state/t/coverage.json") == {"a": 1}
    assert any_archive.read_jsonl("_state/t/gaps.jsonl") == [{"n": 1}, {"n": 2}]
    assert any_archive.read_parquet("changes/table_name=007/dt=2026-01-01/f.parquet").equals(table)
    assert any_archive.find("changes", ".parquet") == [
        "changes/table_name=007/dt=2026-01-01/f.parquet"
    ]
    assert any_archive.listdir("changes") == ["table_name=007"]
    assert any_archive.read_json_or("_state/t/missing.json", {}) == {}


def test_local_writes_leave_no_temporary_files(archive: Archive) -> None:
    for i in range(3):
        archive.put_bytes("_state/t/x.json", str(i).encode())
    assert archive.listdir("_state/t") == ["x.json"]
    assert archive.get_bytes("_state/t/x.json") == b"2"


def test_file_url_and_plain_path_open_the_same_folder(tmp_path: object) -> None:
    a = Archive.open(f"file://{tmp_path}/arch")
    b = Archive.open(f"{tmp_path}/arch")
    a.write_json("x.json", [1])
    assert b.read_json("x.json") == [1]
