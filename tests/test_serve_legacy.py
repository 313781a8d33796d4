"""DynamoDB's legacy conditional parameters on ``ddb-replayer serve``: ``QueryFilter``,
``ScanFilter`` and ``ConditionalOperator`` (with ``KeyConditions`` and ``AttributesToGet``),
driven with boto3 as older SDK code sends them.

Each operator is checked on matching and non-matching items — of its type, of another type,
missing — and against the ``FilterExpression`` DynamoDB documents as its equivalent, on the
same endpoint: both must select the same items. The refusals carry DynamoDB's messages (as
the dynalite project and a suite run against DynamoDB record them). The same legacy requests
are also sent to moto over the same items; where moto departs from DynamoDB the test says so.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from archiver.format.storage import Archive
from tests.conftest import create_table
from tests.replay_helpers import TABLE, at, write_coverage
from tests.serve_helpers import Running, describe, put_items, serving

# binary values: bytes in requests (boto3 encodes them), base64 text in the archive
B123, B12, B2, B9 = b"\x01\x02\x03", b"\x01\x02", b"\x02", b"\x09"


def wire(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


ITEMS: list[dict[str, Any]] = [
    {
        "pk": {"S": "p"},
        "sk": {"N": "0"},
        "s": {"S": "apple"},
        "n": {"N": "5"},
        "b": {"B": wire(B123)},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2"]},
        "bs": {"BS": [wire(B12), wire(B9)]},
        "l": {"L": [{"S": "x"}, {"N": "1"}]},
        "flag": {"BOOL": True},
    },
    {
        "pk": {"S": "p"},
        "sk": {"N": "1"},
        "s": {"S": "banana"},
        "n": {"N": "10"},
        "ss": {"SS": ["c"]},
        "nul": {"NULL": True},
    },
    {"pk": {"S": "p"}, "sk": {"N": "2"}, "s": {"S": "cherry"}, "n": {"N": "-3"}},
    {"pk": {"S": "q"}, "sk": {"N": "0"}, "n": {"S": "5"}, "b": {"B": wire(B2)}},
    {"pk": {"S": "q"}, "sk": {"N": "1"}, "s": {"S": "apricot"}, "n": {"N": "7.5"}},
]
ALL = ["p0", "p1", "p2", "q0", "q1"]


def label(item: dict[str, Any]) -> str:
    return f"{item['pk']['S']}{item['sk']['N']}"


@pytest.fixture
def served(archive: Archive) -> Iterator[Running]:
    """``orders`` (pk S, sk N; GSI ``by_s``: s, keys only) holding :data:`ITEMS`."""
    write_coverage(archive, watermark=at(100))
    describe(
        archive,
        keys=(("pk", "S"), ("sk", "N")),
        gsis=[
            {
                "IndexName": "by_s",
                "KeySchema": [{"AttributeName": "s", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        attributes={"s": "S"},
    )
    put_items(archive, ITEMS, ["pk", "sk"], at=at(10))
    with serving(archive) as running:
        yield running


def cond(operator: str, *values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ComparisonOperator": operator}
    if values:
        out["AttributeValueList"] = list(values)
    return out


def scanned(client: Any, **request: Any) -> list[str]:
    return sorted(label(item) for item in client.scan(TableName=TABLE, **request)["Items"])


def refusal(call: Any, **request: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(TableName=TABLE, **request)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    return str(caught.value.response["Error"]["Message"])


# (attribute, condition, items selected, the equivalent FilterExpression, its value)
OPERATORS: list[tuple[str, dict[str, Any], list[str], str, dict[str, Any]]] = [
    ("n", cond("EQ", {"N": "5"}), ["p0"], "n = :v", {":v": {"N": "5"}}),
    ("n", cond("EQ", {"S": "5"}), ["q0"], "n = :v", {":v": {"S": "5"}}),
    ("ss", cond("EQ", {"SS": ["b", "a"]}), ["p0"], "ss = :v", {":v": {"SS": ["b", "a"]}}),
    ("s", cond("EQ", {"S": "zzz"}), [], "s = :v", {":v": {"S": "zzz"}}),
    # NE: another type and a missing attribute are "not equal"
    ("n", cond("NE", {"N": "5"}), ["p1", "p2", "q0", "q1"], "n <> :v", {":v": {"N": "5"}}),
    ("s", cond("NE", {"S": "apple"}), ["p1", "p2", "q0", "q1"], "s <> :v", {":v": {"S": "apple"}}),
    ("ns", cond("NE", {"NS": ["2", "1"]}), ALL[1:], "ns <> :v", {":v": {"NS": ["1", "2"]}}),
    # order: numbers numerically, never across types (q0's S "5" never compares)
    ("n", cond("LT", {"N": "7.5"}), ["p0", "p2"], "n < :v", {":v": {"N": "7.5"}}),
    ("n", cond("LE", {"N": "7.5"}), ["p0", "p2", "q1"], "n <= :v", {":v": {"N": "7.5"}}),
    ("n", cond("GT", {"N": "5"}), ["p1", "q1"], "n > :v", {":v": {"N": "5"}}),
    ("n", cond("GE", {"N": "5"}), ["p0", "p1", "q1"], "n >= :v", {":v": {"N": "5"}}),
    ("s", cond("GT", {"S": "b"}), ["p1", "p2"], "s > :v", {":v": {"S": "b"}}),
    ("b", cond("LT", {"B": B2}), ["p0"], "b < :v", {":v": {"B": B2}}),
    ("n", cond("GE", {"S": "0"}), ["q0"], "n >= :v", {":v": {"S": "0"}}),
    # existence: a NULL-typed attribute exists
    ("b", cond("NOT_NULL"), ["p0", "q0"], "attribute_exists(b)", {}),
    ("b", cond("NULL"), ["p1", "p2", "q1"], "attribute_not_exists(b)", {}),
    ("nul", cond("NOT_NULL"), ["p1"], "attribute_exists(nul)", {}),
    ("nul", cond("NULL"), ["p0", "p2", "q0", "q1"], "attribute_not_exists(nul)", {}),
    # CONTAINS: substring of S, subsequence of B, member of a set, element of a list
    ("s", cond("CONTAINS", {"S": "an"}), ["p1"], "contains(s, :v)", {":v": {"S": "an"}}),
    ("b", cond("CONTAINS", {"B": B2}), ["p0", "q0"], "contains(b, :v)", {":v": {"B": B2}}),
    ("ss", cond("CONTAINS", {"S": "c"}), ["p1"], "contains(ss, :v)", {":v": {"S": "c"}}),
    ("ns", cond("CONTAINS", {"N": "2.0"}), ["p0"], "contains(ns, :v)", {":v": {"N": "2"}}),
    ("bs", cond("CONTAINS", {"B": B9}), ["p0"], "contains(bs, :v)", {":v": {"B": B9}}),
    ("l", cond("CONTAINS", {"N": "1"}), ["p0"], "contains(l, :v)", {":v": {"N": "1"}}),
    ("ss", cond("CONTAINS", {"N": "1"}), [], "contains(ss, :v)", {":v": {"N": "1"}}),
    ("n", cond("CONTAINS", {"S": "5"}), ["q0"], "contains(n, :v)", {":v": {"S": "5"}}),
    # NOT_CONTAINS: true on a missing attribute and on one of another type
    (
        "ss",
        cond("NOT_CONTAINS", {"S": "a"}),
        ["p1", "p2", "q0", "q1"],
        "NOT contains(ss, :v)",
        {":v": {"S": "a"}},
    ),
    (
        "s",
        cond("NOT_CONTAINS", {"S": "ap"}),
        ["p1", "p2", "q0"],
        "NOT contains(s, :v)",
        {":v": {"S": "ap"}},
    ),
    # BEGINS_WITH: S and B only; a number never begins with anything
    (
        "s",
        cond("BEGINS_WITH", {"S": "ap"}),
        ["p0", "q1"],
        "begins_with(s, :v)",
        {":v": {"S": "ap"}},
    ),
    ("b", cond("BEGINS_WITH", {"B": B12}), ["p0"], "begins_with(b, :v)", {":v": {"B": B12}}),
    ("n", cond("BEGINS_WITH", {"S": "5"}), ["q0"], "begins_with(n, :v)", {":v": {"S": "5"}}),
    # IN: equal to one of the values, of the same type
    (
        "n",
        cond("IN", {"N": "10"}, {"N": "-3"}, {"N": "99"}),
        ["p1", "p2"],
        "n IN (:a, :b, :c)",
        {":a": {"N": "10"}, ":b": {"N": "-3"}, ":c": {"N": "99"}},
    ),
    ("s", cond("IN", {"S": "nope"}), [], "s IN (:a)", {":a": {"S": "nope"}}),
    # BETWEEN: inclusive at both ends
    (
        "n",
        cond("BETWEEN", {"N": "-3"}, {"N": "7.5"}),
        ["p0", "p2", "q1"],
        "n BETWEEN :a AND :b",
        {":a": {"N": "-3"}, ":b": {"N": "7.5"}},
    ),
    (
        "s",
        cond("BETWEEN", {"S": "apricot"}, {"S": "banana"}),
        ["p1", "q1"],
        "s BETWEEN :a AND :b",
        {":a": {"S": "apricot"}, ":b": {"S": "banana"}},
    ),
]


IDS = [f"{a}-{c['ComparisonOperator']}-{i}" for i, (a, c, *_) in enumerate(OPERATORS)]

# Where moto 5.2.5 departs from DynamoDB on these cases (measured), by case id
_MISSING = "moto: false on a missing attribute"
_MIXED = "moto: HTTP 500 when an item holds the attribute with another type (q0's S n)"
MOTO_DEPARTS = {
    "s-NE-5": _MISSING,
    "ns-NE-6": "moto: a set is never 'not equal' (selects nothing)",
    "n-LT-7": _MIXED,
    "n-LE-8": _MIXED,
    "n-GT-9": _MIXED,
    "n-GE-10": _MIXED,
    "n-GE-13": _MIXED,
    "n-CONTAINS-25": _MIXED,
    "ss-NOT_CONTAINS-26": _MISSING,
    "s-NOT_CONTAINS-27": _MISSING,
    "n-BEGINS_WITH-30": _MIXED,
    "n-BETWEEN-33": _MIXED,
}


@pytest.mark.parametrize(
    ("attribute", "condition", "expected", "expression", "values"), OPERATORS, ids=IDS
)
def test_each_operator_selects_what_its_expression_selects(
    served: Running,
    attribute: str,
    condition: dict[str, Any],
    expected: list[str],
    expression: str,
    values: dict[str, Any],
) -> None:
    client = served.client()
    legacy = scanned(client, ScanFilter={attribute: condition})
    assert legacy == expected
    more: dict[str, Any] = {"ExpressionAttributeValues": values} if values else {}
    assert scanned(client, FilterExpression=expression, **more) == legacy


def test_conditions_are_anded_unless_conditional_operator_says_or(served: Running) -> None:
    client = served.client()
    both = {"s": cond("BEGINS_WITH", {"S": "ap"}), "n": cond("GT", {"N": "6"})}
    assert scanned(client, ScanFilter=both) == ["q1"]
    assert scanned(client, ScanFilter=both, ConditionalOperator="AND") == ["q1"]
    assert scanned(client, ScanFilter=both, ConditionalOperator="OR") == ["p0", "p1", "q1"]
    # a missing attribute fails its condition; under OR another condition can still pass
    absent = {"b": cond("EQ", {"B": B2}), "nul": cond("NOT_NULL")}
    assert scanned(client, ScanFilter=absent) == []
    assert scanned(client, ScanFilter=absent, ConditionalOperator="OR") == ["p1", "q0"]
    # an empty filter filters nothing
    assert scanned(client, ScanFilter={}) == ALL


def test_query_filter_narrows_a_query_and_counts_what_was_read(served: Running) -> None:
    client = served.client()
    key = {"pk": cond("EQ", {"S": "p"})}
    answer = client.query(
        TableName=TABLE,
        KeyConditions=key,
        QueryFilter={"n": cond("GE", {"N": "5"}), "ss": cond("NOT_NULL")},
    )
    assert [label(item) for item in answer["Items"]] == ["p0", "p1"]
    assert (answer["Count"], answer["ScannedCount"]) == (2, 3)
    answer = client.query(
        TableName=TABLE,
        KeyConditions=key,
        QueryFilter={"n": cond("LT", {"N": "0"}), "flag": cond("EQ", {"N": "1"})},
        ConditionalOperator="OR",
        AttributesToGet=["sk", "n"],
        ScanIndexForward=False,
    )
    assert answer["Items"] == [{"sk": {"N": "2"}, "n": {"N": "-3"}}]
    # paged: the filter applies to each page's evaluated items, as DynamoDB's does
    first = client.query(
        TableName=TABLE, KeyConditions=key, QueryFilter={"s": cond("EQ", {"S": "cherry"})}, Limit=2
    )
    assert (first["Count"], first["ScannedCount"]) == (0, 2)
    rest = client.query(
        TableName=TABLE,
        KeyConditions=key,
        QueryFilter={"s": cond("EQ", {"S": "cherry"})},
        ExclusiveStartKey=first["LastEvaluatedKey"],
    )
    assert [label(item) for item in rest["Items"]] == ["p2"]
    assert (
        client.query(
            TableName=TABLE,
            KeyConditions=key,
            QueryFilter={"n": cond("GT", {"N": "0"})},
            Select="COUNT",
        )["Count"]
        == 2
    )


def test_a_query_filter_on_an_index_reads_what_the_index_holds(served: Running) -> None:
    client = served.client()
    answer = client.query(
        TableName=TABLE,
        IndexName="by_s",
        KeyConditions={"s": cond("EQ", {"S": "apple"})},
        QueryFilter={"sk": cond("EQ", {"N": "0"})},
    )
    assert answer["Items"] == [{"s": {"S": "apple"}, "pk": {"S": "p"}, "sk": {"N": "0"}}]
    # a keys-only GSI has no ``n``: nothing passes a condition on it
    answer = client.query(
        TableName=TABLE,
        IndexName="by_s",
        KeyConditions={"s": cond("EQ", {"S": "apple"})},
        QueryFilter={"n": cond("NOT_NULL")},
    )
    assert (answer["Count"], answer["ScannedCount"]) == (0, 1)


def test_a_query_filter_on_a_key_attribute_is_refused(served: Running) -> None:
    client = served.client()
    key = {"pk": cond("EQ", {"S": "p"})}
    for name in ("pk", "sk"):
        assert refusal(client.query, KeyConditions=key, QueryFilter={name: cond("NOT_NULL")}) == (
            "QueryFilter can only contain non-primary key attributes: Primary key attribute: "
            + name
        )
    # on an index, the index's keys are the ones refused
    assert refusal(
        client.query,
        IndexName="by_s",
        KeyConditions={"s": cond("EQ", {"S": "apple"})},
        QueryFilter={"s": cond("NOT_NULL")},
    ) == ("QueryFilter can only contain non-primary key attributes: Primary key attribute: s")


MIXING = "Can not use both expression and non-expression parameters in the same request: "


def test_legacy_and_expression_parameters_are_not_mixed(served: Running) -> None:
    client = served.client()
    key = {"pk": cond("EQ", {"S": "p"})}
    values = {":v": {"S": "x"}}
    assert (
        refusal(
            client.scan,
            ScanFilter={"s": cond("NOT_NULL")},
            FilterExpression="s = :v",
            ExpressionAttributeValues=values,
        )
        == MIXING
        + "Non-expression parameters: {ScanFilter} Expression parameters: {FilterExpression}"
    )
    assert refusal(client.scan, AttributesToGet=["s"], ProjectionExpression="n") == (
        MIXING + "Non-expression parameters: {AttributesToGet} "
        "Expression parameters: {ProjectionExpression}"
    )
    assert refusal(
        client.scan,
        ConditionalOperator="OR",
        FilterExpression="s = :v",
        ExpressionAttributeValues=values,
    ) == (
        MIXING + "Non-expression parameters: {ConditionalOperator} "
        "Expression parameters: {FilterExpression}"
    )
    assert refusal(
        client.scan,
        AttributesToGet=["s"],
        ScanFilter={"s": cond("NOT_NULL"), "n": cond("NOT_NULL")},
        ConditionalOperator="AND",
        FilterExpression="s = :v",
        ProjectionExpression="n",
        ExpressionAttributeValues=values,
    ) == (
        MIXING + "Non-expression parameters: {AttributesToGet, ScanFilter, ConditionalOperator} "
        "Expression parameters: {ProjectionExpression, FilterExpression}"
    )
    assert refusal(
        client.query,
        QueryFilter={"s": cond("NOT_NULL")},
        KeyConditionExpression="pk = :v",
        ExpressionAttributeValues=values,
    ) == (
        MIXING + "Non-expression parameters: {QueryFilter} "
        "Expression parameters: {KeyConditionExpression}"
    )
    assert refusal(
        client.query,
        KeyConditions=key,
        QueryFilter={"s": cond("NOT_NULL")},
        FilterExpression="s = :v",
        ExpressionAttributeValues=values,
    ) == (
        MIXING + "Non-expression parameters: {QueryFilter} "
        "Expression parameters: {FilterExpression}"
    )
    # KeyConditions goes with expressions as long as KeyConditionExpression is not one of them
    answer = client.query(
        TableName=TABLE,
        KeyConditions=key,
        FilterExpression="n > :v",
        ProjectionExpression="sk",
        ExpressionAttributeValues={":v": {"N": "0"}},
    )
    assert answer["Items"] == [{"sk": {"N": "0"}}, {"sk": {"N": "1"}}]


def test_conditional_operator_needs_two_conditions(served: Running) -> None:
    client = served.client()
    without = "ConditionalOperator cannot be used without Filter or Expected"
    one = "ConditionalOperator can only be used when Filter or Expected has two or more elements"
    assert refusal(client.scan, ConditionalOperator="AND") == without
    assert refusal(client.scan, ConditionalOperator="OR", ScanFilter={}) == without
    assert refusal(client.scan, ConditionalOperator="OR", AttributesToGet=["s"]) == without
    assert refusal(client.scan, ConditionalOperator="AND", ScanFilter={"s": cond("NULL")}) == one
    key = {"pk": cond("EQ", {"S": "p"})}
    assert refusal(client.query, ConditionalOperator="AND", KeyConditions=key) == without
    # before the missing key condition, as on DynamoDB
    assert refusal(client.query, ConditionalOperator="AND") == without
    assert (
        refusal(
            client.query,
            ConditionalOperator="OR",
            KeyConditions=key,
            QueryFilter={"s": cond("NULL")},
        )
        == one
    )


INVALID = "One or more parameter values were invalid: "


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (cond("EQ"), "Invalid number of argument(s) for the EQ ComparisonOperator"),
        (
            cond("NE", {"S": "a"}, {"S": "b"}),
            "Invalid number of argument(s) for the NE ComparisonOperator",
        ),
        (cond("LT"), "Invalid number of argument(s) for the LT ComparisonOperator"),
        (cond("NULL", {"S": "a"}), "Invalid number of argument(s) for the NULL ComparisonOperator"),
        (
            cond("NOT_NULL", {"S": "a"}),
            "Invalid number of argument(s) for the NOT_NULL ComparisonOperator",
        ),
        (cond("CONTAINS"), "Invalid number of argument(s) for the CONTAINS ComparisonOperator"),
        (
            cond("BEGINS_WITH", {"S": "a"}, {"S": "b"}),
            "Invalid number of argument(s) for the BEGINS_WITH ComparisonOperator",
        ),
        (cond("IN"), "Invalid number of argument(s) for the IN ComparisonOperator"),
        (
            cond("BETWEEN", {"N": "1"}),
            "Invalid number of argument(s) for the BETWEEN ComparisonOperator",
        ),
        (
            cond("BETWEEN", {"N": "1"}, {"N": "2"}, {"N": "3"}),
            "Invalid number of argument(s) for the BETWEEN ComparisonOperator",
        ),
        (
            cond("IN", {"N": "1"}, {"S": "1"}),
            "AttributeValues inside AttributeValueList must be of same type",
        ),
        (
            cond("BETWEEN", {"N": "1"}, {"S": "2"}),
            "AttributeValues inside AttributeValueList must be of same type",
        ),
        (
            cond("LT", {"SS": ["a"]}),
            "ComparisonOperator LT is not valid for SS AttributeValue type",
        ),
        (
            cond("CONTAINS", {"NS": ["1"]}),
            "ComparisonOperator CONTAINS is not valid for NS AttributeValue type",
        ),
        (
            cond("NOT_CONTAINS", {"L": []}),
            "ComparisonOperator NOT_CONTAINS is not valid for L AttributeValue type",
        ),
        (
            cond("BEGINS_WITH", {"N": "1"}),
            "ComparisonOperator BEGINS_WITH is not valid for N AttributeValue type",
        ),
        (cond("IN", {"BS": [B2]}), "ComparisonOperator IN is not valid for BS AttributeValue type"),
        (
            cond("EQ", {"BOOL": True}),
            "ComparisonOperator EQ is not valid for BOOL AttributeValue type",
        ),
        (cond("NE", {"M": {}}), "ComparisonOperator NE is not valid for M AttributeValue type"),
    ],
)
def test_wrong_argument_counts_and_types_are_refused(
    served: Running, condition: dict[str, Any], message: str
) -> None:
    client = served.client()
    assert refusal(client.scan, ScanFilter={"n": condition}) == INVALID + message
    key = {"pk": cond("EQ", {"S": "p"})}
    assert (
        refusal(client.query, KeyConditions=key, QueryFilter={"n": condition}) == INVALID + message
    )


def test_other_refusals_of_conditions(served: Running) -> None:
    client = served.client()
    assert (
        refusal(client.scan, ScanFilter={"n": cond("BETWEEN", {"N": "2"}, {"N": "1"})})
        == "The BETWEEN condition was provided a range where the lower bound is greater than the "
        "upper bound"
    )
    unchecked = served.client(parameter_validation=False)
    enum = (
        "Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, "
        "NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"
    )
    assert refusal(unchecked.scan, ScanFilter={"n": {"ComparisonOperator": "LIKE"}}) == (
        "1 validation error detected: Value 'LIKE' at 'scanFilter.n.member.comparisonOperator' "
        f"failed to satisfy constraint: {enum}"
    )
    assert refusal(unchecked.scan, ScanFilter={"n": {"AttributeValueList": [{"N": "1"}]}}) == (
        "1 validation error detected: Value null at 'scanFilter.n.member.comparisonOperator' "
        "failed to satisfy constraint: Member must not be null"
    )
    assert refusal(unchecked.scan, ScanFilter={"n": cond("NULL")}, ConditionalOperator="XOR") == (
        "1 validation error detected: Value 'XOR' at 'conditionalOperator' failed to satisfy "
        "constraint: Member must satisfy enum value set: [AND, OR]"
    )


def test_key_conditions_are_checked_as_filters_are(served: Running) -> None:
    """The same value checks for ``KeyConditions`` (a missing value used to fail inside)."""
    client = served.client()
    assert refusal(client.query, KeyConditions={"pk": cond("EQ")}) == (
        INVALID + "Invalid number of argument(s) for the EQ ComparisonOperator"
    )
    assert refusal(
        client.query,
        KeyConditions={"pk": cond("EQ", {"S": "p"}), "sk": cond("BETWEEN", {"N": "3"}, {"N": "1"})},
    ) == (
        "The BETWEEN condition was provided a range where the lower bound is greater than the "
        "upper bound"
    )
    assert (
        refusal(client.query, KeyConditions={"pk": cond("EQ", {"S": "p"}), "sk": cond("NOT_NULL")})
        == "Attempted conditional constraint is not an indexable operation"
    )


def test_moto_selects_the_same_items_for_the_same_legacy_requests(
    served: Running, ddb: Any
) -> None:
    """moto 5.2.5 over the same items, for the conditions it evaluates as DynamoDB does.

    Measured departures of moto, judged instead by DynamoDB's documentation and by the
    ``FilterExpression`` equivalents above: :data:`MOTO_DEPARTS` (``NE`` and
    ``NOT_CONTAINS`` false on a missing attribute, ``NE`` with a set, an HTTP 500 when an
    attribute has different types across items); it also ignores ``ConditionalOperator``
    (``OR`` selects what ``AND`` does) and answers a wrong argument count or type with an
    HTTP 500, not a ValidationException."""
    create_table(ddb, TABLE, range_key="sk", key_types=("S", "N"), stream=None)
    client = served.client()
    for item in client.scan(TableName=TABLE)["Items"]:
        ddb.put_item(TableName=TABLE, Item=item)
    compared = 0
    for case, (attribute, condition, expected, _, _) in zip(IDS, OPERATORS, strict=True):
        if case in MOTO_DEPARTS:
            continue
        assert scanned(client, ScanFilter={attribute: condition}) == expected
        assert scanned(ddb, ScanFilter={attribute: condition}) == expected, case
        compared += 1
    assert compared == len(OPERATORS) - len(MOTO_DEPARTS)
    two = {"s": cond("BEGINS_WITH", {"S": "ap"}), "ss": cond("NOT_NULL")}
    assert scanned(client, ScanFilter=two) == scanned(ddb, ScanFilter=two) == ["p0"]
    key = {"pk": cond("EQ", {"S": "p"})}
    # moto's Query answers HTTP 500 for a QueryFilter with NOT_NULL or CONTAINS on a set, and
    # of {n GE 5, s LT "b"} also returns p1 (s "banana"): single conditions only
    for query_filter in (
        {"n": cond("GE", {"N": "5"})},
        {"s": cond("BEGINS_WITH", {"S": "b"})},
        {"s": cond("LT", {"S": "b"})},
    ):
        ours = client.query(TableName=TABLE, KeyConditions=key, QueryFilter=query_filter)
        theirs = ddb.query(TableName=TABLE, KeyConditions=key, QueryFilter=query_filter)
        assert ours["Items"] == theirs["Items"], query_filter
        assert (ours["Count"], ours["ScannedCount"]) == (theirs["Count"], theirs["ScannedCount"])
