"""``deploy/template.yaml`` in Kinesis mode (``KinesisStreamArn`` set): the archiver function
reads the table's Kinesis data stream with the Kinesis handler, under the same failure policy and
on-failure destination as in Streams mode, and alarms say when DynamoDB fails to put changes into
the stream. In Streams mode (the default) none of it exists and the stack is what it was.

Each mode is checked as CloudFormation would deploy it: ``tests.cfn_conditions.deployed``
decides the template's conditions for the mode's parameter values."""

from __future__ import annotations

import importlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import decode

from archiver.capture.kinesis_run import DEFAULT_REORDER_SECONDS
from archiver.lambda_mode import kinesis_handler
from tests.cfn_conditions import deployed
from tests.test_deploy import (
    RESOURCE_STAR_ALLOWED,
    TEMPLATE,
    check_mapping,
    dashboard_body,
    dashboard_widgets,
    resources,
)

KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders-cdc"
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
STREAM_ARN = TABLE_ARN + "/stream/2026-01-01T00:00:00.000"
KINESIS = {"KinesisStreamArn": KINESIS_ARN, "TableStreamArn": TABLE_ARN}
STREAMS = {"KinesisStreamArn": "", "TableStreamArn": STREAM_ARN}
# Everything optional turned on, so that whatever could mention a stream is in the stack.
EVERYTHING = {
    "GlueDatabaseName": "ddb_archive_orders",
    "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:archive-alarms",
    "ScheduleRedrive": "true",
    "BackupSchedule": "rate(1 day)",
    "IncrementalExportSchedule": "rate(15 minutes)",
    "RetentionDays": "365",
}
# The table's name, as every resource of the stack takes it from TableStreamArn.
TABLE = {"Fn::Select": [1, {"Fn::Split": ["/", {"Ref": "TableStreamArn"}]}]}
KINESIS_READ = {
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
}
DYNAMODB_STREAM_READ = {
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
}


@pytest.fixture(scope="module")
def template() -> Any:
    decoded, problems = decode(str(TEMPLATE))
    assert not problems
    return decoded


@pytest.fixture(scope="module")
def kinesis_stack(template: Any) -> dict[str, Any]:
    return deployed(template, {**KINESIS, **EVERYTHING}, use_defaults=True)


@pytest.fixture(scope="module")
def streams_stack(template: Any) -> dict[str, Any]:
    return deployed(template, {**STREAMS, **EVERYTHING}, use_defaults=True)


def _of_type(stack: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources(stack).items() if r["Type"] == kind}


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of a function's inline policies (SAM ``Policies``) or a role's."""
    out = []
    for policy in resource["Properties"].get("Policies", []):
        if isinstance(policy, dict):
            out += policy.get("PolicyDocument", policy).get("Statement", [])
    return out


def _lint_one_mode(template: Any, parameters: dict[str, str], tmp_path: Path) -> list[Any]:
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(deployed(template, parameters), indent=1))
    return lint_file(path)


@pytest.mark.parametrize("mode", [STREAMS, KINESIS], ids=["streams", "kinesis"])
def test_cfn_lint_is_clean_in_each_mode(
    template: Any, mode: dict[str, str], tmp_path: Path
) -> None:
    """The template as one mode deploys it (only that mode's mapping, its statements, its
    alarms), linted alone: test_deploy lints the template with both modes' branches."""
    problems = _lint_one_mode(template, mode, tmp_path)
    assert problems == [], "\n".join(str(p) for p in problems)


def test_the_lint_of_one_mode_sees_that_modes_mapping(template: Any, tmp_path: Path) -> None:
    broken = json.loads(json.dumps(template))
    props = broken["Resources"]["KinesisEventSourceMapping"]["Properties"]
    props["StartingPosition"] = "NEWEST"  # not a Kinesis starting position
    assert not _lint_one_mode(broken, STREAMS, tmp_path)  # not in Streams mode's stack
    assert _lint_one_mode(broken, KINESIS, tmp_path)


def test_exactly_one_mapping_per_mode_with_one_failure_policy(
    kinesis_stack: dict[str, Any], streams_stack: dict[str, Any]
) -> None:
    kinesis_mappings = _of_type(kinesis_stack, "AWS::Lambda::EventSourceMapping")
    streams_mappings = _of_type(streams_stack, "AWS::Lambda::EventSourceMapping")
    assert set(kinesis_mappings) == {"KinesisEventSourceMapping"}
    assert set(streams_mappings) == {"ArchiverEventSourceMapping"}
    kinesis = kinesis_mappings["KinesisEventSourceMapping"]["Properties"]
    streams = streams_mappings["ArchiverEventSourceMapping"]["Properties"]
    assert kinesis["EventSourceArn"] == {"Ref": "KinesisStreamArn"}
    assert streams["EventSourceArn"] == {"Ref": "TableStreamArn"}
    assert kinesis["FunctionName"] == {"Ref": "ArchiverFunction"}
    # Partial batch responses, bisection, bounded retries, records never aged out, and the
    # failed batch kept whole in the archive bucket (arn:aws:s3:::<bucket>, so under
    # aws/lambda/ where redrive and planning look): as in Streams mode, property for property.
    check_mapping(kinesis)
    assert kinesis["MaximumRecordAgeInSeconds"] == -1
    assert {k: v for k, v in kinesis.items() if k != "EventSourceArn"} == {
        k: v for k, v in streams.items() if k != "EventSourceArn"
    }


def test_kinesis_mode_runs_the_kinesis_handler_with_the_stacks_parameters(
    kinesis_stack: dict[str, Any],
    streams_stack: dict[str, Any],
    template: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    function = kinesis_stack["Resources"]["ArchiverFunction"]["Properties"]
    (entry_point,) = function["ImageConfig"]["Command"]
    assert entry_point == "archiver.lambda_mode.kinesis_handler.handler"
    module, _, name = entry_point.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
    env = function["Environment"]["Variables"]
    assert env == {
        "ARCHIVE_URL": {"Fn::Sub": "s3://${ArchiveBucket}"},
        "MAX_ITERATOR_AGE_SECONDS": {"Ref": "MaxIteratorAgeSeconds"},
        "TABLE_NAMES": TABLE,
        "KINESIS_REORDER_SECONDS": {"Ref": "KinesisReorderSeconds"},
        "ACCEPT_MILLISECOND_ORDER": {"Ref": "AcceptMillisecondOrder"},
    }
    assert set(env) <= set(re.findall(r"``([A-Z_]+)``", kinesis_handler.__doc__ or ""))
    # The handler accepts the environment the defaults give, and reads it as documented.
    params = template["Parameters"]
    monkeypatch.setenv("TABLE_NAMES", "orders")  # TABLE of TABLE_ARN
    monkeypatch.setenv("KINESIS_REORDER_SECONDS", str(params["KinesisReorderSeconds"]["Default"]))
    assert kinesis_handler.table_names() == frozenset({"orders"})
    assert kinesis_handler.reorder_margin() == timedelta(seconds=DEFAULT_REORDER_SECONDS)
    assert params["AcceptMillisecondOrder"]["Default"] == "false"  # refused unless asked
    assert params["AcceptMillisecondOrder"]["AllowedValues"] == ["true", "false"]
    # Streams mode: the Streams handler, and none of the Kinesis handler's variables.
    streams = streams_stack["Resources"]["ArchiverFunction"]["Properties"]
    assert streams["ImageConfig"]["Command"] == ["archiver.lambda_handler.handler"]
    assert set(streams["Environment"]["Variables"]) == {"ARCHIVE_URL", "MAX_ITERATOR_AGE_SECONDS"}


def test_kinesis_mode_reads_the_data_stream_and_not_the_dynamodb_stream(
    kinesis_stack: dict[str, Any], streams_stack: dict[str, Any]
) -> None:
    statements = _statements(kinesis_stack["Resources"]["ArchiverFunction"])
    by_sid = {s["Sid"]: s for s in statements}
    read = by_sid["ReadTheKinesisDataStream"]
    assert set(_actions(read)) == KINESIS_READ
    assert read["Resource"] == {"Ref": "KinesisStreamArn"}  # that stream only
    listing = by_sid["KinesisListStreamsHasNoResourceLevelPermissions"]
    assert _actions(listing) == ["kinesis:ListStreams"] and listing["Resource"] == "*"
    assert "kinesis:ListStreams" in RESOURCE_STAR_ALLOWED
    destination = by_sid["DescribeTheKinesisStreamingDestination"]
    assert _actions(destination) == ["dynamodb:DescribeKinesisStreamingDestination"]
    assert destination["Resource"] == {
        "Fn::Sub": [
            "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${Table}",
            {"Table": TABLE},
        ]
    }
    # Failed batches still land in the archive bucket: the mapping writes them as the function.
    assert by_sid["OnFailureDestinationKeepsTheBatchPayload"]["Resource"] == {
        "Fn::Sub": "${ArchiveBucket.Arn}/aws/lambda/*"
    }
    granted = {a for s in statements for a in _actions(s)}
    assert not granted & DYNAMODB_STREAM_READ
    streams_granted = {
        a for s in _statements(streams_stack["Resources"]["ArchiverFunction"]) for a in _actions(s)
    }
    assert streams_granted >= DYNAMODB_STREAM_READ
    assert not {a for a in streams_granted if a.startswith("kinesis:")}
    assert "dynamodb:DescribeKinesisStreamingDestination" not in streams_granted


def test_redrive_may_reread_kinesis_batches_in_kinesis_mode_only(
    kinesis_stack: dict[str, Any], streams_stack: dict[str, Any]
) -> None:
    kinesis = _statements(kinesis_stack["Resources"]["RedriveFunction"])
    streams = _statements(streams_stack["Resources"]["RedriveFunction"])
    [reread] = [s for s in kinesis if any(a.startswith("kinesis:") for a in _actions(s))]
    assert set(_actions(reread)) == {"kinesis:GetRecords", "kinesis:GetShardIterator"}
    assert reread["Resource"] == {"Ref": "KinesisStreamArn"}
    # Nothing else changes for the redrive function.
    assert [s for s in kinesis if s is not reread] == streams
    env = kinesis_stack["Resources"]["RedriveFunction"]["Properties"]["Environment"]
    assert env == streams_stack["Resources"]["RedriveFunction"]["Properties"]["Environment"]


def _insights_query(alarm: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(the statistic, the metric) of an alarm on one Metrics Insights query, and the query."""
    [query] = alarm["Properties"]["Metrics"]
    text, variables = query["Expression"]["Fn::Sub"]
    assert variables == {"Table": TABLE}
    match = re.fullmatch(
        r'SELECT (MAX)\((\w+)\) FROM SCHEMA\("AWS/DynamoDB", DelegatedOperation, TableName\) '
        r"WHERE TableName = '\$\{Table\}'",
        " ".join(text.split()),
    )
    assert match, text
    return match.group(1), match.group(2), query


def test_kinesis_mode_alarms_on_what_dynamodb_does_not_replicate(
    kinesis_stack: dict[str, Any], template: Any
) -> None:
    alarms = _of_type(kinesis_stack, "AWS::CloudWatch::Alarm")
    replication = {}
    for alarm in alarms.values():
        metrics = alarm["Properties"].get("Metrics", [])
        if any('SCHEMA("AWS/DynamoDB"' in str(q.get("Expression")) for q in metrics):
            _, metric, query = _insights_query(alarm)
            # DynamoDB aggregates these metrics over five minutes.
            assert query["Period"] == 300 and query["ReturnData"] is True
            replication[metric] = alarm["Properties"]
    assert set(replication) == {"AgeOfOldestUnreplicatedRecord", "FailedToReplicateRecordCount"}
    # Any record DynamoDB skipped is a hole the archiver cannot see.
    failed = replication["FailedToReplicateRecordCount"]
    assert failed["Threshold"] == 0 and failed["ComparisonOperator"] == "GreaterThanThreshold"
    # A change held longer than the reordering margin may land behind the watermark: the
    # alarm's threshold is the function's margin, in the metric's milliseconds.
    age = replication["AgeOfOldestUnreplicatedRecord"]
    assert age["Threshold"] == {"Fn::Sub": "${KinesisReorderSeconds}000"}
    assert age["ComparisonOperator"] == "GreaterThanThreshold"
    pattern = template["Parameters"]["KinesisReorderSeconds"]["AllowedPattern"]
    assert re.fullmatch(pattern, "60") and re.fullmatch(pattern, "3600")
    assert not any(re.fullmatch(pattern, v) for v in ("1.5", "0", "", "60s", "-1"))
    for alarm in replication.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopicArn"}]
        assert alarm["TreatMissingData"] == "notBreaching"
    assert age["OKActions"] == [{"Ref": "AlarmTopicArn"}]


def test_the_stacks_other_alarms_and_outputs_follow_the_kinesis_mapping(
    kinesis_stack: dict[str, Any], streams_stack: dict[str, Any]
) -> None:
    for stack, mapping in (
        (kinesis_stack, "KinesisEventSourceMapping"),
        (streams_stack, "ArchiverEventSourceMapping"),
    ):
        alarm = stack["Resources"]["RecordsNotArchivedAlarm"]["Properties"]
        for query in alarm["Metrics"]:
            if "MetricStat" in query:
                [dimension] = query["MetricStat"]["Metric"]["Dimensions"]
                assert dimension == {"Name": "EventSourceMappingUUID", "Value": {"Ref": mapping}}
        assert stack["Outputs"]["EventSourceMappingId"]["Value"] == {"Ref": mapping}
        iterator_age = stack["Resources"]["IteratorAgeAlarm"]["Properties"]
        assert iterator_age["Threshold"] == {"Ref": "MaxIteratorAgeSeconds"}
    description = kinesis_stack["Resources"]["IteratorAgeAlarm"]["Properties"]["AlarmDescription"]
    assert "${KinesisReorderSeconds}" in description["Fn::Sub"]


def test_the_dashboard_shows_the_replication_alarms_in_kinesis_mode_only(
    kinesis_stack: dict[str, Any], streams_stack: dict[str, Any]
) -> None:
    streams = dashboard_body(streams_stack)
    kinesis = dashboard_body(kinesis_stack)
    assert "Kinesis" not in streams
    streams_widgets = dashboard_widgets(streams)
    kinesis_widgets = dashboard_widgets(kinesis)
    # Kinesis mode: Streams mode's dashboard, widget for widget, and one alarm widget more,
    # with exactly the two replication alarms (conditions of Kinesis mode's stack alone).
    assert kinesis_widgets[: len(streams_widgets)] == streams_widgets
    [added] = kinesis_widgets[len(streams_widgets) :]
    assert added["type"] == "alarm" and len(added["properties"]["alarms"]) == 2
    arns = re.compile(r"\$\{(\w+)\.Arn\}")
    alarms = set(arns.findall(kinesis)) - set(arns.findall(streams))
    assert alarms == {"KinesisReplicationAgeAlarm", "KinesisReplicationFailedAlarm"}
    assert all(
        kinesis_stack["Resources"][name]["Type"] == "AWS::CloudWatch::Alarm" for name in alarms
    )
    # Below every other widget, across the grid's 24 columns, overlapping none.
    assert added["x"] == 0 and added["width"] == 24
    assert added["y"] >= max(w["y"] + w["height"] for w in streams_widgets)
    # The Streams-mode pieces substitute the variables they always did.
    [dashboard] = _of_type(streams_stack, "AWS::CloudWatch::Dashboard").values()
    pieces = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    assert pieces[0]["Fn::Sub"][1] == {"Table": TABLE} and pieces[1:] == ["", "\n]}\n"]


def test_streams_mode_has_nothing_of_kinesis_mode(streams_stack: dict[str, Any]) -> None:
    text = json.dumps(
        {"Resources": streams_stack["Resources"], "Outputs": streams_stack["Outputs"]}
    )
    assert "kinesis" not in text.lower()
    assert "AcceptMillisecondOrder" not in text


def test_one_table_per_stack_in_kinesis_mode(template: Any) -> None:
    rule = template["Rules"]["KinesisModeArchivesOneTable"]
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "KinesisStreamArn"}, ""]}]}
    [assertion] = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::EachMemberEquals": [{"Ref": "MoreTableStreamArns"}, "none"]}


def test_the_parameters_take_the_arns_each_mode_needs(template: Any) -> None:
    params = template["Parameters"]
    table = params["TableStreamArn"]["AllowedPattern"]
    kinesis = params["KinesisStreamArn"]["AllowedPattern"]
    assert params["KinesisStreamArn"]["Default"] == ""  # Streams mode unless asked
    # Kinesis mode needs no DynamoDB stream: the table's ARN names the table.
    assert re.fullmatch(table, STREAM_ARN) and re.fullmatch(table, TABLE_ARN)
    assert not re.fullmatch(table, KINESIS_ARN)
    assert re.fullmatch(kinesis, "") and re.fullmatch(kinesis, KINESIS_ARN)
    assert not re.fullmatch(kinesis, STREAM_ARN) and not re.fullmatch(kinesis, TABLE_ARN)
