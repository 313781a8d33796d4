"""``ddb-archiver run`` over many tables in one process: named, tagged, one failing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from archiver.aws.clients import AwsSettings
from archiver.capture.change_writer import FlushPolicy
from archiver.capture.many import execute_many
from archiver.capture.runner import RunConfig
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
    # Streams mode's statements are the "else" branch of the Kinesis mode condition.
    branches = [
        branch
        for s in statements["Statement"]
        for branch in (s["Fn::If"][1:] if "Fn::If" in s else [s])
        if isinstance(branch, dict) and "Sid" in branch
    ]
    (read,) = [s for s in branches if s["Sid"] == "ReadTheMoreTablesStreams"]
    condition, listed, _ = read["Resource"]["Fn::If"]
    assert (condition, listed) == ("HasMoreTables", {"Ref": "MoreTableStreamArns"})
    assert mapping["Condition"] == policy["Condition"] == "HasMoreTables"


def test_a_table_tagged_later_is_picked_up_without_a_restart(
    archive: Archive, ddb: Any, tables: list[str]
) -> None:
    config = RunConfig(table_name="", archive_url=archive.url, poll_seconds=0.05,
                       persist_seconds=0.1, flush=FlushPolicy(seconds=0.2))  # fmt: skip

    async def go() -> int:
        stop = asyncio.Event()

        async def tag_one_later() -> None:
            while archived(archive, "alpha") < 3:
                await asyncio.sleep(0.05)
            description = await asyncio.to_thread(create_table, ddb, "late")
            await asyncio.to_thread(ddb.put_item, TableName="late", Item={"pk": {"S": "x"}})
            await asyncio.to_thread(
                ddb.tag_resource,
                ResourceArn=description["TableArn"],
                Tags=[{"Key": "archive", "Value": "yes"}],
            )
            for _ in range(600):
                if archived(archive, "late") == 1:
                    break
                await asyncio.sleep(0.05)
            stop.set()

        helper = asyncio.create_task(tag_one_later())
        code = await execute_many(config, AwsSettings(), archive, tagged=("archive", "yes"),
                                  tags_refresh_seconds=0.2, stop=stop)  # fmt: skip
        await helper
        return code

    assert asyncio.run(go()) == 2  # beta (KEYS_ONLY) failed; the others ran
    assert archived(archive, "late") == 1
    assert archived(archive, "alpha") == archived(archive, "gamma") == 3
