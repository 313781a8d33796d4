"""Evaluating a checked condition against an item, with DynamoDB's semantics.

DynamoDB's comparison and function reference, applied to items as parsed canonical DynamoDB
JSON (so equal values are equal Python objects, whatever their type):

- ``=`` is true when both sides exist and are equal (type and value: ``N 1`` is not
  ``BOOL true``); ``<>`` is true unless both exist and are equal — a missing attribute is
  "not equal" to anything.
- ``<``, ``<=``, ``>``, ``>=`` and ``BETWEEN`` are true only between values of one scalar type
  (N numerically, S and B by bytes); anything else is false, never an error.
- ``IN`` is true when the subject exists and equals one of the options.
- ``attribute_exists``/``attribute_not_exists`` test the path; ``attribute_type`` its type.
- ``begins_with`` works on S (text) and B (bytes); ``contains`` finds a substring of an S or a
  B, a member of a set, or an element of a list (of any type) equal to the operand.
- ``size`` is the length of an S (characters) or a B (bytes), the number of members of a
  set, of elements of a list or of entries of a map; of anything else (or of nothing) it has
  no value, and the comparison it is in is false.
- A path reads through maps (``a.b``) and lists (``a[2]``); a step into something that is not
  a map or a list, or past its end, finds nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from replayer.serve import expression_syntax as syntax
from replayer.serve.values import AttributeValue, compare_scalars, type_of

Item = Mapping[str, AttributeValue]


def get_path(item: Item, path: Sequence[str | int]) -> AttributeValue | None:
    """The value at ``path`` in ``item`` (None when absent)."""
    value: Any = item.get(path[0]) if isinstance(path[0], str) else None
    for step in path[1:]:
        if value is None:
            return None
        if isinstance(step, int):
            elements = value.get("L")
            value = elements[step] if elements is not None and step < len(elements) else None
        else:
            entries = value.get("M")
            value = entries.get(step) if entries is not None else None
    return value  # type: ignore[no-any-return]


def _size(value: AttributeValue | None) -> AttributeValue | None:
    if value is None:
        return None
    ((tag, inner),) = value.items()
    if tag == "S":
        length = len(inner)
    elif tag == "B":
        length = len(base64.b64decode(inner))
    elif tag in ("SS", "NS", "BS", "L", "M"):
        length = len(inner)
    else:
        return None
    return {"N": str(length)}


def operand_value(operand: syntax.Operand, item: Item) -> AttributeValue | None:
    """What an operand stands for with this item (None: nothing)."""
    if isinstance(operand, syntax.Path):
        return get_path(item, operand.resolved())
    if isinstance(operand, syntax.ValueRef):
        return operand.value
    return _size(operand_value(operand.args[0], item))


def _ordered(op: str, left: AttributeValue | None, right: AttributeValue | None) -> bool:
    if left is None or right is None:
        return False
    order = compare_scalars(left, right)
    if order is None:
        return False
    if op == "<":
        return order < 0
    if op == "<=":
        return order <= 0
    if op == ">":
        return order > 0
    return order >= 0


def _begins_with(value: AttributeValue | None, prefix: AttributeValue | None) -> bool:
    if value is None or prefix is None:
        return False
    tag = type_of(value)
    if tag != type_of(prefix):
        return False
    if tag == "S":
        return bool(value["S"].startswith(prefix["S"]))
    if tag == "B":
        return base64.b64decode(value["B"]).startswith(base64.b64decode(prefix["B"]))
    return False


def _contains(value: AttributeValue | None, operand: AttributeValue | None) -> bool:
    if value is None or operand is None:
        return False
    tag, wanted = type_of(value), type_of(operand)
    if tag == "S" and wanted == "S":
        return bool(operand["S"] in value["S"])
    if tag == "B" and wanted == "B":
        return base64.b64decode(operand["B"]) in base64.b64decode(value["B"])
    if tag in ("SS", "NS", "BS") and wanted == tag[0]:
        return operand[wanted] in value[tag]
    if tag == "L":
        return operand in value["L"]
    return False


def _call(call: syntax.Call, item: Item) -> bool:
    name = call.name
    first = operand_value(call.args[0], item)
    if name == "attribute_exists":
        return first is not None
    if name == "attribute_not_exists":
        return first is None
    second = operand_value(call.args[1], item)
    if name == "attribute_type":
        return first is not None and second is not None and type_of(first) == second.get("S")
    if name == "begins_with":
        return _begins_with(first, second)
    return _contains(first, second)


def evaluate(condition: syntax.Condition, item: Item) -> bool:
    """Whether ``item`` satisfies the (checked) ``condition``."""
    if isinstance(condition, syntax.Comparison):
        left = operand_value(condition.left, item)
        right = operand_value(condition.right, item)
        if condition.op == "=":
            return left is not None and left == right
        if condition.op == "<>":
            return left is None or right is None or left != right
        return _ordered(condition.op, left, right)
    if isinstance(condition, syntax.And):
        return all(evaluate(operand, item) for operand in condition.operands)
    if isinstance(condition, syntax.Or):
        return any(evaluate(operand, item) for operand in condition.operands)
    if isinstance(condition, syntax.Not):
        return not evaluate(condition.operand, item)
    if isinstance(condition, syntax.Between):
        subject = operand_value(condition.subject, item)
        low = operand_value(condition.low, item)
        high = operand_value(condition.high, item)
        return _ordered(">=", subject, low) and _ordered("<=", subject, high)
    if isinstance(condition, syntax.In):
        subject = operand_value(condition.subject, item)
        return subject is not None and any(
            subject == operand_value(option, item) for option in condition.options
        )
    if isinstance(condition, syntax.FunctionCondition):
        return _call(condition.call, item)
    raise TypeError(f"not a checked condition: {condition!r}")


def project(item: Item, paths: Sequence[Sequence[str | int]]) -> dict[str, AttributeValue]:
    """The parts of ``item`` at ``paths``: maps and lists rebuilt around what is found, list
    elements kept in index order (``a[3]`` and ``a[1]`` give a two-element list)."""
    out: dict[str, AttributeValue] = {}
    for path in paths:
        found = get_path(item, path)
        if found is None:
            continue
        if len(path) == 1:
            out[str(path[0])] = found
            continue
        _place(out, path, found)
    return {name: _compact(value) for name, value in out.items()}


def _place(out: dict[str, AttributeValue], path: Sequence[str | int], found: Any) -> None:
    head = str(path[0])
    container: dict[str, Any] = out.setdefault(head, {})
    for position, step in enumerate(path[1:], start=1):
        last = position == len(path) - 1
        if isinstance(step, int):
            # sparse: index → element, compacted at the end in index order
            slots = container.setdefault("_L", {})
            if last:
                slots[step] = found
            else:
                container = slots.setdefault(step, {})
        else:
            entries = container.setdefault("M", {})
            if last:
                entries[step] = found
            else:
                container = entries.setdefault(step, {})


def _compact(value: Any) -> Any:
    if "_L" in value:
        return {"L": [_compact(value["_L"][index]) for index in sorted(value["_L"])]}
    if "M" in value and isinstance(value["M"], dict) and len(value) == 1:
        return {"M": {name: _compact(inner) for name, inner in value["M"].items()}}
    return value
