"""DynamoDB JSON ⇄ canonical JSON ⇄ the wire form boto3 sends.

Canonical DynamoDB JSON (DESIGN.md) is the wire form (``{"S": "x"}``, numbers as strings,
binary as base64) with map keys sorted, no insignificant white space, sets sorted (SS by UTF-8
bytes, NS by numeric value, BS by raw bytes) and numbers in DynamoDB's normal form, so that
equal items have byte-equal text whatever their source: a stream record read by aiobotocore
(binary as ``bytes``), a Lambda event (binary as base64 text), a scan, a JSON or an ION export.

This module is the only place that knows the attribute-value type tags:
:class:`AttributeValueVisitor` is the one dispatch on them, which the validating walk, the
conversion back to boto3's form and the replayer's rendering of values all use.

Speed matters here (every archived record's keys and images pass through it), so the hot path,
:func:`canonical_many`, serialises a batch of items with ``orjson`` (keys sorted, binary to
base64) and then checks the batch's text in one pass of one regular expression that accepts
exactly the canonical grammar: every attribute value an object with one known type tag and a
value of that tag's type (a string under ``S``, a number in normal form of at most 38
characters under ``N``, canonical base64 under ``B``, ``true``/``false`` under ``BOOL``, ``true``
under ``NULL``, non-empty sets, an object under ``M``, a list under ``L``), at every depth:

* items that match need nothing more but their sets ordered, done on the text of each set;
* anything else (``1.50``, ``6d2``, unpadded base64, a second tag, a wrong value type, nesting
  deeper than the expression follows) sends that item through the slower validating walk,
  which either canonicalises it or raises :class:`CodecError` saying what is wrong and where.

So the fast path accepts only what the walk accepts, and gives the same text (the property
test in ``tests/test_codec.py`` holds them to that). Binary values reach orjson's ``default``
and come back marked (a leading U+0000), so that ``bytes`` anywhere but under ``B``/``BS`` is
caught; a string that really starts with U+0000 takes the walk. Python objects orjson writes
as text by itself (``uuid.UUID``, enum members) are the one thing the text cannot tell from a
string; SDKs and JSON parsers never produce them.
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from functools import partial
from itertools import accumulate
from typing import Any, Generic, TypeVar

import orjson

from archiver.format.errors import UsageError

AttributeValue = dict[str, Any]
Item = Mapping[str, AttributeValue]
R = TypeVar("R")

TYPE_TAGS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})

# DynamoDB's limits on numbers: 38 significant digits, magnitude 1E-130 .. 9.99…E+125.
MAX_DIGITS = 38
MIN_EXPONENT = -130
MAX_EXPONENT = 125

# Objects orjson would serialise by itself (datetime, dataclasses, subclasses of str, dict,
# list) go to ``default`` instead, which refuses them: the walk then says what is wrong.
_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_WALK_OPTIONS = orjson.OPT_SORT_KEYS

# A number string in DynamoDB's normal form, and canonical base64 (standard alphabet, padded,
# zero padding bits: the only text b64encode produces, so equal bytes have equal text).
_NORMAL = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?"
# Binary serialised by ``default`` starts with this mark (U+0000, escaped by orjson).
_MARK = b"\\u0000"
# The canonical grammar, on orjson's output. orjson writes valid JSON, so brackets match and
# commas separate: the expression checks only what each value holds. A string is
# `"…"` with escapes; inside one every quote is escaped, so `{"` plus a letter is always an
# object's first key. Short normal-form numbers are within every DynamoDB limit; longer ones
# take the walk, which decides.
_STR = rb'"(?!\\u0000)[^"\\]*+(?:\\.[^"\\]*+)*+"'
_NUM = rb'"(?!-0")(?=[-.0-9]{1,38}")' + _NORMAL + rb'"'
_B64 = (
    rb'"(?:\\u0000)?(?:[A-Za-z0-9+/]{4})*+'
    rb'(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?"'
)
_SCALAR = (
    rb'S":' + _STR
    + rb'|N":' + _NUM
    + rb'|B":' + _B64
    + rb'|BOOL":(?:true|false)|NULL":true'
    + rb'|SS":\[' + _STR + rb'(?:,' + _STR + rb')*+\]'
    + rb'|NS":\[' + _NUM + rb'(?:,' + _NUM + rb')*+\]'
    + rb'|BS":\[' + _B64 + rb'(?:,' + _B64 + rb')*+\]'
    + rb'|L":\[\]|M":\{\}'
)  # fmt: skip
# M and L nest: a regular expression cannot count, so it follows them this deep (each level
# doubles its size); deeper values take the walk.
_FAST_DEPTH = 5


def _value_pattern(depth: int) -> bytes:
    if depth == 0:
        return rb'\{"(?:' + _SCALAR + rb")\}"
    inner = _value_pattern(depth - 1)
    return (
        rb'\{"(?:' + _SCALAR
        + rb'|L":\[(?:,?' + inner + rb')++\]'
        + rb'|M":\{(?:,?' + _STR + rb':' + inner + rb')++\})\}'
    )  # fmt: skip


_ITEM = rb"\{(?:,?" + _STR + rb":" + _value_pattern(_FAST_DEPTH) + rb")*+\}"
# A batch: items one a line (an empty line for an item the walk takes). A match ends at the
# start of the first line that is not canonical.
_LINES = re.compile(rb"(?:" + _ITEM + rb")?+(?:\n(?:" + _ITEM + rb")?+)*+")
# The mark opens a string: after `:`, `,` or `[` (inside a string every quote is escaped, and
# a closing quote is never followed by a backslash), and once the text matched, only binary
# strings start with it.
_MARKED = tuple((opening + b'"' + _MARK, opening + b'"') for opening in (b":", b",", b"["))
# Every SS, NS and BS (`S":[` ends each tag; no attribute name is followed by `[`), up to the
# first `]`: a `]` inside an SS string cuts it short, which then fails to parse. (A pattern
# starting with a literal is searched several times faster than one starting with [NSB].)
_SETS = re.compile(rb'(S":\[[^\]]*\])')
_NORMAL_NUMBER = re.compile(_NORMAL.decode())
_SS, _NS = ord("S"), ord("N")
_SET_CACHE_LIMIT = 10_000  # per set type: a few MB at most


class CodecError(UsageError):
    """A value that is not valid DynamoDB JSON; ``path`` says where (``address.geo[1]``)."""

    def __init__(self, reason: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def at(self, step: str | int) -> CodecError:
        """The same error one level further out (``step`` is a map key or a list index)."""
        error = CodecError(self.reason, (step, *self.path))
        error.__cause__ = self.__cause__
        return error

    def __str__(self) -> str:
        if not self.path:
            return self.reason
        where = ""
        for step in self.path:
            if isinstance(step, int):
                where += f"[{step}]"
            else:
                name = step or '""'
                where += f".{name}" if where else name
        return f"attribute {where!r}: {self.reason}"


_BINARY_TYPES = frozenset({bytes, bytearray, memoryview})


def _encode_bytes(value: Any) -> Any:
    # orjson calls this for every value it does not serialise itself. Binary becomes marked
    # base64 (binascii directly, not base64's wrapper); anything else raises TypeError, which
    # orjson reports and which sends the item to the walk.
    if type(value) in _BINARY_TYPES:
        return "\x00" + binascii.b2a_base64(value, newline=False).decode()
    raise TypeError(type(value).__name__)


# -- numbers -------------------------------------------------------------------------------


def normalize_number(text: str) -> str:
    """DynamoDB's normal form of a number: plain notation, no leading zeros, no trailing
    fractional zeros, no exponent, no ``-0``; all 38 significant digits kept (never a float).

    Also reads ION decimals (``103.``, ``6d2``). Raises :class:`CodecError` for anything
    DynamoDB would reject: not a number, NaN/Infinity, more than 38 significant digits, or
    a magnitude outside 1E-130 .. 9.99…E+125.
    """
    # Short texts already in normal form are within every limit: skip Decimal entirely.
    if len(text) <= MAX_DIGITS and _NORMAL_NUMBER.fullmatch(text) and text != "-0":
        return text
    # Decimal also takes white space and non-ASCII digits; DynamoDB does not.
    if not text.isascii() or text != text.strip():
        raise CodecError(f"not a DynamoDB number: {text[:60]!r}")
    try:
        value = Decimal(text.replace("d", "E").replace("D", "E"))
    except InvalidOperation as exc:
        raise CodecError(f"not a DynamoDB number: {text[:60]!r}") from exc
    if not value.is_finite():
        raise CodecError(f"not a DynamoDB number: {text[:60]!r}")
    if value.is_zero():
        return "0"
    if not MIN_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
        raise CodecError(f"number outside DynamoDB's range 1E-130 .. 9.99E+125: {text[:60]!r}")
    significant = len("".join(map(str, value.as_tuple().digits)).rstrip("0"))
    if significant > MAX_DIGITS:
        raise CodecError(
            f"number has {significant} significant digits, DynamoDB keeps at most {MAX_DIGITS}: "
            f"{text[:60]!r}"
        )
    plain = format(value, "f")
    if "." in plain:
        plain = plain.rstrip("0").rstrip(".")
    return plain


def _number_text(value: Any) -> str:
    # bool is an int subclass, and a float has already lost digits: neither is a number here.
    if isinstance(value, str):
        return normalize_number(value)
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return normalize_number(str(value))
    if isinstance(value, float):
        raise CodecError(f'numbers must be strings ({{"N": "1.5"}}), never floats: got {value!r}')
    raise CodecError(f"a number must be a string, got {type(value).__name__}: {value!r:.40}")


# -- binary --------------------------------------------------------------------------------


def _raw_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CodecError(f"binary value is not base64: {value[:40]!r}") from exc
    raise CodecError(f"binary value must be bytes or base64 text, got {type(value).__name__}")


def _b64(value: Any) -> str:
    return base64.b64encode(_raw_bytes(value)).decode("ascii")


# -- the one dispatch on type tags -------------------------------------------------------


class AttributeValueVisitor(Generic[R]):
    """Does something with one attribute value per type tag: the only dispatch on the tags.

    As boto3's ``TypeDeserializer`` does, :meth:`visit` finds the value's one tag and calls
    the method named for it (``visit_s``, ``visit_n``, ``visit_ss``, ``visit_m``, …) with the
    value under the tag. A subclass defines the methods it needs; a tag without one goes to
    :meth:`other`. :meth:`map_of` and :meth:`list_of` visit the members of an ``M`` or ``L``
    and say where an error is (``address.geo[1]``).
    """

    def __init__(self) -> None:
        self._methods: dict[str, Callable[[Any], R]] = {
            tag: getattr(self, f"visit_{tag.lower()}", None) or partial(self.other, tag)
            for tag in TYPE_TAGS
        }

    def visit(self, av: Any) -> R:
        if not isinstance(av, Mapping):
            raise CodecError(
                f'not an attribute value: {av!r:.60} (expected e.g. {{"S": "x"}} or {{"N": "1"}})'
            )
        if len(av) != 1:
            raise CodecError(f"an attribute value has exactly one type tag, got {sorted(av)}")
        ((tag, value),) = av.items()
        method = self._methods.get(tag)
        if method is None:
            return self.unknown(tag, value)
        return method(value)

    def other(self, tag: str, value: Any) -> R:
        """A tag this visitor has no method for."""
        raise NotImplementedError(f"{type(self).__name__} has no visit_{tag.lower()}")

    def unknown(self, tag: str, value: Any) -> R:
        """A tag that is not a DynamoDB type."""
        raise CodecError(
            f"unknown DynamoDB type tag {tag!r} (expected one of {', '.join(sorted(TYPE_TAGS))})"
        )

    def map_of(self, value: Any) -> dict[str, R]:
        """Every member of an ``M`` value, visited."""
        if not isinstance(value, Mapping):
            raise CodecError(f"M must be an object, got {type(value).__name__}")
        out: dict[str, R] = {}
        for name, inner in value.items():
            if not isinstance(name, str):
                raise CodecError(f"map keys must be strings, got {name!r:.40}")
            try:
                out[name] = self.visit(inner)
            except CodecError as exc:
                raise exc.at(name) from exc.__cause__
        return out

    def list_of(self, value: Any) -> list[R]:
        """Every element of an ``L`` value, visited."""
        if not isinstance(value, list | tuple):
            raise CodecError(f"L must be a list, got {type(value).__name__}")
        elements = []
        for index, inner in enumerate(value):
            try:
                elements.append(self.visit(inner))
            except CodecError as exc:
                raise exc.at(index) from exc.__cause__
        return elements

    def item_of(self, item: Any) -> dict[str, R]:
        """Every attribute of an item, visited (an item is shaped like an ``M`` value)."""
        if not isinstance(item, Mapping):
            raise CodecError(
                f"an item must be an object of attribute values, got {type(item).__name__}"
            )
        out: dict[str, R] = {}
        for name, av in item.items():
            if not isinstance(name, str):
                raise CodecError(f"attribute names must be strings, got {name!r:.40}")
            try:
                out[name] = self.visit(av)
            except CodecError as exc:
                raise exc.at(name) from exc.__cause__
        return out


def _set_members(tag: str, value: Any) -> list[Any]:
    if not isinstance(value, list | tuple | set | frozenset):
        raise CodecError(f"{tag} must be a list, got {type(value).__name__}")
    if not value:
        raise CodecError(f"{tag} is empty: DynamoDB has no empty sets")
    return list(value)


class _Normalizer(AttributeValueVisitor[AttributeValue]):
    """Canonical wire-form values, checking every one (the validating walk)."""

    def visit_s(self, value: Any) -> AttributeValue:
        if not isinstance(value, str):
            raise CodecError(f"S must be a string, got {type(value).__name__}")
        return {"S": value}

    def visit_n(self, value: Any) -> AttributeValue:
        return {"N": _number_text(value)}

    def visit_b(self, value: Any) -> AttributeValue:
        return {"B": _b64(value)}

    def visit_bool(self, value: Any) -> AttributeValue:
        if not isinstance(value, bool):
            raise CodecError(f"BOOL must be true or false, got {value!r:.40}")
        return {"BOOL": value}

    def visit_null(self, value: Any) -> AttributeValue:
        if value is not True:
            raise CodecError(f"NULL must be true, got {value!r:.40}")
        return {"NULL": True}

    def visit_m(self, value: Any) -> AttributeValue:
        return {"M": self.map_of(value)}

    def visit_l(self, value: Any) -> AttributeValue:
        return {"L": self.list_of(value)}

    def visit_ss(self, value: Any) -> AttributeValue:
        members = _set_members("SS", value)
        if not all(isinstance(member, str) for member in members):
            raise CodecError("SS members must be strings")
        # Python orders str by code point, which is exactly UTF-8 byte order.
        return {"SS": sorted(set(members))}

    def visit_ns(self, value: Any) -> AttributeValue:
        numbers = {_number_text(number) for number in _set_members("NS", value)}
        return {"NS": sorted(numbers, key=Decimal)}

    def visit_bs(self, value: Any) -> AttributeValue:
        raws = sorted({_raw_bytes(raw) for raw in _set_members("BS", value)})
        return {"BS": [base64.b64encode(raw).decode("ascii") for raw in raws]}


class _ToWire(AttributeValueVisitor[AttributeValue]):
    """Values for boto3: binary as ``bytes`` at every depth, everything else as it is."""

    def visit_b(self, value: Any) -> AttributeValue:
        return {"B": _raw_bytes(value)}

    def visit_bs(self, value: Any) -> AttributeValue:
        return {"BS": [_raw_bytes(raw) for raw in _set_members("BS", value)]}

    def visit_m(self, value: Any) -> AttributeValue:
        return {"M": self.map_of(value)}

    def visit_l(self, value: Any) -> AttributeValue:
        return {"L": self.list_of(value)}

    def other(self, tag: str, value: Any) -> AttributeValue:
        return {tag: value}


_NORMALIZER = _Normalizer()
_TO_WIRE = _ToWire()


def normalize_item(item: Item) -> dict[str, AttributeValue]:
    """The item as canonical wire-form values (binary as base64 text, sets sorted, numbers
    normalised), validating every value — what :func:`canonical_json` serialises."""
    return _NORMALIZER.item_of(item)


# -- canonical text ------------------------------------------------------------------------

# Sets are ordered on their text, and the result remembered: the old and new images of a MODIFY
# usually share their sets, and many sets (roles, tags) recur across items.
_ordered_sets: dict[int, dict[bytes, bytes]] = {_SS: {}, _NS: {}, ord("B"): {}}


def _ordered_set(tag: int, text: bytes) -> bytes | None:
    """``S":[…]`` of one set (``tag`` is S, N or B) with its members in canonical order;
    ``None`` if its members do not parse (for the walk to report)."""
    cache = _ordered_sets[tag]
    body = text[4:-1]  # '"a","b"'
    if tag == _SS and b"\\" in body:
        result = _ordered_escaped_strings(text)
        if result is None:
            return None
    else:
        # No escapes (NS and BS members matched the grammar): every quote delimits a member,
        # and a member's JSON text is its UTF-8, which sorts like the string itself.
        members = body[1:-1].split(b'","')
        if not body or body[0] != 0x22 or body[-1] != 0x22 or body.count(b'"') != 2 * len(members):
            return None  # empty, or cut short by a "]" inside a member
        try:
            ordered = _ordered_members(tag, members)
        except (ValueError, InvalidOperation):
            return None  # an item already bound for the walk (a number not in normal form)
        result = text if ordered == members else b'S":["' + b'","'.join(ordered) + b'"]'
    if len(cache) >= _SET_CACHE_LIMIT:
        cache.clear()
    cache[text] = result
    return result


def _ordered_members(tag: int, members: list[bytes]) -> list[bytes]:
    if tag == _SS:
        return sorted(set(members))
    if tag == _NS:
        ordered = sorted(set(members), key=float)
        # floats order distinct numbers correctly unless two of them round to one float
        if len(set(map(float, ordered))) != len(ordered):
            ordered.sort(key=lambda member: Decimal(member.decode()))
        return ordered
    return sorted(set(members), key=binascii.a2b_base64)


def _ordered_escaped_strings(text: bytes) -> bytes | None:
    try:
        members = orjson.loads(text[3:])
    except orjson.JSONDecodeError:
        return None  # cut short by a "]" inside a member
    if not members:
        return None
    # Python orders str by code point, which is exactly UTF-8 byte order.
    ordered = sorted(set(members))
    return text if ordered == members else b'S":' + orjson.dumps(ordered)


def canonical_many(items: Sequence[Item | None]) -> list[bytes | None]:
    """Canonical DynamoDB JSON (UTF-8 bytes) of many items or keys at once; ``None`` stays
    ``None``. The same result as :func:`canonical_bytes` on each, for a fraction of the cost:
    the archiver's hot path (every stream record's keys and images go through it).

    Each item is serialised by orjson with sorted keys; then the whole batch's text is matched
    once against the canonical grammar, and only the items that do not match take the
    validating walk.

    Raises:
        CodecError: an item is not valid DynamoDB JSON (the first such, in order).
    """
    if not items:
        return []
    dumps = orjson.dumps
    raws: list[bytes] = []
    walk: set[int] = set()
    absent: list[int] = []
    for item in items:
        if item is None:
            absent.append(len(raws))
            raws.append(b"")
            continue
        try:
            raws.append(dumps(item, default=_encode_bytes, option=_OPTIONS))
        except TypeError:  # not plain JSON: a Decimal, a Python set, or an error to report
            walk.add(len(raws))
            raws.append(b"")
    # orjson never writes a raw newline (it escapes them in strings): a safe separator.
    blob = b"\n".join(raws)
    end = _LINES.match(blob).end()  # type: ignore[union-attr]  # the pattern matches ""
    if end != len(blob):
        ends = list(accumulate(len(raw) + 1 for raw in raws))
        while end != len(blob):
            index = bisect_right(ends, end)
            walk.add(index)
            if ends[index] > len(blob):
                break
            end = _LINES.match(blob, ends[index] - 1).end()  # type: ignore[union-attr]
    if _MARK in blob:
        if b'\\"' + _MARK in blob:  # a quote then U+0000 inside some string: be exact
            for marked, plain in _MARKED:
                blob = blob.replace(marked, plain)
        else:
            blob = blob.replace(b'"' + _MARK, b'"')
    if b'S":[' in blob:
        parts = _SETS.split(blob)  # text, set, text, set, …, text
        # Inline, without a call: a set of one member (three quotes — the tag's and the
        # member's two — no escape, closed by its "]") has nothing to order, and most other
        # sets were seen before (a MODIFY's two images share theirs).
        caches = _ordered_sets
        ordered = [
            found
            if found.count(b'"') == 3 and found[-2] == 0x22 and b"\\" not in found
            else caches[text[-1]].get(found) or _ordered_set(text[-1], found)
            for text, found in zip(parts[::2], parts[1::2], strict=False)
        ]
        if None in ordered:
            line = 0
            for at in range(1, len(parts), 2):
                line += parts[at - 1].count(b"\n")
                if ordered[at // 2] is None:
                    walk.add(line)
                    ordered[at // 2] = parts[at]
        parts[1::2] = ordered
        blob = b"".join(parts)
    out: list[bytes | None] = list(blob.split(b"\n"))
    for index in sorted(walk):
        item = items[index]
        out[index] = None if item is None else _dump_normalized(item)
    for index in absent:
        out[index] = None
    return out


def canonical_bytes(item: Item) -> bytes:
    """Canonical DynamoDB JSON of an item (or a key) as UTF-8 bytes."""
    (raw,) = canonical_many((item,))
    assert raw is not None
    return raw


def _dump_normalized(item: Item) -> bytes:
    normalized = normalize_item(item)
    try:
        return orjson.dumps(normalized, option=_WALK_OPTIONS)
    except TypeError as exc:  # e.g. a string with a lone surrogate: not UTF-8
        raise CodecError(f"not DynamoDB JSON: {exc}") from exc


def canonical_json(item: Item) -> str:
    """Canonical DynamoDB JSON of an item (or a key): equal items ⇔ equal text."""
    return canonical_bytes(item).decode("utf-8")


def canonicalize_text(text: str | bytes) -> str:
    """Re-canonicalise DynamoDB JSON text from elsewhere (an export line, a ``--key`` flag),
    checking every value; raises :class:`CodecError` saying what is wrong and where."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise CodecError(
            'DynamoDB JSON must be an object of attribute values, e.g. {"pk": {"S": "x"}}'
        )
    return _dump_normalized(parsed).decode("utf-8")


# -- back to the SDK -----------------------------------------------------------------------


def to_wire(canonical: str | bytes | Item) -> dict[str, AttributeValue]:
    """An item ready for boto3/aiobotocore (``put_item``, ``batch_write_item``): binary as
    ``bytes`` everywhere, nested too — botocore base64-encodes it once on the wire (tools that
    pass base64 text through instead store it encoded twice, dynamodump #238)."""
    if isinstance(canonical, str | bytes):
        try:
            parsed = orjson.loads(canonical)
        except orjson.JSONDecodeError as exc:
            raise CodecError(f"not valid JSON: {exc}") from exc
    else:
        parsed = canonical
    if not isinstance(parsed, Mapping):
        raise CodecError("DynamoDB JSON must be an object of attribute values")
    return _TO_WIRE.item_of(parsed)


def key_of(item: Item, key_names: list[str] | tuple[str, ...]) -> dict[str, AttributeValue]:
    """The key attributes of an item (for the ``keys`` column of scans and exports)."""
    try:
        return {name: dict(item[name]) for name in key_names}
    except KeyError as exc:
        raise CodecError(f"item lacks key attribute {exc.args[0]!r}") from exc
