"""The operations the endpoint answers, and those it refuses.

Reads are served: ``GetItem``, ``BatchGetItem``, ``TransactGetItems``, ``Query``, ``Scan``,
``DescribeTable``, ``ListTables``. Every operation that would change something — items,
tables, backups, settings, PartiQL statements other than a ``SELECT`` — is refused with
``AccessDeniedException`` saying the endpoint is read-only: nothing a client sends can reach
the archive or AWS. Other DynamoDB operations (and PartiQL ``SELECT``) are answered with
``UnknownOperationException`` naming them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replayer.serve import item_reads, query_scan, table_info
from replayer.serve.dynamodb_errors import AccessDeniedException, UnknownOperationException
from replayer.serve.endpoint import Endpoint

Handler = Callable[[Endpoint, Any], dict[str, Any]]

READS: dict[str, Handler] = {
    "GetItem": item_reads.get_item,
    "BatchGetItem": item_reads.batch_get_item,
    "TransactGetItems": item_reads.transact_get_items,
    "Query": query_scan.query,
    "Scan": query_scan.scan,
    "DescribeTable": table_info.describe_table,
    "ListTables": table_info.list_tables,
}

WRITES = frozenset(
    {
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "ExecuteTransaction",
        "BatchExecuteStatement",
        "CreateTable",
        "UpdateTable",
        "DeleteTable",
        "CreateBackup",
        "DeleteBackup",
        "RestoreTableFromBackup",
        "RestoreTableToPointInTime",
        "UpdateTimeToLive",
        "UpdateContinuousBackups",
        "TagResource",
        "UntagResource",
        "CreateGlobalTable",
        "UpdateGlobalTable",
        "UpdateGlobalTableSettings",
        "ExportTableToPointInTime",
        "ImportTable",
        "EnableKinesisStreamingDestination",
        "DisableKinesisStreamingDestination",
        "UpdateKinesisStreamingDestination",
        "UpdateContributorInsights",
        "PutResourcePolicy",
        "DeleteResourcePolicy",
        "UpdateTableReplicaAutoScaling",
    }
)


def read_only(operation: str) -> AccessDeniedException:
    return AccessDeniedException(
        f"{operation} is refused: this endpoint is read-only (ddb-replayer serve answers reads "
        "of the archive as the tables were at any instant; it never writes)"
    )


def dispatch(endpoint: Endpoint, operation: str, body: Any) -> dict[str, Any]:
    """Answer one request (a DynamoDB error answer is raised as its exception)."""
    handler = READS.get(operation)
    if handler is not None:
        return handler(endpoint, body)
    if operation in WRITES:
        raise read_only(operation)
    if operation == "ExecuteStatement":
        statement = body.get("Statement") if isinstance(body, dict) else None
        if isinstance(statement, str) and not statement.lstrip().upper().startswith("SELECT"):
            raise read_only(operation)
        raise UnknownOperationException(
            "ddb-replayer serve does not answer PartiQL (ExecuteStatement): read with "
            "GetItem, BatchGetItem, Query or Scan"
        )
    raise UnknownOperationException(f"ddb-replayer serve does not answer {operation}")
