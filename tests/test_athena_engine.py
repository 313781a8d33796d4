"""``--engine athena``: the fold as one Athena query, against tests/athena_double.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from replayer.sinks import read_dynamodb_json
from tests.athena_double import AthenaDouble, running_double
from tests.replay_helpers import (
    TABLE,
    Change,
    at,
    key,
    replayer,
    write_changes,
    write_coverage,
    write_description,
)

DATABASE = "ddb_archive_test"


@pytest.fixture
def athena(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AthenaDouble]:
    with running_double(aws_env, monkeypatch) as double:
        yield double


def setup_glue(capsys: pytest.CaptureFixture[str], archive: Archive) -> None:
    code, _, err = replayer(
        capsys, "athena-setup", "--archive", archive.url, "--database", DATABASE
    )
    assert code == 0, err


def exported_items(output: Archive) -> dict[str, str]:
    items = {}
    for rel in output.find("data"):
        for item in read_dynamodb_json(output.get_bytes(rel)):
            items[canonical_json({"pk": item["pk"]})] = canonical_json(item)
    return items


def test_export_athena_equals_duckdb(
    s3_archive: Archive, athena: AthenaDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    write_coverage(s3_archive, watermark=at(1000))
    write_description(s3_archive)
    write_changes(
        s3_archive,
        [
            Change(1, key("a"), {"pk": {"S": "a"}, "v": {"N": "1"}}, at(10), "INSERT"),
            Change(2, key("b"), {"pk": {"S": "b"}, "v": {"B": "AAE="}}, at(20), "INSERT"),
            Change(3, key("a"), None, at(30)),
            Change(4, key("c"), {"pk": {"S": "c"}}, at(40), "INSERT"),
        ],
    )
    setup_glue(capsys, s3_archive)
    outputs = {}
    for engine in ("duckdb", "athena"):
        url = f"s3://archive-bucket/out-{engine}"
        code, out, err = replayer(
            capsys,
            "export",
            "--table-name",
            TABLE,
            "--archive",
            s3_archive.url,
            "--restore-date-time",
            at(100).isoformat(),
            "--output",
            url,
            "--format",
            "dynamodb-json",
            "--engine",
            engine,
            "--athena-database",
            DATABASE,
        )
        assert code == 0, err
        print(out, err)
        outputs[engine] = exported_items(Archive.open(url))
    assert outputs["athena"] == outputs["duckdb"]
    assert len(outputs["athena"]) == 2
