"""``serve`` against DynamoDB itself (as moto and a model of the documentation stand in for it).

For random tables — partition key S, N or B, with or without a sort key of any key type, a
GSI and (with a sort key) an LSI of random projections — and random histories of puts and
deletes (items with every attribute type, nested maps and lists, index attributes present or
not, some near 400 KB), the state at a random instant is put into a moto table and the archive
is served; then the same random requests — GetItem, BatchGetItem, Query on the table and both
indexes (every key condition form, ScanIndexForward), Scan (segments), with filters of every
operator and function, projections, Select and Limit — go to both. Answers must be the same:
the items (projected), in order, Count and ScannedCount. ``serve``'s paged answers must join
up to its unpaged one, page by page as DynamoDB pages (:mod:`tests.dynamodb_model`).

Where moto is not DynamoDB (docs/AWS-FORMATS "Reading a table"), the model decides instead,
and each such case is named where it is handled:

- MOTO_ORDER: moto scans in key order and orders index ties by key value; DynamoDB scans in
  partition-hash order and orders ties by the table key's hash. Scan and index answers are
  compared with moto as sets of items, and their order with the model's.
- MOTO_B_ORDER: moto orders B sort keys by their base64 text; DynamoDB by bytes.
- MOTO_SEGMENTS: moto puts an item in segment ``md5(partition key)[0] % TotalSegments``;
  DynamoDB gives each segment a contiguous range of its partition hash (dynalite's
  measurement, in ``tests/test_serve_keys.py``). A segment is compared with the model only.
- MOTO_BOOL_N: moto finds ``N 1`` equal to ``BOOL true``.
- MOTO_500: moto fails (HTTP 500, or a ValidationException of its own making) on a filter
  comparing different types with ``<``, on ``size`` of a missing attribute and on a
  segmented Scan of a B partition key; DynamoDB answers.
- MOTO_MISSING_PATH: moto refuses (ValidationException "Invalid attribute name") a filter
  whose path some item lacks — a list index past its end, ``size``/``attribute_type`` of
  nothing; DynamoDB evaluates the condition, to false.
- MOTO_LSI_FETCH: moto answers an LSI query from the index entries alone; DynamoDB reads
  from the table the attributes a projection or filter names that the LSI does not hold.
- MOTO_INDEXED_NAME: moto mishandles a name placeholder followed by a list index
  (``#l[1]``): it calls it unused and refuses the request, or projects nothing for it.
- MOTO_EMPTY: moto leaves an empty string or binary value (allowed outside keys) out of a
  projected list or map; DynamoDB returns it.
- MOTO_PAGES: moto pages by its own 1,000,000-byte count of items and omits the
  LastEvaluatedKey of a page that ends exactly at its Limit; only its items are compared.
"""

from __future__ import annotations

import base64
import itertools
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.format.codec import canonical_json, to_wire
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from tests import dynamodb_model as model
from tests.replay_helpers import TABLE, Change, at, write_changes, write_coverage
from tests.serve_helpers import describe, serving

BIG = 380_000


def wire(value: Any) -> Any:
    """Values for boto3 (binary as bytes at any depth)."""
    return to_wire({"v": value})["v"]


def plain(items: Any) -> Any:
    """boto3's answer back in canonical JSON form (binary as base64)."""
    return orjson.loads(orjson.dumps(items, default=lambda b: base64.b64encode(b).decode()))


def canon(item: dict[str, Any]) -> str:
    return canonical_json(item)


# -- tables and histories ------------------------------------------------------------------


@dataclass
class Spec:
    hash_type: str
    range_type: str | None
    gsi_hash: str
    gsi_range: str | None
    gsi_projection: str
    lsi_projection: str

    @property
    def key_names(self) -> list[str]:
        return ["pk"] + (["sk"] if self.range_type else [])

    def gsis(self) -> list[dict[str, Any]]:
        schema = [{"AttributeName": "gh", "KeyType": "HASH"}]
        if self.gsi_range:
            schema.append({"AttributeName": "gr", "KeyType": "RANGE"})
        return [
            {"IndexName": "gsi", "KeySchema": schema, "Projection": projection(self.gsi_projection)}
        ]

    def lsis(self) -> list[dict[str, Any]]:
        if not self.range_type:
            return []
        schema = [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "lr", "KeyType": "RANGE"},
        ]
        return [
            {"IndexName": "lsi", "KeySchema": schema, "Projection": projection(self.lsi_projection)}
        ]

    def attributes(self) -> dict[str, str]:
        out = {"gh": self.gsi_hash}
        if self.gsi_range:
            out["gr"] = self.gsi_range
        if self.range_type:
            out["lr"] = "N"
        return out


def projection(kind: str) -> dict[str, Any]:
    if kind == "INCLUDE":
        return {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["x"]}
    return {"ProjectionType": kind}


KEY_VALUES = {
    "S": [{"S": s} for s in ("a", "b", "ab", "é", "z\x00")],
    "N": [{"N": n} for n in ("-1.5", "0", "2", "10", "1E+2")],
    "B": [
        {"B": base64.b64encode(b).decode()}
        for b in (b"\x00", b"\xff", b"\x01\x02", b"A", b"\x7f\x80")
    ],
}


def normal(value: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(canonical_json({"v": value}))["v"]


scalars = st.one_of(
    st.text(max_size=6).map(lambda s: {"S": s}),
    st.decimals(-1000, 1000, places=2, allow_nan=False).map(lambda d: {"N": str(d)}),
    st.binary(max_size=4).map(lambda b: {"B": base64.b64encode(b).decode()}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True).map(
        lambda s: {"SS": s}
    ),
    st.lists(st.sampled_from(["1", "2.5", "-3"]), min_size=1, max_size=3, unique=True).map(
        lambda s: {"NS": s}
    ),
    st.lists(st.sampled_from(["AA==", "AQ==", "/w=="]), min_size=1, max_size=2, unique=True).map(
        lambda s: {"BS": s}
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda elements: {"L": elements})
        | st.dictionaries(st.sampled_from(["x", "y", "l"]), inner, max_size=2).map(
            lambda m: {"M": m}
        )
    ),
    max_leaves=4,
)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    return Spec(
        hash_type=draw(st.sampled_from(["S", "N", "B"])),
        range_type=draw(st.sampled_from([None, "S", "N", "B"])),
        gsi_hash=draw(st.sampled_from(["S", "N", "B"])),
        gsi_range=draw(st.sampled_from([None, "N", "S"])),
        gsi_projection=draw(st.sampled_from(["ALL", "KEYS_ONLY", "INCLUDE"])),
        lsi_projection=draw(st.sampled_from(["ALL", "KEYS_ONLY", "INCLUDE"])),
    )


@st.composite
def items_for(
    draw: st.DrawFn, spec: Spec, key: dict[str, Any], big_odds: int = 30
) -> dict[str, Any]:
    item = dict(key)
    for name, kind in spec.attributes().items():
        if draw(st.integers(0, 9)) < 7:
            item[name] = normal(draw(st.sampled_from(KEY_VALUES[kind][:4])))
    for name in ("x", "m", "l"):
        if draw(st.booleans()):
            value = draw(values)
            if name == "m":
                value = {"M": {"x": draw(scalars), "l": draw(values)}}
            elif name == "l":
                value = {"L": draw(st.lists(scalars, max_size=3))}
            item[name] = normal(value)
    if draw(st.integers(1, big_odds)) == 1:
        item["big"] = BIG_MARK
    return item


# Items near 400 KB carry this marker until they are written (examples stay readable).
BIG_MARK = {"S": "<big>"}


def expand(item: dict[str, Any]) -> dict[str, Any]:
    return {k: ({"S": "b" * BIG} if v == BIG_MARK else v) for k, v in item.items()}


@dataclass
class History:
    spec: Spec
    changes: list[tuple[int, dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)
    at_seconds: int = 0

    def state(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for second, key, item in self.changes:
            if second > self.at_seconds:
                break
            if item is None:
                out.pop(canon(key), None)
            else:
                out[canon(key)] = expand(item)
        return out


@st.composite
def histories(draw: st.DrawFn) -> History:
    spec = draw(specs())
    hashes = [normal(v) for v in KEY_VALUES[spec.hash_type][:3]]
    ranges = [normal(v) for v in KEY_VALUES[spec.range_type][:3]] if spec.range_type else [None]
    pool = [
        {"pk": h} | ({"sk": r} if r is not None else {})
        for h, r in itertools.product(hashes, ranges)
    ]
    history = History(spec)
    # one history in eight is mostly items near 400 KB: pages end at 1 MB, not at Limit
    big_odds = 2 if draw(st.integers(0, 7)) == 0 else 30
    alive: set[str] = set()
    second = 0
    for _ in range(draw(st.integers(1, 14))):
        second += draw(st.integers(0, 2))
        key = draw(st.sampled_from(pool))
        if canon(key) in alive and draw(st.integers(0, 4)) == 0:
            history.changes.append((second, key, None))
            alive.discard(canon(key))
        else:
            history.changes.append((second, key, draw(items_for(spec, key, big_odds))))
            alive.add(canon(key))
    history.at_seconds = draw(st.integers(0, second))
    return history


def archive_of(history: History, folder: str) -> Archive:
    archive = Archive.open(folder)
    spec = history.spec
    write_coverage(archive, watermark=at(100))
    describe(
        archive,
        keys=[("pk", spec.hash_type)] + ([("sk", spec.range_type)] if spec.range_type else []),
        gsis=spec.gsis(),
        lsis=spec.lsis(),
        attributes=spec.attributes(),
    )
    seen: set[str] = set()
    changes = []
    for seq, (second, key, item) in enumerate(history.changes, start=1):
        name = "REMOVE" if item is None else ("MODIFY" if canon(key) in seen else "INSERT")
        seen.add(canon(key))
        changes.append(Change(seq, key, None if item is None else expand(item), at(second), name))
    write_changes(archive, changes)
    return archive


def moto_table(client: Any, history: History, name: str) -> None:
    spec = history.spec
    definitions = {"pk": spec.hash_type} | ({"sk": spec.range_type} if spec.range_type else {})
    definitions |= spec.attributes()
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]
        + ([{"AttributeName": "sk", "KeyType": "RANGE"}] if spec.range_type else []),
        "AttributeDefinitions": [
            {"AttributeName": k, "AttributeType": v} for k, v in definitions.items()
        ],
        "BillingMode": "PAY_PER_REQUEST",
        "GlobalSecondaryIndexes": spec.gsis(),
    }
    if spec.lsis():
        request["LocalSecondaryIndexes"] = spec.lsis()
    client.create_table(**request)
    for item in history.state().values():
        client.put_item(TableName=name, Item=to_wire(item))


# -- requests ------------------------------------------------------------------------------

PATHS = [("x",), ("m", "x"), ("m", "l"), ("l", 0), ("l", 1), ("gh",), ("big",), ("nope",)]


@dataclass
class Built:
    """One generated condition, as text and as a tree for the model."""

    text: str
    tree: Any
    names: dict[str, str]
    values: dict[str, Any]
    quirks: set[str]


class Builder:
    def __init__(self, draw: st.DrawFn, key_attributes: tuple[str, ...] = ()) -> None:
        self.draw = draw
        # a Query's filter may not read the keys it queries by (DynamoDB refuses; moto not)
        self.paths = [p for p in PATHS[:6] if p[0] not in key_attributes]
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.quirks: set[str] = set()

    def name(self, name: str) -> str:
        if self.draw(st.booleans()):
            # one placeholder per name (moto calls a second one for the same name unused)
            for placeholder, known in self.names.items():
                if known == name:
                    return placeholder
            placeholder = f"#n{len(self.names)}"
            self.names[placeholder] = name
            return placeholder
        return name

    def path(self, path: tuple[Any, ...]) -> str:
        text = self.name(path[0])
        for step in path[1:]:
            text += f"[{step}]" if isinstance(step, int) else "." + self.name(step)
        return text

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def condition(self, depth: int = 0) -> tuple[str, Any]:
        draw = self.draw
        if depth < 2 and draw(st.integers(0, 2)) == 0:
            kind = draw(st.sampled_from(["and", "or", "not"]))
            if kind == "not":
                text, tree = self.condition(depth + 1)
                return f"NOT ({text})", ("not", tree)
            parts = [self.condition(depth + 1) for _ in range(draw(st.integers(2, 3)))]
            joined = f" {kind.upper()} ".join(f"({t})" for t, _ in parts)
            return joined, (kind, [tree for _, tree in parts])
        path = draw(st.sampled_from(self.paths))
        operand = normal(draw(scalars))
        kind = draw(
            st.sampled_from(
                [
                    "cmp",
                    "between",
                    "in",
                    "exists",
                    "not_exists",
                    "type",
                    "begins",
                    "contains",
                    "size",
                ]
            )
        )
        p = self.path(path)
        if kind == "cmp":
            op = draw(st.sampled_from(["=", "<>", "<", "<=", ">", ">="]))
            if op in ("<", "<=", ">", ">="):
                self.quirks.add("MOTO_500")  # `<` between different types
            if "BOOL" in operand or "N" in operand:
                self.quirks.add("MOTO_BOOL_N")
            return f"{p} {op} {self.value(operand)}", ("cmp", op, path, operand)
        if kind == "between":
            low, high = sorted(
                [normal(draw(scalars)) for _ in range(2)],
                key=lambda v: (next(iter(v)), orjson.dumps(v)),
            )
            kind_low = next(iter(low))
            if kind_low != next(iter(high)) or kind_low not in ("S", "N", "B"):
                low = high = {"N": "1"}
            elif model.order_value(low) > model.order_value(high):
                low, high = high, low
            self.quirks.add("MOTO_500")
            return (
                f"{p} BETWEEN {self.value(low)} AND {self.value(high)}",
                ("between", path, low, high),
            )
        if kind == "in":
            options = [normal(draw(scalars)) for _ in range(draw(st.integers(1, 3)))]
            if any("BOOL" in o or "N" in o for o in options):
                self.quirks.add("MOTO_BOOL_N")
            return f"{p} IN ({', '.join(self.value(o) for o in options)})", ("in", path, options)
        if kind in ("exists", "not_exists"):
            function = "attribute_exists" if kind == "exists" else "attribute_not_exists"
            return f"{function}({p})", (kind, path)
        if kind == "type":
            type_name = draw(
                st.sampled_from(["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M"])
            )
            return f"attribute_type({p}, {self.value({'S': type_name})})", ("type", path, type_name)
        if kind == "begins":
            prefix = normal(draw(st.sampled_from([{"S": ""}, {"S": "a"}, {"B": "AA=="}])))
            return f"begins_with({p}, {self.value(prefix)})", ("begins", path, prefix)
        if kind == "contains":
            return f"contains({p}, {self.value(operand)})", ("contains", path, operand)
        op = draw(st.sampled_from(["=", "<", ">="]))
        number = {"N": str(draw(st.integers(0, 3)))}
        self.quirks.add("MOTO_500")  # size() of a missing attribute
        return f"size({p}) {op} {self.value(number)}", ("size", op, path, number)

    def projection(self, paths: list[tuple[Any, ...]]) -> str:
        return ", ".join(self.path(path) for path in paths)


@st.composite
def projections(draw: st.DrawFn, key_names: list[str]) -> list[tuple[Any, ...]]:
    candidates = [(name,) for name in key_names] + PATHS
    chosen = draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=4, unique=True))
    # no two paths overlapping (DynamoDB refuses them; moto accepts them)
    out: list[tuple[Any, ...]] = []
    for path in chosen:
        if not any(path[: len(o)] == o or o[: len(path)] == path for o in out):
            out.append(path)
    return out


# -- running -------------------------------------------------------------------------------


def call(client: Any, operation: str, request: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", getattr(client, operation)(**request)
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return ("500" if status == 500 else str(error.response["Error"]["Code"])), error


def all_pages(
    client: Any, operation: str, request: dict[str, Any]
) -> tuple[str, list[Any], int, int]:
    """Every page to the end: (outcome, items, Count, ScannedCount)."""
    items: list[Any] = []
    count = scanned = 0
    start = None
    for _ in range(500):
        page_request = request | ({"ExclusiveStartKey": start} if start else {})
        outcome, answer = call(client, operation, page_request)
        if outcome != "ok":
            return outcome, [str(answer)], 0, 0
        items += plain(answer.get("Items", []))
        count += answer["Count"]
        scanned += answer["ScannedCount"]
        start = answer.get("LastEvaluatedKey")
        if not start:
            return "ok", items, count, scanned
    raise AssertionError("no last page")


def wire_request(request: dict[str, Any]) -> dict[str, Any]:
    out = dict(request)
    if "ExpressionAttributeValues" in out:
        out["ExpressionAttributeValues"] = {
            k: wire(v) for k, v in out["ExpressionAttributeValues"].items()
        }
    return out


def has_empty(item: Any) -> bool:
    """Whether an empty S or B sits somewhere inside a list or map of ``item``."""
    return without_empty(item) != item


def without_empty(item: Any) -> Any:
    """``item`` as moto projects it: empty strings and binaries inside lists and maps left
    out, and a list or map that holds nothing else then left out too (MOTO_EMPTY)."""

    def value(v: Any) -> Any:
        if v.get("S") == "" or v.get("B") == "":
            return None
        if isinstance(v.get("L"), list) and v["L"]:
            kept = [e for e in (value(e) for e in v["L"]) if e is not None]
            return {"L": kept} if kept else None
        if isinstance(v.get("M"), dict) and v["M"]:
            kept = {k: e for k, e in ((k, value(e)) for k, e in v["M"].items()) if e is not None}
            return {"M": kept} if kept else None
        return v

    if item is None:
        return None
    out = {}
    for name, v in item.items():
        if "L" in v or "M" in v:
            v = value(v)
        if v is not None:
            out[name] = v
    return out


def canon_or_none(item: Any) -> str | None:
    return None if item is None else canon(item)


def sort_canon(items: list[Any]) -> list[str]:
    return sorted(canon(i) for i in items)


@dataclass
class Case:
    history: History
    ours: Any
    moto: Any
    moto_name: str

    @property
    def spec(self) -> Spec:
        return self.history.spec

    def state_items(self) -> list[dict[str, Any]]:
        return list(self.history.state().values())


def check_get(case: Case, draw: st.DrawFn) -> None:
    spec = case.spec
    state = case.history.state()
    hashes = KEY_VALUES[spec.hash_type][:3]
    key = {"pk": normal(draw(st.sampled_from(hashes)))}
    if spec.range_type:
        key["sk"] = normal(draw(st.sampled_from(KEY_VALUES[spec.range_type][:3])))
    builder = Builder(draw)
    request: dict[str, Any] = {"Key": to_wire(key)}
    paths = draw(st.one_of(st.none(), projections(spec.key_names)))
    if paths:
        request["ProjectionExpression"] = builder.projection(paths)
        if builder.names:
            request["ExpressionAttributeNames"] = builder.names
    outcome, ours = call(
        case.ours,
        "get_item",
        request | {"TableName": f"{TABLE}@{iso_ms(at(case.history.at_seconds))}"},
    )
    assert outcome == "ok", ours
    moto_outcome, moto = call(case.moto, "get_item", request | {"TableName": case.moto_name})
    expected = state.get(canon(key))
    if expected is not None and paths:
        expected = model.project(expected, paths)
    assert plain(ours.get("Item")) == expected
    if moto_outcome != "ok":
        assert re.search(r"#n\d+\[", request.get("ProjectionExpression", "")), (
            moto
        )  # MOTO_INDEXED_NAME
    elif not (paths and expected == {}):  # moto answers no Item for an empty projection
        # set members in any order: DynamoDB gives sets no order
        mine, theirs = plain(ours.get("Item")), plain(moto.get("Item"))
        if paths and has_empty(mine):  # MOTO_EMPTY
            mine = without_empty(mine)
        if mine == {} and theirs is None:
            return
        if re.search(r"#n\d+\[", request.get("ProjectionExpression", "")):
            return  # MOTO_INDEXED_NAME: moto may project nothing for it (ours = the model)
        assert canon_or_none(mine) == canon_or_none(theirs)


def _filtered(builder: Builder, request: dict[str, Any], draw: st.DrawFn) -> Any:
    if not draw(st.booleans()):
        return None
    text, tree = builder.condition()
    request["FilterExpression"] = text
    return tree


def check_read(case: Case, draw: st.DrawFn, operation: str) -> None:
    spec = case.spec
    state = case.state_items()
    request: dict[str, Any] = {}
    index = draw(st.sampled_from([None, "gsi"] + (["lsi"] if spec.range_type else [])))
    hash_key, range_key = "pk", ("sk" if spec.range_type else None)
    if index == "gsi":
        hash_key, range_key = "gh", ("gr" if spec.gsi_range else None)
    elif index == "lsi":
        range_key = "lr"
    queried = (hash_key, range_key or "") if operation == "query" else ()
    builder = Builder(draw, queried)
    if index:
        request["IndexName"] = index
    key_types = {"pk": spec.hash_type, "sk": spec.range_type} | spec.attributes()
    candidates = state
    if index:
        candidates = [i for i in state if all(n in i for n in (hash_key, range_key) if n)]
    quirks: set[str] = set()
    if operation == "query":
        hash_value = normal(draw(st.sampled_from(KEY_VALUES[key_types[hash_key]][:4])))
        condition = f"{builder.path((hash_key,))} = {builder.value(hash_value)}"
        candidates = [i for i in candidates if i[hash_key] == hash_value]
        if range_key and draw(st.booleans()):
            kind = key_types[range_key]
            ops = ["=", "<", "<=", ">", ">=", "BETWEEN"] + (
                ["begins_with"] if kind in ("S", "B") else []
            )
            op = draw(st.sampled_from(ops))
            pool = KEY_VALUES[kind]
            bound = normal(draw(st.sampled_from(pool)))
            r = builder.path((range_key,))
            if op == "BETWEEN":
                other = normal(draw(st.sampled_from(pool)))
                bounds = tuple(sorted([bound, other], key=model.order_value))
                low, high = (builder.value(b) for b in bounds)
                condition += f" AND {r} BETWEEN {low} AND {high}"
            elif op == "begins_with":
                bounds = (bound,)
                condition += f" AND begins_with({r}, {builder.value(bound)})"
            else:
                bounds = (bound,)
                condition += f" AND {r} {op} {builder.value(bound)}"
            candidates = [i for i in candidates if range_matches(op, i[range_key], bounds)]
        request["KeyConditionExpression"] = condition
        forward = draw(st.booleans())
        request["ScanIndexForward"] = forward
    else:
        forward = True
    filter_tree = _filtered(builder, request, draw)
    quirks |= builder.quirks if filter_tree is not None else set()
    # the read order (MOTO_ORDER / MOTO_B_ORDER: the model decides it)
    if index:
        table_keys = ("pk", "sk" if spec.range_type else None)
        candidates = model.index_order(candidates, hash_key, range_key, table_keys)
    elif operation == "query":
        candidates = sorted(
            candidates, key=lambda i: model.order_value(i[range_key]) if range_key else 0
        )
    else:
        candidates = model.scan_order(candidates, "pk", range_key)
    if not forward:
        candidates = candidates[::-1]
    segment = None
    if operation == "scan" and draw(st.integers(0, 3)) == 0:
        total = draw(st.integers(2, 5))
        segment = draw(st.integers(0, total - 1))
        request |= {"Segment": segment, "TotalSegments": total}
        quirks.add("MOTO_SEGMENTS")
        from replayer.serve import keys

        low, high = keys.segment_bounds(segment, total)
        candidates = [i for i in candidates if low <= keys.partition_hash(i[hash_key]) < high]
        if spec.hash_type == "B":  # moto hashes the table's partition key text, even for an index
            quirks.add("MOTO_500")
    entries = [entry_of(spec, index, item) for item in candidates]
    paths = draw(st.one_of(st.none(), projections(spec.key_names)))
    select = None
    if paths:
        request["ProjectionExpression"] = builder.projection(paths)
    elif draw(st.integers(0, 4)) == 0:
        select = "COUNT"
        request["Select"] = "COUNT"
    if builder.names:
        request["ExpressionAttributeNames"] = builder.names
    if builder.values:
        request["ExpressionAttributeValues"] = builder.values
    # an LSI reads from the table what the request names and it does not hold
    fetch = index == "lsi" and spec.lsi_projection != "ALL"
    held = {"pk", "sk", "lr"} | ({"x"} if spec.lsi_projection == "INCLUDE" else set())
    named = (paths or []) + (paths_of(filter_tree) if filter_tree is not None else [])
    fetch = fetch and any(path[0] not in held for path in named)
    read = candidates if fetch else entries
    if fetch:
        quirks.add("MOTO_LSI_FETCH")
    passes = [filter_tree is None or model.evaluate(filter_tree, item) for item in read]
    if filter_tree is not None and any(
        model.get_path(entry, path) is None for entry in read for path in paths_of(filter_tree)
    ):
        quirks.add("MOTO_MISSING_PATH")
    want = [
        model.project(e, paths) if paths else e for e, ok in zip(read, passes, strict=True) if ok
    ]
    name = f"{TABLE}@{iso_ms(at(case.history.at_seconds))}"

    outcome, items, count, scanned = all_pages(
        case.ours, operation, wire_request(request) | {"TableName": name}
    )
    assert outcome == "ok", (request, items)
    assert count == len(want) and scanned == len(entries), request
    if select != "COUNT":
        assert items == want, request
    # paged as DynamoDB pages
    limit = draw(st.integers(1, 4))
    start_names = (
        ["pk"]
        + (["sk"] if spec.range_type else [])
        + [n for n in (hash_key, range_key) if n and n not in ("pk", "sk")]
    )
    expected_pages = model.pages(
        entries, limit, passes, "sk" if spec.range_type else None, start_names
    )
    got_pages = []
    start = None
    for _ in range(len(expected_pages) + 1):
        answer = getattr(case.ours, operation)(
            **wire_request(request)
            | {"TableName": name, "Limit": limit}
            | ({"ExclusiveStartKey": start} if start else {})
        )
        got_pages.append(answer)
        start = answer.get("LastEvaluatedKey")
        if not start:
            break
    assert [p["ScannedCount"] for p in got_pages] == [p["scanned"] for p in expected_pages], request
    assert [plain(p.get("LastEvaluatedKey")) for p in got_pages] == [
        p["last"] for p in expected_pages
    ]
    assert [p["Count"] for p in got_pages] == [len(p["matching"]) for p in expected_pages]

    if re.search(
        r"#n\d+\[", request.get("ProjectionExpression", "") + request.get("FilterExpression", "")
    ):
        quirks.add("MOTO_INDEXED_NAME")
    if paths and any(has_empty(item) for item in want):
        quirks.add("MOTO_EMPTY")
    moto_outcome, moto_items, moto_count, moto_scanned = all_pages(
        case.moto, operation, wire_request(request) | {"TableName": case.moto_name}
    )
    if moto_outcome != "ok":
        # MOTO_500, MOTO_MISSING_PATH: the model decided above
        assert quirks & {"MOTO_500", "MOTO_MISSING_PATH", "MOTO_INDEXED_NAME"}, (
            request,
            moto_items,
        )
        return
    if "MOTO_SEGMENTS" in quirks:
        return
    same_set = sort_canon(moto_items) == sort_canon(items)
    if not same_set or moto_count != count:
        known = {
            "MOTO_BOOL_N",
            "MOTO_500",
            "MOTO_MISSING_PATH",
            "MOTO_LSI_FETCH",
            "MOTO_INDEXED_NAME",
        }
        assert quirks & known, (
            request,
            moto_items,
            items,
        )
        return
    if select != "COUNT":
        assert moto_scanned == scanned, (request, moto_items, items)
    ordered_by_moto = operation == "query" and not index and key_types.get(range_key or "") != "B"
    if ordered_by_moto and select != "COUNT":
        assert [canon(i) for i in items] == [canon(i) for i in moto_items]


def range_matches(op: str, value: Any, bounds: tuple[Any, ...]) -> bool:
    """The model of a sort key condition."""
    if op == "BETWEEN":
        low, high = (model.order_value(b) for b in bounds)
        return bool(low <= model.order_value(value) <= high)
    if op == "begins_with":
        return bool(model.order_value(value).startswith(model.order_value(bounds[0])))
    return model.compare(op, value, bounds[0])


def paths_of(tree: Any) -> list[tuple[Any, ...]]:
    if tree[0] in ("and", "or"):
        return [p for child in tree[1] for p in paths_of(child)]
    if tree[0] == "not":
        return paths_of(tree[1])
    return [tree[2] if tree[0] in ("cmp", "size") else tree[1]]


def entry_of(spec: Spec, index: str | None, item: dict[str, Any]) -> dict[str, Any]:
    if index is None:
        return item
    kind = spec.gsi_projection if index == "gsi" else spec.lsi_projection
    if kind == "ALL":
        return item
    wanted = {"pk", "sk"} | ({"gh", "gr"} if index == "gsi" else {"lr"})
    if kind == "INCLUDE":
        wanted.add("x")
    return {k: v for k, v in item.items() if k in wanted}


def check_batch(case: Case, draw: st.DrawFn) -> None:
    spec = case.spec
    keys_ = []
    for h in KEY_VALUES[spec.hash_type][:3]:
        for r in KEY_VALUES[spec.range_type][:3] if spec.range_type else [None]:
            keys_.append({"pk": normal(h)} | ({"sk": normal(r)} if r else {}))
    chosen = draw(st.lists(st.sampled_from(keys_), min_size=1, max_size=6, unique_by=canon))
    name = f"{TABLE}@{iso_ms(at(case.history.at_seconds))}"
    ours = case.ours.batch_get_item(RequestItems={name: {"Keys": [to_wire(k) for k in chosen]}})
    moto = case.moto.batch_get_item(
        RequestItems={case.moto_name: {"Keys": [to_wire(k) for k in chosen]}}
    )
    state = case.history.state()
    want = sorted(canon(state[canon(k)]) for k in chosen if canon(k) in state)
    assert (
        sort_canon(plain(ours["Responses"][name]))
        == want
        == sort_canon(plain(moto["Responses"][case.moto_name]))
    )
    assert ours["UnprocessedKeys"] == {}


def check_describe(case: Case) -> None:
    name = f"{TABLE}@{iso_ms(at(case.history.at_seconds))}"
    ours = case.ours.describe_table(TableName=name)["Table"]
    moto = case.moto.describe_table(TableName=case.moto_name)["Table"]
    assert ours["TableName"] == name and ours["TableStatus"] == "ACTIVE"
    assert ours["KeySchema"] == moto["KeySchema"]
    assert sorted(map(canon_plain, ours["AttributeDefinitions"])) == sorted(
        map(canon_plain, moto["AttributeDefinitions"])
    )
    assert ours["ItemCount"] == moto["ItemCount"] == len(case.history.state())
    for field_name in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        mine = {i["IndexName"]: i for i in ours.get(field_name, [])}
        theirs = {i["IndexName"]: i for i in moto.get(field_name, [])}
        assert mine.keys() == theirs.keys()
        for index, described in mine.items():
            assert described["KeySchema"] == theirs[index]["KeySchema"]
            assert described["Projection"] == theirs[index]["Projection"]
            names = [k["AttributeName"] for k in described["KeySchema"]]
            count = sum(1 for i in case.history.state().values() if all(n in i for n in names))
            assert described["ItemCount"] == count


def canon_plain(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def check_errors(case: Case, draw: st.DrawFn) -> None:
    """Refusals: the same error as moto where moto is DynamoDB; DynamoDB's documented
    refusal where moto accepts or fails (named below)."""
    spec = case.spec
    name = f"{TABLE}@{iso_ms(at(case.history.at_seconds))}"
    wrong_type = {"S": "N", "N": "B", "B": "S"}[spec.hash_type]
    key = {"pk": wire(normal(KEY_VALUES[wrong_type][0]))}
    if spec.range_type:
        key["sk"] = wire(normal(KEY_VALUES[spec.range_type][0]))
    query = {
        "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": {":p": wire(normal(KEY_VALUES[spec.hash_type][0]))},
    }
    faithful = [
        (
            "query",
            {
                "KeyConditionExpression": "x = :p",
                "ExpressionAttributeValues": query["ExpressionAttributeValues"],
            },
        ),
        ("scan", {"Segment": 3, "TotalSegments": 2}),
    ]
    unfaithful = [
        # moto answers a key of the wrong type (no item); DynamoDB refuses it
        ("get_item", {"Key": key}),
        # moto says ResourceNotFoundException for an unknown index; DynamoDB refuses the request
        ("query", query | {"IndexName": "nope"}),
        # moto fails with HTTP 500 (MOTO_500)
        ("scan", {"FilterExpression": "x = "}),
        ("scan", {"FilterExpression": "x = :undefined"}),
        # moto accepts what DynamoDB refuses
        (
            "scan",
            {
                "FilterExpression": "attribute_exists(x)",
                "ExpressionAttributeValues": {":unused": {"S": "a"}},
            },
        ),
        ("scan", {"ProjectionExpression": "m, m.x"}),
        ("query", query | {"FilterExpression": "pk = :p"}),
        (
            "scan",
            {
                "FilterExpression": "x BETWEEN :b AND :a",
                "ExpressionAttributeValues": {":a": {"N": "1"}, ":b": {"N": "2"}},
            },
        ),
    ]
    operation, request = draw(st.sampled_from(faithful))
    ours, _ = call(case.ours, operation, request | {"TableName": name})
    moto, _ = call(case.moto, operation, request | {"TableName": case.moto_name})
    assert ours == moto == "ValidationException", (operation, request)
    operation, request = draw(st.sampled_from(unfaithful))
    ours, _ = call(case.ours, operation, request | {"TableName": name})
    assert ours == "ValidationException", (operation, request)


_names = itertools.count()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(history=histories(), data=st.data())
def test_serve_answers_as_dynamodb_does(
    history: History, data: st.DataObject, aws_env: str
) -> None:
    config = Config(retries={"max_attempts": 1, "mode": "standard"})
    moto = boto3.client("dynamodb", endpoint_url=aws_env, region_name="us-east-1", config=config)
    moto_name = f"differential-{next(_names)}"
    moto_table(moto, history, moto_name)
    with tempfile.TemporaryDirectory() as folder:
        archive = archive_of(history, folder)
        with serving(archive) as served:
            case = Case(history, served.client(), moto, moto_name)
            check_describe(case)
            for _ in range(data.draw(st.integers(2, 5))):
                kind = data.draw(st.sampled_from(["get", "query", "scan", "batch", "errors"]))
                if kind == "errors":
                    check_errors(case, data.draw)
                elif kind == "get":
                    check_get(case, data.draw)
                elif kind == "batch":
                    check_batch(case, data.draw)
                else:
                    check_read(case, data.draw, kind)
    moto.delete_table(TableName=moto_name)
