"""Attribute values as the endpoint meets them: checked as DynamoDB checks them, compared as
DynamoDB compares them, and sized as DynamoDB sizes them.

Items come out of the archive as canonical DynamoDB JSON (``archiver.format.codec``): the wire
form with numbers normalised and sets sorted, so two values are equal exactly when their
parsed JSON is equal. Values in a request (keys, ``ExpressionAttributeValues``, start keys)
are checked here with DynamoDB's own messages — first the shape (``SerializationException``,
as DynamoDB's JSON reader reports a string where a list belongs), then the value
(``ValidationException``: an empty set, a duplicate, a number past 38 digits) — and then
brought to the same canonical form, so the evaluator only ever compares canonical values.

Order is DynamoDB's: N numerically (``Decimal``, all 38 digits), S by UTF-8 bytes (which is
code point order, Python's own ``str`` order), B by unsigned bytes.

Two sizes: :func:`item_size` is the documented one ("Item sizes and formats": attribute
names count, numbers take about one byte per two digits, lists and maps 3 bytes plus one per
element), used for read units, ``BatchGetItem``'s 16 MB and ``TableSizeBytes``.
:func:`page_size` is the size Query and Scan count against their 1 MB page, which DynamoDB
does not document: it counts each attribute name as one byte and adds per-item storage
overhead. The formula is the one the dynalite project measured against DynamoDB (its tests
of items just under and just over the limit pass against the real service).
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from archiver.format.codec import CodecError, normalize_item
from replayer.serve.dynamodb_errors import SerializationException, ValidationException

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

SCALAR_KEY_TYPES = ("S", "N", "B")
TYPE_NAMES = ("S", "N", "B", "NULL", "BOOL", "SS", "NS", "BS", "L", "M")
_STRINGS = ("S", "N")
_LISTS = ("SS", "NS", "BS", "L")
_INVALID = "One or more parameter values were invalid: "


# -- checking request values ----------------------------------------------------------------


def _shape_error(value: Any, java_type: str) -> SerializationException:
    """What DynamoDB's JSON reader says when ``value`` is not of ``java_type``."""
    if isinstance(value, bool):
        return SerializationException(
            f"{'TRUE' if value else 'FALSE'}_VALUE cannot be converted to {java_type}"
        )
    if isinstance(value, int | float):
        kind = "NUMBER" if isinstance(value, int) or float(value).is_integer() else "DECIMAL"
        return SerializationException(f"{kind}_VALUE cannot be converted to {java_type}")
    if isinstance(value, list):
        return SerializationException(f"Unrecognized collection type class java.lang.{java_type}")
    return SerializationException("Start of structure or map found where not expected")


def _check_string(value: Any) -> str:
    if not isinstance(value, str):
        raise _shape_error(value, "String")
    return value


def _check_blob(value: Any) -> str:
    if isinstance(value, bool | int | float):
        raise SerializationException("only base-64-encoded strings are convertible to bytes")
    if isinstance(value, list):
        raise SerializationException("Unrecognized collection type class java.nio.ByteBuffer")
    if not isinstance(value, str):
        raise SerializationException("Start of structure or map found where not expected")
    if len(value) % 4:
        raise SerializationException(
            f"Base64 encoded length is expected a multiple of 4 bytes but found: {len(value)}"
        )
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SerializationException("Invalid last non-pad Base64 character dectected") from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise SerializationException("Invalid last non-pad Base64 character dectected")
    return value


def _check_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.upper()
        if word in ("TRUE", "1", "YES"):
            return True
        if word in ("FALSE", "0", "NO"):
            return False
        raise SerializationException("Unexpected token received from parser")
    raise _shape_error(value, "Boolean")


def _check_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        raise SerializationException("Start of structure or map found where not expected")
    raise SerializationException("Unexpected field type")


def _check_shape(value: Any) -> AttributeValue:
    """The value with every member of the right JSON type (``null`` members dropped, as
    DynamoDB's reader drops them), or the ``SerializationException`` DynamoDB answers."""
    if isinstance(value, list):
        raise SerializationException(
            "Unrecognized collection type class com.amazonaws.dynamodb.v20120810.AttributeValue"
        )
    if not isinstance(value, dict):
        raise SerializationException("Unexpected value type in payload")
    out: AttributeValue = {}
    for tag, inner in value.items():
        if inner is None or tag not in TYPE_NAMES:
            continue
        if tag in _STRINGS:
            out[tag] = _check_string(inner)
        elif tag == "B":
            out[tag] = _check_blob(inner)
        elif tag in ("BOOL", "NULL"):
            out[tag] = _check_boolean(inner)
        elif tag in ("SS", "NS"):
            out[tag] = [_check_string(member) for member in _check_list(inner)]
        elif tag == "BS":
            out[tag] = [_check_blob(member) for member in _check_list(inner)]
        elif tag == "L":
            out[tag] = [_check_shape(member) for member in _check_list(inner)]
        else:
            out[tag] = check_shape_map(inner)
    return out


def check_shape_map(value: Any) -> dict[str, AttributeValue]:
    """A map of attribute values (an item, a key, an ``M``), shape-checked."""
    if isinstance(value, list):
        raise SerializationException(
            "Unrecognized collection type java.util.Map<java.lang.String, "
            "com.amazonaws.dynamodb.v20120810.AttributeValue>"
        )
    if not isinstance(value, dict):
        raise SerializationException("Unexpected field type")
    return {name: _check_shape(inner) for name, inner in value.items() if inner is not None}


def _number_problem(text: str) -> str | None:
    """Why DynamoDB refuses the number ``text`` (None: it is fine)."""
    if not text:
        return "The parameter cannot be converted to a numeric value"
    try:
        number = Decimal(text)
    except InvalidOperation:
        return f"The parameter cannot be converted to a numeric value: {text}"
    if not number.is_finite() or not text.isascii() or text != text.strip():
        return f"The parameter cannot be converted to a numeric value: {text}"
    if number.is_zero():
        return None
    if number.adjusted() > 125:
        return (
            "Number overflow. Attempting to store a number with magnitude larger than "
            "supported range"
        )
    if number.adjusted() < -130:
        return (
            "Number underflow. Attempting to store a number with magnitude smaller than "
            "supported range"
        )
    digits = "".join(map(str, number.as_tuple().digits)).strip("0")
    if len(digits) > 38:
        return "Attempting to store more than 38 significant digits in a Number"
    return None


def _render(items: list[Any]) -> str:
    return "[" + ", ".join(str(item) for item in items) + "]"


def value_problem(value: AttributeValue) -> str | None:
    """Why DynamoDB refuses a shape-checked attribute value (None: it is fine)."""
    if not value:
        return (
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
        )
    for tag, inner in value.items():
        if tag == "N":
            problem = _number_problem(inner)
            if problem:
                return problem
        elif tag == "NULL" and not inner:
            return _INVALID + "Null attribute value types must have the value of true"
        elif tag in ("SS", "NS", "BS") and not inner:
            return (
                _INVALID
                + {
                    "SS": "An string set  may not be empty",
                    "NS": "An number set  may not be empty",
                    "BS": "Binary sets should not be empty",
                }[tag]
            )
        if tag == "NS":
            for member in inner:
                problem = _number_problem(member)
                if problem:
                    return problem
            if len({Decimal(member) for member in inner}) < len(inner):
                return "Input collection contains duplicates"
        elif tag == "SS" and len(set(inner)) < len(inner):
            return _INVALID + f"Input collection {_render(inner)} contains duplicates."
        elif tag == "BS" and len(set(inner)) < len(inner):
            return _INVALID + f"Input collection {_render(inner)}of type BS contains duplicates."
        elif tag == "M":
            for member in inner.values():
                problem = value_problem(member)
                if problem:
                    return problem
        elif tag == "L":
            for member in inner:
                problem = value_problem(member)
                if problem:
                    return problem
    if len(value) > 1:
        return (
            "Supplied AttributeValue has more than one datatypes set, must contain exactly one "
            "of the supported datatypes"
        )
    return None


def canonical_value(value: AttributeValue) -> AttributeValue:
    """A valid value in canonical form (numbers normalised, sets sorted)."""
    try:
        return normalize_item({"v": value})["v"]
    except CodecError as exc:  # checked above; a codec limit DynamoDB does not have
        raise ValidationException(str(exc)) from exc


def check_value(raw: Any, prefix: str = "") -> AttributeValue:
    """A request's attribute value: shape-checked, validated, canonical.

    Raises:
        SerializationException / ValidationException: as DynamoDB answers; ``prefix`` is put
            before a validation message (``ExpressionAttributeValues contains invalid
            value: ``).
    """
    value = _check_shape(raw)
    problem = value_problem(value)
    if problem:
        raise ValidationException(prefix + problem)
    return canonical_value(value)


# -- types, comparison ----------------------------------------------------------------------


def type_of(value: AttributeValue) -> str:
    """The value's one type tag (``S``, ``N``, …)."""
    return next(iter(value))


def render_value(value: AttributeValue) -> str:
    """A value as DynamoDB quotes it in messages: ``{S:abc}``, ``{N:1}``."""
    tag = type_of(value)
    return "{" + f"{tag}:{value[tag]}" + "}"


def compare_scalars(left: AttributeValue, right: AttributeValue) -> int | None:
    """-1, 0 or 1 for two values of the same scalar key type (N, S, B); None otherwise."""
    tag = type_of(left)
    if tag != type_of(right) or tag not in SCALAR_KEY_TYPES:
        return None
    a: Any
    b: Any
    if tag == "N":
        a, b = Decimal(left["N"]), Decimal(right["N"])
    elif tag == "B":
        a, b = base64.b64decode(left["B"]), base64.b64decode(right["B"])
    else:
        a, b = left["S"], right["S"]
    return (a > b) - (a < b)


def raw_bytes(value: AttributeValue) -> bytes:
    """An S or B value's bytes (UTF-8 for S)."""
    if "B" in value:
        return base64.b64decode(value["B"])
    return str(value["S"]).encode("utf-8")


# -- sizes ----------------------------------------------------------------------------------


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


@functools.lru_cache(maxsize=65536)
def _digits(text: str) -> tuple[int, int]:
    """(significant digits, decimal exponent of the first one) of a canonical number."""
    unsigned = text.lstrip("-")
    whole, _, fraction = unsigned.partition(".")
    if whole.strip("0"):
        significant = (whole.lstrip("0") + fraction).rstrip("0")
        return len(significant), len(whole.lstrip("0")) - 1
    stripped = fraction.lstrip("0")
    return len(stripped.rstrip("0")), -(len(fraction) - len(stripped) + 1)


def _number_size(text: str) -> int:
    count, _ = _digits(text)
    return 1 + (max(count, 1) + 1) // 2


def _b64_length(text: str) -> int:
    return len(text) * 3 // 4 - text.count("=", -2)


def value_size(value: AttributeValue) -> int:
    """A value's documented size, without its name."""
    ((tag, inner),) = value.items()
    if tag == "S":
        return _utf8_length(inner)
    if tag == "N":
        return _number_size(inner)
    if tag == "B":
        return _b64_length(inner)
    if tag in ("BOOL", "NULL"):
        return 1
    if tag == "SS":
        return sum(_utf8_length(member) for member in inner)
    if tag == "NS":
        return sum(_number_size(member) for member in inner)
    if tag == "BS":
        return sum(_b64_length(member) for member in inner)
    if tag == "L":
        return 3 + sum(1 + value_size(member) for member in inner)
    return 3 + sum(1 + _utf8_length(name) + value_size(v) for name, v in inner.items())


def item_size(item: Mapping[str, AttributeValue]) -> int:
    """An item's documented size: names plus values ("Item sizes and formats")."""
    return sum(_utf8_length(name) + value_size(value) for name, value in item.items())


def _stored_number(text: str) -> int:
    count, exponent = _digits(text)
    if count == 0:
        return 1
    even = 0 if (count % 2 or exponent % 2) else 1
    return 1 + (count + 1) // 2 + even + (1 if text.startswith("-") else 0)


def _stored(value: AttributeValue, compress: bool) -> int:
    ((tag, inner),) = value.items()
    if tag == "S":
        size = _utf8_length(inner)
        if not compress:
            return size
        return size + (1 if size < 128 else 2 if size < 16384 else 3)
    if tag == "N":
        return _stored_number(inner) + (1 if compress else 0)
    if tag == "B":
        return _b64_length(inner) + (1 if compress else 0)
    if tag == "NULL":
        return 0 if compress else 1
    if tag == "BOOL":
        return 1
    if tag in ("SS", "NS", "BS"):
        if tag == "SS":
            size = sum(_utf8_length(member) for member in inner)
        elif tag == "NS":
            size = sum(_stored_number(member) for member in inner)
        else:
            size = sum(_b64_length(member) for member in inner)
        return size + len(inner) + 1 if compress else size
    if tag == "L":
        return 3 + sum(1 + _stored(member, compress) for member in inner)
    return 3 + len(inner) + sum(_stored(v, compress) + 1 for v in inner.values())


def page_size(item: Mapping[str, AttributeValue], range_key: str | None) -> int:
    """What one item counts against Query's and Scan's 1 MB page (see the module doc)."""
    size = 0
    range_size = 0
    for name, value in item.items():
        if name == range_key:
            range_size = _stored(value, False)
        else:
            size += _stored(value, True) + 1
    return 2 + size + (1 + (1 + size) // 3072) * (18 + range_size)
