"""A Query's key condition: from a checked expression to "this partition key, that range".

DynamoDB accepts in a ``KeyConditionExpression`` only an equality on the partition key,
optionally ``AND`` one condition on the sort key (``=``, ``<``, ``<=``, ``>``, ``>=``,
``BETWEEN``, ``begins_with``); the key attribute may stand on either side of a comparison.
Everything else is refused with DynamoDB's messages — in two steps, as DynamoDB does: the
shape of the expression first (:func:`key_conditions`, before the table is looked up), then
its fit to the table's or index's keys (:func:`fit`).
"""

from __future__ import annotations

from dataclasses import dataclass

from replayer.serve import expression_syntax as syntax
from replayer.serve.dynamodb_errors import ValidationException
from replayer.serve.values import AttributeValue, compare_scalars, type_of

_FLIPPED = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_OPERATORS = {"=": "EQ", "<": "LT", "<=": "LE", ">": "GT", ">=": "GE"}
_ALLOWED_TYPES = {
    "EQ": ("S", "N", "B", "SS", "NS", "BS"),
    "LT": ("S", "N", "B"),
    "LE": ("S", "N", "B"),
    "GT": ("S", "N", "B"),
    "GE": ("S", "N", "B"),
    "BETWEEN": ("S", "N", "B"),
    "BEGINS_WITH": ("S", "B"),
}
_NOT_INDEXABLE = ("NULL", "NOT_NULL", "NE", "CONTAINS", "NOT_CONTAINS", "IN")


@dataclass(frozen=True)
class KeyTest:
    """One condition on one key attribute: ``EQ``, ``LT``, …, ``BETWEEN``, ``BEGINS_WITH``."""

    operator: str
    values: tuple[AttributeValue, ...]


@dataclass(frozen=True)
class KeyRange:
    """What a Query reads: one partition, and optionally a range of its sort keys."""

    hash_name: str
    hash_value: AttributeValue
    range_name: str | None
    range_test: KeyTest | None


def _error(message: str) -> ValidationException:
    return ValidationException(message)


def key_conditions(condition: syntax.Condition) -> dict[str, KeyTest]:
    """The conditions per key attribute of a checked ``KeyConditionExpression``.

    Raises:
        ValidationException: an operator DynamoDB does not allow there, a nested path or
            operation, a condition without (or with two) key attributes, a key twice.
    """
    found: dict[str, KeyTest] = {}
    _walk(condition, found)
    for name, test in found.items():
        allowed = _ALLOWED_TYPES[test.operator]
        for value in test.values:
            if type_of(value) not in allowed:
                raise _error(
                    "One or more parameter values were invalid: ComparisonOperator "
                    f"{test.operator} is not valid for {type_of(value)} AttributeValue type"
                )
        del name
    return found


def _walk(node: syntax.Condition, found: dict[str, KeyTest]) -> None:
    if isinstance(node, syntax.Or):
        raise _error("Invalid operator used in KeyConditionExpression: OR")
    if isinstance(node, syntax.Not):
        raise _error("Invalid operator used in KeyConditionExpression: NOT")
    if isinstance(node, syntax.In):
        raise _error("Invalid operator used in KeyConditionExpression: IN")
    if isinstance(node, syntax.Comparison) and node.op == "<>":
        raise _error("Invalid operator used in KeyConditionExpression: <>")
    if isinstance(node, syntax.FunctionCondition) and node.call.name != "begins_with":
        raise _error(f"Invalid operator used in KeyConditionExpression: {node.call.name}")
    if isinstance(node, syntax.SizeCondition):
        raise _error("KeyConditionExpressions cannot contain nested operations")
    if isinstance(node, syntax.And):
        for child in node.operands:
            _walk(child, found)
        return
    if isinstance(node, syntax.Between) and not isinstance(node.subject, syntax.Path):
        raise _error(
            "Invalid condition in KeyConditionExpression: BETWEEN operator must have the key "
            "attribute as its first operand"
        )
    operands: list[syntax.Operand]
    if isinstance(node, syntax.FunctionCondition):
        if not isinstance(node.call.args[0], syntax.Path):
            raise _error(
                "Invalid condition in KeyConditionExpression: begins_with operator must have "
                "the key attribute as its first operand"
            )
        operands = list(node.call.args)
    elif isinstance(node, syntax.Between):
        operands = [node.subject, node.low, node.high]
    else:
        assert isinstance(node, syntax.Comparison)
        operands = [node.left, node.right]
    name = ""
    position = 0
    for index, operand in enumerate(operands):
        if isinstance(operand, syntax.Path):
            if name:
                raise _error(
                    "Invalid condition in KeyConditionExpression: Multiple attribute names "
                    "used in one condition"
                )
            if len(operand.steps) > 1:
                raise _error("KeyConditionExpressions cannot have conditions on nested attributes")
            name = str(operand.resolved()[0])
            position = index
        elif isinstance(operand, syntax.Call):
            raise _error("KeyConditionExpressions cannot contain nested operations")
    if not name:
        raise _error("Invalid condition in KeyConditionExpression: No key attribute specified")
    if name in found:
        raise _error("KeyConditionExpressions must only contain one condition per key")
    values = tuple(
        op.value for op in operands if isinstance(op, syntax.ValueRef) and op.value is not None
    )
    if isinstance(node, syntax.FunctionCondition):
        found[name] = KeyTest("BEGINS_WITH", values)
    elif isinstance(node, syntax.Between):
        found[name] = KeyTest("BETWEEN", values)
    else:
        assert isinstance(node, syntax.Comparison)
        op = node.op if position == 0 else _FLIPPED[node.op]
        found[name] = KeyTest(_OPERATORS[op], values)


def fit(
    tests: dict[str, KeyTest],
    hash_key: tuple[str, str],
    range_key: tuple[str, str] | None,
) -> KeyRange:
    """The key range the conditions select on a table or index with these keys
    (``(name, type)``).

    Raises:
        ValidationException: a key missing, an extra condition, a type that is not the
            key's, a partition key not compared with ``=``.
    """
    if len(tests) not in (1, 2):
        raise _error("Conditions can be of length 1 or 2 only")
    for name, kind in (hash_key, *([range_key] if range_key else [])):
        is_hash = name == hash_key[0]
        if is_hash and range_key is None and len(tests) > 1:
            raise _error("Query key condition not supported")
        test = tests.get(name)
        if test is None:
            if is_hash or len(tests) > 1:
                raise _error(f"Query condition missed key schema element: {name}")
            continue
        if test.operator in _NOT_INDEXABLE:
            raise _error("Attempted conditional constraint is not an indexable operation")
        if any(type_of(value) != kind for value in test.values):
            raise _error(
                "One or more parameter values were invalid: Condition parameter type does not "
                "match schema type"
            )
        if is_hash and test.operator != "EQ":
            raise _error("Query key condition not supported")
    range_test = tests.get(range_key[0]) if range_key else None
    if range_test is not None and range_test.operator == "BETWEEN":
        low, high = range_test.values
        if (compare_scalars(low, high) or 0) > 0:
            raise _error(
                "The BETWEEN condition was provided a range where the lower bound is greater "
                "than the upper bound"
            )
    return KeyRange(
        hash_name=hash_key[0],
        hash_value=tests[hash_key[0]].values[0],
        range_name=range_key[0] if range_key else None,
        range_test=range_test,
    )


def matches(test: KeyTest, value: AttributeValue) -> bool:
    """Whether a sort key value satisfies ``test`` (used to check a start key)."""
    order = compare_scalars(value, test.values[0])
    if test.operator == "BEGINS_WITH":
        tag = type_of(value)
        if tag == "S":
            return bool(value["S"].startswith(test.values[0]["S"]))
        from replayer.serve.values import raw_bytes

        return raw_bytes(value).startswith(raw_bytes(test.values[0]))
    if order is None:
        return False
    if test.operator == "EQ":
        return order == 0
    if test.operator == "LT":
        return order < 0
    if test.operator == "LE":
        return order <= 0
    if test.operator == "GT":
        return order > 0
    if test.operator == "GE":
        return order >= 0
    high = compare_scalars(value, test.values[1])
    return order >= 0 and high is not None and high <= 0
