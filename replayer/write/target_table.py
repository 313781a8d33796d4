"""The table a restore creates: its ``CreateTable`` request, the refusal when it exists, its
creation, and the wait until it (and every index) is ACTIVE.

The request is built from an archived ``DescribeTable`` ``Table`` (:func:`create_table_request`).
Creation refuses (:class:`TargetTableExists`, exit 4) before anything exists when the name is
taken. :func:`wait_until_active` is the one wait for a table a restore made — by
``CreateTable`` or by a native restore — with a deadline, and it stops at once on a status that
will never become ACTIVE or on a table that is gone.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from archiver.aws import retry
from archiver.aws.describe import describe_or_none
from archiver.aws.error_table import ResourceInUse
from replayer.exceptions import TargetTableExists, replay_error
from replayer.write.restore_state import TAG_RESTORE_ID, existing_target

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 120.0  # progress lines while waiting, when no terminal shows the bar
_BUSY = frozenset({"CREATING", "UPDATING"})


def create_table_request(table: Mapping[str, Any], target: str) -> dict[str, Any]:
    """A ``CreateTable`` request recreating an archived ``DescribeTable`` ``Table`` as ``target``.

    Carries keys, attribute definitions, GSIs, LSIs, billing mode, capacity (provisioned or
    on-demand maximums), SSE (a customer KMS key is kept; AWS-owned is the default), table
    class and deletion protection. Tags, TTL, streams, PITR, auto scaling, alarms and resource
    policy are settings applied afterwards (``--copy-settings``).
    """
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode") or "PROVISIONED"
    provisioned = billing == "PROVISIONED"
    request: dict[str, Any] = {
        "TableName": target,
        "KeySchema": [_key(k) for k in table["KeySchema"]],
        "AttributeDefinitions": [
            {"AttributeName": a["AttributeName"], "AttributeType": a["AttributeType"]}
            for a in table["AttributeDefinitions"]
        ],
        "BillingMode": billing,
    }
    if provisioned:
        request["ProvisionedThroughput"] = _throughput(table.get("ProvisionedThroughput"))
    elif table.get("OnDemandThroughput"):
        request["OnDemandThroughput"] = dict(table["OnDemandThroughput"])
    gsis = []
    for index in table.get("GlobalSecondaryIndexes") or []:
        gsi: dict[str, Any] = {
            "IndexName": index["IndexName"],
            "KeySchema": [_key(k) for k in index["KeySchema"]],
            "Projection": _projection(index.get("Projection")),
        }
        if provisioned:
            gsi["ProvisionedThroughput"] = _throughput(index.get("ProvisionedThroughput"))
        elif index.get("OnDemandThroughput"):
            gsi["OnDemandThroughput"] = dict(index["OnDemandThroughput"])
        gsis.append(gsi)
    if gsis:
        request["GlobalSecondaryIndexes"] = gsis
    lsis = [
        {
            "IndexName": index["IndexName"],
            "KeySchema": [_key(k) for k in index["KeySchema"]],
            "Projection": _projection(index.get("Projection")),
        }
        for index in table.get("LocalSecondaryIndexes") or []
    ]
    if lsis:
        request["LocalSecondaryIndexes"] = lsis
    sse = table.get("SSEDescription") or {}
    if sse.get("Status") in ("ENABLED", "ENABLING", "UPDATING") and sse.get("SSEType") == "KMS":
        spec: dict[str, Any] = {"Enabled": True, "SSEType": "KMS"}
        if sse.get("KMSMasterKeyArn"):
            spec["KMSMasterKeyId"] = sse["KMSMasterKeyArn"]
        request["SSESpecification"] = spec
    table_class = (table.get("TableClassSummary") or {}).get("TableClass")
    if table_class:
        request["TableClass"] = table_class
    if table.get("DeletionProtectionEnabled"):
        request["DeletionProtectionEnabled"] = True
    return request


def _key(element: Mapping[str, Any]) -> dict[str, str]:
    return {"AttributeName": element["AttributeName"], "KeyType": element["KeyType"]}


def _projection(projection: Mapping[str, Any] | None) -> dict[str, Any]:
    projection = projection or {"ProjectionType": "ALL"}
    out: dict[str, Any] = {"ProjectionType": projection.get("ProjectionType", "ALL")}
    if projection.get("NonKeyAttributes"):
        out["NonKeyAttributes"] = list(projection["NonKeyAttributes"])
    return out


def _throughput(throughput: Mapping[str, Any] | None) -> dict[str, int]:
    throughput = throughput or {}
    # A provisioned table always has ≥ 1 of each; 0 appears in descriptions of on-demand ones.
    return {
        "ReadCapacityUnits": max(1, int(throughput.get("ReadCapacityUnits") or 1)),
        "WriteCapacityUnits": max(1, int(throughput.get("WriteCapacityUnits") or 1)),
    }


def table_exists(client: DynamoDBClient, name: str) -> bool:
    """Whether the table exists (in any status)."""
    return describe_or_none(client, name) is not None


def refuse_if_exists(client: DynamoDBClient, name: str) -> None:
    """Raise :class:`TargetTableExists` (exit 4) when ``name`` exists."""
    if table_exists(client, name):
        raise TargetTableExists(
            f"target table {name!r} already exists: restore into a new name, or delete it first"
        )


def create_target(
    client: DynamoDBClient,
    description: Mapping[str, Any],
    name: str,
    *,
    request: Mapping[str, Any] | None = None,
    tags: Sequence[Mapping[str, str]] = (),
    **wait: Any,
) -> dict[str, Any]:
    """Create ``name`` like the archived ``description`` (refusing if it exists), wait until
    it is ACTIVE (``wait``: :func:`wait_until_active`'s options) and return its description.

    ``request``: the ``CreateTable`` request to send (default: :func:`create_table_request`);
    ``tags``: tags to create it with. When the tags carry a restore id, a
    ``ResourceInUseException`` answered by a table carrying that same id means an earlier
    attempt of this very call took effect and its reply was lost: that is success.
    """
    refuse_if_exists(client, name)
    body = dict(request or create_table_request(description, name))
    if tags:
        body["Tags"] = [dict(t) for t in tags]
    ours = next((t["Value"] for t in tags if t["Key"] == TAG_RESTORE_ID), None)
    try:
        # A dropped connection is retried: the table may then exist already (answered below).
        retry.call(lambda: client.create_table(**body), f"CreateTable {name}")
    except ResourceInUse as exc:
        found = existing_target(client, name) if ours else None
        if found is None or found.restore_id != ours:
            raise replay_error(exc, f"CreateTable {name}")  # noqa: B904 (keeps its own cause)
        log.info("CreateTable %s: the table is this restore's (an earlier reply was lost)", name)
    except Exception as exc:
        raise replay_error(exc, f"CreateTable {name}")  # noqa: B904 (keeps its own cause)
    log.info("created table %s; waiting for it to become ACTIVE", name)
    return wait_until_active(client, name, **wait)


def set_source_capacity(client: Any, description: Mapping[str, Any], name: str) -> None:
    """Give a provisioned target the source's capacity (table and GSIs) once it is written:
    it was created with enough write capacity for the restore itself."""
    if (description.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED") != (
        "PROVISIONED"
    ):
        return
    current = describe_or_none(client, name) or {}
    update: dict[str, Any] = {}
    wanted = _throughput(description.get("ProvisionedThroughput"))
    if _throughput(current.get("ProvisionedThroughput")) != wanted:
        update["ProvisionedThroughput"] = wanted
    now = {g["IndexName"]: g for g in current.get("GlobalSecondaryIndexes") or []}
    gsi_updates = []
    for index in description.get("GlobalSecondaryIndexes") or []:
        wanted_gsi = _throughput(index.get("ProvisionedThroughput"))
        if _throughput(now.get(index["IndexName"], {}).get("ProvisionedThroughput")) != wanted_gsi:
            gsi_updates.append(
                {"Update": {"IndexName": index["IndexName"], "ProvisionedThroughput": wanted_gsi}}
            )
    if gsi_updates:
        update["GlobalSecondaryIndexUpdates"] = gsi_updates
    if not update:
        return
    try:
        client.update_table(TableName=name, **update)
    except Exception as exc:
        raise replay_error(exc, f"UpdateTable {name}")  # noqa: B904 (keeps its own cause)
    log.info("set %s to the source's provisioned capacity", name)
    wait_until_active(client, name)


def _status(description: Mapping[str, Any] | None) -> str:
    if description is None:
        return "absent"
    status = str(description.get("TableStatus"))
    indexes = [
        str(gsi.get("IndexStatus", "ACTIVE"))
        for gsi in description.get("GlobalSecondaryIndexes") or []
    ]
    return status + (f", indexes {'/'.join(indexes)}" if indexes else "")


def _active(description: Mapping[str, Any] | None) -> bool:
    return (
        description is not None
        and description.get("TableStatus") == "ACTIVE"
        and all(
            gsi.get("IndexStatus", "ACTIVE") == "ACTIVE"
            for gsi in description.get("GlobalSecondaryIndexes") or []
        )
    )


def wait_until_active(
    client: DynamoDBClient,
    name: str,
    *,
    poll_seconds: float = 1.0,
    timeout_seconds: float = 3600.0,
    appearing: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll ``DescribeTable`` until the table and every GSI are ACTIVE; returns the description.

    Args:
        client: a boto3 DynamoDB client.
        name: the table.
        poll_seconds: the pause between polls.
        timeout_seconds: give up (``WaitTimedOut``) after this long.
        appearing: the table may not be visible yet (a native restore just started): absent
            counts as CREATING until the deadline. Otherwise absent fails at once.
        sleep: how to pause (tests pass a recorder).

    Raises:
        WaitFailed: the table is in a status other than CREATING/UPDATING (DELETING,
            INACCESSIBLE_ENCRYPTION_CREDENTIALS, …), or absent.
        WaitTimedOut: not ACTIVE after ``timeout_seconds``.
    """
    logged = 0.0
    with tqdm(
        total=None,
        desc=f"waiting for {name}",
        bar_format="{desc}: {postfix} [{elapsed}]",
        file=sys.stderr,
        disable=None,
    ) as bar:

        def show(description: Mapping[str, Any] | None, elapsed: float) -> None:
            nonlocal logged
            bar.set_postfix_str(_status(description))
            if bar.disable and elapsed >= logged + LOG_EVERY_SECONDS:
                # No terminal for the bar (a log, a pipe): a line now and then instead.
                logged = elapsed
                log.info(
                    "waiting for %s: %s after %.0f min", name, _status(description), elapsed / 60
                )

        def failed(description: Mapping[str, Any] | None) -> str | None:
            if description is None:
                return None if appearing else "the table does not exist"
            if description.get("TableStatus") in _BUSY:
                return None
            if description.get("TableStatus") == "ACTIVE":
                return None  # indexes still building
            return f"table is {_status(description)}, not ACTIVE"

        found = retry.wait_until(
            lambda: describe_or_none(client, name),
            what=f"table {name}",
            ready=_active,
            failed=failed,
            poll_seconds=poll_seconds,
            timeout_seconds=timeout_seconds,
            sleep=sleep,
            on_poll=show,
        )
    assert found is not None  # _active holds
    return dict(found)
