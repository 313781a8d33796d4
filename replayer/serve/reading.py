"""What every read operation shares: keys checked against the table, the expressions a read
request carries, what ``Select`` returns, read units, and items in the answer.

Keys are checked as DynamoDB checks them once the table is known: every key attribute, of
its declared type, nothing else (``The provided key element does not match the schema``), no
empty S or B, a partition key of at most 2048 bytes and a sort key of at most 1024.

Items leave as they are stored — canonical DynamoDB JSON, embedded in the answer without
being parsed and written again (``orjson.Fragment``) — unless a projection rebuilds them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from replayer.serve import expression_syntax as syntax
from replayer.serve import keys
from replayer.serve.dynamodb_errors import ValidationException
from replayer.serve.expression_checks import (
    Placeholders,
    compile_condition,
    compile_projection,
    expression_parameters,
    paths_in,
)
from replayer.serve.expression_eval import project
from replayer.serve.legacy_conditions import (
    LegacyCondition,
    check_conditional_operator,
    check_conditions,
    filter_condition,
)
from replayer.serve.request_shapes import Request
from replayer.serve.schema import IndexSchema, TableSchema
from replayer.serve.values import AttributeValue, Item, check_shape_map, check_value

Path = tuple[str | int, ...]
NOT_MATCHING = "The provided key element does not match the schema"


def check_values(raw: Mapping[str, Any], prefix: str = "") -> Item:
    """A map of request values (a key), each checked and canonical."""
    return {name: check_value(value, prefix) for name, value in check_shape_map(raw).items()}


def check_key_part(key: Mapping[str, AttributeValue], name: str, kind: str, is_hash: bool) -> None:
    value = key.get(name)
    if value is None or kind not in value:
        raise ValidationException(NOT_MATCHING)
    if kind in ("S", "B") and value[kind] == "":
        what = "string" if kind == "S" else "binary"
        raise ValidationException(
            "One or more parameter values were invalid: The AttributeValue for a key attribute "
            f"cannot contain an empty {what} value. Key: {name}"
        )
    if kind == "N":
        return
    size = len(value["S"].encode("utf-8")) if kind == "S" else len(value["B"]) * 3 // 4
    if is_hash and size > 2048:
        raise ValidationException(
            "One or more parameter values were invalid: Size of hashkey has exceeded the "
            "maximum size limit of2048 bytes"
        )
    if not is_hash and size > 1024:
        raise ValidationException(
            "One or more parameter values were invalid: Aggregated size of all range keys has "
            "exceeded the size limit of 1024 bytes"
        )


def check_key(schema: TableSchema, key: Mapping[str, AttributeValue]) -> None:
    """Refuse a key that is not exactly the table's key."""
    if len(key) != len(schema.key_names):
        raise ValidationException(NOT_MATCHING)
    check_key_part(key, *schema.hash_key, True)
    if schema.range_key is not None:
        check_key_part(key, *schema.range_key, False)


def table_key_text(schema: TableSchema, key: Mapping[str, AttributeValue]) -> str:
    """The sort text of the item with this key (:func:`replayer.serve.keys.item_key`)."""
    range_value = key[schema.range_key[0]] if schema.range_key else None
    return keys.item_key(key[schema.hash_key[0]], range_value)


def index_key_text(
    schema: TableSchema, index: IndexSchema, key: Mapping[str, AttributeValue]
) -> str:
    """The sort text of an index entry with these keys (table keys and index keys)."""
    irange = key[index.range_key[0]] if index.range_key else None
    trange = key[schema.range_key[0]] if schema.range_key else None
    return keys.item_key(key[index.hash_key[0]], irange) + keys.tie_breaker(
        key[schema.hash_key[0]], trange
    )


def check_key_paths(paths: Sequence[Path], schema: TableSchema) -> None:
    """Refuse ``pk.x`` or ``pk[0]`` where ``pk`` is a table or index key attribute."""
    nested = {path[0] for path in paths if len(path) > 1}
    for name in schema.key_names:
        if name in nested:
            raise ValidationException(
                "Key attributes must be scalars; list random access '[]' and map lookup '.' are "
                f"not allowed: Key: {name}"
            )
    for index in schema.indexes.values():
        for name in index.key_names:
            if name in nested:
                raise ValidationException(
                    "Key attributes must be scalars; list random access '[]' and map lookup '.' "
                    f"are not allowed: IndexKey: {name}"
                )


@dataclass
class ReadExpressions:
    """A read request's projection and filter, checked."""

    projection: list[Path] | None
    filter: syntax.Condition | None
    key_condition: syntax.Condition | None
    placeholders: Placeholders
    legacy_filter: dict[str, LegacyCondition] | None = None
    filter_source: str = "Filter Expression"  # how DynamoDB names the filter in messages

    @property
    def filter_paths(self) -> list[Path]:
        return paths_in(self.filter) if self.filter is not None else []


def read_expressions(
    request: Request,
    *,
    filters: bool = False,
    key_condition: bool = False,
    legacy: Sequence[str] = ("AttributesToGet",),
    legacy_filter: str | None = None,
) -> ReadExpressions:
    """Check a request's expressions (and legacy parameters) in DynamoDB's order.

    ``legacy_filter`` (``QueryFilter``, ``ScanFilter``): its conditions are checked too —
    a Query's before ``AttributesToGet``, a Scan's after, as DynamoDB orders them — and
    ``ConditionalOperator`` right after the expression/legacy mix."""
    body = request.body
    names = ["ProjectionExpression"]
    if filters:
        names.append("FilterExpression")
    if key_condition:
        names.append("KeyConditionExpression")
    for name in names:
        request.string(name)
    expression_parameters(body, names, legacy)
    conditions = None
    if legacy_filter is not None:
        check_conditional_operator(body, legacy_filter)
        if key_condition:
            conditions = check_conditions(body.get(legacy_filter))
    attributes = request.strings("AttributesToGet")
    if attributes:
        seen: set[str] = set()
        for attribute in attributes:
            if attribute in seen:
                raise ValidationException(
                    "One or more parameter values were invalid: Duplicate value in attribute "
                    f"name: {attribute}"
                )
            seen.add(attribute)
    if legacy_filter is not None and not key_condition:
        conditions = check_conditions(body.get(legacy_filter))
    placeholders = Placeholders.of_request(
        request.mapping("ExpressionAttributeNames"),
        request.mapping("ExpressionAttributeValues") if (filters or key_condition) else None,
    )
    found = ReadExpressions(None, None, None, placeholders)
    if conditions:
        found.legacy_filter = conditions
        found.filter_source = str(legacy_filter)
    return found


def compile_expressions(request: Request, found: ReadExpressions) -> ReadExpressions:
    """Parse the expressions (key condition, filter, projection) and refuse unused
    placeholders, after the other request checks, as DynamoDB orders them."""
    body = request.body
    if body.get("KeyConditionExpression") is not None:
        found.key_condition = compile_condition(
            body["KeyConditionExpression"], found.placeholders, "KeyConditionExpression"
        )
    if body.get("FilterExpression") is not None:
        found.filter = compile_condition(
            body["FilterExpression"], found.placeholders, "FilterExpression"
        )
    elif found.legacy_filter:
        found.filter = filter_condition(found.legacy_filter, body.get("ConditionalOperator"))
    if body.get("ProjectionExpression") is not None:
        found.projection = compile_projection(body["ProjectionExpression"], found.placeholders)
    elif body.get("AttributesToGet"):
        found.projection = [(str(name),) for name in body["AttributesToGet"]]
    found.placeholders.check_unused()
    return found


def check_select(request: Request, select: str | None, index_name: str | None) -> None:
    """Refuse a ``Select`` that does not fit the request (moto's messages, DynamoDB's rules)."""
    if select is None:
        return
    prefix = "1 validation error detected: "
    projection = request.has("ProjectionExpression")
    attributes = request.has("AttributesToGet")
    if select == "SPECIFIC_ATTRIBUTES" and not (projection or attributes):
        raise ValidationException(
            f"{prefix}Must specify the AttributesToGet or ProjectionExpression when choosing to "
            "get SPECIFIC_ATTRIBUTES"
        )
    if select != "SPECIFIC_ATTRIBUTES":
        described = "only the Count" if select == "COUNT" else select
        if projection:
            raise ValidationException(
                f"{prefix}Cannot specify the ProjectionExpression when choosing to get {described}"
            )
        if attributes:
            raise ValidationException(
                f"{prefix}Cannot specify the AttributesToGet when choosing to get {described}"
            )
    if select == "ALL_PROJECTED_ATTRIBUTES" and index_name is None:
        raise ValidationException(
            f"{prefix}ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName"
        )


def read_units(size: int, consistent: bool) -> float:
    """Read capacity units for reading ``size`` bytes (4 KB units, half when eventual)."""
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


def consumed(
    mode: str | None, table_name: str, units: float, index: IndexSchema | None = None
) -> dict[str, Any] | None:
    """``ConsumedCapacity`` as ``ReturnConsumedCapacity`` asks (None: not asked)."""
    if mode not in ("TOTAL", "INDEXES"):
        return None
    out: dict[str, Any] = {"TableName": table_name, "CapacityUnits": units}
    if mode == "INDEXES":
        if index is None:
            out["Table"] = {"CapacityUnits": units}
        else:
            field = "LocalSecondaryIndexes" if index.local else "GlobalSecondaryIndexes"
            out["Table"] = {"CapacityUnits": 0.0}
            out[field] = {index.name: {"CapacityUnits": units}}
    return out


def output_item(text: str, item: Item | None, projection: list[Path] | None) -> Any:
    """An item for the answer: its stored text as it is, or projected."""
    if projection is None:
        return orjson.Fragment(text)
    return project(item if item is not None else orjson.loads(text), projection)
