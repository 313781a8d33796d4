"""Settings capture (``archiver.aws.describe``) and ``--copy-settings``
(``replayer.write.settings_copy``).

Settings are checked by reading them back from the (moto) services after the copy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from archiver.aws import describe
from archiver.aws.clients import AwsSettings
from archiver.aws.describe import capture_extras
from archiver.format.storage import Archive
from replayer.write.settings_copy import (
    COPIED,
    NOT_COPIED,
    NOTHING,
    PENDING,
    SettingsCopier,
    SettingsUnavailable,
    SourceSettings,
    load_source_settings,
    report,
    retarget_alarm,
    retarget_alarm_name,
    retarget_policy_document,
    retarget_resource_id,
)
from tests.conftest import REGION
from tests.helpers import FakeClock, client_error

READ = "dynamodb:table:ReadCapacityUnits"
INDEX_WRITE = "dynamodb:index:WriteCapacityUnits"


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def create_provisioned(ddb: Any, name: str) -> dict[str, Any]:
    throughput = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        ProvisionedThroughput=throughput,
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
                "ProvisionedThroughput": throughput,
            }
        ],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        Tags=[{"Key": "team", "Value": "payments"}, {"Key": "env", "Value": "prod"}],
    )
    return dict(ddb.describe_table(TableName=name)["Table"])


def policy_document(table_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::123456789012:role/reader"},
                    "Action": ["dynamodb:GetItem", "dynamodb:Query"],
                    "Resource": [table_arn, f"{table_arn}/index/*"],
                }
            ],
        }
    )


def configure(ddb: Any, table: str) -> dict[str, Any]:
    """Give ``table`` every setting a restore drops."""
    description = dict(ddb.describe_table(TableName=table)["Table"])
    aas, cw = client("application-autoscaling"), client("cloudwatch")
    ddb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
    )
    ddb.update_continuous_backups(
        TableName=table,
        PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True,
            "RecoveryPeriodInDays": 9,
        },
    )
    aas.register_scalable_target(
        ServiceNamespace="dynamodb",
        ResourceId=f"table/{table}",
        ScalableDimension=READ,
        MinCapacity=5,
        MaxCapacity=50,
    )
    aas.register_scalable_target(
        ServiceNamespace="dynamodb",
        ResourceId=f"table/{table}/index/by-g",
        ScalableDimension=INDEX_WRITE,
        MinCapacity=3,
        MaxCapacity=30,
    )
    aas.put_scaling_policy(
        PolicyName="read-70",
        ServiceNamespace="dynamodb",
        ResourceId=f"table/{table}",
        ScalableDimension=READ,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 70.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "DynamoDBReadCapacityUtilization"
            },
        },
    )
    cw.put_metric_alarm(
        AlarmName=f"{table}-throttles",
        MetricName="ThrottledRequests",
        Namespace="AWS/DynamoDB",
        Statistic="Sum",
        Dimensions=[
            {"Name": "TableName", "Value": table},
            {"Name": "Operation", "Value": "PutItem"},
        ],
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
        AlarmActions=["arn:aws:sns:us-east-1:123456789012:oncall"],
    )
    cw.put_metric_alarm(
        AlarmName="other-table-alarm",
        MetricName="ThrottledRequests",
        Namespace="AWS/DynamoDB",
        Statistic="Sum",
        Dimensions=[{"Name": "TableName", "Value": "unrelated"}],
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
    )
    ddb.put_resource_policy(
        ResourceArn=description["TableArn"], Policy=policy_document(description["TableArn"])
    )
    return description


def restore_copy(ddb: Any, source: str, target: str) -> None:
    """A native restore (faithful in moto): the data and capacity, none of the settings."""
    backup = ddb.create_backup(TableName=source, BackupName=f"{source}-for-test")
    ddb.restore_table_from_backup(
        TargetTableName=target, BackupArn=backup["BackupDetails"]["BackupArn"]
    )


# -- capture ---------------------------------------------------------------------------------


def test_capture_extras_records_scaling_alarms_and_policy(ddb: Any) -> None:
    description = create_provisioned(ddb, "orders")
    configure(ddb, "orders")
    extras = asyncio.run(capture_extras(AwsSettings(), description))

    assert extras["unavailable"] == {}
    targets = {(t["ResourceId"], t["ScalableDimension"]) for t in extras["auto_scaling"]["targets"]}
    assert targets == {("table/orders", READ), ("table/orders/index/by-g", INDEX_WRITE)}
    assert [p["PolicyName"] for p in extras["auto_scaling"]["policies"]] == ["read-70"]
    names = {a["AlarmName"] for a in extras["alarms"]}
    assert "orders-throttles" in names
    assert "other-table-alarm" not in names  # only alarms on this table's metrics
    assert all("StateValue" not in a for a in extras["alarms"])  # configuration, not state
    assert json.loads(extras["resource_policy"]["Policy"]) == json.loads(
        policy_document(description["TableArn"])
    )
    json.dumps(extras)  # JSON-safe: no datetimes left


def test_capture_extras_of_a_bare_table(ddb: Any) -> None:
    description = create_provisioned(ddb, "orders")
    extras = asyncio.run(capture_extras(AwsSettings(), description))
    assert extras == {
        "auto_scaling": {"targets": [], "policies": [], "scheduled_actions": []},
        "alarms": [],
        "resource_policy": None,
        "unavailable": {},
    }


class _Denied:
    """A client whose every call fails as an account without the permission sees it."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        async def call(**kwargs: Any) -> Any:
            raise self.error

        return call


@dataclass(frozen=True)
class _PartlyDenied(AwsSettings):
    """AWS settings whose clients for some services are denied or unreachable."""

    failures: tuple[tuple[str, Exception], ...] = ()

    def aio_client(self, service: str) -> Any:
        failures = dict(self.failures)
        if service not in failures:
            return super().aio_client(service)

        @asynccontextmanager
        async def denied() -> AsyncIterator[_Denied]:
            yield _Denied(failures[service])

        return denied()


def test_capture_extras_notes_what_permissions_or_network_denied(ddb: Any) -> None:
    description = create_provisioned(ddb, "orders")
    configure(ddb, "orders")
    settings = _PartlyDenied(
        failures=(
            ("dynamodb", ClientError({"Error": {"Code": "AccessDeniedException"}}, "Get")),
            ("cloudwatch", ClientError({"Error": {"Code": "AccessDenied"}}, "DescribeAlarms")),
            ("application-autoscaling", EndpointConnectionError(endpoint_url="http://x")),
        )
    )
    extras = asyncio.run(capture_extras(settings, description))
    assert extras["unavailable"] == {
        "resource_policy": "AccessDeniedException",
        "alarms": "AccessDenied",
        "auto_scaling": "unreachable (EndpointConnectionError)",
    }
    assert extras["resource_policy"] is None and extras["alarms"] == []


# -- copy ------------------------------------------------------------------------------------


def _outcomes(results: list[Any]) -> dict[str, str]:
    return {r.setting: r.outcome for r in results}


def assert_settings_copied(ddb: Any, source_arn: str, target: str) -> None:
    """Read every setting back from the target table."""
    aas, cw = client("application-autoscaling"), client("cloudwatch")
    target_desc = ddb.describe_table(TableName=target)["Table"]
    tags = ddb.list_tags_of_resource(ResourceArn=target_desc["TableArn"])["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("team", "payments")]
    ttl = ddb.describe_time_to_live(TableName=target)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED" and ttl["AttributeName"] == "expires"
    pitr = ddb.describe_continuous_backups(TableName=target)["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert pitr["PointInTimeRecoveryDescription"]["RecoveryPeriodInDays"] == 9
    assert target_desc["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    scalable = aas.describe_scalable_targets(ServiceNamespace="dynamodb")["ScalableTargets"]
    copied = {
        (t["ResourceId"], t["ScalableDimension"], t["MinCapacity"], t["MaxCapacity"])
        for t in scalable
        if t["ResourceId"].startswith(f"table/{target}")
    }
    assert copied == {
        (f"table/{target}", READ, 5, 50),
        (f"table/{target}/index/by-g", INDEX_WRITE, 3, 30),
    }
    policies = [  # moto matches ResourceId as a substring: keep exact matches
        p
        for p in aas.describe_scaling_policies(
            ServiceNamespace="dynamodb", ResourceId=f"table/{target}"
        )["ScalingPolicies"]
        if p["ResourceId"] == f"table/{target}"
    ]
    assert [p["PolicyName"] for p in policies] == ["read-70"]
    assert policies[0]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 70.0
    alarms = {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}
    alarm = alarms[f"{target}-throttles"]
    assert {"Name": "TableName", "Value": target} in alarm["Dimensions"]
    assert {"Name": "Operation", "Value": "PutItem"} in alarm["Dimensions"]
    assert alarm["AlarmActions"] == ["arn:aws:sns:us-east-1:123456789012:oncall"]
    assert "other-table-alarm-" + target not in alarms
    policy = ddb.get_resource_policy(ResourceArn=target_desc["TableArn"])["Policy"]
    assert json.loads(policy) == json.loads(policy_document(target_desc["TableArn"]))
    assert f'{source_arn}"' not in policy and f"{source_arn}/" not in policy


def test_copy_from_live_source_reads_back_on_the_target(ddb: Any) -> None:
    source_desc = create_provisioned(ddb, "orders")
    configure(ddb, "orders")
    restore_copy(ddb, "orders", "orders-restored")

    source = load_source_settings(AwsSettings(), None, "orders")
    assert source.origin == "live table 'orders'"
    copier = SettingsCopier.from_settings(AwsSettings(), source, "orders-restored", poll_seconds=0)
    results = copier.copy_all(include_ttl=False)
    outcomes = _outcomes(results)
    assert outcomes["time to live"] == PENDING  # not before verification
    ttl = ddb.describe_time_to_live(TableName="orders-restored")["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "DISABLED"
    results[-1] = copier.copy_ttl()

    for name in ("tags", "stream", "point-in-time recovery", "auto scaling", "alarms"):
        assert outcomes[name] == COPIED, report(results, source, "orders-restored")
    assert outcomes["resource policy"] == COPIED
    assert outcomes["deletion protection"] == NOTHING
    assert_settings_copied(ddb, source_desc["TableArn"], "orders-restored")
    text = report(results, source, "orders-restored")
    assert "from the live table 'orders'" in text and "auto scaling" in text


def test_copy_from_archived_description_when_the_source_is_gone(ddb: Any, archive: Archive) -> None:
    source_desc = create_provisioned(ddb, "orders")
    configure(ddb, "orders")
    doc = asyncio.run(describe.capture_description(AwsSettings(), archive, "orders"))
    restore_copy(ddb, "orders", "orders-restored")
    # The source goes away, taking its live settings (and alarms' reason to exist) with it.
    aas, cw = client("application-autoscaling"), client("cloudwatch")
    for target in aas.describe_scalable_targets(ServiceNamespace="dynamodb")["ScalableTargets"]:
        aas.deregister_scalable_target(
            ServiceNamespace="dynamodb",
            ResourceId=target["ResourceId"],
            ScalableDimension=target["ScalableDimension"],
        )
    cw.delete_alarms(AlarmNames=["orders-throttles"])
    ddb.delete_table(TableName="orders")

    source = load_source_settings(AwsSettings(), archive, "orders", table_id=doc["table_id"])
    assert source.origin.startswith("archived description of ")
    results = SettingsCopier.from_settings(
        AwsSettings(), source, "orders-restored", poll_seconds=0
    ).copy_all(include_ttl=True)
    assert not [r for r in results if r.failed], report(results, source, "orders-restored")
    assert_settings_copied(ddb, source_desc["TableArn"], "orders-restored")


def test_source_gone_and_never_archived_is_a_clear_error(ddb: Any, archive: Archive) -> None:
    with pytest.raises(SettingsUnavailable, match="no longer exists"):
        load_source_settings(AwsSettings(), archive, "orders")


def test_on_demand_target_reports_why_auto_scaling_was_not_copied(ddb: Any) -> None:
    create_provisioned(ddb, "orders")
    configure(ddb, "orders")
    ddb.create_table(
        TableName="orders-restored",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    source = load_source_settings(AwsSettings(), None, "orders")
    results = SettingsCopier.from_settings(
        AwsSettings(), source, "orders-restored", poll_seconds=0
    ).copy_all()
    by_name = {r.setting: r for r in results}
    assert by_name["auto scaling"].outcome == NOT_COPIED
    assert "on-demand" in by_name["auto scaling"].detail
    assert by_name["tags"].outcome == COPIED  # one failure does not stop the rest
    assert by_name["alarms"].outcome == COPIED


def test_unreadable_parts_are_reported_not_copied(ddb: Any) -> None:
    create_provisioned(ddb, "orders")
    ddb.create_table(
        TableName="orders-restored",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    doc = asyncio.run(describe.describe(AwsSettings(), "orders"))
    doc["extras"]["unavailable"] = {"resource_policy": "AccessDeniedException"}
    doc["extras"]["resource_policy"] = None
    source = load_source_settings(AwsSettings(), None, "orders", describe=lambda s, t: doc)
    results = SettingsCopier.from_settings(
        AwsSettings(), source, "orders-restored", poll_seconds=0
    ).copy_all()
    policy = {r.setting: r for r in results}["resource policy"]
    assert policy.outcome == NOT_COPIED
    assert "AccessDeniedException" in policy.detail


# -- retargeting -----------------------------------------------------------------------------


def test_retargeting_helpers() -> None:
    assert retarget_resource_id("table/orders", "orders", "new") == "table/new"
    assert retarget_resource_id("table/orders/index/g", "orders", "new") == "table/new/index/g"
    assert retarget_resource_id("table/orders2", "orders", "new") == "table/orders2"
    assert retarget_alarm_name("orders-throttles", "orders", "new") == "new-throttles"
    assert retarget_alarm_name("throttles", "orders", "new") == "throttles-new"
    arn = "arn:aws:dynamodb:us-east-1:1:table/orders"
    doc = json.dumps({"Resource": [arn, f"{arn}/index/*", f"{arn}2"]})
    moved = json.loads(retarget_policy_document(doc, arn, "arn:aws:dynamodb:us-east-1:1:table/n"))
    assert moved["Resource"] == [
        "arn:aws:dynamodb:us-east-1:1:table/n",
        "arn:aws:dynamodb:us-east-1:1:table/n/index/*",
        f"{arn}2",  # another table whose name merely starts the same is left alone
    ]
    step = "arn:aws:autoscaling:r:1:scalingPolicy:u:resource/dynamodb/table/orders:policyName/s"
    alarm = {
        "AlarmName": "orders-math",
        "Metrics": [
            {
                "Id": "m1",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/DynamoDB",
                        "MetricName": "ConsumedWriteCapacityUnits",
                        "Dimensions": [{"Name": "TableName", "Value": "orders"}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        "AlarmActions": [step],
        "OKActions": [],
        "EvaluationPeriods": 1,
    }
    args = retarget_alarm(alarm, "orders", "new", {step: step.replace("orders", "new")})
    assert args["AlarmName"] == "new-math"
    metric = args["Metrics"][0]["MetricStat"]["Metric"]
    assert metric["Dimensions"] == [{"Name": "TableName", "Value": "new"}]
    assert args["AlarmActions"] == [step.replace("orders", "new")]
    assert "OKActions" not in args  # empty lists are not sent


# -- waiting for PITR to become available on a new table ------------------------------------


class _PitrNotReadyFor:
    """A DynamoDB client whose ``UpdateContinuousBackups`` refuses ``times`` times, as AWS
    does while a new table's continuous backups are not ready."""

    def __init__(self, times: int) -> None:
        self.left = times
        self.calls = 0

    def update_continuous_backups(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise client_error("ContinuousBackupsUnavailableException", "not ready yet")
        return {}


def _pitr_copier(ddb: Any, clock: FakeClock) -> SettingsCopier:
    pitr = {"PointInTimeRecoveryStatus": "ENABLED", "RecoveryPeriodInDays": 9}
    source = SourceSettings(
        "archive", {"ContinuousBackupsDescription": {"PointInTimeRecoveryDescription": pitr}}
    )
    return SettingsCopier(ddb, None, None, source, "copy", poll_seconds=5,  # type: ignore[arg-type]
                          pitr_retry_seconds=30, sleep=clock.sleep, clock=clock)  # fmt: skip


def test_pitr_is_retried_while_the_new_table_is_not_ready() -> None:
    clock, ddb = FakeClock(), _PitrNotReadyFor(2)
    result = _pitr_copier(ddb, clock).copy_pitr()
    assert (result.outcome, result.detail) == (COPIED, "on, 9 days")
    assert ddb.calls == 3 and clock.slept == [5, 5]


def test_pitr_retries_end_at_their_deadline_with_awss_refusal() -> None:
    clock, ddb = FakeClock(), _PitrNotReadyFor(1000)
    copier = _pitr_copier(ddb, clock)
    with pytest.raises(ClientError, match="ContinuousBackupsUnavailableException"):
        copier.copy_pitr()
    assert clock.now == 30 and ddb.calls == 7
    # What copy_all reports for it: not copied, with AWS's reason.
    result = copier._guarded("point-in-time recovery", copier.copy_pitr)
    assert result.outcome == NOT_COPIED
    assert "ContinuousBackupsUnavailableException: not ready yet" in result.detail
