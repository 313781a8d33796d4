"""The operations the endpoint answers, and those it refuses.

Reads are served: ``GetItem``, ``BatchGetItem``, ``TransactGetItems``, ``Query``, ``Scan``,
``DescribeTable``, ``ListTables``, and PartiQL ``SELECT`` through ``ExecuteStatement``
(:mod:`replayer.serve.partiql`). Every operation that would change something — items,
tables, backups, settings, PartiQL ``INSERT``/``UPDATE``/``DELETE`` — is refused with
``AccessDeniedException`` saying the endpoint is read-only: nothing a client sends can reach
the archive or AWS. Other DynamoDB operations (among them ``BatchExecuteStatement`` and
``ExecuteTransaction`` made only of ``SELECT``s) are answered with
``UnknownOperationException`` naming them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replayer.serve import item_reads, partiql, query_scan, table_info
from replayer.serve.dynamodb_errors import UnknownOperationException, read_only
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
    "ExecuteStatement": partiql.execute_statement,
}

WRITES = frozenset(
    {
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
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


def dispatch(endpoint: Endpoint, operation: str, body: Any) -> dict[str, Any]:
    """Answer one request (a DynamoDB error answer is raised as its exception)."""
    handler = READS.get(operation)
    if handler is not None:
        return handler(endpoint, body)
    if operation in WRITES:
        raise read_only(operation)
    if operation in partiql.MULTI_STATEMENT:
        partiql.refuse_many(operation, body)
    raise UnknownOperationException(f"ddb-replayer serve does not answer {operation}")
