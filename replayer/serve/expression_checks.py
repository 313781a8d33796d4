"""What DynamoDB refuses in a parsed expression, with its messages and in its order.

After parsing (:mod:`replayer.serve.expression_syntax`) an expression is checked the way
DynamoDB checks it: placeholders are looked up (``#name`` in ``ExpressionAttributeNames``,
``:value`` in ``ExpressionAttributeValues``), names are checked against the reserved words,
functions against their arity and operand types, and forms DynamoDB parses but refuses —
redundant parentheses, a function other than ``size`` used as an operand, ``size`` used as a
condition, a comparison of a path with itself — are found. When an expression has several
problems DynamoDB reports one, chosen by kind: redundant parentheses, then an unknown function,
a misused function, a reserved word, and last the first condition (in reading order) that has
an undefined placeholder, a wrong number of operands, two identical paths or a wrong operand
type, in that order of preference. The walk below visits the tree in reading order and applies
the checks in the order DynamoDB's reference grammar (dynalite's, verified against the
service) applies them, so the message chosen is the one DynamoDB gives.

A placeholder that no expression of the request uses is refused after every expression has
been checked (:meth:`Placeholders.check_unused`): names first, then values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from replayer.serve import expression_syntax as syntax
from replayer.serve.dynamodb_errors import ValidationException
from replayer.serve.reserved import is_reserved
from replayer.serve.values import (
    AttributeValue,
    check_value,
    compare_scalars,
    type_of,
)

_FUNCTIONS = {
    "attribute_exists": 1,
    "attribute_not_exists": 1,
    "attribute_type": 2,
    "begins_with": 2,
    "contains": 2,
    "size": 1,
}
_TYPE_NAMES = ("S", "N", "B", "NULL", "SS", "BOOL", "L", "BS", "NS", "M")
_NAME_KEY = re.compile(r"^#[0-9a-zA-Z_]+$")
_VALUE_KEY = re.compile(r"^:[0-9a-zA-Z_]+$")


def path_text(path: Sequence[str | int]) -> str:
    """A path as DynamoDB writes it in messages: ``[a, b, [1], c]``."""
    return "[" + ", ".join(f"[{p}]" if isinstance(p, int) else p for p in path) + "]"


def _value_text(value: AttributeValue) -> str:
    tag = type_of(value)
    inner = value[tag]
    if isinstance(inner, list):
        inner = ",".join(str(v) for v in inner)
    elif isinstance(inner, bool):
        inner = "true" if inner else "false"
    return "{" + f"{tag}:{inner}" + "}"


@dataclass
class Placeholders:
    """A request's ``ExpressionAttributeNames`` and ``ExpressionAttributeValues``, checked,
    and which of them the request's expressions have used so far."""

    names: dict[str, str]
    values: dict[str, AttributeValue]
    unused_names: dict[str, None] = field(default_factory=dict)
    unused_values: dict[str, None] = field(default_factory=dict)

    @classmethod
    def of_request(cls, names: Any, values: Any) -> Placeholders:
        """Check the two maps as DynamoDB does before it parses any expression."""
        checked_names: dict[str, str] = {}
        checked_values: dict[str, AttributeValue] = {}
        if names is not None:
            if not names:
                raise ValidationException("ExpressionAttributeNames must not be empty")
            for key, name in names.items():
                if not _NAME_KEY.match(key):
                    raise ValidationException(
                        f'ExpressionAttributeNames contains invalid key: Syntax error; key: "{key}"'
                    )
                checked_names[key] = name
        if values is not None:
            if not values:
                raise ValidationException("ExpressionAttributeValues must not be empty")
            for key in values:
                if not _VALUE_KEY.match(key):
                    raise ValidationException(
                        "ExpressionAttributeValues contains invalid key: Syntax error; "
                        f'key: "{key}"'
                    )
            for key, raw in values.items():
                try:
                    checked_values[key] = check_value(raw)
                except ValidationException as exc:
                    raise ValidationException(
                        f"ExpressionAttributeValues contains invalid value: {exc.message} "
                        f"for key {key}"
                    ) from None
        return cls(
            checked_names,
            checked_values,
            dict.fromkeys(checked_names),
            dict.fromkeys(checked_values),
        )

    def check_unused(self) -> None:
        """Refuse placeholders that no expression used (after all were checked)."""
        if self.unused_names:
            raise ValidationException(
                "Value provided in ExpressionAttributeNames unused in expressions: "
                "keys: {" + ", ".join(self.unused_names) + "}"
            )
        if self.unused_values:
            raise ValidationException(
                "Value provided in ExpressionAttributeValues unused in expressions: "
                "keys: {" + ", ".join(self.unused_values) + "}"
            )


@dataclass
class _Errors:
    """The first error of each kind found so far (DynamoDB keeps one per kind)."""

    parens: str = ""
    unknown_function: str = ""
    misused_function: str = ""
    reserved: str = ""
    undefined: str = ""
    operand_count: str = ""
    distinct: str = ""
    operand_type: str = ""
    condition: str = ""

    def first(self) -> str:
        return (
            self.parens
            or self.unknown_function
            or self.misused_function
            or self.reserved
            or self.condition
        )


class _Checker:
    """One expression's walk (see the module doc)."""

    def __init__(self, placeholders: Placeholders) -> None:
        self.placeholders = placeholders
        self.errors = _Errors()

    # -- operands ------------------------------------------------------------------------

    def path(self, path: syntax.Path) -> None:
        if path.redundant:
            self.redundant()
        for step in path.steps:
            if isinstance(step, int):
                continue
            if step.placeholder:
                step.resolved = self.name(step.text)
            else:
                step.resolved = step.text
                if not self.errors.reserved and is_reserved(step.text):
                    self.errors.reserved = (
                        f"Attribute name is a reserved keyword; reserved keyword: {step.text}"
                    )

    def name(self, placeholder: str) -> str:
        if self.errors.undefined:
            return ""
        if placeholder not in self.placeholders.names:
            self.errors.undefined = (
                "An expression attribute name used in the document path is not defined; "
                f"attribute name: {placeholder}"
            )
            return ""
        self.placeholders.unused_names.pop(placeholder, None)
        return self.placeholders.names[placeholder]

    def value(self, ref: syntax.ValueRef) -> None:
        if ref.redundant:
            self.redundant()
        if self.errors.undefined:
            return
        if ref.name not in self.placeholders.values:
            self.errors.undefined = (
                "An expression attribute value used in expression is not defined; "
                f"attribute value: {ref.name}"
            )
            return
        self.placeholders.unused_values.pop(ref.name, None)
        ref.value = self.placeholders.values[ref.name]

    def operand(self, operand: syntax.Operand) -> None:
        if isinstance(operand, syntax.Path):
            self.path(operand)
        elif isinstance(operand, syntax.ValueRef):
            self.value(operand)
        else:
            self.call(operand)

    def redundant(self) -> None:
        if not self.errors.parens:
            self.errors.parens = "The expression has redundant parentheses;"

    # -- functions -----------------------------------------------------------------------

    def misused(self, operands: Sequence[syntax.Operand]) -> None:
        for operand in operands:
            if isinstance(operand, syntax.Call) and operand.name != "size":
                if not self.errors.misused_function:
                    self.errors.misused_function = (
                        "The function is not allowed to be used this way in an expression; "
                        f"function: {operand.name}"
                    )
                return

    def distinct(self, operator: str, operands: Sequence[syntax.Operand]) -> None:
        if self.errors.distinct or len(operands) != 2:
            return
        first, second = operands
        if not (isinstance(first, syntax.Path) and isinstance(second, syntax.Path)):
            return
        if first.resolved() == second.resolved():
            self.errors.distinct = (
                "The first operand must be distinct from the remaining operands for this "
                f"operator or function; operator: {operator}, first operand: "
                f"{path_text(first.resolved())}"
            )

    def type_of(self, operand: syntax.Operand) -> str | None:
        """The operand's type where the expression fixes it: a value's, or a function's."""
        if isinstance(operand, syntax.ValueRef):
            return type_of(operand.value) if operand.value is not None else None
        if isinstance(operand, syntax.Call):
            return "N" if operand.name == "size" else "BOOL"
        return None

    def call(self, call: syntax.Call) -> None:
        if call.redundant:
            self.redundant()
        for arg in call.args:
            self.operand(arg)
        self.misused(call.args)
        errors = self.errors
        if errors.unknown_function:
            return
        arity = _FUNCTIONS.get(call.name)
        if arity is None:
            errors.unknown_function = f"Invalid function name; function: {call.name}"
            return
        if errors.operand_count:
            return
        if arity != len(call.args):
            errors.operand_count = (
                "Incorrect number of operands for operator or function; operator or function: "
                f"{call.name}, number of operands: {len(call.args)}"
            )
            return
        self.distinct(call.name, call.args)
        if errors.operand_type:
            return
        errors.operand_type = self.function_types(call)

    def function_types(self, call: syntax.Call) -> str:
        name, args = call.name, call.args
        wrong = "Incorrect operand type for operator or function; operator or function: "
        if name in ("attribute_exists", "attribute_not_exists"):
            if not isinstance(args[0], syntax.Path):
                return (
                    "Operator or function requires a document path; operator or function: " + name
                )
        elif name == "begins_with":
            for arg in args:
                kind = self.type_of(arg)
                if kind and kind not in ("S", "B"):
                    return f"{wrong}{name}, operand type: {kind}"
        elif name == "attribute_type":
            kind = self.type_of(args[1])
            if kind != "S":
                return f"{wrong}{name}, operand type: {kind or '{NS,SS,L,BS,N,M,B,BOOL,NULL,S}'}"
            assert isinstance(args[1], syntax.ValueRef) and args[1].value is not None
            type_name = args[1].value["S"]
            if type_name not in _TYPE_NAMES:
                return (
                    f"Invalid attribute type name found; type: {type_name}, valid types: "
                    "{B,NULL,SS,BOOL,L,BS,N,NS,S,M}"
                )
        elif name == "size":
            kind = self.type_of(args[0])
            if kind in ("N", "BOOL", "NULL"):
                return f"{wrong}{name}, operand type: {kind}"
        return ""

    # -- conditions ----------------------------------------------------------------------

    def condition_errors(self) -> None:
        errors = self.errors
        if not errors.condition:
            errors.condition = (
                errors.undefined or errors.operand_count or errors.distinct or errors.operand_type
            )

    def misused_size(self, condition: syntax.Condition) -> None:
        if isinstance(condition, syntax.SizeCondition) and not self.errors.misused_function:
            self.errors.misused_function = (
                "The function is not allowed to be used this way in an expression; function: size"
            )

    def between_bounds(self, low: syntax.Operand, high: syntax.Operand) -> None:
        if self.errors.operand_type:
            return
        if not (isinstance(low, syntax.ValueRef) and isinstance(high, syntax.ValueRef)):
            return
        if low.value is None or high.value is None:
            return
        bounds = (
            f"lower bound operand: AttributeValue: {_value_text(low.value)}, "
            f"upper bound operand: AttributeValue: {_value_text(high.value)}"
        )
        if type_of(low.value) != type_of(high.value):
            self.errors.operand_type = (
                f"The BETWEEN operator requires same data type for lower and upper bounds; {bounds}"
            )
        elif (compare_scalars(low.value, high.value) or 0) > 0:
            self.errors.operand_type = (
                "The BETWEEN operator requires upper bound to be greater than or equal to lower "
                f"bound; {bounds}"
            )

    def condition(self, condition: syntax.Condition) -> None:
        if isinstance(condition, syntax.Comparison):
            self.operand(condition.left)
            self.operand(condition.right)
            self.misused([condition.left, condition.right])
            self.distinct(condition.op, [condition.left, condition.right])
        elif isinstance(condition, syntax.Between):
            for operand in (condition.subject, condition.low, condition.high):
                self.operand(operand)
            self.misused([condition.subject, condition.low, condition.high])
            self.between_bounds(condition.low, condition.high)
        elif isinstance(condition, syntax.In):
            self.operand(condition.subject)
            for option in condition.options:
                self.operand(option)
            self.misused([condition.subject, *condition.options])
        elif isinstance(condition, syntax.FunctionCondition | syntax.SizeCondition):
            self.call(condition.call)
        elif isinstance(condition, syntax.Not):
            self.condition(condition.operand)
            self.misused_size(condition.operand)
        else:
            for child in condition.operands:
                self.condition(child)
            for child in condition.operands:
                self.misused_size(child)
        if condition.redundant:
            self.redundant()
        if not isinstance(condition, syntax.Not | syntax.And | syntax.Or):
            self.condition_errors()


def compile_condition(text: str, placeholders: Placeholders, label: str) -> syntax.Condition:
    """Parse and check a condition (``label``: ``KeyConditionExpression``,
    ``FilterExpression``, …); names and values in the tree are resolved.

    Raises:
        ValidationException: ``Invalid <label>: <DynamoDB's message>``.
    """
    try:
        tree = syntax.parse_condition(text)
    except syntax.ExpressionSyntaxError as exc:
        raise ValidationException(f"Invalid {label}: {exc}") from None
    checker = _Checker(placeholders)
    checker.condition(tree)
    checker.misused_size(tree)
    problem = checker.errors.first()
    if problem:
        raise ValidationException(f"Invalid {label}: {problem}")
    return tree


def compile_projection(text: str, placeholders: Placeholders) -> list[tuple[str | int, ...]]:
    """Parse and check a ``ProjectionExpression``: its resolved paths, in order.

    Raises:
        ValidationException: ``Invalid ProjectionExpression: …`` (a reserved word, an
            undefined name, two paths that overlap or conflict).
    """
    label = "Invalid ProjectionExpression: "
    try:
        paths = syntax.parse_projection(text)
    except syntax.ExpressionSyntaxError as exc:
        raise ValidationException(label + str(exc)) from None
    checker = _Checker(placeholders)
    for path in paths:
        checker.path(path)
    errors = checker.errors
    if errors.reserved:
        raise ValidationException(label + errors.reserved)
    if errors.undefined:
        raise ValidationException(label + errors.undefined)
    resolved = [path.resolved() for path in paths]
    overlap = conflict = ""
    seen: list[tuple[str | int, ...]] = []
    for steps in resolved:
        for earlier in seen:
            found = _clash(earlier, steps)
            if found == "overlap":
                overlap = overlap or _clash_text("overlap", earlier, steps)
            elif found == "conflict":
                conflict = conflict or _clash_text("conflict", earlier, steps)
        if overlap:
            break
        seen.append(steps)
    if overlap or conflict:
        raise ValidationException(label + (overlap or conflict))
    return resolved


def _clash(one: tuple[str | int, ...], two: tuple[str | int, ...]) -> str:
    for a, b in zip(one, two, strict=False):
        if isinstance(a, int) != isinstance(b, int):
            return "conflict"
        if a != b:
            return ""
    return "overlap"


def _clash_text(kind: str, one: Sequence[str | int], two: Sequence[str | int]) -> str:
    return (
        f"Two document paths {kind} with each other; must remove or rewrite one of these "
        f"paths; path one: {path_text(one)}, path two: {path_text(two)}"
    )


def paths_in(condition: syntax.Condition) -> list[tuple[str | int, ...]]:
    """Every document path a condition reads (for the checks against key attributes)."""
    found: list[tuple[str | int, ...]] = []

    def operand(node: syntax.Operand) -> None:
        if isinstance(node, syntax.Path):
            found.append(node.resolved())
        elif isinstance(node, syntax.Call):
            for arg in node.args:
                operand(arg)

    def walk(node: syntax.Condition) -> None:
        if isinstance(node, syntax.Comparison):
            operand(node.left)
            operand(node.right)
        elif isinstance(node, syntax.Between):
            for each in (node.subject, node.low, node.high):
                operand(each)
        elif isinstance(node, syntax.In):
            for each in (node.subject, *node.options):
                operand(each)
        elif isinstance(node, syntax.FunctionCondition | syntax.SizeCondition):
            operand(node.call)
        elif isinstance(node, syntax.Not):
            walk(node.operand)
        else:
            for child in node.operands:
                walk(child)

    walk(condition)
    return found


def expression_parameters(
    request: Mapping[str, Any], expressions: Sequence[str], legacy: Sequence[str]
) -> None:
    """Refuse expression and legacy parameters mixed, and placeholders without expressions,
    as DynamoDB does (before anything is parsed)."""
    used = [name for name in expressions if request.get(name) is not None]
    if used:
        legacy_used = [name for name in legacy if request.get(name) is not None]
        if "KeyConditions" in legacy_used and request.get("KeyConditionExpression") is None:
            legacy_used.remove("KeyConditions")
        if legacy_used:
            raise ValidationException(
                "Can not use both expression and non-expression parameters in the same "
                "request: Non-expression parameters: {" + ", ".join(legacy_used) + "} "
                "Expression parameters: {" + ", ".join(used) + "}"
            )
    if request.get("ExpressionAttributeNames") is not None and not used:
        raise ValidationException(
            "ExpressionAttributeNames can only be specified when using expressions"
        )
    value_expressions = [name for name in expressions if name != "ProjectionExpression"]
    if (
        value_expressions
        and request.get("ExpressionAttributeValues") is not None
        and all(request.get(name) is None for name in value_expressions)
    ):
        verb = "are" if len(value_expressions) > 1 else "is"
        raise ValidationException(
            "ExpressionAttributeValues can only be specified when using expressions: "
            f"{' and '.join(value_expressions)} {verb} null"
        )
