"""``ddb-replayer athena-setup``: the Glue tables, from the definitions the stack also uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode

from archiver.format.storage import Archive
from replayer.engines.athena_setup import changes_table_input, snapshots_table_input
from replayer.engines.athena_sql import NAMED_HISTORY_OF, NAMED_STATE_AT
from tests.conftest import REGION
from tests.replay_helpers import Change, at, key, replayer, write_changes, write_coverage

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
STACK_ROOT = "s3://${ArchiveBucket}"


def resolved(value: Any) -> Any:
    """A template value with ``!Sub`` strings read as text (``${!x}`` is a literal ``${x}``)."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return value["Fn::Sub"].replace("${!", "${")
    if isinstance(value, dict):
        return {k: resolved(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved(v) for v in value]
    return value


@pytest.fixture(scope="module")
def template() -> Any:
    decoded, problems = decode(str(DEPLOY / "template.yaml"))
    assert not problems
    return decoded


@pytest.mark.parametrize(
    ("resource", "render"),
    [
        ("ChangesTable", lambda: changes_table_input(STACK_ROOT, ["T"], "${ProjectionStartDate}")),
        ("SnapshotsTable", lambda: snapshots_table_input(STACK_ROOT, ["T"])),
    ],
)
def test_the_stack_declares_the_tables_athena_setup_creates(
    template: Any, resource: str, render: Any
) -> None:
    declared = resolved(template["Resources"][resource]["Properties"]["TableInput"])
    ours = render()
    # The stack's table list is derived from its parameters; everything else is the same text.
    declared["Parameters"].pop("projection.table_name.values")
    ours["Parameters"].pop("projection.table_name.values")
    assert declared == ours


@pytest.mark.parametrize(
    ("resource", "file"),
    [("FoldStateAtQuery", NAMED_STATE_AT), ("FoldHistoryOfQuery", NAMED_HISTORY_OF)],
)
def test_the_stack_embeds_the_generated_queries(template: Any, resource: str, file: str) -> None:
    props = template["Resources"][resource]["Properties"]
    assert str(props["QueryString"]) == (DEPLOY / "athena" / file).read_text()
    assert props["Database"] == {"Ref": "GlueDatabase"}


def test_athena_setup_creates_then_updates(
    s3_archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    write_coverage(s3_archive, watermark=at(100))
    write_changes(s3_archive, [Change(1, key("a"), {"pk": {"S": "a"}}, at(1), "INSERT")])
    argv = ["athena-setup", "--archive", s3_archive.url, "--database", "archive_db"]
    code, out, err = replayer(capsys, *argv)
    assert code == 0, err
    assert "created Glue database archive_db" in out
    assert "created Glue table archive_db.changes" in out
    glue = boto3.client("glue", region_name=REGION)
    table = glue.get_table(DatabaseName="archive_db", Name="changes")["Table"]
    assert table["StorageDescriptor"]["Location"] == "s3://archive-bucket/ddb/changes/"
    assert table["Parameters"]["projection.table_name.values"] == "orders"
    write_changes(s3_archive, [Change(1, key("a"), {"pk": {"S": "a"}}, at(1), "INSERT")],
                  table="customers")  # fmt: skip
    code, out, err = replayer(capsys, *argv)
    assert code == 0, err
    assert "updated Glue table archive_db.snapshots" in out
    table = glue.get_table(DatabaseName="archive_db", Name="snapshots")["Table"]
    assert table["Parameters"]["projection.table_name.values"] == "customers,orders"


def test_athena_setup_needs_s3(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = replayer(capsys, "athena-setup", "--archive", archive.url, "--database", "d")
    assert code == 2
    assert "needs an archive in S3" in err
