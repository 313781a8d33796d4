"""``--copy-settings``: re-create on a restored table what a restore does not carry over.

Native restores (PITR, backups) and replay both produce a table with its data, keys, indexes
and (for replay) SSE, table class and deletion protection — but not its tags, TTL, stream,
PITR, Application Auto Scaling, CloudWatch alarms or resource policy. This module copies them
from the live source table when it exists, else from the archived description
(``archiver.format.tables``) of the generation being restored, and reports what was copied, what
could not be, and why.

TTL is applied separately (:meth:`SettingsCopier.copy_ttl`), after verification: enabling it
first would let DynamoDB expire items while the restored table is compared with the archive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from archiver.aws import retry
from archiver.aws.clients import AwsSettings
from archiver.aws.describe import alarm_watches_table
from archiver.aws.describe import describe as describe_table
from archiver.aws.error_table import PitrUnavailable, TableNotFound, client_error_code, is_error
from archiver.format import tables
from archiver.format.storage import Archive
from archiver.format.timefmt import parse_iso, utcnow
from replayer.exceptions import ReplayError
from replayer.planning import plan as planning
from replayer.write.target_table import wait_until_active

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        PointInTimeRecoverySpecificationTypeDef,
        StreamSpecificationTypeDef,
        TagTypeDef,
    )

log = logging.getLogger(__name__)

COPIED = "copied"
ALREADY = "already set"
NOTHING = "nothing to copy"
NOT_COPIED = "not copied"
PENDING = "pending"

# Alarms that target-tracking scaling policies create and own ("DO NOT EDIT OR DELETE");
# putting the policy on the new table creates its own.
_MANAGED_ALARM_PREFIX = "TargetTracking-"
_ALARM_FIELDS = (
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
    "Metrics",
    "ThresholdMetricId",
)
_POLICY_CONFIGS = (
    "TargetTrackingScalingPolicyConfiguration",
    "StepScalingPolicyConfiguration",
    "PredictiveScalingPolicyConfiguration",
)


class SettingsUnavailable(ReplayError):
    """Neither the live source table nor the archive has the settings to copy."""


@dataclass(frozen=True)
class SettingResult:
    """The outcome of copying one setting."""

    setting: str
    outcome: str  # COPIED | ALREADY | NOTHING | NOT_COPIED | PENDING
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome == NOT_COPIED

    def line(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"  {self.outcome:<16} {self.setting}{detail}"


@dataclass
class SourceSettings:
    """The settings to copy, in the archived-description form (``archiver.format.tables``)."""

    origin: str  # for messages: where they came from
    doc: dict[str, Any]

    @property
    def table(self) -> dict[str, Any]:
        table: dict[str, Any] = self.doc.get("Table") or {}
        return table

    @property
    def table_name(self) -> str:
        return str(self.doc.get("table_name") or self.table.get("TableName"))

    @property
    def table_arn(self) -> str:
        return str(self.doc.get("table_arn") or self.table.get("TableArn"))

    @property
    def extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = self.doc.get("extras") or {}
        return extras

    def unavailable(self, *parts: str) -> str | None:
        """Why one of ``parts`` could not be read from the source, if it could not."""
        reasons = {**(self.doc.get("unavailable") or {}), **(self.extras.get("unavailable") or {})}
        for part in parts:
            if part in reasons:
                return f"could not be read from the {self.origin} ({reasons[part]})"
        return None


def load_source_settings(
    aws: AwsSettings,
    archive: Archive | None,
    table_name: str,
    *,
    table_id: str | None = None,
    describe: Callable[[AwsSettings, str], dict[str, Any]] | None = None,
) -> SourceSettings:
    """The source's settings: live when the table exists, else its newest archived ones.

    ``table_id`` picks the table generation in the archive (the one alive at the restore
    time); the newest description of that generation is used, as the closest thing to the
    table's last settings.

    Raises:
        SettingsUnavailable: the table is gone and the archive has no description of it.
    """
    describe = describe or (lambda s, t: asyncio.run(describe_table(s, t)))
    try:
        return SourceSettings(f"live table {table_name!r}", describe(aws, table_name))
    except TableNotFound:
        pass
    doc = tables.description_at(archive, table_name, utcnow(), table_id) if archive else None
    if doc is None:
        raise SettingsUnavailable(
            f"--copy-settings: table {table_name!r} no longer exists and the archive holds no "
            "description of it (the archiver records one when it starts)"
        )
    return SourceSettings(f"archived description of {doc.get('captured_at')}", doc)


def retarget_resource_id(resource_id: str, source: str, target: str) -> str:
    """``table/<source>[/index/I]`` → ``table/<target>[/index/I]``."""
    prefix = f"table/{source}"
    if resource_id == prefix or resource_id.startswith(prefix + "/"):
        return f"table/{target}{resource_id[len(prefix) :]}"
    return resource_id


def retarget_alarm_name(name: str, source: str, target: str) -> str:
    """The copy's name: the source table's name replaced by the target's, else a suffix."""
    if source in name:
        return name.replace(source, target)
    return f"{name}-{target}"


def retarget_policy_document(document: str, source_arn: str, target_arn: str) -> str:
    """The policy with every reference to the source table (and its indexes, streams)
    pointed at the target table."""
    return re.sub(re.escape(source_arn) + r'(?=["/*]|$)', target_arn, document)


def _retarget_dimensions(
    dimensions: Iterable[Mapping[str, Any]], source: str, target: str
) -> list[dict[str, Any]]:
    return [
        {**d, "Value": target}
        if d.get("Name") == "TableName" and d.get("Value") == source
        else dict(d)
        for d in dimensions
    ]


def retarget_alarm(
    alarm: Mapping[str, Any], source: str, target: str, policy_arns: Mapping[str, str]
) -> dict[str, Any]:
    """``PutMetricAlarm`` arguments for a copy of ``alarm`` watching ``target`` instead.

    Alarm actions that invoke a copied step-scaling policy of the source are pointed at the
    new policy (``policy_arns`` maps old ARN to new).
    """
    args: dict[str, Any] = {
        "AlarmName": retarget_alarm_name(str(alarm["AlarmName"]), source, target)
    }
    for name in _ALARM_FIELDS:
        value = alarm.get(name)
        if value is None or value == []:
            continue
        args[name] = value
    if "Dimensions" in args:
        args["Dimensions"] = _retarget_dimensions(args["Dimensions"], source, target)
    if "Metrics" in args:
        metrics = []
        for query in args["Metrics"]:
            query = dict(query)
            stat = query.get("MetricStat")
            if stat and stat.get("Metric", {}).get("Dimensions"):
                metric = dict(stat["Metric"])
                metric["Dimensions"] = _retarget_dimensions(metric["Dimensions"], source, target)
                query["MetricStat"] = {**stat, "Metric": metric}
            metrics.append(query)
        args["Metrics"] = metrics
    for actions in ("AlarmActions", "OKActions", "InsufficientDataActions"):
        if actions in args:
            args[actions] = [_retarget_action(a, policy_arns) for a in args[actions]]
    return args


def _retarget_action(action: str, policy_arns: Mapping[str, str]) -> str:
    for old, new in policy_arns.items():
        if action == old or action.startswith(old + ":"):
            return new + action[len(old) :]
    return action


@dataclass
class SettingsCopier:
    """Copies a source's settings onto a target table. Clients are passed in (boto3)."""

    ddb: DynamoDBClient
    autoscaling: ApplicationAutoScalingClient
    cloudwatch: CloudWatchClient
    source: SourceSettings
    target_table: str
    poll_seconds: float = 5.0
    # A freshly created or restored table may refuse PITR for a while
    # (ContinuousBackupsUnavailableException): retry this long.
    pitr_retry_seconds: float = 600.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _target: dict[str, Any] = field(default_factory=dict)
    # Source scaling-policy ARN → the copy's, so copied step-scaling alarms invoke the copy.
    policy_arns: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, aws: AwsSettings, source: SourceSettings, target_table: str, **kwargs: Any
    ) -> SettingsCopier:
        return cls(
            aws.client("dynamodb"),
            aws.client("application-autoscaling"),
            aws.client("cloudwatch"),
            source,
            target_table,
            **kwargs,
        )

    # -- orchestration -------------------------------------------------------------------

    def copy_all(self, *, include_ttl: bool = True) -> list[SettingResult]:
        """Copy every setting (TTL only when ``include_ttl``); never raises for one setting."""
        steps: list[tuple[str, Callable[[], SettingResult]]] = [
            ("deletion protection", self.copy_deletion_protection),
            ("table class", self.copy_table_class),
            ("tags", self.copy_tags),
            ("stream", self.copy_stream),
            ("point-in-time recovery", self.copy_pitr),
            ("auto scaling", self.copy_auto_scaling),
            ("alarms", self.copy_alarms),
            ("resource policy", self.copy_resource_policy),
        ]
        results = [self._guarded(name, step) for name, step in steps]
        if include_ttl:
            results.append(self.copy_ttl())
        else:
            results.append(self.ttl_pending())
        return results

    def _guarded(self, setting: str, step: Callable[[], SettingResult]) -> SettingResult:
        try:
            return step()
        except ClientError as exc:
            code = client_error_code(exc)
            message = exc.response.get("Error", {}).get("Message", "")
            return SettingResult(setting, NOT_COPIED, f"{code}: {message}".rstrip(": "))

    def _target_description(self, refresh: bool = False) -> dict[str, Any]:
        if refresh or not self._target:
            self._target = dict(self.ddb.describe_table(TableName=self.target_table)["Table"])
        return self._target

    def _wait_active(self) -> None:
        self._target = wait_until_active(
            self.ddb, self.target_table, poll_seconds=self.poll_seconds, sleep=self.sleep
        )

    # -- table-level ---------------------------------------------------------------------

    def copy_deletion_protection(self) -> SettingResult:
        wanted = bool(self.source.table.get("DeletionProtectionEnabled"))
        have = bool(self._target_description().get("DeletionProtectionEnabled"))
        if not wanted:
            return SettingResult("deletion protection", NOTHING, "off on the source")
        if have:
            return SettingResult("deletion protection", ALREADY, "on")
        self._wait_active()
        self.ddb.update_table(TableName=self.target_table, DeletionProtectionEnabled=True)
        return SettingResult("deletion protection", COPIED, "on")

    def copy_table_class(self) -> SettingResult:
        wanted = (self.source.table.get("TableClassSummary") or {}).get("TableClass")
        have = (self._target_description().get("TableClassSummary") or {}).get(
            "TableClass", "STANDARD"
        )
        if not wanted:
            return SettingResult("table class", NOTHING, "the source has the default (STANDARD)")
        if wanted == have:
            return SettingResult("table class", ALREADY, str(wanted))
        self._wait_active()
        self.ddb.update_table(TableName=self.target_table, TableClass=wanted)
        return SettingResult("table class", COPIED, str(wanted))

    def copy_tags(self) -> SettingResult:
        tags = self.source.doc.get("Tags")
        if tags is None:
            why = self.source.unavailable("tags") or "the source's tags are unknown"
            return SettingResult("tags", NOT_COPIED, why)
        # aws:-prefixed tags belong to AWS (CloudFormation, Backup, …) and cannot be set.
        settable = [t for t in tags if not str(t["Key"]).startswith("aws:")]
        if not settable:
            return SettingResult("tags", NOTHING, "the source has no tags")
        arn = self._target_description()["TableArn"]
        for start in range(0, len(settable), 50):  # TagResource takes at most 50
            chunk: list[TagTypeDef] = [
                {"Key": t["Key"], "Value": t["Value"]} for t in settable[start : start + 50]
            ]
            self.ddb.tag_resource(ResourceArn=arn, Tags=chunk)
        skipped = len(tags) - len(settable)
        note = f" ({skipped} aws: tags are AWS's own and were skipped)" if skipped else ""
        return SettingResult("tags", COPIED, f"{len(settable)} tag(s){note}")

    def copy_stream(self) -> SettingResult:
        spec = self.source.table.get("StreamSpecification") or {}
        if not spec.get("StreamEnabled"):
            return SettingResult("stream", NOTHING, "the source has no stream")
        view = spec.get("StreamViewType")
        current = self._target_description().get("StreamSpecification") or {}
        if current.get("StreamEnabled") and current.get("StreamViewType") == view:
            return SettingResult("stream", ALREADY, str(view))
        self._wait_active()
        if current.get("StreamEnabled"):
            # A stream's view type cannot change in place: turn it off, then on.
            self.ddb.update_table(
                TableName=self.target_table, StreamSpecification={"StreamEnabled": False}
            )
            self._wait_active()
        self.ddb.update_table(
            TableName=self.target_table,
            # The view type is the archived source's, a valid StreamViewType.
            StreamSpecification=cast(
                "StreamSpecificationTypeDef", {"StreamEnabled": True, "StreamViewType": view}
            ),
        )
        self._wait_active()
        return SettingResult("stream", COPIED, f"{view} (a new stream: archive it too)")

    def copy_pitr(self) -> SettingResult:
        description = self.source.doc.get("ContinuousBackupsDescription")
        if description is None:
            why = self.source.unavailable("continuous_backups") or "unknown on the source"
            return SettingResult("point-in-time recovery", NOT_COPIED, why)
        pitr = description.get("PointInTimeRecoveryDescription") or {}
        if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
            return SettingResult("point-in-time recovery", NOTHING, "off on the source")
        spec: PointInTimeRecoverySpecificationTypeDef = {"PointInTimeRecoveryEnabled": True}
        if pitr.get("RecoveryPeriodInDays"):
            spec["RecoveryPeriodInDays"] = int(pitr["RecoveryPeriodInDays"])

        def enable() -> ClientError | None:
            try:
                self.ddb.update_continuous_backups(
                    TableName=self.target_table, PointInTimeRecoverySpecification=spec
                )
            except ClientError as exc:
                return exc  # reported by _guarded as the setting's failure, unless retried
            return None

        # PITR cannot be enabled until the new table's continuous backups are ready.
        seen: list[ClientError | None] = []
        try:
            refused = retry.wait_until(
                enable,
                what=f"UpdateContinuousBackups {self.target_table}",
                ready=lambda exc: exc is None or not is_error(exc, PitrUnavailable),
                poll_seconds=self.poll_seconds,
                timeout_seconds=self.pitr_retry_seconds,
                sleep=self.sleep,
                clock=self.clock,
                on_poll=lambda exc, _elapsed: seen.append(exc),
            )
        except retry.WaitTimedOut:
            refused = seen[-1]
        if refused is not None:
            raise refused
        days = spec.get("RecoveryPeriodInDays", 35)
        return SettingResult("point-in-time recovery", COPIED, f"on, {days} days")

    def copy_ttl(self) -> SettingResult:
        """Enable TTL as on the source. Call after verification (see module doc)."""
        ttl = self.source.doc.get("TimeToLiveDescription")
        if ttl is None:
            why = self.source.unavailable("time_to_live") or "unknown on the source"
            return SettingResult("time to live", NOT_COPIED, why)
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            return SettingResult("time to live", NOTHING, "off on the source")
        attribute = ttl["AttributeName"]
        current = self.ddb.describe_time_to_live(TableName=self.target_table)[
            "TimeToLiveDescription"
        ]
        if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and (
            current.get("AttributeName") == attribute
        ):
            return SettingResult("time to live", ALREADY, f"attribute {attribute!r}")
        self.ddb.update_time_to_live(
            TableName=self.target_table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
        )
        return SettingResult("time to live", COPIED, f"attribute {attribute!r}")

    def ttl_pending(self) -> SettingResult:
        return SettingResult("time to live", PENDING, "enabled after verification")

    # -- auto scaling, alarms, resource policy ------------------------------------------

    def copy_auto_scaling(self) -> SettingResult:
        scaling = self.source.extras.get("auto_scaling")
        if scaling is None:
            why = self.source.unavailable("auto_scaling") or "not captured for the source"
            return SettingResult("auto scaling", NOT_COPIED, why)
        why_not = self.source.unavailable("auto_scaling")
        if why_not:
            return SettingResult("auto scaling", NOT_COPIED, why_not)
        targets = scaling.get("targets") or []
        if not targets:
            return SettingResult("auto scaling", NOTHING, "the source has no scalable targets")
        billing = (self._target_description().get("BillingModeSummary") or {}).get(
            "BillingMode", "PROVISIONED"
        )
        if billing == "PAY_PER_REQUEST":
            return SettingResult(
                "auto scaling",
                NOT_COPIED,
                "the target table is on-demand (PAY_PER_REQUEST); auto scaling applies only to "
                "provisioned capacity",
            )
        self.policy_arns = {}
        source, target = self.source.table_name, self.target_table
        for t in targets:
            args = {
                "ServiceNamespace": t["ServiceNamespace"],
                "ResourceId": retarget_resource_id(t["ResourceId"], source, target),
                "ScalableDimension": t["ScalableDimension"],
                "MinCapacity": t["MinCapacity"],
                "MaxCapacity": t["MaxCapacity"],
            }
            if t.get("SuspendedState"):
                args["SuspendedState"] = t["SuspendedState"]
            self.autoscaling.register_scalable_target(**args)
        policies = scaling.get("policies") or []
        for p in policies:
            args = {
                "PolicyName": p["PolicyName"],
                "ServiceNamespace": p["ServiceNamespace"],
                "ResourceId": retarget_resource_id(p["ResourceId"], source, target),
                "ScalableDimension": p["ScalableDimension"],
                "PolicyType": p["PolicyType"],
            }
            args.update({k: p[k] for k in _POLICY_CONFIGS if p.get(k)})
            response = self.autoscaling.put_scaling_policy(**args)
            self.policy_arns[p["PolicyARN"]] = response["PolicyARN"]
        actions = scaling.get("scheduled_actions") or []
        for a in actions:
            args = {
                "ServiceNamespace": a["ServiceNamespace"],
                "ScheduledActionName": a["ScheduledActionName"],
                "ResourceId": retarget_resource_id(a["ResourceId"], source, target),
                "ScalableDimension": a["ScalableDimension"],
                "Schedule": a["Schedule"],
            }
            for name in ("Timezone", "ScalableTargetAction"):
                if a.get(name):
                    args[name] = a[name]
            for name in ("StartTime", "EndTime"):
                if a.get(name):
                    args[name] = _as_datetime(a[name])
            self.autoscaling.put_scheduled_action(**args)
        return SettingResult(
            "auto scaling",
            COPIED,
            f"{len(targets)} target(s), {len(policies)} polic(ies), "
            f"{len(actions)} scheduled action(s)",
        )

    def copy_alarms(self) -> SettingResult:
        alarms = self.source.extras.get("alarms")
        why_not = self.source.unavailable("alarms")
        if alarms is None or why_not:
            return SettingResult("alarms", NOT_COPIED, why_not or "not captured for the source")
        source = self.source.table_name
        own = [
            a
            for a in alarms
            if not str(a["AlarmName"]).startswith(_MANAGED_ALARM_PREFIX)
            and alarm_watches_table(a, source)
        ]
        managed = len(alarms) - len(own)
        note = (
            f"; {managed} target-tracking alarm(s) are re-created by their scaling policies"
            if managed
            else ""
        )
        if not own:
            return SettingResult("alarms", NOTHING, f"the source has no alarms of its own{note}")
        names = []
        for alarm in own:
            args = retarget_alarm(alarm, source, self.target_table, self.policy_arns)
            self.cloudwatch.put_metric_alarm(**args)
            names.append(args["AlarmName"])
        return SettingResult("alarms", COPIED, f"{', '.join(names)}{note}")

    def copy_resource_policy(self) -> SettingResult:
        why_not = self.source.unavailable("resource_policy")
        if why_not:
            return SettingResult("resource policy", NOT_COPIED, why_not)
        policy = self.source.extras.get("resource_policy")
        if "resource_policy" not in self.source.extras:
            return SettingResult("resource policy", NOT_COPIED, "not captured for the source")
        if not policy or not policy.get("Policy"):
            return SettingResult("resource policy", NOTHING, "the source has none")
        target_arn = self._target_description()["TableArn"]
        document = retarget_policy_document(policy["Policy"], self.source.table_arn, target_arn)
        self.ddb.put_resource_policy(ResourceArn=target_arn, Policy=document)
        return SettingResult("resource policy", COPIED, "pointed at the new table's ARN")


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return parse_iso(str(value))


def report(results: Iterable[SettingResult], source: SourceSettings, target: str) -> str:
    """What was copied onto ``target``, what could not be, and why — for the terminal."""
    lines = [f"settings of {source.table_name!r} → {target!r} (from the {source.origin}):"]
    lines.extend(r.line() for r in results)
    return "\n".join(lines)


def copy_after_restore(
    aws: AwsSettings,
    archive: Archive,
    source: str,
    target: str,
    at: datetime,
    *,
    say: Callable[[str], None] = print,
    **copier_options: Any,
) -> list[SettingResult]:
    """``--copy-settings``: copy every setting onto ``target`` and say what happened.

    Call after verification (TTL is among the settings). The archived description used when
    the source is gone is the one of the table generation alive at ``at``. Never raises for
    a setting: what could not be copied is reported.
    """
    table_id = None
    # Not archived at T (a PITR restore may not need the archive): live settings only.
    with contextlib.suppress(ReplayError):
        table_id = planning.generation_at(archive, source, at).table_id
    try:
        source_settings = load_source_settings(aws, archive, source, table_id=table_id)
    except SettingsUnavailable as exc:
        say(f"settings: none copied: {exc}")
        return [SettingResult("settings", NOT_COPIED, str(exc))]
    copier = SettingsCopier.from_settings(aws, source_settings, target, **copier_options)
    results = copier.copy_all(include_ttl=True)
    say(report(results, source_settings, target))
    return results
