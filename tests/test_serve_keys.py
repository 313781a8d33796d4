"""Sort texts of keys: the SQL that builds a state and the Python that reads it agree, and
their order is DynamoDB's.

DynamoDB's read order is: N numerically (38 digits, 1E-130 .. 9.99E+125), S by UTF-8 bytes,
B by unsigned bytes within a partition; partitions by the hash DynamoDB uses for scans and
segments (as dynalite established against the service — the scan order and segment
assignments of its own tests, which pass against DynamoDB, are checked here too).
"""

from __future__ import annotations

import base64
import itertools
from decimal import Decimal
from typing import Any

import duckdb
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.format.codec import canonical_json, normalize_number
from replayer.serve import keys

_digits = st.integers(1, 38).flatmap(
    lambda n: st.tuples(
        st.integers(0, 10**n - 1), st.integers(-130 - 0, 125 - n + 1), st.booleans()
    )
)


@st.composite
def numbers(draw: st.DrawFn) -> str:
    """Canonical DynamoDB numbers across the whole range, zero and negatives."""
    mantissa, exponent, negative = draw(_digits)
    if mantissa == 0:
        return "0"
    value = Decimal(mantissa).scaleb(exponent)
    if not -130 <= value.adjusted() <= 125:
        value = Decimal(mantissa)
    return normalize_number(("-" if negative else "") + format(value, "f"))


strings = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from(["\x00", "\x01", "\x02", "~"]),
    min_size=1,
    max_size=12,
)
binaries = st.binary(min_size=1, max_size=12)


def value_of(kind: str, raw: Any) -> dict[str, Any]:
    if kind == "B":
        return {"B": base64.b64encode(raw).decode()}
    return {kind: raw}


def dynamodb_order(value: dict[str, Any]) -> Any:
    kind, raw = next(iter(value.items()))
    if kind == "N":
        return Decimal(raw)
    if kind == "B":
        return base64.b64decode(raw)
    return raw.encode("utf-8")


@pytest.fixture(scope="module")
def con() -> Any:
    connection = duckdb.connect()
    keys.install(connection)
    yield connection
    connection.close()


def sql_texts(con: Any, select: str, jsons: list[str]) -> list[str]:
    """``select`` (over table ``t``, whose column ``j`` holds ``jsons``), in their order."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE t AS SELECT * FROM unnest(?::VARCHAR[]) "
        "WITH ORDINALITY AS u(j, n)",
        [jsons],
    )
    return [row[1] for row in con.execute(f"SELECT n, k FROM ({select}) ORDER BY n").fetchall()]


def keyed(parts: list[tuple[str, str]], tie: list[tuple[str, str]] | None = None) -> str:
    return keys.sql_keyed("t", "j", parts, tie=tie or (), keep=["n"])


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["S", "N", "B"]),
    data=st.data(),
)
def test_sql_and_python_give_the_same_text_and_dynamodbs_order(
    con: Any, kind: str, data: st.DataObject
) -> None:
    source = {"S": strings, "N": numbers(), "B": binaries}[kind]
    values = [value_of(kind, raw) for raw in data.draw(st.lists(source, min_size=1, max_size=30))]
    jsons = [canonical_json({"k": value}) for value in values]
    assert sql_texts(con, keyed([("k", kind)]), jsons) == [
        keys.item_key(value, None) for value in values
    ]
    assert sorted(values, key=keys.component) == sorted(values, key=dynamodb_order)


@settings(max_examples=40, deadline=None)
@given(
    hash_kind=st.sampled_from(["S", "N", "B"]),
    range_kind=st.sampled_from(["S", "N", "B", None]),
    data=st.data(),
)
def test_item_keys_and_tie_breakers_agree(
    con: Any, hash_kind: str, range_kind: str | None, data: st.DataObject
) -> None:
    source = {"S": strings, "N": numbers(), "B": binaries}
    rows = []
    for _ in range(data.draw(st.integers(1, 10))):
        item = {"h": value_of(hash_kind, data.draw(source[hash_kind]))}
        if range_kind:
            item["r"] = value_of(range_kind, data.draw(source[range_kind]))
        rows.append(item)
    jsons = [canonical_json(item) for item in rows]
    range_key = ("r", range_kind) if range_kind else None
    parts = [("h", hash_kind)] + ([range_key] if range_key else [])
    assert sql_texts(con, keyed(parts), jsons) == [
        keys.item_key(item["h"], item.get("r")) for item in rows
    ]
    # an index entry: its keys, then the table key's tie-breaker (here: the same parts)
    assert sql_texts(con, keyed(parts[:1], parts), jsons) == [
        keys.item_key(item["h"], None) + keys.tie_breaker(item["h"], item.get("r")) for item in rows
    ]
    # within one partition, item keys sort as the sort key does
    if range_kind:
        same = [{"h": rows[0]["h"], "r": item["r"]} for item in rows]
        assert sorted(same, key=lambda i: keys.item_key(i["h"], i["r"])) == sorted(
            same, key=lambda i: dynamodb_order(i["r"])
        )


def test_json_pointers_reach_any_attribute_name(con: Any) -> None:
    names = ["a/b", "x~y", "dot.ted", 'quo"te', "sp ace", "ünï"]
    item = {name: {"S": name} for name in names}
    text = orjson.dumps(item).decode()
    for name in names:
        assert sql_texts(con, keyed([(name, "S")]), [text]) == [keys.item_key({"S": name}, None)]


def test_scan_order_is_dynamodbs() -> None:
    # dynalite's "should return items in number hash order", which passes against DynamoDB
    numbers_ = [str(i) for i in range(10)] + ["-0.09", "999.9", "0.012345", "-999.9"]
    order = sorted(numbers_, key=lambda n: keys.item_key({"N": n}, None))
    assert order == [
        "7",
        "999.9",
        "8",
        "3",
        "2",
        "-999.9",
        "9",
        "4",
        "-0.09",
        "6",
        "1",
        "0",
        "0.012345",
        "5",
    ]


def segment_of(value: dict[str, Any], total: int) -> int:
    hashed = keys.partition_hash(value)
    for segment in range(total):
        low, high = keys.segment_bounds(segment, total)
        if low <= hashed < high:
            return segment
    raise AssertionError("no segment")


def test_segments_are_dynamodbs() -> None:
    # dynalite's "should return items from correct string/number hash segments"
    assert [segment_of({"S": s}, 4096) for s in ("3635", "228", "1668", "3435")] == [0, 0, 1, 4]
    assert [segment_of({"N": n}, 4096) for n in ("251", "2388")] == [1, 4095]


@pytest.mark.parametrize("total", [1, 2, 3, 7, 4096, 4097, 1_000_000])
def test_segments_cover_the_hash_space_once(total: int) -> None:
    bounds = [keys.segment_bounds(s, total) for s in range(min(total, 5000))]
    assert bounds[0][0] == "000000"
    for (_, high), (low, _) in itertools.pairwise(bounds):
        assert high == low
    if total <= 5000:
        assert bounds[-1][1] == "g"
