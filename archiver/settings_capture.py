"""Table settings that DescribeTable does not return and native restores drop.

Captured with every archived table description (see ``archiver.tables``), so that
``ddb-replayer restore --copy-settings`` can re-create them after the source table is gone:

- Application Auto Scaling: scalable targets, scaling policies and scheduled actions of the
  table and of each GSI (``table/T``, ``table/T/index/I``), read and write;
- CloudWatch metric alarms on the table's metrics (any alarm with a ``TableName = T``
  dimension, including metric-math alarms);
- the table's resource-based policy (``GetResourcePolicy``).

Each part is optional: when permissions deny it or the service is unreachable, the reason is
noted under ``"unavailable"`` (``{"resource_policy": "AccessDeniedException"}``) and the rest
is still captured. Only configuration is kept, not alarm state, so that the description
changes only when a setting does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from archiver.aws import AwsSettings
from archiver.errors import client_error_code
from archiver.timefmt import iso_ms

log = logging.getLogger(__name__)
T = TypeVar("T")

AUTOSCALING_NAMESPACE = "dynamodb"
DYNAMODB_METRICS_NAMESPACE = "AWS/DynamoDB"
# Alarm fields that describe its current state rather than its configuration.
_ALARM_STATE_FIELDS = frozenset(
    {
        "StateValue",
        "StateReason",
        "StateReasonData",
        "StateUpdatedTimestamp",
        "StateTransitionedTimestamp",
    }
)


def json_safe(value: Any) -> Any:
    """``value`` with datetimes as ISO 8601 UTC strings and bytes as hex, recursively."""
    if isinstance(value, datetime):
        return iso_ms(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return value


def resource_ids(description: Mapping[str, Any]) -> list[str]:
    """Application Auto Scaling resource ids of the table and its GSIs."""
    table = description["TableName"]
    ids = [f"table/{table}"]
    ids.extend(
        f"table/{table}/index/{gsi['IndexName']}"
        for gsi in description.get("GlobalSecondaryIndexes") or []
    )
    return ids


async def _auto_scaling(settings: AwsSettings, description: Mapping[str, Any]) -> dict[str, Any]:
    wanted = resource_ids(description)
    targets: list[dict[str, Any]] = []
    policies: list[dict[str, Any]] = []
    scheduled: list[dict[str, Any]] = []
    async with settings.aio_client("application-autoscaling") as client:
        # ResourceIds takes at most 50; a table has at most 20 GSIs.
        kwargs: dict[str, Any] = {"ServiceNamespace": AUTOSCALING_NAMESPACE, "ResourceIds": wanted}
        while True:
            page = await client.describe_scalable_targets(**kwargs)
            targets.extend(page.get("ScalableTargets", []))
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        for resource_id in sorted({t["ResourceId"] for t in targets}):
            for method, field, sink in (
                (client.describe_scaling_policies, "ScalingPolicies", policies),
                (client.describe_scheduled_actions, "ScheduledActions", scheduled),
            ):
                kwargs = {"ServiceNamespace": AUTOSCALING_NAMESPACE, "ResourceId": resource_id}
                while True:
                    page = await method(**kwargs)
                    # Keep exact matches only: some endpoints (moto) match ResourceId as a
                    # substring, so table/T would also return table/T/index/I's entries.
                    sink.extend(e for e in page.get(field, []) if e["ResourceId"] == resource_id)
                    if not page.get("NextToken"):
                        break
                    kwargs["NextToken"] = page["NextToken"]

    def order(entry: Mapping[str, Any]) -> tuple[str, ...]:
        return (
            str(entry.get("ResourceId")),
            str(entry.get("ScalableDimension")),
            str(entry.get("PolicyName") or entry.get("ScheduledActionName") or ""),
        )

    return {
        "targets": json_safe(sorted(targets, key=order)),
        "policies": json_safe(sorted(policies, key=order)),
        "scheduled_actions": json_safe(sorted(scheduled, key=order)),
    }


def _dimensions_name_table(dimensions: Any, table: str) -> bool:
    return any(d.get("Name") == "TableName" and d.get("Value") == table for d in dimensions or [])


def alarm_watches_table(alarm: Mapping[str, Any], table: str) -> bool:
    """Whether a metric alarm (plain or metric math) watches one of ``table``'s metrics."""
    if alarm.get("Namespace") == DYNAMODB_METRICS_NAMESPACE and _dimensions_name_table(
        alarm.get("Dimensions"), table
    ):
        return True
    for query in alarm.get("Metrics") or []:
        metric = (query.get("MetricStat") or {}).get("Metric") or {}
        if metric.get("Namespace") == DYNAMODB_METRICS_NAMESPACE and _dimensions_name_table(
            metric.get("Dimensions"), table
        ):
            return True
    return False


async def _alarms(settings: AwsSettings, description: Mapping[str, Any]) -> list[dict[str, Any]]:
    table = description["TableName"]
    found: list[dict[str, Any]] = []
    async with settings.aio_client("cloudwatch") as client:
        # DescribeAlarms cannot filter by dimension: page through the account's metric alarms.
        kwargs: dict[str, Any] = {"AlarmTypes": ["MetricAlarm"], "MaxRecords": 100}
        while True:
            page = await client.describe_alarms(**kwargs)
            for alarm in page.get("MetricAlarms", []):
                if alarm_watches_table(alarm, table):
                    found.append({k: v for k, v in alarm.items() if k not in _ALARM_STATE_FIELDS})
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return list(json_safe(sorted(found, key=lambda a: str(a.get("AlarmName")))))


async def _resource_policy(
    settings: AwsSettings, description: Mapping[str, Any]
) -> dict[str, Any] | None:
    async with settings.aio_client("dynamodb") as client:
        try:
            response = await client.get_resource_policy(ResourceArn=description["TableArn"])
        except ClientError as exc:
            if client_error_code(exc) == "PolicyNotFoundException":
                return None  # the table simply has no policy
            raise
    return {"Policy": response.get("Policy"), "RevisionId": response.get("RevisionId")}


def unavailable_reason(exc: BaseException) -> str:
    """Why a part could not be read: the AWS error code, or the kind of connection failure."""
    code = client_error_code(exc)
    if code:
        return code
    return f"unreachable ({type(exc).__name__})"


async def _optional(
    what: str,
    fetch: Callable[[], Awaitable[T]],
    default: T,
    unavailable: dict[str, str],
) -> T:
    try:
        return await fetch()
    except (ClientError, BotoCoreError) as exc:
        reason = unavailable_reason(exc)
        log.warning("table settings: %s not captured: %s", what.replace("_", " "), reason)
        unavailable[what] = reason
        return default


async def capture_extras(settings: AwsSettings, description: Mapping[str, Any]) -> dict[str, Any]:
    """Auto scaling, alarms and resource policy of the table ``description`` describes.

    ``description`` is DescribeTable's ``Table``. Returns ``{"auto_scaling": {"targets",
    "policies", "scheduled_actions"}, "alarms": [...], "resource_policy": {...} | None,
    "unavailable": {part: reason}}``, JSON-safe and in a stable order.
    """
    unavailable: dict[str, str] = {}
    no_scaling: dict[str, Any] = {"targets": [], "policies": [], "scheduled_actions": []}
    no_alarms: list[dict[str, Any]] = []
    auto_scaling, alarms, resource_policy = await asyncio.gather(
        _optional(
            "auto_scaling", lambda: _auto_scaling(settings, description), no_scaling, unavailable
        ),
        _optional("alarms", lambda: _alarms(settings, description), no_alarms, unavailable),
        _optional(
            "resource_policy", lambda: _resource_policy(settings, description), None, unavailable
        ),
    )
    return {
        "auto_scaling": auto_scaling,
        "alarms": alarms,
        "resource_policy": resource_policy,
        "unavailable": dict(sorted(unavailable.items())),
    }
