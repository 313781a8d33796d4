"""``Query`` and ``Scan``: a range of the sorted state (or index) read page by page.

A Query reads one partition key's items, in sort key order (or reversed with
``ScanIndexForward: false``), narrowed by the sort key condition; a Scan reads everything,
or one segment's contiguous hash range (:func:`replayer.serve.keys.segment_bounds`). Both
start after ``ExclusiveStartKey`` and stop, as DynamoDB does, before evaluating an item once
``Limit`` items have been evaluated or the items evaluated so far reach 1 MB
(:func:`replayer.serve.values.page_size`); the filter is applied to the items evaluated, so
``ScannedCount`` counts them and ``Count`` those that passed. Whenever a page stopped for
either reason — even if nothing follows — its ``LastEvaluatedKey`` is the last evaluated
item's key (table keys, plus the index keys when reading an index): the next page starts
after it, and only a page without one is the last.

The legacy parameters are answered too: ``KeyConditions`` becomes the same key range a
``KeyConditionExpression`` gives, ``QueryFilter``/``ScanFilter`` (with ``ConditionalOperator``)
the same condition tree a ``FilterExpression`` gives (:mod:`replayer.serve.legacy_conditions`),
``AttributesToGet`` a projection; mixing them with expressions is refused, as DynamoDB does.

Reading an index returns its entries as projected; ``ALL_ATTRIBUTES`` from a GSI that does
not project everything is refused; an LSI reads each item from the table for it, and when the
projection or the filter names an attribute the LSI does not hold (DynamoDB's "fetches
each of these attributes from the parent table"). A GSI's entries are all it has: a filter or
projection naming anything else finds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from replayer.serve import keys
from replayer.serve.dynamodb_errors import ValidationException
from replayer.serve.endpoint import Endpoint
from replayer.serve.expression_eval import evaluate
from replayer.serve.key_conditions import (
    KeyRange,
    KeyTest,
    fit,
    key_conditions,
    matches,
)
from replayer.serve.legacy_conditions import check_conditions, check_shapes
from replayer.serve.reading import (
    NOT_MATCHING,
    ReadExpressions,
    check_key,
    check_key_part,
    check_key_paths,
    check_select,
    check_values,
    compile_expressions,
    consumed,
    index_key_text,
    output_item,
    read_expressions,
    read_units,
    table_key_text,
)
from replayer.serve.request_shapes import (
    CONSUMED_CAPACITY_VALUES,
    SELECT_VALUES,
    Request,
    table_name,
)
from replayer.serve.schema import IndexSchema, TableSchema
from replayer.serve.state import Rows, State
from replayer.serve.values import Item, item_size, page_size

PAGE_BYTES = 1024 * 1024
_LEGACY_QUERY = ("AttributesToGet", "QueryFilter", "ConditionalOperator", "KeyConditions")
_LEGACY_SCAN = ("AttributesToGet", "ScanFilter", "ConditionalOperator")
_START_KEY_PLAIN = (
    "contains duplicates",
    "number set",
    "numeric value",
    "significant digits",
    "number with magnitude",
)


def _common(request: Request) -> dict[str, Any]:
    return {
        "index_name": request.string("IndexName", min_length=3, max_length=255),
        "select": request.string("Select", choices=SELECT_VALUES),
        "limit": request.integer("Limit", minimum=1),
        "consistent": bool(request.boolean("ConsistentRead")),
        "mode": request.string("ReturnConsumedCapacity", choices=CONSUMED_CAPACITY_VALUES),
        "start": request.mapping("ExclusiveStartKey"),
        "operator": request.string("ConditionalOperator", choices=("AND", "OR")),
    }


def _start_key(raw: dict[str, Any] | None) -> Item | None:
    if raw is None:
        return None
    start = {}
    for name, value in raw.items():
        try:
            start.update(check_values({name: value}))
        except ValidationException as exc:
            plain = any(marker in exc.message for marker in _START_KEY_PLAIN)
            prefix = "" if plain else "The provided starting key is invalid: "
            raise ValidationException(prefix + exc.message) from None
    return start


def index_of(schema: TableSchema, name: str | None, consistent: bool) -> IndexSchema | None:
    if name is None:
        return None
    index = schema.indexes.get(name)
    if index is None:
        raise ValidationException(f"The table does not have the specified index: {name}")
    if consistent and not index.local:
        raise ValidationException("Consistent reads are not supported on global secondary indexes")
    return index


def _check_start_key(
    schema: TableSchema, index: IndexSchema | None, start: Item, scan: bool
) -> None:
    names = schema.start_key_names(index)
    if len(start) != len(names):
        if scan and index is None:
            raise ValidationException(f"The provided starting key is invalid: {NOT_MATCHING}")
        raise ValidationException("The provided starting key is invalid")
    if index is not None:
        for name, kind in (index.hash_key, *([index.range_key] if index.range_key else [])):
            if name not in start:
                raise ValidationException("The provided starting key is invalid")
            check_key_part(start, name, kind, name == index.hash_key[0])
    table_key = {name: start[name] for name in schema.key_names if name in start}
    try:
        check_key(schema, table_key)
    except ValidationException as exc:
        raise ValidationException(f"The provided starting key is invalid: {exc.message}") from None


def select_and_fetch(
    select: str | None,
    found: ReadExpressions,
    index: IndexSchema | None,
    schema: TableSchema,
) -> tuple[str, bool]:
    """(the effective ``Select``, whether each item is read from the table)."""
    if select is None:
        select = (
            "SPECIFIC_ATTRIBUTES"
            if found.projection is not None
            else ("ALL_ATTRIBUTES" if index is None else "ALL_PROJECTED_ATTRIBUTES")
        )
    if index is None or index.projection == "ALL":
        return select, False
    if select == "ALL_ATTRIBUTES":
        if not index.local:
            raise ValidationException(
                "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not "
                f"supported for global secondary index {index.name} because its projection "
                "type is not ALL"
            )
        return select, True
    if index.local:
        # an LSI reads from the table what the request names and it does not hold
        held = set(schema.key_names) | set(index.key_names)
        if index.projection == "INCLUDE":
            held |= set(index.non_key_attributes)
        named = [*(found.projection or []), *found.filter_paths]
        return select, any(path[0] not in held for path in named)
    return select, False


def page(
    state: State,
    rows: Rows,
    ranges: Sequence[tuple[int, int]],
    reverse: bool,
    *,
    limit: int | None,
    found: ReadExpressions,
    select: str,
    start_names: tuple[str, ...],
    fetch: bool,
    units: bool = False,
) -> tuple[dict[str, Any], int]:
    """One page over ``ranges`` of ``rows``, read one after the other (see the module doc);
    also the bytes read, for read units (counted only when ``units``:
    ``ReturnConsumedCapacity`` asked for them)."""
    schema = state.schema
    range_name = schema.range_key[0] if schema.range_key else None
    count = scanned = size = read = 0
    items: list[Any] = []
    last: Item | None = None
    table_item: Callable[[Item], str] | None = None
    if fetch:

        def table_item(entry: Item) -> str:
            text = table_key_text(schema, entry)
            return state.rows.get(state.rows.keys.left(text))

    def full() -> bool:
        return (limit is not None and scanned >= limit) or size >= PAGE_BYTES

    for lo, hi in ranges:
        for _, text in rows.scan(lo, hi, reverse):
            if full():
                break
            entry = orjson.loads(text)
            scanned += 1
            size += page_size(entry, range_name)
            if units:
                read += item_size(entry)
            last = entry
            item, item_text = entry, text
            if table_item is not None:
                item_text = table_item(entry)
                item = orjson.loads(item_text)
            if found.filter is not None and not evaluate(found.filter, item):
                continue
            count += 1
            if select != "COUNT":
                items.append(output_item(item_text, item, found.projection))
        if full():
            break
    out: dict[str, Any] = {}
    if select != "COUNT":
        out["Items"] = items
    out["Count"] = count
    out["ScannedCount"] = scanned
    if full() and last is not None:
        out["LastEvaluatedKey"] = {name: last[name] for name in start_names}
    return out, read


def _after(component: str) -> str:
    """Just past every key whose next component is ``component`` (which ends in U+0000)."""
    return component[:-1] + "\x01"


def _successor(prefix: str) -> str | None:
    """The least text above every text starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)


def query_bounds(rows: Rows, key_range: KeyRange) -> tuple[int, int]:
    hash_value = key_range.hash_value
    prefix = keys.partition_hash(hash_value) + keys.component(hash_value)
    array = rows.keys
    lo = array.left(prefix)
    hi = array.left(_after(prefix), lo)
    test = key_range.range_test
    if test is None:
        return lo, hi

    def at(text: str) -> int:
        return array.left(prefix + text, lo, hi)

    first = keys.component(test.values[0])
    if test.operator == "EQ":
        return at(first), at(_after(first))
    if test.operator == "LT":
        return lo, at(first)
    if test.operator == "LE":
        return lo, at(_after(first))
    if test.operator == "GT":
        return at(_after(first)), hi
    if test.operator == "GE":
        return at(first), hi
    if test.operator == "BETWEEN":
        return at(first), at(_after(keys.component(test.values[1])))
    begins = keys.component_prefix(test.values[0])
    upper = _successor(begins)
    return at(begins), (hi if upper is None else at(upper))


def start_text(schema: TableSchema, index: IndexSchema | None, start: Item) -> str:
    if index is None:
        return table_key_text(schema, start)
    return index_key_text(schema, index, start)


def query(endpoint: Endpoint, body: Any) -> dict[str, Any]:
    request = Request(body)
    name = table_name(request)
    params = _common(request)
    forward = request.boolean("ScanIndexForward")
    key_conditions_raw = check_shapes(request, "KeyConditions")
    check_shapes(request, "QueryFilter")
    request.done()
    found = read_expressions(
        request,
        filters=True,
        key_condition=True,
        legacy=_LEGACY_QUERY,
        legacy_filter="QueryFilter",
    )
    start = _start_key(params["start"])
    if key_conditions_raw is None and not request.has("KeyConditionExpression"):
        raise ValidationException(
            "Either the KeyConditions or KeyConditionExpression parameter must be specified in "
            "the request."
        )
    found = compile_expressions(request, found)
    if found.key_condition is not None:
        tests = key_conditions(found.key_condition)
    else:
        assert key_conditions_raw is not None
        tests = {
            name: KeyTest(condition.operator, condition.values)
            for name, condition in check_conditions(key_conditions_raw).items()
        }
    check_select(request, params["select"], params["index_name"])
    table_at = endpoint.resolve(name)
    schema = table_at.schema
    index = index_of(schema, params["index_name"], params["consistent"])
    hash_key, range_key = (
        (index.hash_key, index.range_key) if index else (schema.hash_key, schema.range_key)
    )
    if start is not None:
        _check_start_key(schema, index, start, scan=False)
    key_range = fit(tests, hash_key, range_key)
    if start is not None:
        _check_start_in_range(start, key_range)
    check_key_paths(found.projection or [], schema)
    filtered = {path[0] for path in found.filter_paths}
    for key_name in (hash_key[0], *([range_key[0]] if range_key else [])):
        if key_name in filtered:
            raise ValidationException(
                f"{found.filter_source} can only contain non-primary key attributes: Primary "
                f"key attribute: {key_name}"
            )
    select, fetch = select_and_fetch(params["select"], found, index, schema)
    check_key_paths(found.filter_paths, schema)
    reverse = forward is False
    with endpoint.state(table_at) as state:
        rows = state.index(index) if index is not None else state.rows
        lo, hi = query_bounds(rows, key_range)
        if start is not None:
            text = start_text(schema, index, start)
            if reverse:
                hi = max(lo, rows.keys.left(text, lo, hi))
            else:
                lo = min(hi, rows.keys.right(text, lo, hi))
        return _answer(state, rows, (lo, hi), reverse, params, found, select, fetch, name, index)


def _answer(
    state: State,
    rows: Rows,
    bounds: tuple[int, int],
    reverse: bool,
    params: dict[str, Any],
    found: ReadExpressions,
    select: str,
    fetch: bool,
    name: str,
    index: IndexSchema | None,
) -> dict[str, Any]:
    """One Query or Scan page of ``rows[bounds]``, with the capacity it consumed when asked."""
    out, read = page(
        state,
        rows,
        [bounds],
        reverse,
        limit=params["limit"],
        found=found,
        select=select,
        start_names=state.schema.start_key_names(index),
        fetch=fetch,
        units=params["mode"] in ("TOTAL", "INDEXES"),
    )
    capacity = consumed(params["mode"], name, read_units(read, params["consistent"]), index)
    if capacity:
        out["ConsumedCapacity"] = capacity
    return out


def _check_start_in_range(start: Item, key_range: KeyRange) -> None:
    hash_value = start.get(key_range.hash_name)
    if key_range.range_test is None or key_range.range_name is None:
        if hash_value != key_range.hash_value:
            raise ValidationException(
                "The provided starting key is outside query boundaries based on provided conditions"
            )
        return
    range_value = start.get(key_range.range_name)
    if range_value is None or not matches(key_range.range_test, range_value):
        raise ValidationException(
            "The provided starting key does not match the range key predicate"
        )
    if hash_value != key_range.hash_value:
        raise ValidationException("The query can return at most one row and cannot be restarted")


def scan(endpoint: Endpoint, body: Any) -> dict[str, Any]:
    request = Request(body)
    name = table_name(request)
    params = _common(request)
    segment = request.integer("Segment", minimum=0, maximum=999999)
    total = request.integer("TotalSegments", minimum=1, maximum=1000000)
    check_shapes(request, "ScanFilter")
    request.done()
    found = read_expressions(request, filters=True, legacy=_LEGACY_SCAN, legacy_filter="ScanFilter")
    start = _start_key(params["start"])
    if segment and total is None:
        raise ValidationException(
            "The TotalSegments parameter is required but was not present in the request when "
            "Segment parameter is present"
        )
    if total:
        if segment is None:
            raise ValidationException(
                "The Segment parameter is required but was not present in the request when "
                "parameter TotalSegments is present"
            )
        if segment >= total:
            raise ValidationException(
                "The Segment parameter is zero-based and must be less than parameter "
                f"TotalSegments: Segment: {segment} is not less than TotalSegments: {total}"
            )
    found = compile_expressions(request, found)
    check_select(request, params["select"], params["index_name"])
    table_at = endpoint.resolve(name)
    schema = table_at.schema
    index = index_of(schema, params["index_name"], params["consistent"])
    if start is not None:
        _check_start_key(schema, index, start, scan=True)
    select, fetch = select_and_fetch(params["select"], found, index, schema)
    check_key_paths(found.projection or [], schema)
    check_key_paths(found.filter_paths, schema)
    with endpoint.state(table_at) as state:
        rows = state.index(index) if index is not None else state.rows
        lo, hi = 0, len(rows)
        if total and total > 1 and segment is not None:
            low_hash, high_hash = keys.segment_bounds(segment, total)
            lo = rows.keys.left(low_hash)
            hi = rows.keys.left(high_hash, lo)
        if start is not None:
            text = start_text(schema, index, start)
            if total and total > 1 and segment is not None:
                low_hash, high_hash = keys.segment_bounds(segment, total)
                if not low_hash <= text[: keys.HASH_DIGITS] < high_hash:
                    raise ValidationException(
                        "The provided starting key is invalid: Invalid ExclusiveStartKey. Please "
                        "use ExclusiveStartKey with correct Segment. TotalSegments: "
                        f"{total} Segment: {segment}"
                    )
            lo = min(hi, max(lo, rows.keys.right(text, lo, hi)))
        return _answer(state, rows, (lo, hi), False, params, found, select, fetch, name, index)
