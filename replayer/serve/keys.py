"""Keys as sortable text: one string per item whose order is DynamoDB's read order.

A materialised state is kept sorted by one text column (:mod:`replayer.serve.state`), so
that a GetItem is a binary search and a Query or a Scan segment a contiguous range. The
text is built twice — in DuckDB SQL when a state is built (vectorised, over every item) and
in Python for each request's keys — and the two must agree exactly: ``tests/test_serve_keys.py``
holds them to that on random values.

Order (DynamoDB's, as the dynalite project established against the service, whose tests of
scan order and segments pass against it): a Scan returns items by a 24-bit hash of their
partition key — the first 6 hex digits of ``md5(b"Outliers" + key bytes)``, where a number's
bytes are DynamoDB's internal number encoding (:func:`number_bytes`) — then by partition key
value, then by sort key value; a parallel Scan gives segment ``s`` of ``n`` a contiguous range
of that hash. Within a partition key, items are in sort key order: N numerically, S and B by
unsigned bytes. An index orders its entries the same way by the index's keys, and entries
with equal index keys by the same hash of their table key.

Each key value becomes a *component* that sorts as the value does and ends with U+0000, so
that concatenations sort as tuples: S is its text with U+0000 and U+0001 escaped (to U+0001
U+0001 and U+0001 U+0002); B is the upper-case hex of its bytes; N is ``2`` for zero, else a
sign digit (``3`` positive, ``1`` negative), the decimal exponent of its first significant
digit plus 200 in three digits (for negatives 799 minus it) and its significant digits (for
negatives each digit's nine's complement, then ``~``, which sorts above every digit).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import duckdb
import duckdb.func
import pyarrow as pa

from replayer.serve.values import AttributeValue, type_of

SALT = b"Outliers"
HASH_DIGITS = 6  # hex digits of the partition hash that order a Scan (24 bits)
HASH_SPACE = 16**HASH_DIGITS
END = "\x00"


# -- Python --------------------------------------------------------------------------------


def _significand(text: str) -> tuple[str, int]:
    """(significant digits, exponent of the first one) of a canonical non-zero number."""
    unsigned = text.lstrip("-")
    whole, _, fraction = unsigned.partition(".")
    if whole != "0":
        return (whole + fraction).rstrip("0"), len(whole) - 1
    stripped = fraction.lstrip("0")
    return stripped, -(len(fraction) - len(stripped) + 1)


def number_text(text: str) -> str:
    """A canonical number as text that sorts numerically (without the final U+0000)."""
    if text == "0":
        return "2"
    digits, exponent = _significand(text)
    if text.startswith("-"):
        flipped = digits.translate(str.maketrans("0123456789", "9876543210"))
        return f"1{799 - exponent:03d}{flipped}~"
    return f"3{exponent + 200:03d}{digits}"


def component(value: AttributeValue) -> str:
    """One key value (S, N or B, canonical) as a sortable component."""
    tag = type_of(value)
    if tag == "S":
        return value["S"].replace("\x01", "\x01\x02").replace("\x00", "\x01\x01") + END
    if tag == "N":
        return number_text(value["N"]) + END
    return base64.b64decode(value["B"]).hex().upper() + END


def component_prefix(value: AttributeValue) -> str:
    """The component of ``value`` without its end mark: every component of a value that
    ``begins_with`` it (S or B) starts with this text."""
    return component(value)[:-1]


def number_bytes(text: str) -> bytes:
    """DynamoDB's internal byte encoding of a canonical number (what its partition hash reads).

    Base-100 digit pairs after an exponent byte, negatives complemented — as dynalite
    reproduces it to give DynamoDB's scan order.
    """
    if text == "0":
        return b"\x80"
    digits, exponent = _significand(text)
    negative = text.startswith("-")
    mantissa = [int(d) for d in digits]
    exponent += 1
    append_zero = 1 if exponent % 2 else 0
    length = (len(mantissa) + append_zero + 1) // 2
    out: list[int] = [0] * (length + 1)
    if length < 20 and negative:
        out.append(102)
    out[0] = (exponent + append_zero) // 2 - 64
    if negative:
        out[0] = ~out[0]
    last = len(mantissa) - 1
    for i, digit in enumerate(mantissa):
        position = i + append_zero  # an odd exponent pads the digits with a leading zero
        index = position // 2 + 1
        if position % 2 == 0:
            out[index] = digit * 10
        else:
            out[index] += digit
        if position % 2 or i == last:
            out[index] = 101 - out[index] if negative else out[index] + 1
    return bytes(b & 0xFF for b in out)


def key_bytes(value: AttributeValue) -> bytes:
    """The bytes DynamoDB hashes for one key value."""
    tag = type_of(value)
    if tag == "S":
        return str(value["S"]).encode("utf-8")
    if tag == "N":
        return number_bytes(value["N"])
    return base64.b64decode(value["B"])


def partition_hash(*values: AttributeValue) -> str:
    """The 6 hex digits of DynamoDB's hash of a partition key (or of a whole table key)."""
    digest = hashlib.md5(SALT, usedforsecurity=False)
    for value in values:
        digest.update(key_bytes(value))
    return digest.hexdigest()[:HASH_DIGITS]


def item_key(hash_value: AttributeValue, range_value: AttributeValue | None) -> str:
    """The sort text of a table item: its partition hash, then its key components."""
    text = partition_hash(hash_value) + component(hash_value)
    return text + component(range_value) if range_value is not None else text


def tie_breaker(hash_value: AttributeValue, range_value: AttributeValue | None) -> str:
    """What orders index entries with equal index keys: the hash of their table key, then the
    key itself (so every entry's text is unique)."""
    values = (hash_value,) if range_value is None else (hash_value, range_value)
    return partition_hash(*values) + "".join(component(v) for v in values)


def segment_bounds(segment: int, total: int) -> tuple[str, str]:
    """The hash range ``[low, high)`` (as 6-hex-digit text, ``high`` may be ``"g"`` for the
    end) of Scan segment ``segment`` of ``total``. Up to 4096 segments the boundaries fall on
    the first three hex digits, as DynamoDB's do; beyond, on all six."""
    space, digits = (4096, 3) if total <= 4096 else (HASH_SPACE, HASH_DIGITS)

    def bound(n: int) -> str:
        start = -(-space * n // total)  # ceil
        if start >= space:
            return "g"
        return f"{start:0{digits}x}".ljust(HASH_DIGITS, "0")

    return bound(segment), bound(segment + 1)


# -- SQL -----------------------------------------------------------------------------------
#
# The SQL twin computes, for every row of a table, the same text as item_key (and
# tie_breaker), in layers, so that each key value is extracted from the JSON once and a
# number taken apart once (an expression that repeats them costs seconds per million rows):
#
#   1. the key values' texts, extracted together from the JSON;
#   2. each number's sign, whole and fraction digits (one regular expression);
#   3. each number's exponent and significant digits;
#   4. the sort text: partition hash, then the components.


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def json_path(*steps: str) -> str:
    """A JSON Pointer literal for DuckDB's JSON functions (any attribute name works)."""
    escaped = (step.replace("~", "~0").replace("/", "~1") for step in steps)
    return _quote("/" + "/".join(escaped))


def _number_bytes_udf(texts: pa.Array) -> pa.Array:
    return pa.array(
        [None if t is None else number_bytes(t) for t in texts.to_pylist()], pa.binary()
    )


_NUMBER = r"'^(-?)(0|[1-9][0-9]*)(?:\.([0-9]*))?$'"


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Define the one Python function the SQL uses (a number's bytes, for the partition hash
    of a numeric partition key), on ``con``."""
    try:
        con.create_function(
            "ddb_num_bytes", _number_bytes_udf, ["VARCHAR"], "BLOB", type=duckdb.func.ARROW
        )
    except duckdb.Error as exc:  # already there (a second state on the same connection)
        if "already exists" not in str(exc):
            raise


def sql_value_text(column: str, attribute: str, tag: str) -> str:
    """SQL of the text under ``tag`` of ``attribute`` in the JSON ``column`` (NULL when the
    attribute is absent or of another type)."""
    return f"json_extract_string({column}, {json_path(attribute, tag)})"


KeyPart = tuple[str, str]  # (attribute name, type)


def sql_keyed(
    source: str,
    json_column: str,
    parts: Sequence[KeyPart],
    *,
    tie: Sequence[KeyPart] = (),
    keep: Sequence[str] = (),
    where_present: bool = False,
) -> str:
    """``SELECT <keep>, k FROM source``: ``k`` is :func:`item_key` of the key ``parts``
    (partition key first) read from the JSON ``json_column``, followed by
    :func:`tie_breaker` of the ``tie`` parts when given. ``where_present``: only rows that
    have every part with its type (an index's entries)."""
    everything = list(dict.fromkeys([*parts, *tie]))
    paths = ", ".join(json_path(name, kind) for name, kind in everything)
    kept = "".join(f"{column}, " for column in keep)
    layer = f"SELECT {kept}json_extract_string({json_column}, [{paths}]) AS _t FROM {source}"
    if where_present:
        layer = f"SELECT * FROM ({layer}) WHERE " + " AND ".join(
            f"_t[{i + 1}] IS NOT NULL" for i in range(len(everything))
        )
    text = {part: f"_t[{i + 1}]" for i, part in enumerate(everything)}
    numbers = [part for part in everything if part[1] == "N"]
    if numbers:
        taken_apart = ", ".join(
            f"regexp_extract({text[part]}, {_NUMBER}, ['s', 'w', 'f']) AS _p{i}"
            for i, part in enumerate(numbers)
        )
        layer = f"SELECT *, {taken_apart} FROM ({layer})"
        digits = []
        for i, _ in enumerate(numbers):
            w, f = f"_p{i}.w", f"_p{i}.f"
            digits.append(
                f"_p{i}.s = '-' AS _neg{i}, "
                f"CASE WHEN {w} <> '0' THEN length({w}) - 1 "
                f"ELSE -(length({f}) - length(ltrim({f}, '0')) + 1) END AS _e{i}, "
                f"CASE WHEN {w} <> '0' THEN rtrim({w} || {f}, '0') "
                f"ELSE ltrim({f}, '0') END AS _d{i}"
            )
        layer = f"SELECT *, {', '.join(digits)} FROM ({layer})"

    def component(part: KeyPart) -> str:
        value = text[part]
        if part[1] == "S":
            return (
                f"replace(replace({value}, chr(1), chr(1) || chr(2)), chr(0), chr(1) || chr(1))"
                " || chr(0)"
            )
        if part[1] == "B":
            return f"hex(from_base64({value})) || chr(0)"
        i = numbers.index(part)
        return (
            f"(CASE WHEN {value} = '0' THEN '2' "
            f"WHEN _neg{i} THEN '1' || lpad((799 - _e{i})::VARCHAR, 3, '0') || "
            f"translate(_d{i}, '0123456789', '9876543210') || '~' "
            f"ELSE '3' || lpad((_e{i} + 200)::VARCHAR, 3, '0') || _d{i} END) || chr(0)"
        )

    def key_bytes(part: KeyPart) -> str:
        value = text[part]
        if part[1] == "S":
            return f"encode({value})"
        if part[1] == "N":
            return f"ddb_num_bytes({value})"
        return f"from_base64({value})"

    def hashed(over: Sequence[KeyPart]) -> str:
        blob = " || ".join(["'Outliers'::BLOB", *(key_bytes(part) for part in over)])
        return f"left(md5({blob}), {HASH_DIGITS})"

    pieces = [hashed(parts[:1]), *(component(part) for part in parts)]
    if tie:
        pieces += [hashed(tie), *(component(part) for part in tie)]
    outer = "".join(f"{column}, " for column in keep)
    return f"SELECT {outer}{' || '.join(pieces)} AS k FROM ({layer})"
