"""Table settings that DescribeTable does not return and native restores drop.

Captured with every archived table description (see ``archiver.format.tables``), so that
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
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import (
    PolicyNotFound,
    TableNotFound,
    client_error_code,
    is_error,
    translate_client_error,
)
from archiver.format.storage import Archive
from archiver.format.tables import description_document, json_safe, store_description
from archiver.format.timefmt import utcnow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb import DynamoDBClient as AioDynamoDBClient

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
    targets: list[Mapping[str, Any]] = []
    policies: list[Mapping[str, Any]] = []
    scheduled: list[Mapping[str, Any]] = []
    async with settings.aio_client("application-autoscaling") as client:
        # ResourceIds takes at most 50; a table has at most 20 GSIs.
        kwargs: dict[str, Any] = {"ServiceNamespace": AUTOSCALING_NAMESPACE, "ResourceIds": wanted}
        while True:
            page = await client.describe_scalable_targets(**kwargs)
            targets.extend(page.get("ScalableTargets", []))
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        calls: list[tuple[Callable[..., Awaitable[Mapping[str, Any]]], str, list[Any]]] = [
            (client.describe_scaling_policies, "ScalingPolicies", policies),
            (client.describe_scheduled_actions, "ScheduledActions", scheduled),
        ]
        for resource_id in sorted({t["ResourceId"] for t in targets}):
            for method, field, sink in calls:
                kwargs = {"ServiceNamespace": AUTOSCALING_NAMESPACE, "ResourceId": resource_id}
                while True:
                    listed = await method(**kwargs)
                    # Keep exact matches only: some endpoints (moto) match ResourceId as a
                    # substring, so table/T would also return table/T/index/I's entries.
                    sink.extend(e for e in listed.get(field, []) if e["ResourceId"] == resource_id)
                    if not listed.get("NextToken"):
                        break
                    kwargs["NextToken"] = listed["NextToken"]

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
            if is_error(exc, PolicyNotFound):
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


# -- the table's whole description ----------------------------------------------------------


async def _list_tags(
    client: AioDynamoDBClient, table_arn: str, unavailable: dict[str, str]
) -> list[Any] | None:
    tags: list[Any] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"ResourceArn": table_arn}
        if token:
            kwargs["NextToken"] = token
        page = await _optional(
            "tags", functools.partial(client.list_tags_of_resource, **kwargs), None, unavailable
        )
        if page is None:
            return None
        tags.extend(page.get("Tags", []))
        token = page.get("NextToken")
        if not token:
            return tags


async def describe(
    settings: AwsSettings, table_name: str, *, client: AioDynamoDBClient | None = None
) -> dict[str, Any]:
    """The table's current description (see module doc), without writing anything.

    Args:
        settings: AWS settings (also handed to ``capture_extras``).
        table_name: the table.
        client: an aiobotocore DynamoDB client to use; one is opened from ``settings`` if None.

    Raises:
        TableNotFound: the table does not exist.
        AwsError: DescribeTable failed otherwise (access denied, …).
    """
    async with AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(settings.aio_client("dynamodb"))
        try:
            response = await client.describe_table(TableName=table_name)
        except ClientError as exc:
            err = translate_client_error(exc, f"DescribeTable {table_name}")
            if isinstance(err, TableNotFound):
                region = getattr(getattr(client, "meta", None), "region_name", None)
                where = f" in {region}" if region else ""
                raise TableNotFound(f"table {table_name!r} does not exist{where}") from exc
            raise err from exc
        table = json_safe(response["Table"])
        unavailable: dict[str, str] = {}
        tags = await _list_tags(client, table["TableArn"], unavailable)
        ttl = await _optional(
            "time_to_live",
            lambda: client.describe_time_to_live(TableName=table_name),
            None,
            unavailable,
        )
        backups = await _optional(
            "continuous_backups",
            lambda: client.describe_continuous_backups(TableName=table_name),
            None,
            unavailable,
        )
    try:
        extras = json_safe(await capture_extras(settings, table))
    except Exception as exc:  # optional settings must never stop archiving
        log.warning("%s: cannot capture auto scaling/alarms/policy: %s", table_name, exc)
        extras = {}
        unavailable["extras"] = client_error_code(exc) or type(exc).__name__
    unavailable.update((extras or {}).get("unavailable") or {})
    return description_document(
        table_name,
        table,
        captured_at=utcnow(),
        tags=tags,
        time_to_live=(ttl or {}).get("TimeToLiveDescription") if ttl else None,
        continuous_backups=(backups or {}).get("ContinuousBackupsDescription") if backups else None,
        extras=extras,
        unavailable=unavailable,
    )


async def capture_description(
    settings: AwsSettings,
    archive: Archive,
    table_name: str,
    *,
    client: AioDynamoDBClient | None = None,
) -> dict[str, Any]:
    """Describe the table and archive the description if it changed; returns it."""
    doc = await describe(settings, table_name, client=client)
    store_description(archive, doc)
    return doc


# -- the live table, for export conversion ------------------------------------------------


def live_lookup(settings: AwsSettings, table: str) -> Callable[[], dict[str, Any] | None]:
    """A lookup of the live table's description that never fails the conversion: without
    AWS access (no region, no credentials, access denied) it warns and answers ``None``."""

    def lookup() -> dict[str, Any] | None:
        try:
            return describe_or_none(settings.client("dynamodb"), table)
        except Exception as exc:
            log.warning("could not describe table %s (%s); using the archive only", table, exc)
            return None

    return lookup


def describe_or_none(ddb: DynamoDBClient, table: str) -> dict[str, Any] | None:
    """``DescribeTable``'s ``Table``, or ``None`` when the table does not exist.

    Any other AWS failure (access denied, …) is raised translated by the error table.
    """
    try:
        return dict(ddb.describe_table(TableName=table)["Table"])
    except ClientError as exc:
        err = translate_client_error(exc, f"DescribeTable {table}")
        if isinstance(err, TableNotFound):
            return None
        raise err from exc
