"""``ExecuteStatement``: a PartiQL ``SELECT`` answered as the Query or Scan DynamoDB runs for it.

DynamoDB turns a ``SELECT`` into a Query when its WHERE clause pins the partition key of the
table (or of the index named ``"table"."index"``) — ``pk = v``, ``pk IN [v, …]`` or
``pk = v OR pk = w`` as the clause or one of its ``AND``-ed terms — and into a full Scan
otherwise. So does this endpoint: one key range per partition value, in the order written,
narrowed by the first ``AND``-ed condition on the sort key that a key condition could state
(``=``, ``<``, ``<=``, ``>``, ``>=``, ``BETWEEN``, ``begins_with`` with a value of the key's
type); the whole WHERE clause is then the filter, evaluated by the evaluator
``FilterExpression`` uses. Pages are the Query/Scan pages (:func:`replayer.serve.query_scan.page`):
``Limit`` items evaluated or 1 MB read; a page that stopped carries ``LastEvaluatedKey`` and
a ``NextToken`` that resumes after it — bound to the statement and its parameters (another
statement with it is ``NextToken does not match request``).

The table name is resolved as every operation resolves it: ``"orders@2026-01-31T12:00:00Z"``
reads that instant, a bare ``orders`` the server's default. ``ORDER BY`` names key
attributes of what is read and needs a WHERE clause that pins one partition value; the sort
key's ``DESC`` reads the partition backwards. ``IN`` takes at most 50 partition key values
and 100 other values, as DynamoDB's does.

``INSERT``, ``UPDATE``, ``DELETE`` (and ``BatchExecuteStatement`` or ``ExecuteTransaction``
holding one) are refused as every write is: ``AccessDeniedException``, read-only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from replayer.serve import expression_syntax as syntax
from replayer.serve.dynamodb_errors import (
    SerializationException,
    UnknownOperationException,
    ValidationException,
    read_only,
)
from replayer.serve.endpoint import Endpoint
from replayer.serve.expression_checks import Placeholders
from replayer.serve.key_conditions import KeyRange, KeyTest
from replayer.serve.partiql_syntax import (
    WRITE_KEYWORDS,
    Select,
    first_keyword,
    parse_select,
)
from replayer.serve.query_scan import index_of, page, query_bounds, select_and_fetch, start_text
from replayer.serve.reading import ReadExpressions, check_key_part, consumed, read_units
from replayer.serve.request_shapes import CONSUMED_CAPACITY_VALUES, Request
from replayer.serve.schema import IndexSchema, KeyPart, TableSchema
from replayer.serve.state import Rows
from replayer.serve.values import AttributeValue, Item, check_value, compare_scalars, type_of

MULTI_STATEMENT = frozenset({"BatchExecuteStatement", "ExecuteTransaction"})
MAX_PARTITION_VALUES = 50
MAX_IN_VALUES = 100
_RANGE_OPERATORS = {"=": "EQ", "<": "LT", "<=": "LE", ">": "GT", ">=": "GE"}
_FLIPPED = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_PARAMETER_PREFIX = "One or more parameter values were invalid: "


@dataclass(frozen=True)
class ReadPlan:
    """How a ``SELECT`` reads: ``partitions`` None for a Scan, else the partition key values
    (each one key range, narrowed by ``range_test``)."""

    hash_key: KeyPart
    range_key: KeyPart | None
    partitions: list[AttributeValue] | None
    range_test: KeyTest | None
    reverse: bool


def _conjuncts(condition: syntax.Condition) -> list[syntax.Condition]:
    return list(condition.operands) if isinstance(condition, syntax.And) else [condition]


def _names(operand: syntax.Operand, name: str) -> bool:
    """Whether ``operand`` is the top-level attribute ``name``."""
    return isinstance(operand, syntax.Path) and operand.resolved() == (name,)


def _value(operand: syntax.Operand) -> AttributeValue | None:
    return operand.value if isinstance(operand, syntax.ValueRef) else None


def _pinned(condition: syntax.Condition, name: str) -> list[AttributeValue] | None:
    """The values ``condition`` restricts attribute ``name`` to (None: it does not)."""
    if isinstance(condition, syntax.Comparison) and condition.op == "=":
        for one, other in ((condition.left, condition.right), (condition.right, condition.left)):
            value = _value(other)
            if _names(one, name) and value is not None:
                return [value]
        return None
    if isinstance(condition, syntax.In) and _names(condition.subject, name):
        values = [value for value in map(_value, condition.options) if value is not None]
        return values if len(values) == len(condition.options) else None
    if isinstance(condition, syntax.Or):
        found: list[AttributeValue] = []
        for operand in condition.operands:
            pinned = _pinned(operand, name)
            if pinned is None:
                return None
            found += pinned
        return found
    return None


def _range_test(condition: syntax.Condition, range_key: KeyPart) -> KeyTest | None:
    """A key condition on the sort key that ``condition`` implies (None: none)."""
    name, kind = range_key
    test: KeyTest | None = None
    if isinstance(condition, syntax.Comparison) and condition.op in _RANGE_OPERATORS:
        if _names(condition.left, name) and _value(condition.right) is not None:
            test = KeyTest(_RANGE_OPERATORS[condition.op], (_value(condition.right) or {},))
        elif _names(condition.right, name) and _value(condition.left) is not None:
            op = _FLIPPED[condition.op]
            test = KeyTest(_RANGE_OPERATORS[op], (_value(condition.left) or {},))
    elif isinstance(condition, syntax.Between) and _names(condition.subject, name):
        low, high = _value(condition.low), _value(condition.high)
        order = compare_scalars(low, high) if low is not None and high is not None else None
        if low is not None and high is not None and order is not None and order <= 0:
            test = KeyTest("BETWEEN", (low, high))
    elif isinstance(condition, syntax.FunctionCondition) and condition.call.name == "begins_with":
        first, prefix = condition.call.args
        value = _value(prefix)
        if _names(first, name) and value is not None and kind in ("S", "B"):
            test = KeyTest("BEGINS_WITH", (value,))
    if test is None or any(type_of(value) != kind for value in test.values):
        return None
    return test


def _check_in_sizes(condition: syntax.Condition | None) -> None:
    if isinstance(condition, syntax.In) and len(condition.options) > MAX_IN_VALUES:
        raise ValidationException(
            f"IN takes at most {MAX_IN_VALUES} values ({len(condition.options)} given)"
        )
    if isinstance(condition, syntax.And | syntax.Or):
        for operand in condition.operands:
            _check_in_sizes(operand)
    elif isinstance(condition, syntax.Not):
        _check_in_sizes(condition.operand)


def plan_read(select: Select, schema: TableSchema, index: IndexSchema | None) -> ReadPlan:
    """Query or Scan, as DynamoDB decides for this statement (see the module doc).

    Raises:
        ValidationException: an ``ORDER BY`` DynamoDB refuses, too many ``IN`` values.
    """
    hash_key, range_key = (
        (index.hash_key, index.range_key) if index else (schema.hash_key, schema.range_key)
    )
    _check_in_sizes(select.where)
    partitions: list[AttributeValue] | None = None
    range_test: KeyTest | None = None
    if select.where is not None:
        terms = _conjuncts(select.where)
        for term in terms:
            partitions = _pinned(term, hash_key[0])
            if partitions is not None:
                break
        if partitions is not None:
            if len(partitions) > MAX_PARTITION_VALUES:
                raise ValidationException(
                    f"IN takes at most {MAX_PARTITION_VALUES} partition key values "
                    f"({len(partitions)} given)"
                )
            distinct: list[AttributeValue] = []
            for value in partitions:  # a value of another type matches no item
                if type_of(value) == hash_key[1] and value not in distinct:
                    distinct.append(value)
            partitions = distinct
            if range_key is not None:
                tests = (_range_test(term, range_key) for term in terms)
                range_test = next((test for test in tests if test is not None), None)
    reverse = False
    if select.order_by:
        key_names = (hash_key[0], *([range_key[0]] if range_key else []))
        if select.where is None:
            raise ValidationException(
                "Must have WHERE clause in the statement when using ORDER BY clause."
            )
        for key in select.order_by:
            if key.name not in key_names:
                raise ValidationException(
                    f"ORDER BY takes only key attributes of the table or index read: "
                    f"{key.name} is not one ({', '.join(key_names)})"
                )
        if partitions is None or len(partitions) > 1:
            raise ValidationException(
                "ORDER BY needs a WHERE clause that selects one partition key value with = "
                f"on {hash_key[0]} (otherwise DynamoDB reads the table by Scan, unordered)"
            )
        reverse = any(k.descending for k in select.order_by if range_key and k.name == range_key[0])
    return ReadPlan(hash_key, range_key, partitions, range_test, reverse)


# -- the request ---------------------------------------------------------------------------


def _parameters(body: dict[str, Any]) -> list[AttributeValue]:
    raw = body.get("Parameters")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SerializationException("Unexpected field type")
    if not raw:
        raise ValidationException(
            "1 validation error detected: Value '[]' at 'parameters' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1"
        )
    return [check_value(value, _PARAMETER_PREFIX) for value in raw]


def _digest(statement: str, parameters: Sequence[AttributeValue]) -> str:
    material = orjson.dumps([statement, list(parameters)], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(material).hexdigest()[:32]


def _encode_token(digest: str, last: Item) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"d": digest, "k": last})).decode("ascii")


def _decode_token(token: str, digest: str, schema: TableSchema, index: IndexSchema | None) -> Item:
    """The ``LastEvaluatedKey`` a ``NextToken`` resumes after, checked against the request."""
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise ValidationException("Invalid NextToken") from None
    if not isinstance(decoded, dict) or decoded.get("d") != digest:
        raise ValidationException("NextToken does not match request")
    start = decoded.get("k")
    names = schema.start_key_names(index)
    if not isinstance(start, dict) or sorted(start) != sorted(names):
        raise ValidationException("Invalid NextToken")
    parts = [schema.hash_key, *([schema.range_key] if schema.range_key else [])]
    if index is not None:
        parts += [index.hash_key, *([index.range_key] if index.range_key else [])]
    try:
        for name, kind in parts:
            check_key_part(start, name, kind, is_hash=True)
    except (ValidationException, TypeError, AttributeError):
        raise ValidationException("Invalid NextToken") from None
    return start


def _ranges(
    rows: Rows,
    plan: ReadPlan,
    start: Item | None,
    schema: TableSchema,
    index: IndexSchema | None,
) -> list[tuple[int, int]]:
    """The key ranges to read, in order, resuming after ``start``."""
    text = start_text(schema, index, start) if start is not None else None
    if plan.partitions is None:
        lo = 0 if text is None else rows.keys.right(text)
        return [(lo, len(rows))]
    partitions = plan.partitions
    if start is not None:
        resumed = start[plan.hash_key[0]]
        if resumed not in partitions:
            raise ValidationException("Invalid NextToken")
        partitions = partitions[partitions.index(resumed) :]
    ranges = []
    for value in partitions:
        key_range = KeyRange(
            plan.hash_key[0],
            value,
            plan.range_key[0] if plan.range_key else None,
            plan.range_test,
        )
        ranges.append(query_bounds(rows, key_range))
    if text is not None and ranges:
        lo, hi = ranges[0]
        if plan.reverse:
            ranges[0] = (lo, max(lo, rows.keys.left(text, lo, hi)))
        else:
            ranges[0] = (min(hi, rows.keys.right(text, lo, hi)), hi)
    return ranges


def execute_statement(endpoint: Endpoint, body: Any) -> dict[str, Any]:
    """``ExecuteStatement`` (see the module doc)."""
    request = Request(body)
    statement = request.string("Statement", required=True, min_length=1, max_length=8192)
    consistent = bool(request.boolean("ConsistentRead"))
    limit = request.integer("Limit", minimum=1)
    token = request.string("NextToken", min_length=1, max_length=32768)
    mode = request.string("ReturnConsumedCapacity", choices=CONSUMED_CAPACITY_VALUES)
    request.string("ReturnValuesOnConditionCheckFailure", choices=("ALL_OLD", "NONE"))
    request.done()
    assert statement is not None
    parameters = _parameters(request.body)
    keyword = first_keyword(statement)
    if keyword in WRITE_KEYWORDS:
        raise read_only(f"ExecuteStatement ({keyword})")
    if keyword != "SELECT":
        shown = keyword or statement.strip()[:20]
        raise ValidationException(
            f"Statement wasn't well formed, can't be processed: '{shown}' starts no statement "
            "ddb-replayer serve answers (SELECT; INSERT, UPDATE and DELETE are refused)"
        )
    select = parse_select(statement, parameters)
    table_at = endpoint.resolve(select.table)
    schema = table_at.schema
    index = index_of(schema, select.index, consistent)
    plan = plan_read(select, schema, index)
    found = ReadExpressions(select.projection, select.where, None, Placeholders({}, {}))
    chosen, fetch = select_and_fetch(None, found, index, schema)
    digest = _digest(statement, parameters)
    start = _decode_token(token, digest, schema, index) if token is not None else None
    with endpoint.state(table_at) as state:
        rows = state.index(index) if index is not None else state.rows
        out, read = page(
            state,
            rows,
            _ranges(rows, plan, start, schema, index),
            plan.reverse,
            limit=limit,
            found=found,
            select=chosen,
            start_names=schema.start_key_names(index),
            fetch=fetch,
            units=mode in ("TOTAL", "INDEXES"),
        )
    answer: dict[str, Any] = {"Items": out["Items"]}
    last = out.get("LastEvaluatedKey")
    if last is not None:
        answer["NextToken"] = _encode_token(digest, last)
        answer["LastEvaluatedKey"] = last
    capacity = consumed(mode, select.table, read_units(read, consistent), index)
    if capacity:
        answer["ConsumedCapacity"] = capacity
    return answer


def refuse_many(operation: str, body: Any) -> None:
    """``BatchExecuteStatement`` and ``ExecuteTransaction``: read-only when a statement writes,
    otherwise not answered (each ``SELECT`` can be sent with ``ExecuteStatement``)."""
    field = "Statements" if operation == "BatchExecuteStatement" else "TransactStatements"
    entries = body.get(field) if isinstance(body, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        statement = entry.get("Statement") if isinstance(entry, dict) else None
        if isinstance(statement, str) and first_keyword(statement) in WRITE_KEYWORDS:
            raise read_only(operation)
    raise UnknownOperationException(
        f"ddb-replayer serve does not answer {operation}: send each SELECT with ExecuteStatement"
    )
