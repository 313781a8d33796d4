"""``ddb-archiver run`` over many tables in one process: named, tagged, one failing."""

from __future__ import annotations

from typing import Any

import pytest

from archiver.cli import main
from archiver.format import coverage, layout
from archiver.format.storage import Archive
from tests.conftest import create_table


def run(archive: Archive, *tables: str) -> int:
    return main(["run", "--archive", archive.url, "--once", "--poll-seconds", "0.05", *tables])


def archived(archive: Archive, table: str) -> int:
    """Records archived of ``table`` (0 when it has no change files)."""
    return sum(
        archive.read_parquet(rel).num_rows
        for rel in archive.find(layout.changes_table_dir(table), ".parquet")
    )


@pytest.fixture
def tables(ddb: Any) -> list[str]:
    """alpha and gamma archivable (tagged archive=yes), beta with a KEYS_ONLY stream."""
    for name, stream in (("alpha", "NEW_AND_OLD_IMAGES"), ("beta", "KEYS_ONLY"),
                         ("gamma", "NEW_IMAGE")):  # fmt: skip
        description = create_table(ddb, name, stream=stream)
        ddb.tag_resource(
            ResourceArn=description["TableArn"],
            Tags=[{"Key": "archive", "Value": "yes"}],
        )
        for i in range(3):
            ddb.put_item(TableName=name, Item={"pk": {"S": f"{name}-{i}"}})
    return ["alpha", "beta", "gamma"]


def test_named_tables_are_all_archived_and_one_failure_is_reported(
    archive: Archive, tables: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    code = run(archive, "--table-name", "alpha", "--table-name", "beta",
               "--table-name", "gamma", "--table-name", "missing")  # fmt: skip
    assert code == 2  # refused tables: KEYS_ONLY stream, no such table
    assert archived(archive, "alpha") == 3
    assert archived(archive, "gamma") == 3
    assert archived(archive, "beta") == 0
    assert (coverage.current(archive, "alpha") or {}).get("watermark")
    summary = [r.getMessage() for r in caplog.records if "table(s) failed" in r.getMessage()]
    assert len(summary) == 1
    assert summary[0].startswith("2 of 4 table(s) failed: beta: ")
    assert "KEYS_ONLY" in summary[0] and "missing:" in summary[0]


def test_tagged_tables_are_found(
    archive: Archive, tables: list[str], ddb: Any, caplog: pytest.LogCaptureFixture
) -> None:
    description = create_table(ddb, "delta")  # not tagged: not archived
    ddb.put_item(TableName="delta", Item={"pk": {"S": "d"}})
    assert description["TableName"] == "delta"
    code = run(archive, "--tables-tagged", "archive=yes")
    assert code == 2  # beta is tagged, and refused
    assert archived(archive, "alpha") == 3
    assert archived(archive, "gamma") == 3
    assert archived(archive, "delta") == 0
    assert any("1 of 3 table(s) failed: beta:" in r.getMessage() for r in caplog.records)


def test_all_tables_fine_exits_zero(archive: Archive, tables: list[str]) -> None:
    assert run(archive, "--table-name", "alpha", "--table-name", "gamma") == 0
    assert archived(archive, "alpha") == archived(archive, "gamma") == 3


def test_no_table_is_a_usage_error(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(archive) == 2
    assert "--table-name T (repeatable) or --tables-tagged" in capsys.readouterr().err


def test_the_stack_runs_one_function_for_many_tables() -> None:
    """deploy/template.yaml: one event source mapping per listed stream, IAM scoped to each."""
    from pathlib import Path

    from cfnlint.decode import decode

    template, problems = decode(str(Path(__file__).resolve().parents[1] / "deploy/template.yaml"))
    assert not problems
    assert template["Parameters"]["MoreTableStreamArns"]["Type"] == "CommaDelimitedList"
    loop = template["Resources"]["Fn::ForEach::MoreTables"]
    assert loop[0] == "StreamArn"
    assert loop[1] == {"Ref": "MoreTableStreamArns"}
    generated = loop[2]
    mapping = generated["MoreTablesMapping&{StreamArn}"]
    assert mapping["Properties"]["EventSourceArn"] == {"Ref": "StreamArn"}
    assert mapping["Properties"]["FunctionName"] == {"Ref": "ArchiverFunction"}
    policy = generated["MoreTablesPolicy&{StreamArn}"]
    assert policy["Properties"]["Roles"] == [{"Ref": "ArchiverFunctionRole"}]
    (describe,) = policy["Properties"]["PolicyDocument"]["Statement"]
    table_arn, names = describe["Resource"]["Fn::Sub"]
    assert table_arn.endswith(":table/${Table}")  # this table only, not its neighbours
    assert names == {"Table": {"Fn::Select": [1, {"Fn::Split": ["/", {"Ref": "StreamArn"}]}]}}
    statements = template["Resources"]["ArchiverFunction"]["Properties"]["Policies"][0]
    (read,) = [s for s in statements["Statement"] if s["Sid"] == "ReadTheMoreTablesStreams"]
    condition, listed, _ = read["Resource"]["Fn::If"]
    assert (condition, listed) == ("HasMoreTables", {"Ref": "MoreTableStreamArns"})
    assert mapping["Condition"] == policy["Condition"] == "HasMoreTables"
