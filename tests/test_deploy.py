"""``deploy/``: every template passes cfn-lint, and the stack says what the design needs."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import decode

from archiver.format.schema import CHANGE_SCHEMA
from tests.conftest import create_table

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
TEMPLATE = DEPLOY / "template.yaml"

# Actions that have no resource-level permissions in IAM, so "*" is the only resource.
RESOURCE_STAR_ALLOWED = {
    "dynamodb:ListStreams",
    "dynamodb:ListBackups",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:DescribeScheduledActions",
}


def templates() -> list[Path]:
    found = []
    for path in sorted(DEPLOY.rglob("*")):
        if path.suffix in {".yaml", ".yml", ".json", ".template"} and path.is_file():
            text = path.read_text()
            if "AWSTemplateFormatVersion" in text or re.search(r"^Resources:", text, re.M):
                found.append(path)
    return found


@pytest.fixture(scope="module")
def template() -> Any:
    decoded, problems = decode(str(TEMPLATE))
    assert not problems
    return decoded


def resources(template: Any) -> dict[str, Any]:
    """Every resource, those an ``Fn::ForEach`` generates included (under their templated
    logical ids, e.g. ``MoreTablesMapping&{StreamArn}``)."""
    out = {}
    for name, resource in template["Resources"].items():
        if name.startswith("Fn::ForEach::"):
            out.update(resource[2])
        else:
            out[name] = resource
    return out


def resources_of(template: Any, kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources(template).items() if r["Type"] == kind}


def test_templates_are_found() -> None:
    assert TEMPLATE in templates()


@pytest.mark.parametrize("path", templates(), ids=lambda p: str(p.relative_to(ROOT)))
def test_cfn_lint_is_clean(path: Path) -> None:
    problems = lint_file(path)
    assert problems == [], "\n".join(str(p) for p in problems)


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = TEMPLATE.read_text().replace("TRIM_HORIZON", "NEWEST")
    broken.write_text(text)
    assert lint_file(broken)


def test_event_source_mapping_is_safe_and_ordered(template: Any) -> None:
    mappings = resources_of(template, "AWS::Lambda::EventSourceMapping")
    assert set(mappings) == {"ArchiverEventSourceMapping", "MoreTablesMapping&{StreamArn}"}
    for mapping in mappings.values():
        check_mapping(mapping["Properties"])


def check_mapping(props: Any) -> None:
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["BisectBatchOnFunctionError"] is True
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["MaximumRetryAttempts"] == {"Ref": "MaximumRetryAttempts"}
    assert props["ParallelizationFactor"] == 1
    assert {"BatchSize", "MaximumBatchingWindowInSeconds"} <= set(props)
    # The failed batch's payload lands in S3, not just its metadata.
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["ArchiveBucket", "Arn"]
    }


def test_iterator_age_alarm_and_watermark_share_one_parameter(template: Any) -> None:
    function = template["Resources"]["ArchiverFunction"]["Properties"]
    env = function["Environment"]["Variables"]
    assert env["MAX_ITERATOR_AGE_SECONDS"] == {"Ref": "MaxIteratorAgeSeconds"}
    assert env["ARCHIVE_URL"] == {"Fn::Sub": "s3://${ArchiveBucket}"}
    alarm = template["Resources"]["IteratorAgeAlarm"]["Properties"]
    assert alarm["Threshold"] == {"Ref": "MaxIteratorAgeSeconds"}
    metric = alarm["Metrics"][0]["MetricStat"]["Metric"]
    assert metric["MetricName"] == "IteratorAge"
    # IteratorAge is in milliseconds; the threshold is in seconds.
    assert alarm["Metrics"][1]["Expression"] == "ageMs / 1000"
    assert template["Globals"]["Function"]["Architectures"] == ["arm64"]
    assert function["PackageType"] == "Image"
    assert function["ImageConfig"]["Command"] == ["archiver.lambda_handler.handler"]


def test_bucket_is_private_encrypted_and_tiers_only_data(template: Any) -> None:
    bucket = template["Resources"]["ArchiveBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    props = bucket["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rules = props["LifecycleConfiguration"]["Rules"]
    transitioned = {r.get("Prefix") for r in rules if "Transitions" in r}
    assert transitioned == {"changes/", "snapshots/"}  # never _state/
    assert template["Parameters"]["DeepArchiveAfterDays"]["Default"] == 0
    assert "UseDeepArchive" in template["Conditions"]
    assert "UseObjectLock" in template["Conditions"]
    assert template["Parameters"]["ObjectLockMode"]["Default"] == "NONE"


def test_glue_table_matches_the_change_schema(template: Any) -> None:
    table = template["Resources"]["ChangesTable"]["Properties"]["TableInput"]
    hive = {"string": "string", "timestamp[ms, tz=UTC]": "timestamp", "int64": "bigint"}
    expected = [{"Name": f.name, "Type": hive[str(f.type)]} for f in CHANGE_SCHEMA]
    assert table["StorageDescriptor"]["Columns"] == expected
    assert [k["Name"] for k in table["PartitionKeys"]] == ["table_name", "dt"]
    params = table["Parameters"]
    assert params["projection.table_name.type"] == "enum"
    assert params["projection.dt.type"] == "date"
    assert params["projection.dt.format"] == "yyyy-MM-dd"


def test_scheduler_exports_into_the_archive(template: Any) -> None:
    schedule = template["Resources"]["ExportTableSchedule"]["Properties"]["Target"]
    assert schedule["Arn"] == "arn:aws:scheduler:::aws-sdk:dynamodb:exportTableToPointInTime"
    assert '"S3Prefix": "exports"' in schedule["Input"]["Fn::Sub"][0]


def _statements(template: Any) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, resource in resources(template).items():
        props = resource.get("Properties", {})
        own = [props] if resource["Type"] == "AWS::IAM::Policy" else []  # identity policies
        policies = [*props.get("Policies", []), *own]
        for policy in policies:
            doc = policy.get("PolicyDocument", policy)
            out += [(name, s) for s in doc.get("Statement", [])]
    return out


def test_iam_is_least_privilege(template: Any) -> None:
    statements = _statements(template)
    assert len(statements) > 10
    for name, statement in statements:
        assert statement["Effect"] == "Allow"
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert all("*" not in action for action in actions), (name, actions)
        if statement["Resource"] == "*":
            assert set(actions) <= RESOURCE_STAR_ALLOWED, (name, actions)


def test_lambda_requirements_are_the_projects_minus_duckdb() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    listed = {
        line.strip().lower()
        for line in (DEPLOY / "lambda" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert listed == names - {"duckdb"}
    dockerfile = (DEPLOY / "lambda" / "Dockerfile").read_text()
    assert "python:3.14-arm64" in dockerfile
    assert "COPY archiver/" in dockerfile and "prune_backups.py" in dockerfile


def _load_prune_function() -> Any:
    spec = importlib.util.spec_from_file_location(
        "prune_backups_function", DEPLOY / "functions" / "prune_backups.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prune_function_keeps_the_newest_backups(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    create_table(ddb, "orders")
    arns = [
        ddb.create_backup(TableName="orders", BackupName=f"b-{i}")["BackupDetails"]["BackupArn"]
        for i in range(4)
    ]
    monkeypatch.setenv("TABLE_NAME", "orders")
    monkeypatch.setenv("KEEP_DAYS", "0")
    monkeypatch.setenv("KEEP_LAST", "2")
    result = _load_prune_function().handler({}, None, ddb=ddb)
    left = {b["BackupArn"] for b in ddb.list_backups(TableName="orders")["BackupSummaries"]}
    assert result["table"] == "orders"
    assert len(result["deleted"]) == 2
    assert left == set(arns) - set(result["deleted"])
    assert len(left) == 2


def test_prune_function_imports_neither_duckdb_nor_the_replayer() -> None:
    path = str(DEPLOY / "functions" / "prune_backups.py")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('p', {path!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in {'duckdb', 'replayer'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == ""
