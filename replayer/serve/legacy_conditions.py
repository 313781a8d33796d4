"""The legacy conditions — ``QueryFilter``, ``ScanFilter``, ``KeyConditions`` with
``ConditionalOperator`` — checked as DynamoDB checks them and turned into the condition tree a
``FilterExpression`` parses to, so one evaluator answers both.

Each ``{attribute: {"ComparisonOperator": OP, "AttributeValueList": [...]}}`` names one
top-level attribute and becomes the expression DynamoDB documents as its equivalent::

    EQ a = v        NE a <> v       LT/LE/GT/GE a < v …   BETWEEN a BETWEEN v1 AND v2
    IN a IN (v1, …) NOT_NULL attribute_exists(a)      NULL attribute_not_exists(a)
    CONTAINS contains(a, v)  NOT_CONTAINS NOT contains(a, v)  BEGINS_WITH begins_with(a, v)

joined with ``AND`` (the default) or ``OR`` (``ConditionalOperator``). The evaluator's
semantics are therefore the expressions' (:mod:`replayer.serve.expression_eval`): ``NE`` and
``NOT_CONTAINS`` are true on a missing attribute, values of another type never match, ``CONTAINS``
finds a substring of an S or B, a member of a set, an element of a list.

The checks and their messages are DynamoDB's, as the dynalite project recorded them from the
service and as a suite run against DynamoDB itself records the ``ConditionalOperator`` rules:
the shape of each condition (``ComparisonOperator`` required, one of the thirteen), then per
condition its values, their number (``NULL``/``NOT_NULL`` none, ``BETWEEN`` two, ``IN`` one or
more, the others one), one type across them, a type the operator takes (``EQ``/``NE`` also
sets; ``BEGINS_WITH`` S or B; the rest S, N or B), ``BETWEEN``'s bounds in order; and
``ConditionalOperator`` only with a filter of two conditions or more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from replayer.serve import expression_syntax as syntax
from replayer.serve.dynamodb_errors import SerializationException, ValidationException
from replayer.serve.request_shapes import Request
from replayer.serve.values import AttributeValue, check_value, compare_scalars, type_of

# DynamoDB's order in its enum message
OPERATORS = (
    "IN",
    "NULL",
    "BETWEEN",
    "LT",
    "NOT_CONTAINS",
    "EQ",
    "GT",
    "NOT_NULL",
    "NE",
    "LE",
    "BEGINS_WITH",
    "GE",
    "CONTAINS",
)
_SCALARS = ("S", "N", "B")
_COUNTS: dict[str, tuple[int, int | None]] = {
    "NULL": (0, 0),
    "NOT_NULL": (0, 0),
    "IN": (1, None),
    "BETWEEN": (2, 2),
}
_TYPES: dict[str, tuple[str, ...]] = {
    "EQ": (*_SCALARS, "SS", "NS", "BS"),
    "NE": (*_SCALARS, "SS", "NS", "BS"),
    "BEGINS_WITH": ("S", "B"),
}
_INVALID = "One or more parameter values were invalid: "
_COMPARISONS = {"EQ": "=", "NE": "<>", "LT": "<", "LE": "<=", "GT": ">", "GE": ">="}


@dataclass(frozen=True)
class LegacyCondition:
    """One checked condition: its operator and its (canonical) values."""

    operator: str
    values: tuple[AttributeValue, ...]


def check_shapes(request: Request, name: str) -> dict[str, Any] | None:
    """The condition map ``name`` of ``request``, its structure checked: JSON types
    (``SerializationException`` at once) and ``ComparisonOperator``'s constraints (recorded
    on ``request``, reported by :meth:`Request.done` with the others)."""
    conditions = request.mapping(name)
    if conditions is None:
        return None
    for attribute, condition in conditions.items():
        if isinstance(condition, list):
            raise SerializationException("Start of list found where not expected")
        if not isinstance(condition, dict):
            raise SerializationException("Unexpected field type")
        values = condition.get("AttributeValueList")
        if values is not None and not isinstance(values, list):
            if isinstance(values, dict):
                raise SerializationException("Start of structure or map found where not expected")
            raise SerializationException("Unexpected field type")
        operator = Request(condition).string("ComparisonOperator")
        where = f"{name}.{attribute}.member.comparisonOperator"
        if operator is None:
            request.constraint(where, None, "Member must not be null")
        elif operator not in OPERATORS:
            request.constraint(
                where, operator, f"Member must satisfy enum value set: [{', '.join(OPERATORS)}]"
            )
    return conditions


def check_conditional_operator(body: Mapping[str, Any], filter_name: str) -> None:
    """``ConditionalOperator`` only with a ``filter_name`` of two conditions or more."""
    if body.get("ConditionalOperator") is None:
        return
    conditions = body.get(filter_name) or {}
    if not conditions:
        raise ValidationException("ConditionalOperator cannot be used without Filter or Expected")
    if len(conditions) < 2:
        raise ValidationException(
            "ConditionalOperator can only be used when Filter or Expected has two or more elements"
        )


def _count_fits(operator: str, count: int) -> bool:
    low, high = _COUNTS.get(operator, (1, 1))
    return count >= low and (high is None or count <= high)


def check_conditions(raw: Mapping[str, Any] | None) -> dict[str, LegacyCondition]:
    """The conditions of a shape-checked map, each checked as DynamoDB checks it.

    Raises:
        SerializationException / ValidationException: a value DynamoDB refuses, the wrong
            number of values for the operator, values of two types, a type the operator
            does not take, ``BETWEEN`` bounds out of order.
    """
    found: dict[str, LegacyCondition] = {}
    for attribute, condition in (raw or {}).items():
        operator = str(condition["ComparisonOperator"])
        values = tuple(check_value(value) for value in condition.get("AttributeValueList") or [])
        if not _count_fits(operator, len(values)):
            raise ValidationException(
                f"{_INVALID}Invalid number of argument(s) for the {operator} ComparisonOperator"
            )
        if len({type_of(value) for value in values}) > 1:
            raise ValidationException(
                f"{_INVALID}AttributeValues inside AttributeValueList must be of same type"
            )
        allowed = _TYPES.get(operator, _SCALARS)
        for value in values:
            if type_of(value) not in allowed:
                raise ValidationException(
                    f"{_INVALID}ComparisonOperator {operator} is not valid for "
                    f"{type_of(value)} AttributeValue type"
                )
        if operator == "BETWEEN" and (compare_scalars(values[0], values[1]) or 0) > 0:
            raise ValidationException(
                "The BETWEEN condition was provided a range where the lower bound is greater "
                "than the upper bound"
            )
        found[attribute] = LegacyCondition(operator, values)
    return found


def _translated(attribute: str, condition: LegacyCondition) -> syntax.Condition:
    path = syntax.Path([syntax.Name(attribute, placeholder=True, resolved=attribute)])
    values: list[syntax.Operand] = [
        syntax.ValueRef(f":{condition.operator.lower()}{i}", value)
        for i, value in enumerate(condition.values)
    ]
    operator = condition.operator
    if operator in _COMPARISONS:
        return syntax.Comparison(_COMPARISONS[operator], path, values[0])
    if operator == "BETWEEN":
        return syntax.Between(path, values[0], values[1])
    if operator == "IN":
        return syntax.In(path, values)
    if operator in ("NOT_NULL", "NULL"):
        name = "attribute_exists" if operator == "NOT_NULL" else "attribute_not_exists"
        return syntax.FunctionCondition(syntax.Call(name, [path]))
    name = "begins_with" if operator == "BEGINS_WITH" else "contains"
    call = syntax.FunctionCondition(syntax.Call(name, [path, values[0]]))
    return syntax.Not(call) if operator == "NOT_CONTAINS" else call


def filter_condition(
    conditions: Mapping[str, LegacyCondition], conditional_operator: str | None
) -> syntax.Condition | None:
    """The condition tree of a legacy filter (None: no conditions, no filter)."""
    nodes = [_translated(attribute, condition) for attribute, condition in conditions.items()]
    if not nodes:
        return None
    if len(nodes) == 1:
        return nodes[0]
    if conditional_operator == "OR":
        return syntax.Or(nodes)
    return syntax.And(nodes)
