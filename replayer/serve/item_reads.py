"""Reading items by key: ``GetItem``, ``BatchGetItem`` and ``TransactGetItems``.

A key is a binary search in the state's sorted keys and one row read (before the state is
sorted, an exact match on the fold's key column). ``BatchGetItem`` takes
at most 100 keys (no duplicates) and answers at most 16 MB of items: keys past that come back
in ``UnprocessedKeys``, with the table's projection and names, for the client to ask again
(the SDKs' batch helpers do). ``TransactGetItems`` reads up to 100 items, each at most once,
all-or-nothing: a state is immutable, so the items of one instant are always consistent with
each other — the isolation DynamoDB's transactions promise holds trivially.
"""

from __future__ import annotations

from typing import Any

import orjson

from archiver.format.codec import canonical_json
from replayer.serve.dynamodb_errors import ValidationException
from replayer.serve.endpoint import Endpoint
from replayer.serve.reading import (
    check_key,
    check_key_paths,
    check_values,
    compile_expressions,
    consumed,
    output_item,
    read_expressions,
    read_units,
    table_key_text,
)
from replayer.serve.request_shapes import CONSUMED_CAPACITY_VALUES, Request, table_name
from replayer.serve.state import State
from replayer.serve.values import Item, item_size

BATCH_GET_LIMIT = 100
BATCH_GET_BYTES = 16 * 1024 * 1024
TRANSACT_GET_LIMIT = 100


def _lookup(state: State, key: Item) -> str | None:
    return state.lookup(canonical_json(key), table_key_text(state.schema, key))


def get_item(endpoint: Endpoint, body: Any) -> dict[str, Any]:
    request = Request(body)
    name = table_name(request)
    request.mapping("Key", required=True)
    consistent = bool(request.boolean("ConsistentRead"))
    mode = request.string("ReturnConsumedCapacity", choices=CONSUMED_CAPACITY_VALUES)
    request.done()
    found = read_expressions(request)
    key = check_values(body["Key"])
    found = compile_expressions(request, found)
    table_at = endpoint.resolve(name)
    check_key(table_at.schema, key)
    check_key_paths(found.projection or [], table_at.schema)
    with endpoint.state(table_at) as state:
        text = _lookup(state, key)
    out: dict[str, Any] = {}
    size = 0
    if text is not None:
        item = orjson.loads(text)
        size = item_size(item)
        out["Item"] = output_item(text, item, found.projection)
    capacity = consumed(mode, name, read_units(size, consistent))
    if capacity:
        out["ConsumedCapacity"] = capacity
    return out


def _batch_table(request: Request, name: str) -> tuple[Any, list[Item], Any]:
    """One table's part of a ``BatchGetItem``: (its checked expressions, keys, raw keys)."""
    part = request.body["RequestItems"][name]
    table_request = Request(part)
    table_request.required("Keys")
    raw_keys = part["Keys"]
    if not isinstance(raw_keys, list):
        raise ValidationException("Keys must be a list")
    table_request.boolean("ConsistentRead")
    table_request.done()
    found = read_expressions(table_request)
    found = compile_expressions(table_request, found)
    checked: list[Item] = []
    seen: set[str] = set()
    for raw in raw_keys:
        key = check_values(raw)
        marker = orjson.dumps(key, option=orjson.OPT_SORT_KEYS).decode()
        if marker in seen:
            raise ValidationException("Provided list of item keys contains duplicates")
        seen.add(marker)
        checked.append(key)
    return (table_request, found), checked, raw_keys


def batch_get_item(endpoint: Endpoint, body: Any) -> dict[str, Any]:
    request = Request(body)
    items = request.mapping("RequestItems", required=True)
    mode = request.string("ReturnConsumedCapacity", choices=CONSUMED_CAPACITY_VALUES)
    request.done()
    assert items is not None
    if not items:
        raise ValidationException(
            "1 validation error detected: Value '{}' at 'requestItems' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1"
        )
    parts = {}
    total = 0
    for name in items:
        parts[name] = _batch_table(request, name)
        total += len(parts[name][1])
        if total > BATCH_GET_LIMIT:
            raise ValidationException("Too many items requested for the BatchGetItem call")
    responses: dict[str, list[Any]] = {}
    unprocessed: dict[str, Any] = {}
    capacities: dict[str, float] = {}
    answered = 0
    for name, ((table_request, found), keys, raw_keys) in parts.items():
        table_at = endpoint.resolve(name)
        for key in keys:
            check_key(table_at.schema, key)
        check_key_paths(found.projection or [], table_at.schema)
        consistent = bool(table_request.boolean("ConsistentRead"))
        out = responses.setdefault(name, [])
        with endpoint.state(table_at) as state:
            for index, key in enumerate(keys):
                text = _lookup(state, key)
                size = 0
                if text is not None:
                    item = orjson.loads(text)
                    size = item_size(item)
                    answer = output_item(text, item, found.projection)
                    # the limit is on what is answered: a projection answers less
                    sent = size if found.projection is None else item_size(answer)
                    if answered + sent > BATCH_GET_BYTES:
                        left = {k: v for k, v in table_request.body.items() if k != "Keys"}
                        unprocessed[name] = {**left, "Keys": raw_keys[index:]}
                        break
                    answered += sent
                    out.append(answer)
                capacities[name] = capacities.get(name, 0.0) + read_units(size, consistent)
    result: dict[str, Any] = {"Responses": responses, "UnprocessedKeys": unprocessed}
    if mode in ("TOTAL", "INDEXES"):
        result["ConsumedCapacity"] = [consumed(mode, n, units) for n, units in capacities.items()]
    return result


def transact_get_items(endpoint: Endpoint, body: Any) -> dict[str, Any]:
    request = Request(body)
    request.required("TransactItems")
    mode = request.string("ReturnConsumedCapacity", choices=CONSUMED_CAPACITY_VALUES)
    transact = body["TransactItems"]
    if not isinstance(transact, list):
        raise ValidationException("TransactItems must be a list")
    if not 1 <= len(transact) <= TRANSACT_GET_LIMIT:
        raise ValidationException(
            f"1 validation error detected: Value '{transact}' at 'transactItems' failed to "
            "satisfy constraint: Member must have length "
            + (
                "greater than or equal to 1"
                if not transact
                else f"less than or equal to {TRANSACT_GET_LIMIT}"
            )
        )
    request.done()
    reads = []
    for entry in transact:
        get = entry.get("Get") if isinstance(entry, dict) else None
        if not isinstance(get, dict):
            raise ValidationException(
                "1 validation error detected: Value null at 'transactItems.1.member.get' failed "
                "to satisfy constraint: Member must not be null"
            )
        get_request = Request(get)
        name = table_name(get_request)
        get_request.mapping("Key", required=True)
        get_request.done()
        found = read_expressions(get_request, legacy=())
        key = check_values(get["Key"])
        found = compile_expressions(get_request, found)
        reads.append((name, key, found))
    seen: set[tuple[Any, ...]] = set()
    resolved = []
    for name, key, found in reads:
        table_at = endpoint.resolve(name)
        check_key(table_at.schema, key)
        check_key_paths(found.projection or [], table_at.schema)
        # one item at one instant: the same key at two instants is two versions of it
        marker = (*table_at.key, table_key_text(table_at.schema, key))
        if marker in seen:
            raise ValidationException(
                "Transaction request cannot include multiple operations on one item"
            )
        seen.add(marker)
        resolved.append((table_at, key, found))
    answers: list[dict[str, Any]] = []
    capacities: dict[str, float] = {}
    for table_at, key, found in resolved:
        with endpoint.state(table_at) as state:
            text = _lookup(state, key)
        size = 0
        if text is None:
            answers.append({})
        else:
            item = orjson.loads(text)
            size = item_size(item)
            answers.append({"Item": output_item(text, item, found.projection)})
        # Transactional reads cost twice a strongly consistent read.
        capacities[table_at.requested] = capacities.get(table_at.requested, 0.0) + 2 * read_units(
            size, True
        )
    result: dict[str, Any] = {"Responses": answers}
    if mode in ("TOTAL", "INDEXES"):
        result["ConsumedCapacity"] = [consumed(mode, n, units) for n, units in capacities.items()]
    return result
