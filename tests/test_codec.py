"""Canonical DynamoDB JSON: lossless, and equal items ⇔ byte-equal text.

Items are generated as *models* (what an item means: Decimals, bytes, frozensets), rendered
into DynamoDB JSON in every form a source can deliver (key order, set order, ``1.50`` vs
``1.5`` vs ``15E-1`` vs ION ``15d-1``, binary as bytes or base64 text), and judged by an oracle
written independently of the codec.
"""

from __future__ import annotations

import array
import base64
import dataclasses
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from archiver.aws.error_table import EXIT_USAGE, UsageError
from archiver.format import codec
from archiver.format.codec import (
    CodecError,
    canonical_bytes,
    canonical_json,
    canonical_many,
    canonicalize_text,
    key_of,
    normalize_item,
    normalize_number,
    to_wire,
)

# Neither the format, the codec nor planning talks to AWS (see tests/conftest.py).
pytestmark = pytest.mark.no_aws

Model = tuple[Any, ...]

# -- models and their renderings -----------------------------------------------------------

# Strings that look like the structure the fast path searches for, or like its separators.
TRICKY = [
    "",
    '"N":"1.50"',
    '{"N":"007"}',
    'S":[',
    '"SS":["b","a"]',
    "]",
    '","',
    "a]b",
    "\n",
    "\\",
    '\\"',
    '"B":"AR=="',
    'NS":["-0"]',
    "日本語",
    "🚀",
    "\u0000",
    "\u007f",
    "é",
    "e\u0301",
]
TAG_NAMES = ["N", "S", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL", "Keys"]

texts = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(TRICKY)
names = texts | st.sampled_from(TAG_NAMES)


@st.composite
def decimals(draw: st.DrawFn) -> Decimal:
    """Any number DynamoDB stores: up to 38 significant digits, 1E-130 .. 9.99…E+125, or 0."""
    if draw(st.integers(0, 20)) == 0:
        return Decimal(0)
    digits = draw(st.integers(1, 38))
    coefficient = draw(st.integers(10 ** (digits - 1), 10**digits - 1))
    # adjusted exponent = exponent + digits - 1 must lie in [-130, 125]
    exponent = draw(st.integers(-130 - digits + 1, 125 - digits + 1))
    sign = draw(st.sampled_from([1, -1]))
    return Decimal(f"{sign * coefficient}E{exponent}")  # exact: no context rounding


def frozenset_items(mapping: dict[str, Model]) -> frozenset[tuple[str, Model]]:
    return frozenset(mapping.items())


scalars = st.one_of(
    st.tuples(st.just("S"), texts),
    st.tuples(st.just("N"), decimals()),
    st.tuples(st.just("B"), st.binary(max_size=12)),
    st.tuples(st.just("BOOL"), st.booleans()),
    st.just(("NULL", True)),
    st.tuples(st.just("SS"), st.frozensets(texts, min_size=1, max_size=4)),
    st.tuples(st.just("NS"), st.frozensets(decimals(), min_size=1, max_size=4)),
    st.tuples(st.just("BS"), st.frozensets(st.binary(max_size=6), min_size=1, max_size=4)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.tuples(st.just("M"), st.dictionaries(names, inner, max_size=4).map(frozenset_items)),
        st.tuples(st.just("L"), st.lists(inner, max_size=4).map(tuple)),
    ),
    max_leaves=12,
)


items = st.dictionaries(names, values, min_size=1, max_size=6)


def number_forms(value: Decimal) -> list[str]:
    """Every way a source may spell the same number."""
    plain = format(value, "f")
    forms = [plain, format(value, "E"), str(value), format(value, "e").replace("e", "d")]
    forms.append(plain + ("0" if "." in plain else ".000"))
    if "." not in plain:
        forms.append(plain + ".")  # ION decimal: 103.
    if not plain.startswith("-"):
        forms.append("00" + plain)
        forms.append("+" + plain)
    if value.is_zero():
        forms += ["-0", "0.0", "-0.000", "0E+5"]
    return forms


def binary_forms(raw: bytes) -> list[Any]:
    return [raw, bytearray(raw), memoryview(raw), base64.b64encode(raw).decode("ascii")]


@st.composite
def rendered(draw: st.DrawFn, model: Model) -> dict[str, Any]:
    """One attribute value for ``model``, in forms, orders and spellings drawn at random."""
    tag = model[0]
    if tag == "S":
        return {"S": model[1]}
    if tag == "N":
        return {"N": draw(st.sampled_from(number_forms(model[1])))}
    if tag == "B":
        return {"B": draw(st.sampled_from(binary_forms(model[1])))}
    if tag in ("BOOL", "NULL"):
        return {tag: model[1]}
    if tag == "SS":
        return {"SS": draw(st.permutations(sorted(model[1])))}
    if tag == "NS":
        members = draw(st.permutations(sorted(model[1])))
        return {"NS": [draw(st.sampled_from(number_forms(member))) for member in members]}
    if tag == "BS":
        members = draw(st.permutations(sorted(model[1])))
        return {"BS": [draw(st.sampled_from(binary_forms(member))) for member in members]}
    if tag == "M":
        return {"M": draw(rendered_item(dict(model[1])))}
    assert tag == "L"
    return {"L": [draw(rendered(inner)) for inner in model[1]]}


@st.composite
def rendered_item(draw: st.DrawFn, model: dict[str, Model]) -> dict[str, Any]:
    order = draw(st.permutations(sorted(model)))
    return {name: draw(rendered(model[name])) for name in order}


# -- the oracle: what DynamoDB JSON means, written without the codec ------------------------


def model_of(av: dict[str, Any]) -> Model:
    ((tag, value),) = av.items()
    if tag == "S":
        return ("S", value)
    if tag == "N":
        return ("N", Decimal(value.replace("d", "E")))
    if tag == "B":
        return ("B", base64.b64decode(value) if isinstance(value, str) else bytes(value))
    if tag in ("BOOL", "NULL"):
        return (tag, value)
    if tag == "SS":
        return ("SS", frozenset(value))
    if tag == "NS":
        return ("NS", frozenset(Decimal(member.replace("d", "E")) for member in value))
    if tag == "BS":
        return ("BS", frozenset(model_of({"B": member})[1] for member in value))
    if tag == "M":
        return ("M", frozenset(item_model(value).items()))
    assert tag == "L"
    return ("L", tuple(model_of(inner) for inner in value))


def item_model(item: dict[str, Any]) -> dict[str, Model]:
    return {name: model_of(av) for name, av in item.items()}


NORMAL_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")


def assert_canonical_form(text: str) -> None:
    """Compact, keys sorted, sets sorted by their rules, numbers normal, base64 canonical."""
    parsed = orjson.loads(text)
    assert text == orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS).decode()

    def check(av: dict[str, Any]) -> None:
        ((tag, value),) = av.items()
        if tag == "N":
            assert NORMAL_NUMBER.fullmatch(value) and value != "-0", value
        elif tag == "B":
            assert base64.b64encode(base64.b64decode(value)).decode() == value
        elif tag == "SS":
            assert value == sorted(set(value), key=lambda s: s.encode("utf-8"))
        elif tag == "NS":
            assert value == sorted(set(value), key=Decimal)
            for member in value:
                check({"N": member})
        elif tag == "BS":
            assert value == sorted(set(value), key=base64.b64decode)
            for member in value:
                check({"B": member})
        elif tag == "M":
            for inner in value.values():
                check(inner)
        elif tag == "L":
            for inner in value:
                check(inner)

    for av in parsed.values():
        check(av)


# -- properties ----------------------------------------------------------------------------

PROPERTY = settings(max_examples=150, deadline=None)


@PROPERTY
@given(model=items, data=st.data())
def test_equal_items_have_byte_identical_text_whatever_their_form(
    model: dict[str, Model], data: st.DataObject
) -> None:
    first = data.draw(rendered_item(model))
    second = data.draw(rendered_item(model))
    text = canonical_json(first)
    assert canonical_json(second) == text
    assert_canonical_form(text)
    # lossless: the text means exactly the model (numbers as Decimals, never floats)
    assert item_model(orjson.loads(text)) == model


@PROPERTY
@given(a=items, b=items, data=st.data())
def test_different_items_have_different_text(
    a: dict[str, Model], b: dict[str, Model], data: st.DataObject
) -> None:
    same_text = canonical_json(data.draw(rendered_item(a))) == canonical_json(
        data.draw(rendered_item(b))
    )
    assert same_text == (a == b)


@PROPERTY
@given(model=items, data=st.data())
def test_round_trips_are_the_identity(model: dict[str, Model], data: st.DataObject) -> None:
    text = canonical_json(data.draw(rendered_item(model)))
    # canonical → wire (what boto3 sends) → canonical
    wire = to_wire(text)
    assert canonical_json(wire) == text
    assert item_model(wire) == model
    # canonical → parse (plain JSON, binary as base64 text) → canonical
    assert canonical_json(orjson.loads(text)) == text
    assert canonicalize_text(text) == text
    assert canonicalize_text(text.encode()) == text


@PROPERTY
@given(model=items, data=st.data())
def test_fast_path_agrees_with_the_validating_walk(
    model: dict[str, Model], data: st.DataObject
) -> None:
    item = data.draw(rendered_item(model))
    walked = orjson.dumps(normalize_item(item), option=orjson.OPT_SORT_KEYS)
    assert canonical_bytes(item) == walked


@PROPERTY
@given(models=st.lists(st.none() | items, max_size=8), data=st.data())
def test_a_batch_gives_what_each_item_gives_alone(
    models: list[dict[str, Model] | None], data: st.DataObject
) -> None:
    batch = [None if m is None else data.draw(rendered_item(m)) for m in models]
    expected = [None if item is None else canonical_bytes(item) for item in batch]
    assert canonical_many(batch) == expected


@PROPERTY
@given(value=decimals(), data=st.data())
def test_every_spelling_of_a_number_normalises_to_one_exact_text(
    value: Decimal, data: st.DataObject
) -> None:
    form = data.draw(st.sampled_from(number_forms(value)))
    text = normalize_number(form)
    assert text == normalize_number(format(value, "f"))
    assert Decimal(text) == value  # exact: all digits kept
    assert NORMAL_NUMBER.fullmatch(text) and text != "-0"


@pytest.mark.parametrize(
    ("spellings", "normal"),
    [
        (["1.5", "1.50", "15E-1", "15e-1", "15d-1", "0.15E1", "+1.5", "001.5"], "1.5"),
        (["103", "103.", "103.000", "1.03E2", "103d0"], "103"),
        (["600", "6d2", "6E+2", "6.00e2"], "600"),
        (["0", "-0", "0.0", "-0.000", "0E+10", "0d0"], "0"),
        (["-7.250", "-725E-2", "-7.25d0"], "-7.25"),
    ],
)
def test_equal_numbers_have_identical_text(spellings: list[str], normal: str) -> None:
    texts = {canonical_json({"n": {"N": spelling}}) for spelling in spellings}
    assert texts == {f'{{"n":{{"N":"{normal}"}}}}'}
    ns_texts = {canonical_json({"n": {"NS": [spelling, "7"]}}) for spelling in spellings}
    assert len(ns_texts) == 1


def test_extreme_numbers_are_kept_exactly_never_as_floats() -> None:
    digits38 = "12345678901234567890123456789012345678"
    tiny = "0." + "0" * 129 + "1"  # 1E-130
    huge = "9" * 38 + "0" * 88  # 9.99…E+125 (38 nines)
    item: dict[str, Any] = {
        "a": {"N": digits38},
        "b": {"N": "-0." + digits38},
        "c": {"N": "1E-130"},
        "d": {"N": "9.9999999999999999999999999999999999999E+125"},
        "e": {"NS": ["1E-130", digits38, "-" + digits38]},
    }
    parsed = orjson.loads(canonical_json(item))
    assert parsed["a"] == {"N": digits38}
    assert parsed["b"] == {"N": "-0." + digits38}
    assert parsed["c"] == {"N": tiny}
    assert parsed["d"] == {"N": huge}
    assert parsed["e"] == {"NS": ["-" + digits38, tiny, digits38]}
    assert Decimal(parsed["d"]["N"]) == Decimal("9.9999999999999999999999999999999999999E+125")
    # floats would have lost digits 17 onwards
    assert float(digits38) != Decimal(digits38)
    assert to_wire(canonical_json(item))["a"] == {"N": digits38}


def test_empty_strings_binary_and_unicode_survive() -> None:
    item: dict[str, Any] = {
        "": {"S": ""},
        "b": {"B": b""},
        "名前": {"S": "日本語 🚀 e\u0301"},
        "z": {"SS": ["", "a"]},
    }
    text = canonical_json(item)
    assert orjson.loads(text) == {
        "": {"S": ""},
        "b": {"B": ""},
        "z": {"SS": ["", "a"]},
        "名前": {"S": "日本語 🚀 e\u0301"},
    }
    assert to_wire(text)["b"] == {"B": b""}


def test_sets_are_sorted_by_their_own_rules() -> None:
    item: dict[str, Any] = {
        "ss": {"SS": ["é", "z", "Z", "🚀", "ｅ", "a"]},  # UTF-8 bytes: Z < a < z < é < ｅ < 🚀
        "ns": {"NS": ["10", "9", "-1", "1.5", "-20"]},  # numeric, not textual
        # equal as floats, distinct as DynamoDB numbers (38 digits)
        "close": {
            "NS": [
                "1.0000000000000000000000000000000000002",
                "1",
                "1.0000000000000000000000000000000000001",
            ]
        },
        "bs": {"BS": [b"\xff", b"\x00\x01", b"\x00", b"\x7f"]},  # raw bytes, not base64 text
    }
    parsed = orjson.loads(canonical_json(item))
    assert parsed["ss"]["SS"] == ["Z", "a", "z", "é", "ｅ", "🚀"]
    assert parsed["ns"]["NS"] == ["-20", "-1", "1.5", "9", "10"]
    assert parsed["close"]["NS"] == [
        "1",
        "1.0000000000000000000000000000000000001",
        "1.0000000000000000000000000000000000002",
    ]
    assert [base64.b64decode(m) for m in parsed["bs"]["BS"]] == [
        b"\x00",
        b"\x00\x01",
        b"\x7f",
        b"\xff",
    ]


@example(members=["a]", "]b", "a"])
@example(members=["]", "A"])  # the first "]" ends a one-member-looking set early
@example(members=['x"]', "b"])  # … after an escaped quote
@example(members=["]"])
@example(members=['x","y', "a", '"'])
@PROPERTY
@given(members=st.lists(texts, min_size=1, max_size=5, unique=True))
def test_string_sets_holding_brackets_and_quotes_are_still_ordered(members: list[str]) -> None:
    item: dict[str, Any] = {
        "m": {"M": {"s": {"SS": list(reversed(members))}}},
        "t": {"SS": members},
    }
    parsed = orjson.loads(canonical_json(item))
    expected = sorted(members, key=lambda s: s.encode("utf-8"))
    assert parsed["t"]["SS"] == expected
    assert parsed["m"]["M"]["s"]["SS"] == expected


def test_strings_that_look_like_structure_are_left_alone() -> None:
    item: dict[str, Any] = {
        "N": {"S": '"N":"1.50"'},
        "SS": {"S": 'S":["b","a"]'},
        "B": {"S": '"B":"AR=="'},
    }
    assert orjson.loads(canonical_json(item)) == item


# -- other tools' data-loss bugs -----------------------------------------------------------


def test_binary_inside_maps_and_lists_is_encoded_once_dynamodump_238() -> None:
    """dynamodump #238: binary nested in M/L was base64-encoded a second time on restore."""
    photo = bytes(range(256))
    from_stream: dict[str, Any] = {
        "pk": {"S": "k"},
        "m": {"M": {"photo": {"B": photo}}},
        "l": {"L": [{"B": photo}]},
    }
    from_lambda: dict[str, Any] = {
        "l": {"L": [{"B": base64.b64encode(photo).decode()}]},
        "m": {"M": {"photo": {"B": base64.b64encode(photo).decode()}}},
        "pk": {"S": "k"},
    }
    text = canonical_json(from_stream)
    assert canonical_json(from_lambda) == text
    wire = to_wire(text)
    # bytes at every depth: botocore then encodes them once on the wire
    assert wire["m"]["M"]["photo"]["B"] == photo
    assert wire["l"]["L"][0]["B"] == photo


def test_binary_nested_in_maps_and_lists_survives_a_real_write(ddb: Any) -> None:
    ddb.create_table(
        TableName="photos",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "B"}],
        BillingMode="PAY_PER_REQUEST",
    )
    photo = b"\x89PNG\r\n\x1a\n\x00\xff"
    item: dict[str, Any] = {
        "pk": {"B": b"\x00\x01"},
        "m": {"M": {"thumb": {"B": photo}, "tags": {"BS": [b"\x02", b"\x01"]}}},
        "l": {"L": [{"B": photo}, {"M": {"x": {"B": b""}}}]},
    }
    text = canonical_json(item)
    ddb.put_item(TableName="photos", Item=to_wire(text))
    got = ddb.get_item(TableName="photos", Key=to_wire(canonical_json({"pk": item["pk"]})))["Item"]
    assert got["m"]["M"]["thumb"]["B"] == photo
    assert canonical_json(got) == text


def test_key_attribute_order_does_not_make_a_different_key_mapbox_replicator_90_96() -> None:
    """mapbox replicator #90/#96: the same key serialised with its attributes in another order
    became a second item."""
    item: dict[str, Any] = {"sk": {"N": "1.0"}, "data": {"S": "x"}, "pk": {"S": "user#1"}}
    forms = [
        {"pk": {"S": "user#1"}, "sk": {"N": "1"}},
        {"sk": {"N": "1"}, "pk": {"S": "user#1"}},
        key_of(item, ["pk", "sk"]),
        key_of(item, ("sk", "pk")),
    ]
    assert {canonical_json(key) for key in forms} == {'{"pk":{"S":"user#1"},"sk":{"N":"1"}}'}


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be an object of attribute values"),
        ('{"pk": "plain"}', "attribute 'pk': not an attribute value"),
        ('{"pk": {"X": "1"}}', "attribute 'pk': unknown DynamoDB type tag 'X'"),
        ('{"pk": {"S": "a", "N": "1"}}', "exactly one type tag"),
        ('{"pk": {"S": 5}}', "S must be a string"),
        ('{"pk": {"N": "abc"}}', "not a DynamoDB number: 'abc'"),
        ('{"pk": {"N": "NaN"}}', "not a DynamoDB number"),
        ('{"pk": {"N": "Infinity"}}', "not a DynamoDB number"),
        ('{"pk": {"N": " 5"}}', "not a DynamoDB number"),
        ('{"pk": {"N": "1.5"}, "q": {"N": 1.5}}', "never floats"),
        ('{"pk": {"N": "1234567890123456789012345678901234567890"}}', "39 significant digits"),
        ('{"pk": {"N": "1E-131"}}', "outside DynamoDB's range"),
        ('{"pk": {"N": "1E+126"}}', "outside DynamoDB's range"),
        ('{"pk": {"B": "not base64!"}}', "not base64"),
        ('{"pk": {"BOOL": "yes"}}', "BOOL must be true or false"),
        ('{"pk": {"NULL": false}}', "NULL must be true"),
        ('{"pk": {"SS": []}}', "empty"),
        ('{"pk": {"NS": "1"}}', "NS must be a list"),
        (
            '{"a": {"M": {"b": {"L": [{"S": "x"}, {"N": "1e"}]}}}}',
            "attribute 'a.b[1]': not a DynamoDB number",
        ),
    ],
)
def test_bad_input_is_one_clear_usage_error(text: str, message: str) -> None:
    with pytest.raises(CodecError) as raised:
        canonicalize_text(text)
    assert message in str(raised.value)
    assert isinstance(raised.value, UsageError)
    assert raised.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    "item",
    [
        {"pk": {"N": 0.1}},
        {"pk": {"N": "1.5.5"}},
        {"pk": {"M": {"n": {"N": "x"}}}},
        {"pk": {"NS": ["1", "x"]}},
        {"pk": {"BS": ["%%%"]}},
        {"pk": {"B": 12}},
        {"pk": {"S": object()}},
        {"pk": {"S": "\ud800"}},  # a lone surrogate is not UTF-8
    ],
)
def test_bad_values_from_code_raise_codec_error_not_garbage(item: dict[str, Any]) -> None:
    with pytest.raises(CodecError):
        canonical_json(item)
    with pytest.raises(CodecError):
        canonical_many([{"ok": {"S": "x"}}, item])


def test_wire_conversion_rejects_what_is_not_dynamodb_json() -> None:
    with pytest.raises(CodecError, match="not valid JSON"):
        to_wire("{")
    with pytest.raises(CodecError, match=r"attribute 'a\.b': unknown DynamoDB type tag"):
        to_wire({"a": {"M": {"b": {"Q": 1}}}})
    with pytest.raises(CodecError, match="lacks key attribute 'sk'"):
        key_of({"pk": {"S": "x"}}, ["pk", "sk"])


def test_decimals_and_python_sets_from_code_are_accepted_exactly() -> None:
    item: dict[str, Any] = {"n": {"N": Decimal("1.50")}, "ns": {"NS": {"2", "10"}}, "i": {"N": 7}}
    assert canonical_json(item) == '{"i":{"N":"7"},"n":{"N":"1.5"},"ns":{"NS":["2","10"]}}'


# -- the fast path accepts exactly what the walk accepts ---------------------------------------


@dataclasses.dataclass
class _Point:
    x: int


class _Text(str):
    """A str subclass: the walk takes it as a string."""


# Values that are no attribute value at all, or that hold the wrong thing under a tag; each
# must be refused wherever it is (an item, a key, an image, inside M or L).
MALFORMED = [
    {"S": "x", "N": "1"},
    {"Q": "x"},
    {"s": "x"},
    {},
    {"S": 5},
    {"S": 1.5},
    {"S": None},
    {"S": True},
    {"S": b"x"},
    {"S": ["x"]},
    {"S": {"S": "x"}},
    {"S": datetime(2026, 1, 1, tzinfo=UTC)},
    {"N": "abc"},
    {"N": ""},
    {"N": " 1"},
    {"N": "1e999"},
    {"N": "NaN"},
    {"N": "Infinity"},
    {"N": 1.5},
    {"N": True},
    {"N": None},
    {"N": ["1"]},
    {"N": "1" * 40},
    {"N": "١٢"},
    {"B": "not base64!"},
    {"B": "A"},
    {"B": 5},
    {"B": None},
    {"B": ["AA=="]},
    {"B": array.array("b", [1])},
    {"BOOL": "true"},
    {"BOOL": 1},
    {"BOOL": None},
    {"NULL": False},
    {"NULL": None},
    {"NULL": "true"},
    {"NULL": 1},
    {"SS": []},
    {"SS": [1]},
    {"SS": "a"},
    {"SS": [None]},
    {"SS": [b"x"]},
    {"NS": []},
    {"NS": ["abc"]},
    {"NS": [1.5]},
    {"NS": "1"},
    {"BS": []},
    {"BS": ["!!"]},
    {"BS": [1]},
    {"M": []},
    {"M": "x"},
    {"M": None},
    {"M": {"a": "x"}},
    {"M": {"a": None}},
    {"M": {1: {"S": "x"}}},
    {"M": _Point(1)},
    {"L": {}},
    {"L": "x"},
    {"L": [None]},
    {"L": ["x"]},
    {"L": [{"S": 1}]},
    "x",
    None,
    5,
    [],
    [{"S": "x"}],
]
# Valid, in forms the fast path leaves to the walk or must get exactly right.
UNUSUAL = [
    {"N": 5},
    {"N": Decimal("1.50")},
    {"N": "0." + "0" * 40 + "1"},
    {"S": _Text("x")},
    {"S": "\u0000x"},
    {"SS": ("b", "a")},
    {"SS": {"b", "a"}},
    {"SS": ["\u0000", "a"]},
    {"S": 'a"\u0000b'},
    {"B": b""},
    {"B": ""},
    {"BS": [b"", b"\x00"]},
    {"L": ({"S": "x"},)},
    {"M": {}},
    {"L": []},
]

scalar_values = scalars.flatmap(rendered) | st.sampled_from(UNUSUAL)
mixed_values: st.SearchStrategy[Any] = st.recursive(
    scalar_values | st.sampled_from(MALFORMED),
    lambda inner: st.one_of(
        st.dictionaries(names, inner, max_size=3).map(lambda members: {"M": members}),
        st.lists(inner, max_size=3).map(lambda elements: {"L": elements}),
    ),
    max_leaves=12,
)
mixed_items = st.dictionaries(names, mixed_values, max_size=5)


def walked(item: Any) -> bytes | CodecError:
    """What the validating walk makes of ``item``: its canonical bytes, or its refusal."""
    try:
        return orjson.dumps(normalize_item(item), option=orjson.OPT_SORT_KEYS)
    except CodecError as exc:
        return exc


@PROPERTY
@given(batch=st.lists(st.none() | mixed_items, min_size=1, max_size=6))
@example(batch=[{"pk": {"S": "a"}}, {"pk": {"S": "x", "N": "1"}}])
@example(batch=[{"s": {"S": 'a"\u0000b'}, "b": {"B": b"\x01"}, "t": {"SS": ['"\u0000', "x"]}}])
@example(batch=[{"a": {"M": {"b": {"L": [{"M": {"c": {"Q": "x"}}}]}}}}])
@example(batch=[{"a": {"L": [{"L": [{"L": [{"L": [{"L": [{"L": [{"S": 5}]}]}]}]}]}]}}])
@example(batch=[{"a": {"L": [{"L": [{"L": [{"L": [{"L": [{"L": [{"S": "deep"}]}]}]}]}]}]}}])
def test_fast_path_and_walk_agree_on_valid_and_malformed_values(batch: list[Any]) -> None:
    expected = [None if item is None else walked(item) for item in batch]
    refused = [e for e in expected if isinstance(e, CodecError)]
    if refused:
        with pytest.raises(CodecError) as caught:
            canonical_many(batch)
        assert str(caught.value) == str(refused[0])  # the first bad item, as the walk says
    else:
        assert canonical_many(batch) == expected
    for item, want in zip(batch, expected, strict=True):
        if item is None:
            continue
        if isinstance(want, CodecError):
            with pytest.raises(CodecError):
                canonical_bytes(item)
        else:
            assert canonical_bytes(item) == want


@pytest.mark.parametrize("bad", MALFORMED, ids=repr)
@pytest.mark.parametrize(
    "where",
    ["top", "map", "list", "deep"],
)
def test_every_malformed_value_is_refused_wherever_it_is(bad: Any, where: str) -> None:
    placed = {
        "top": {"pk": {"S": "k"}, "v": bad},
        "map": {"pk": {"S": "k"}, "m": {"M": {"inner": bad}}},
        "list": {"pk": {"S": "k"}, "l": {"L": [{"N": "1"}, bad]}},
        "deep": {"m": {"M": {"l": {"L": [{"M": {"x": bad}}]}}}},
    }[where]
    with pytest.raises(CodecError):
        canonical_many([{"pk": {"S": "fine"}}, placed, None])


@PROPERTY
@given(model=items, data=st.data())
def test_the_fast_path_takes_canonical_items_itself(
    model: dict[str, Model], data: st.DataObject
) -> None:
    # Not a correctness property (the walk gives the same text) but the speed one: items in
    # the form SDKs deliver never pay for the walk, unless nested deeper than the grammar goes
    # or holding a number longer than 38 characters (the walk decides on those) or a string
    # that starts with U+0000 (the mark binary gets on its way through orjson).
    text = canonical_bytes(data.draw(rendered_item(model)))
    depth, longest = _shape(orjson.loads(text))
    if depth <= codec._FAST_DEPTH and longest <= 38 and b'"\\u0000' not in text:
        assert codec._LINES.fullmatch(text)


def _shape(item: dict[str, Any]) -> tuple[int, int]:
    """(nesting depth of M and L, length of the longest number) of a canonical item."""
    longest = 0

    def of(av: dict[str, Any]) -> int:
        nonlocal longest
        ((tag, value),) = av.items()
        if tag == "M":
            return 1 + max((of(inner) for inner in value.values()), default=0)
        if tag == "L":
            return 1 + max((of(inner) for inner in value), default=0)
        if tag in ("N", "NS"):
            longest = max([longest, *map(len, [value] if tag == "N" else value)])
        return 0

    depth = max((of(av) for av in item.values()), default=0)
    return depth, longest
