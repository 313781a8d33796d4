"""``deploy/``: every template passes cfn-lint, and the stack says what the design needs."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
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
from tests.cfn_conditions import deployed
from tests.conftest import create_table
from tests.distributions import closure, index_reachable, index_url, normalise

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
TEMPLATE = DEPLOY / "template.yaml"

# Actions that have no resource-level permissions in IAM, so "*" is the only resource.
RESOURCE_STAR_ALLOWED = {
    "dynamodb:ListStreams",
    "dynamodb:ListBackups",
    "kinesis:ListStreams",
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


def dashboard_body(stack: Any) -> str:
    """The ``Dashboard``'s body as one ``Fn::Sub`` text (``${…}`` left in) in ``stack``, a
    template whose ``KinesisMode`` is decided (``tests.cfn_conditions.deployed``): the body is
    an ``Fn::Join`` of ``Fn::Sub`` pieces and literals, which join the same before or after
    substitution (the literals hold no ``${``)."""
    [dashboard] = resources_of(stack, "AWS::CloudWatch::Dashboard").values()
    separator, pieces = dashboard["Properties"]["DashboardBody"]["Fn::Join"]
    texts = []
    for piece in pieces:
        if isinstance(piece, str):
            assert "${" not in piece
            texts.append(piece)
        else:
            sub = piece["Fn::Sub"]
            texts.append(sub if isinstance(sub, str) else sub[0])
    return str(separator).join(texts)


def dashboard_widgets(body: str) -> list[dict[str, Any]]:
    """The widgets of a dashboard body, valid JSON once its ``${…}`` are substituted."""
    return list(json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"])


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
    assert set(mappings) == {
        "ArchiverEventSourceMapping",
        "MoreTablesMapping&{StreamArn}",
        "KinesisEventSourceMapping",  # Kinesis mode's, instead of the first (test_deploy_kinesis)
    }
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
    streams_mode = deployed(template, {"KinesisStreamArn": ""})["Resources"]["ArchiverFunction"]
    assert streams_mode["Properties"]["ImageConfig"]["Command"] == [
        "archiver.lambda_handler.handler"
    ]


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


def test_archive_bucket_is_versioned_and_its_access_is_logged(template: Any) -> None:
    props = template["Resources"]["ArchiveBucket"]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    logging_config = props["LoggingConfiguration"]
    assert logging_config["DestinationBucketName"] == {
        "Fn::If": [
            "CreateAccessLogBucket",
            {"Ref": "AccessLogBucket"},
            {"Ref": "AccessLogBucketName"},
        ]
    }
    assert logging_config["LogFilePrefix"] == {"Fn::Sub": "s3-access/${AWS::StackName}/"}
    assert template["Parameters"]["AccessLogBucketName"]["Default"] == ""
    # The log bucket the stack creates by default: private, SSE-S3 (the only encryption
    # server access logging delivers to), kept after the stack, expiring by a parameter.
    log_bucket = template["Resources"]["AccessLogBucket"]
    assert log_bucket["Condition"] == "CreateAccessLogBucket"
    assert log_bucket["DeletionPolicy"] == "Retain"
    log_props = log_bucket["Properties"]
    assert all(log_props["PublicAccessBlockConfiguration"].values())
    (encryption,) = log_props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    (expiry,) = log_props["LifecycleConfiguration"]["Rules"]
    assert expiry["ExpirationInDays"] == {"Ref": "AccessLogRetentionDays"}
    # Only the logging service may write there, and only the archive bucket's logs.
    policy = template["Resources"]["AccessLogBucketPolicy"]
    assert policy["Condition"] == "CreateAccessLogBucket"
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (grant,) = [s for s in statements if s["Effect"] == "Allow"]
    assert grant["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert grant["Action"] == "s3:PutObject"
    assert grant["Resource"] == {"Fn::Sub": "${AccessLogBucket.Arn}/s3-access/*"}
    assert grant["Condition"]["ArnLike"] == {
        "aws:SourceArn": {"Fn::GetAtt": ["ArchiveBucket", "Arn"]}
    }
    assert grant["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}


DELETES = {"s3:DeleteObject", "s3:DeleteObjectVersion"}


def test_only_compaction_and_erasure_delete_history(template: Any) -> None:
    """The bucket policy denies deletes under changes/ and snapshots/ to every principal but
    the two operator roles, and no other principal of the stack is granted a delete."""
    document = template["Resources"]["ArchiveBucketPolicy"]["Properties"]["PolicyDocument"]
    (deny,) = [
        s for s in document["Statement"] if s["Sid"] == "OnlyCompactionAndErasureDeleteHistory"
    ]
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == "*"
    assert set(deny["Action"]) == DELETES
    assert deny["Resource"] == [
        {"Fn::Sub": "${ArchiveBucket.Arn}/changes/*"},
        {"Fn::Sub": "${ArchiveBucket.Arn}/snapshots/*"},
    ]
    assert deny["Condition"] == {
        "ArnNotEquals": {
            "aws:PrincipalArn": [
                {"Fn::GetAtt": ["CompactionRole", "Arn"]},
                {"Fn::GetAtt": ["ErasureRole", "Arn"]},
            ]
        }
    }
    deleters: dict[str, set[str]] = {}
    for name, statement in _statements(template):
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        if DELETES & set(actions):
            resources = statement["Resource"]
            resources = resources if isinstance(resources, list) else [resources]
            deleters.setdefault(name, set()).update(r["Fn::Sub"] for r in resources)
    assert set(deleters) == {"CompactionRole", "ErasureRole"}
    # Compaction deletes only the change files it merged; the Lambda function deletes nothing.
    assert deleters["CompactionRole"] == {"${ArchiveBucket.Arn}/changes/*"}
    assert {"${ArchiveBucket.Arn}/changes/*", "${ArchiveBucket.Arn}/snapshots/*"} <= deleters[
        "ErasureRole"
    ]
    outputs = template["Outputs"]
    assert outputs["CompactionRoleArn"]["Value"] == {"Fn::GetAtt": ["CompactionRole", "Arn"]}
    assert outputs["ErasureRoleArn"]["Value"] == {"Fn::GetAtt": ["ErasureRole", "Arn"]}


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
            for statement in doc.get("Statement", []):
                # A statement of one mode only (Kinesis or Streams): each branch is a statement.
                branches = statement["Fn::If"][1:] if "Fn::If" in statement else [statement]
                out += [(name, s) for s in branches if s != {"Ref": "AWS::NoValue"}]
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


def test_drills_run_on_a_schedule_that_zero_turns_off(template: Any) -> None:
    params = template["Parameters"]
    assert params["DrillEveryDays"]["Default"] == 7 and params["DrillEveryDays"]["MinValue"] == 0
    assert template["Conditions"]["ScheduleDrills"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "DrillEveryDays"}, 0]}]
    }
    function = template["Resources"]["DrillFunction"]
    assert function["Condition"] == "ScheduleDrills"
    props = function["Properties"]
    assert props["ImageConfig"]["Command"] == ["replayer.drill.handler.handler"]
    module, _, name = props["ImageConfig"]["Command"][0].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
    # The replayer's image (DuckDB): the archiver's own leaves DuckDB out.
    assert function["Metadata"]["Dockerfile"] == "deploy/lambda/Dockerfile.expire"
    expression = props["Events"]["Scheduled"]["Properties"]["ScheduleExpression"]["Fn::If"]
    assert expression[0] == "DrillDaily" and expression[1] == "rate(1 day)"
    assert expression[2] == {"Fn::Sub": "rate(${DrillEveryDays} days)"}
    assert props["Role"] == {"Fn::GetAtt": ["DrillRole", "Arn"]}
    actions = {
        action
        for name, statement in _statements(template)
        if name == "DrillRole"
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }
    assert "dynamodb:ExportTableToPointInTime" in actions and "dynamodb:DescribeExport" in actions
    # It exports; it never restores, deletes tables or writes to the live table.
    assert not {a for a in actions if re.search(r"Restore|DeleteTable|PutItem|BatchWrite", a)}


def test_the_scheduled_drills_margin_is_a_parameter_the_function_accepts(
    template: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from replayer.drill import handler
    from replayer.drill.run import MAX_MARGIN_SECONDS, drill_margin

    param = template["Parameters"]["DrillMarginSeconds"]
    assert param["Type"] == "Number"
    # The export's own margin by default; above 0 and at most a day, as the function accepts.
    assert param["Default"] == drill_margin("export").total_seconds() == 60
    assert 0 < param["MinValue"] <= param["Default"] <= param["MaxValue"] == MAX_MARGIN_SECONDS
    [group] = [
        g
        for g in template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        if "DrillEveryDays" in g["Parameters"]
    ]
    assert "DrillMarginSeconds" in group["Parameters"]
    props = template["Resources"]["DrillFunction"]["Properties"]
    env = props["Environment"]["Variables"]
    assert env["DRILL_MARGIN_SECONDS"] == {"Ref": "DrillMarginSeconds"}
    # Every value the stack lets through is one the function drills with, not one it refuses
    # on every scheduled run (CloudFormation passes a Number parameter as its text).
    for value in (param["MinValue"], param["Default"], param["MaxValue"]):
        monkeypatch.setenv("DRILL_MARGIN_SECONDS", str(value))
        assert handler.margin_from_env().total_seconds() == value
    # The operator sees the margin where a difference is reported.
    assert "${DrillMarginSeconds}" in props["Description"]["Fn::Sub"][0]
    alarm = template["Resources"]["DrillDifferencesAlarm"]["Properties"]
    assert "${DrillMarginSeconds}" in alarm["AlarmDescription"]["Fn::Sub"]


def test_alarms_and_the_dashboard_use_the_metrics_the_code_emits(template: Any) -> None:
    from archiver.aws import metrics

    names = {m.name for m in metrics.ALL}
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    ours = {}
    for logical, alarm in alarms.items():
        props = alarm["Properties"]
        stats = [props] + [q["MetricStat"]["Metric"] for q in props.get("Metrics", [])
                           if "MetricStat" in q]  # fmt: skip
        for stat in stats:
            if stat.get("Namespace") == metrics.NAMESPACE:
                assert stat["MetricName"] in names, logical
                assert [d["Name"] for d in stat["Dimensions"]] == ["Table"]
                ours[stat["MetricName"]] = logical
    assert set(ours) == {"ArchiveLagSeconds", "FailedBatches", "GapsRecorded", "DrillDifferences"}
    # Any failed batch, any gap, any drill difference: one is enough.
    for metric in ("FailedBatches", "GapsRecorded", "DrillDifferences"):
        props = alarms[ours[metric]]["Properties"]
        assert props["Threshold"] == 1
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    # Lag above the flush interval plus a margin.
    lag = alarms[ours["ArchiveLagSeconds"]]["Properties"]
    [expression] = [q for q in lag["Metrics"] if "Expression" in q]
    assert expression["Expression"] == {
        "Fn::Sub": "lag - ${LagAlarmFlushSeconds} - ${LagAlarmMarginSeconds}"
    }
    assert lag["Threshold"] == 0 and lag["ComparisonOperator"] == "GreaterThanThreshold"
    # One dashboard, valid JSON once substituted, showing every metric alarmed on.
    # (Streams mode's: test_deploy_kinesis checks what Kinesis mode adds.)
    body = dashboard_body(deployed(template, {"KinesisStreamArn": ""}))
    widgets = dashboard_widgets(body)
    shown = {m[1] for w in widgets for m in w["properties"].get("metrics", [])}
    assert set(ours) <= shown <= names
    [alarm_widget] = [w for w in widgets if w["type"] == "alarm"]
    assert len(alarm_widget["properties"]["alarms"]) >= len(ours)
    for logical in ours.values():
        assert "${" + logical + ".Arn}" in body


# Left out of the Lambda image: DuckDB and sqlglot (only the replayer uses them) and amazon.ion
# (only export conversion does, which the Lambda never runs; it has no wheel for the image's
# Python).
NOT_IN_THE_LAMBDA = {"duckdb", "sqlglot", "amazon.ion"}
LAMBDA_REQUIREMENTS = DEPLOY / "lambda" / "requirements.txt"
# The python3.12+ Lambda base images run Amazon Linux 2023 (glibc 2.34) on arm64 (Graviton):
# every manylinux wheel up to glibc 2.34 installs there.
LAMBDA_GLIBC_MINOR = 34
LAMBDA_PLATFORMS = [
    *(f"manylinux_2_{minor}_aarch64" for minor in range(LAMBDA_GLIBC_MINOR, 16, -1)),
    "manylinux2014_aarch64",
]


def _lambda_requirements() -> set[str]:
    return {
        line.strip().lower()
        for line in LAMBDA_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


def _image_python() -> str:
    """The Python version of the Lambda image, from its FROM line."""
    dockerfile = (DEPLOY / "lambda" / "Dockerfile").read_text()
    match = re.search(r"^FROM public\.ecr\.aws/lambda/python:(\d+\.\d+)-arm64$", dockerfile, re.M)
    assert match, "the Lambda image is an arm64 public.ecr.aws/lambda/python base image"
    return match.group(1)


def test_lambda_requirements_are_the_projects_minus_duckdb_sqlglot_and_ion() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert names >= NOT_IN_THE_LAMBDA
    assert _lambda_requirements() == names - NOT_IN_THE_LAMBDA
    dockerfile = (DEPLOY / "lambda" / "Dockerfile").read_text()
    assert _image_python() == "3.14"
    assert "--only-binary=:all:" in dockerfile  # no compiler in the image: wheels or nothing
    assert "COPY archiver/" in dockerfile and "prune_backups.py" in dockerfile


def _image_site(site: Path, names: set[str]) -> Path:
    """A folder holding only the given installed distributions (as links), like the image's
    ``LAMBDA_TASK_ROOT`` holds only what ``pip install --target`` put there."""
    site.mkdir()
    for name in sorted(names):
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            top = file.parts[0]
            if top in {"..", "__pycache__"} or (site / top).exists():
                continue
            source = Path(str(dist.locate_file(top)))
            if source.exists():
                (site / top).symlink_to(source)
    return site


def _import_in_image(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    # -S: no site-packages, so nothing but the image's folder (and the repository) is importable.
    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(site)},
    )


def test_lambda_entry_points_import_with_only_what_the_image_installs(tmp_path: Path) -> None:
    site = _image_site(tmp_path / "task-root", closure(_lambda_requirements()))
    prune = str(DEPLOY / "functions" / "prune_backups.py")
    entry_points = (
        "import importlib.util, sys\n"
        "import archiver.lambda_mode.handler\n"
        "import archiver.lambda_mode.kinesis_handler\n"
        f"spec = importlib.util.spec_from_file_location('prune_backups', {prune!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sys.modules['pyarrow'].__file__)\n"
    )
    result = _import_in_image(site, entry_points)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(str(site))
    # What the image leaves out is really not importable there.
    left_out_imports = ("import archiver.format.exports.ion", "import duckdb", "import sqlglot",
                        "import replayer.read.query")  # fmt: skip
    for left_out in left_out_imports:
        refused = _import_in_image(site, left_out)
        assert refused.returncode != 0, left_out
        assert "ModuleNotFoundError" in refused.stderr, refused.stderr[-2000:]


@pytest.mark.network
@pytest.mark.slow
def test_lambda_requirements_resolve_to_wheels_for_the_image(tmp_path: Path) -> None:
    """``pip download`` of the Lambda's requirements, wheels only, for the image's exact Python
    version and platform: what ``docker build`` will install, checked without Docker."""
    if not index_reachable(index_url()):
        pytest.skip(f"no package index reachable at {index_url()}: cannot resolve wheels")
    python = _image_python()
    platforms = [arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            *platforms,
            "--python-version",
            python,
            "--implementation",
            "cp",
            "-c",
            str(ROOT / "constraints.txt"),
            "-d",
            str(tmp_path),
            "-r",
            str(LAMBDA_REQUIREMENTS),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    wheels = {normalise(p.name.split("-")[0]) for p in tmp_path.glob("*.whl")}
    assert {normalise(n) for n in _lambda_requirements()} <= wheels
    tag = "cp" + python.replace(".", "")
    assert any(f"-{tag}-" in p.name and "aarch64" in p.name for p in tmp_path.glob("pyarrow-*"))


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
