"""``DescribeTable`` and ``ListTables``: the archive's tables, as they were at the instant.

``DescribeTable`` answers the description archived for the instant (keys, attribute
definitions, GSIs and LSIs as the table had them then, billing, stream settings), with what
describes the state itself: ``ItemCount`` and ``TableSizeBytes`` of the items at T (sizes as
DynamoDB documents them), each index's ``ItemCount`` and ``IndexSizeBytes``, every status
``ACTIVE``, and ``TableName`` as the client wrote it (``orders@…``). ``ListTables`` lists the
archived table names (bare; any of them can be read at any instant with ``@``).
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from replayer.serve.catalog import timestamps_as_epoch
from replayer.serve.endpoint import Endpoint
from replayer.serve.request_shapes import Request, table_name
from replayer.serve.values import item_size

LIST_TABLES_PAGE = 100


def describe_table(endpoint: Endpoint, body: Any) -> dict[str, Any]:
    request = Request(body)
    name = table_name(request)
    request.done()
    table_at = endpoint.resolve(name)
    schema = table_at.schema
    table: dict[str, Any] = copy.deepcopy(dict(schema.description))
    with endpoint.state(table_at) as state:
        table["TableName"] = name
        table["TableStatus"] = "ACTIVE"
        table["ItemCount"] = state.count
        table["TableSizeBytes"] = state.table_size()
        for field in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            for index in table.get(field) or []:
                rows = state.index(schema.indexes[index["IndexName"]])
                index["ItemCount"] = len(rows)
                index["IndexSizeBytes"] = sum(
                    item_size(orjson.loads(text)) for _, text in rows.scan(0, len(rows))
                )
                if field == "GlobalSecondaryIndexes":
                    index["IndexStatus"] = "ACTIVE"
                    index.pop("Backfilling", None)
    return {"Table": timestamps_as_epoch(table)}


def list_tables(endpoint: Endpoint, body: Any) -> dict[str, Any]:
    request = Request(body)
    start = request.string("ExclusiveStartTableName", min_length=3, max_length=1024)
    limit = request.integer("Limit", minimum=1, maximum=100) or LIST_TABLES_PAGE
    request.done()
    names = endpoint.catalog.tables()
    if start is not None:
        names = [name for name in names if name > start]
    page = names[:limit]
    out: dict[str, Any] = {"TableNames": page}
    if len(names) > len(page):
        out["LastEvaluatedTableName"] = page[-1]
    return out
