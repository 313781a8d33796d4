"""DynamoDB JSON ⇄ canonical JSON ⇄ the wire form boto3 sends.

Canonical DynamoDB JSON (DESIGN.md) is the wire form (``{"S": "x"}``, numbers as strings,
binary as base64) with map keys sorted, no insignificant white space, sets sorted (SS by UTF-8
bytes, NS by numeric value, BS by raw bytes) and numbers in DynamoDB's normal form, so that
equal items have byte-equal text whatever their source: a stream record read by aiobotocore
(binary as ``bytes``), a Lambda event (binary as base64 text), a scan, a JSON or an ION export.

This module is the only place that knows the attribute-value type tags.

Speed matters here (every archived record passes through it twice), so the common case —
numbers already in normal form, no sets — is one ``orjson.dumps`` plus one regex search over
its output; only items that need it take the slower normalising walk.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from archiver.errors import UsageError

AttributeValue = dict[str, Any]
Item = Mapping[str, AttributeValue]

TYPE_TAGS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})

_OPTIONS = orjson.OPT_SORT_KEYS
# Anything the fast path cannot vouch for: a number not in normal form ("-0", "1.50", "007",
# "1E+2", "6d2") or a set whose order must be fixed. Inside a JSON string every quote is
# escaped, so these byte patterns only ever match the structure, never string contents.
_NEEDS_WALK = re.compile(
    rb'"N":"(?:-0"|(?!-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?"))|"(?:SS|NS|BS)":\['
)
_NORMAL_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?")


class CodecError(UsageError):
    """A value that is not valid DynamoDB JSON."""


def _encode_bytes(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__} as DynamoDB JSON")


def normalize_number(text: str) -> str:
    """DynamoDB's normal form of a number: plain notation, no leading zeros, no trailing
    fractional zeros, no exponent, no ``-0``. All 38 significant digits are kept (never a
    float). Also reads ION decimals (``103.``, ``6d2``)."""
    if _NORMAL_NUMBER.fullmatch(text) and text != "-0":
        return text
    try:
        value = Decimal(text.replace("d", "E").replace("D", "E"))
    except InvalidOperation as exc:
        raise CodecError(f"not a DynamoDB number: {text!r}") from exc
    if not value.is_finite():
        raise CodecError(f"not a DynamoDB number: {text!r}")
    if value.is_zero():
        return "0"
    plain = format(value, "f")
    if "." in plain:
        plain = plain.rstrip("0").rstrip(".")
    return plain


def _raw_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise CodecError(f"binary value is not base64: {value[:40]!r}") from exc
    raise CodecError(f"binary value of type {type(value).__name__}")


def _b64(value: Any) -> str:
    return base64.b64encode(_raw_bytes(value)).decode("ascii")


def _normalize_value(av: Mapping[str, Any]) -> AttributeValue:
    if len(av) != 1:
        raise CodecError(f"an attribute value has exactly one type tag, got {sorted(av)}")
    ((tag, value),) = av.items()
    if tag == "S" or tag == "BOOL" or tag == "NULL":
        return {tag: value}
    if tag == "N":
        return {"N": normalize_number(str(value))}
    if tag == "B":
        return {"B": _b64(value)}
    if tag == "M":
        return {"M": {name: _normalize_value(inner) for name, inner in value.items()}}
    if tag == "L":
        return {"L": [_normalize_value(inner) for inner in value]}
    if tag == "SS":
        return {"SS": sorted(set(value))}
    if tag == "NS":
        numbers = {normalize_number(str(number)) for number in value}
        return {"NS": sorted(numbers, key=Decimal)}
    if tag == "BS":
        raws = sorted({_raw_bytes(raw) for raw in value})
        return {"BS": [base64.b64encode(raw).decode("ascii") for raw in raws]}
    raise CodecError(f"unknown DynamoDB type tag {tag!r}")


def normalize_item(item: Item) -> dict[str, AttributeValue]:
    """The item as canonical wire-form values (binary as base64 text, sets sorted, numbers
    normalised) — what :func:`canonical_json` serialises."""
    return {name: _normalize_value(av) for name, av in item.items()}


def canonical_bytes(item: Item) -> bytes:
    """Canonical DynamoDB JSON of an item (or a key) as UTF-8 bytes."""
    try:
        raw = orjson.dumps(item, default=_encode_bytes, option=_OPTIONS)
    except TypeError as exc:
        raise CodecError(f"not DynamoDB JSON: {exc}") from exc
    if _NEEDS_WALK.search(raw):
        raw = orjson.dumps(normalize_item(item), option=_OPTIONS)
    return raw


def canonical_json(item: Item) -> str:
    """Canonical DynamoDB JSON of an item (or a key): equal items ⇔ equal text."""
    return canonical_bytes(item).decode("utf-8")


def canonicalize_text(text: str | bytes) -> str:
    """Re-canonicalise DynamoDB JSON text from elsewhere (an export line, a ``--key`` flag)."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise CodecError("DynamoDB JSON must be an object of attribute values")
    for name, av in parsed.items():
        if not isinstance(av, dict) or len(av) != 1 or next(iter(av)) not in TYPE_TAGS:
            raise CodecError(
                f"attribute {name!r} is not a DynamoDB attribute value "
                '(expected e.g. {"S": "x"} or {"N": "1"})'
            )
    return orjson.dumps(normalize_item(parsed), option=_OPTIONS).decode("utf-8")


def _wire_value(av: Mapping[str, Any]) -> AttributeValue:
    ((tag, value),) = av.items()
    if tag == "B":
        return {"B": _raw_bytes(value)}
    if tag == "BS":
        return {"BS": [_raw_bytes(raw) for raw in value]}
    if tag == "M":
        return {"M": {name: _wire_value(inner) for name, inner in value.items()}}
    if tag == "L":
        return {"L": [_wire_value(inner) for inner in value]}
    return {tag: value}


def to_wire(canonical: str | bytes | Item) -> dict[str, AttributeValue]:
    """An item ready for boto3/aiobotocore (``put_item``, ``batch_write_item``): binary as
    ``bytes`` everywhere, nested too — botocore base64-encodes it once on the wire."""
    parsed = orjson.loads(canonical) if isinstance(canonical, str | bytes) else canonical
    return {name: _wire_value(av) for name, av in parsed.items()}


def to_json_item(canonical: str | bytes) -> dict[str, AttributeValue]:
    """Canonical text parsed to plain DynamoDB JSON (binary as base64 text), for files."""
    parsed: dict[str, AttributeValue] = orjson.loads(canonical)
    return parsed


def key_of(item: Item, key_names: list[str] | tuple[str, ...]) -> dict[str, AttributeValue]:
    """The key attributes of an item (for the ``keys`` column of scans and exports)."""
    try:
        return {name: dict(item[name]) for name in key_names}
    except KeyError as exc:
        raise CodecError(f"item lacks key attribute {exc.args[0]!r}") from exc
