"""Amazon Ion, as DynamoDB's ION exports write it, → DynamoDB JSON.

An ION export data file is a stream of top-level structs, one per item::

    $ion_1_0 {Item:{Authors:$dynamodb_SS::["A","B"],Id:103.,PageCount:6d2,Cover:{{aGk=}}}}

AWS maps the types this way: S → string, N → decimal, B → blob, BOOL → bool, NULL → null,
M → struct, L → list, and sets → lists annotated ``$dynamodb_SS``, ``$dynamodb_NS`` or
``$dynamodb_BS``. Parsing is left to ``amazon.ion`` (its C extension streams); this module only
maps each parsed value's Ion type to its DynamoDB type tag. What a value under a tag must be,
and its canonical form, is :mod:`archiver.format.codec`'s (``normalize_item``), so ``103.``
and ``6d2`` end up as ``103`` and ``600``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import IO, Any

from amazon.ion import simpleion
from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyNull

from archiver.format.codec import AttributeValue, CodecError

_SET_ANNOTATIONS = {"$dynamodb_SS": "SS", "$dynamodb_NS": "NS", "$dynamodb_BS": "BS"}


def _annotation_names(value: Any) -> list[str]:
    return [getattr(token, "text", token) for token in getattr(value, "ion_annotations", ())]


def _exact(value: Any) -> Any:
    # DynamoDB never writes Ion floats; read one exactly rather than refuse the file.
    return Decimal(repr(value)) if isinstance(value, float) else value


def attribute_value(value: Any) -> AttributeValue:
    """One parsed Ion value as a DynamoDB attribute value, its scalars as amazon.ion gives
    them (``Decimal`` or ``int`` under ``N``, ``bytes`` under ``B``):
    :func:`codec.normalize_item` checks and converts each by its type tag."""
    for name in _annotation_names(value):
        if name in _SET_ANNOTATIONS:
            tag = _SET_ANNOTATIONS[name]
            if not isinstance(value, list | tuple):
                raise CodecError(f"Ion value annotated as a {tag} set is not a list")
            return {tag: [_exact(element) for element in value]}
    ion_type = getattr(value, "ion_type", None)
    # A typed null (null.bool, null.string, …) is still a null.
    if value is None or ion_type is IonType.NULL or isinstance(value, IonPyNull):
        return {"NULL": True}
    if ion_type is IonType.BOOL or isinstance(value, bool):
        return {"BOOL": bool(value)}
    if ion_type in (IonType.DECIMAL, IonType.INT, IonType.FLOAT) or isinstance(
        value, Decimal | int | float
    ):
        return {"N": _exact(value)}
    if ion_type is IonType.SYMBOL:
        # A symbol value is a SymbolToken (a tuple): its text is the string.
        return {"S": str(getattr(value, "text", value))}
    if ion_type is IonType.STRING or isinstance(value, str):
        return {"S": str(value)}
    if ion_type in (IonType.BLOB, IonType.CLOB) or isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    if ion_type is IonType.STRUCT or isinstance(value, Mapping):
        return {"M": {str(name): attribute_value(inner) for name, inner in value.items()}}
    if ion_type in (IonType.LIST, IonType.SEXP) or isinstance(value, list | tuple):
        return {"L": [attribute_value(inner) for inner in value]}
    raise CodecError(f"Ion value of type {ion_type or type(value).__name__} has no DynamoDB type")


def item_of(value: Any) -> dict[str, AttributeValue]:
    """The item of one export line (``{Item:{…}}``) as DynamoDB JSON."""
    if not isinstance(value, Mapping) or "Item" not in value:
        raise CodecError("ION export value is not a struct with an Item field")
    item = value["Item"]
    if not isinstance(item, Mapping):
        raise CodecError("ION export Item is not a struct")
    return {str(name): attribute_value(inner) for name, inner in item.items()}


def read_items(stream: IO[bytes]) -> Iterator[dict[str, AttributeValue]]:
    """Every item of an (uncompressed) ION export data stream, read incrementally."""
    try:
        for value in simpleion.load(stream, single_value=False, parse_eagerly=False):
            yield item_of(value)
    except CodecError:
        raise
    except Exception as exc:  # amazon.ion raises IonException and plain ValueErrors alike
        raise CodecError(f"not valid Ion: {exc}") from exc
