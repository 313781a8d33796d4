"""PartiQL ``SELECT`` through ``ExecuteStatement`` on ``ddb-replayer serve``, driven with boto3
(and once with the AWS CLI) as an application would.

A ``SELECT`` must answer what the Query or Scan DynamoDB runs for it answers: each statement
here is checked against the equivalent Query/Scan on the same endpoint (items, in order),
paged answers must join up to the unpaged one, ``@instant`` names must read the past, and
everything DynamoDB refuses — or this read-only endpoint refuses — must be refused with
DynamoDB's error types. A few statements are also sent to moto, over the same items.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from tests.conftest import create_table
from tests.replay_helpers import TABLE, Change, at, write_changes, write_coverage
from tests.serve_helpers import Running, describe, put_items, serving
from tests.test_serve_clients import aws, server  # noqa: F401  (the command as users run it)

PAST = f"{TABLE}@{iso_ms(at(15))}"


def item(i: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"c{i % 3}"},
        "sk": {"N": str(i)},
        "status": {"S": "new"},
        "amount": {"N": str(i * 10)},
        "info": {"M": {"tags": {"L": [{"S": "x"}, {"S": f"t{i}"}]}, "n": {"N": str(i % 4)}}},
        "weird name": {"S": f"w{i}"},
        **({"note": {"S": f"note {i}"}} if i % 2 else {}),
        **({"tags": {"SS": ["a", f"s{i % 5}"]}} if i % 3 == 1 else {}),
    }


def history(archive: Archive) -> None:
    """``orders`` (pk S, sk N; GSI by_status: status/sk; LSI by_total: pk/amount): 30 items at
    +10 s; at +20 s the first ten become ``paid`` and item 29 is deleted."""
    write_coverage(archive, watermark=at(100))
    describe(
        archive,
        keys=(("pk", "S"), ("sk", "N")),
        gsis=[
            {
                "IndexName": "by_status",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        lsis=[
            {
                "IndexName": "by_total",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "amount", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        attributes={"status": "S", "amount": "N"},
    )
    first = [item(i) for i in range(30)]
    seq = put_items(archive, first, ["pk", "sk"], at=at(10))
    later = [dict(each, status={"S": "paid"}) for each in first[:10]]
    seq = put_items(archive, later, ["pk", "sk"], start_seq=seq, at=at(20))
    write_changes(archive, [Change(seq, {"pk": {"S": "c2"}, "sk": {"N": "29"}}, None, at(20))])


@pytest.fixture
def served(archive: Archive) -> Iterator[Running]:
    history(archive)
    with serving(archive) as running:
        yield running


def code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def message(error: ClientError) -> str:
    return str(error.response["Error"]["Message"])


def select(client: Any, statement: str, *parameters: Any, **more: Any) -> dict[str, Any]:
    if parameters:
        more["Parameters"] = list(parameters)
    answer: dict[str, Any] = client.execute_statement(Statement=statement, **more)
    return answer


def every_page(client: Any, statement: str, *parameters: Any, limit: int) -> list[Any]:
    """All pages of a statement, ``limit`` items evaluated per page."""
    pages = []
    token = None
    while True:
        more: dict[str, Any] = {"Limit": limit}
        if token:
            more["NextToken"] = token
        answer = select(client, statement, *parameters, **more)
        pages.append(answer["Items"])
        assert len(answer["Items"]) <= limit
        token = answer.get("NextToken")
        assert ("LastEvaluatedKey" in answer) == (token is not None)
        if token is None:
            return pages
        assert len(pages) < 100


def joined(pages: list[list[Any]]) -> list[Any]:
    return [each for page in pages for each in page]


def sks(items: list[Any]) -> list[int]:
    return [int(each["sk"]["N"]) for each in items]


def test_a_key_lookup_reads_one_item_at_the_instant_named(served: Running) -> None:
    client = served.client()
    now = select(client, f"SELECT * FROM \"{TABLE}\" WHERE pk = 'c0' AND sk = 3")["Items"]
    assert now == [dict(item(3), status={"S": "paid"})]
    then = select(
        client, f'SELECT * FROM "{PAST}" WHERE pk = ? AND sk = ?', {"S": "c0"}, {"N": "3"}
    )
    assert then["Items"] == [item(3)]
    # deleted at +20 s: there before, gone after
    gone = "SELECT pk FROM \"{}\" WHERE pk = 'c2' AND sk = 29"
    assert select(client, gone.format(PAST))["Items"] == [{"pk": {"S": "c2"}}]
    assert select(client, gone.format(TABLE))["Items"] == []
    epoch = f"{TABLE}@{at(15).timestamp()}"
    assert select(client, f"SELECT status FROM \"{epoch}\" WHERE pk = 'c0' AND sk = 3")[
        "Items"
    ] == [{"status": {"S": "new"}}]


@pytest.mark.parametrize(
    ("where", "parameters", "key_condition", "values"),
    [
        ("pk = ?", [{"S": "c1"}], "pk = :p", {":p": {"S": "c1"}}),
        (
            "? = pk AND sk > 10",
            [{"S": "c1"}],
            "pk = :p AND sk > :s",
            {":p": {"S": "c1"}, ":s": {"N": "10"}},
        ),
        (
            "pk = 'c2' AND sk BETWEEN 5 AND 20",
            [],
            "pk = :p AND sk BETWEEN :a AND :b",
            {":p": {"S": "c2"}, ":a": {"N": "5"}, ":b": {"N": "20"}},
        ),
        (
            "pk = 'c0' AND 12 >= sk",
            [],
            "pk = :p AND sk <= :s",
            {":p": {"S": "c0"}, ":s": {"N": "12"}},
        ),
    ],
)
def test_a_partition_key_equality_reads_as_the_query(
    served: Running, where: str, parameters: list[Any], key_condition: str, values: dict[str, Any]
) -> None:
    client = served.client()
    answer = select(client, f'SELECT * FROM "{PAST}" WHERE {where}', *parameters)
    queried = client.query(
        TableName=PAST, KeyConditionExpression=key_condition, ExpressionAttributeValues=values
    )
    assert answer["Items"] == queried["Items"] and answer["Items"]
    assert "NextToken" not in answer and "LastEvaluatedKey" not in answer


@pytest.mark.parametrize(
    ("where", "filter_expression", "values"),
    [
        (
            "amount >= 100 AND status = 'paid'",
            "amount >= :t AND #s = :s",
            {":t": 100, ":s": "paid"},
        ),
        ("status <> 'paid' OR amount < 30", "#s <> :s OR amount < :t", {":s": "paid", ":t": 30}),
        ("note IS MISSING", "attribute_not_exists(note)", {}),
        (
            "note IS NOT MISSING AND NOT amount IN [10, 30]",
            "attribute_exists(note) AND NOT amount IN (:a, :b)",
            {":a": 10, ":b": 30},
        ),
        ("begins_with(note, 'note 1')", "begins_with(note, :n)", {":n": "note 1"}),
        (
            "contains(tags, 's2') OR contains(info.tags, 't4')",
            "contains(tags, :s) OR contains(info.tags, :t)",
            {":s": "s2", ":t": "t4"},
        ),
        (
            'size("weird name") = 3 AND info.n BETWEEN 1 AND 2',
            "size(#w) = :three AND info.n BETWEEN :a AND :b",
            {":three": 3, ":a": 1, ":b": 2},
        ),
        (
            "attribute_type(tags, 'SS') AND info.tags[1] <> 't4'",
            "attribute_type(tags, :ss) AND info.tags[1] <> :t",
            {":ss": "SS", ":t": "t4"},
        ),
        (
            "(sk < 5 OR sk > 25) AND NOT (pk = 'c1')",
            "(sk < :a OR sk > :b) AND NOT (pk = :p)",
            {":a": 5, ":b": 25, ":p": "c1"},
        ),
        ("status = 1", "#s = :one", {":one": 1}),
        (
            "pk > 'c0' OR pk = 'c0' AND sk < 3",
            "pk > :c OR pk = :c AND sk < :three",
            {":c": "c0", ":three": 3},
        ),
    ],
)
def test_any_other_where_scans_with_the_same_filter(
    served: Running, where: str, filter_expression: str, values: dict[str, Any]
) -> None:
    from boto3.dynamodb.types import TypeSerializer

    client = served.client()
    answer = select(client, f'SELECT * FROM "{TABLE}" WHERE {where}')
    names = {n: v for n, v in (("#s", "status"), ("#w", "weird name")) if n in filter_expression}
    scan: dict[str, Any] = {"TableName": TABLE, "FilterExpression": filter_expression}
    if values:
        serialize = TypeSerializer().serialize
        scan["ExpressionAttributeValues"] = {k: serialize(v) for k, v in values.items()}
    if names:
        scan["ExpressionAttributeNames"] = names
    scanned = client.scan(**scan)
    assert answer["Items"] == scanned["Items"]


def test_in_and_or_of_partition_keys_read_those_partitions_in_the_order_written(
    served: Running,
) -> None:
    client = served.client()
    expected = [i for i in range(30) if i % 3 == 2] + [i for i in range(30) if i % 3 == 0]
    statement = f"SELECT sk FROM \"{PAST}\" WHERE pk IN ['c2', 'c0', 'c2', 'nobody', 7]"
    assert sks(select(client, statement)["Items"]) == expected
    either = f"SELECT sk FROM \"{PAST}\" WHERE (pk = 'c2' OR pk = 'c0') AND sk >= 3"
    assert sks(select(client, either)["Items"]) == [i for i in expected if i >= 3]
    # paged a few items at a time, across the partitions: the same answer
    for each in (statement, either):
        assert joined(every_page(client, each, limit=4)) == select(client, each)["Items"]


def test_scan_pages_join_up_to_the_whole_answer(served: Running) -> None:
    client = served.client()
    statement = f'SELECT pk, sk FROM "{PAST}" WHERE amount >= ?'
    whole = select(client, statement, {"N": "50"})["Items"]
    assert len(whole) == 25
    pages = every_page(client, statement, {"N": "50"}, limit=7)
    assert joined(pages) == whole
    assert len(pages) == 5  # 30 items evaluated, 7 a page; the last page stopped with nothing after
    assert (
        client.scan(
            TableName=PAST,
            ProjectionExpression="pk, sk",
            FilterExpression="amount >= :t",
            ExpressionAttributeValues={":t": {"N": "50"}},
        )["Items"]
        == whole
    )


def test_order_by_the_sort_key_descending(served: Running) -> None:
    client = served.client()
    statement = f"SELECT sk FROM \"{PAST}\" WHERE pk = 'c1' AND sk < 20 ORDER BY sk DESC"
    assert sks(select(client, statement)["Items"]) == [19, 16, 13, 10, 7, 4, 1]
    assert joined(every_page(client, statement, limit=3)) == select(client, statement)["Items"]
    ascending = f"SELECT sk FROM \"{PAST}\" WHERE pk = 'c1' ORDER BY pk, sk ASC"
    assert sks(select(client, ascending)["Items"]) == list(range(1, 30, 3))


def test_an_index_is_read_as_the_table_had_it(served: Running) -> None:
    client = served.client()
    paid = f'SELECT * FROM "{TABLE}"."by_status" WHERE status = \'paid\' ORDER BY sk DESC'
    entries = select(client, paid)["Items"]
    assert sks(entries) == list(range(9, -1, -1))
    # KEYS_ONLY: the entries hold the keys only
    assert entries[0] == {"pk": {"S": "c0"}, "sk": {"N": "9"}, "status": {"S": "paid"}}
    assert (
        select(client, f'SELECT * FROM "{PAST}"."by_status" WHERE status = \'paid\'')["Items"] == []
    )
    # an LSI projecting everything, read by its sort key
    big = f"SELECT sk, amount FROM \"{TABLE}\".by_total WHERE pk = 'c0' AND amount > 200"
    assert select(client, big)["Items"] == [
        {"sk": {"N": str(i)}, "amount": {"N": str(i * 10)}} for i in (21, 24, 27)
    ]
    pages = every_page(client, f'SELECT sk FROM "{TABLE}"."by_status"', limit=6)
    assert sorted(sks(joined(pages))) == list(range(29))


def test_projections_rebuild_nested_paths(served: Running) -> None:
    client = served.client()
    statement = (
        f'SELECT info.tags[1], "weird name", info."n", nothing FROM "{PAST}" '
        "WHERE pk = 'c0' AND sk = 6"
    )
    assert select(client, statement)["Items"] == [
        {
            "info": {"M": {"tags": {"L": [{"S": "t6"}]}, "n": {"N": "2"}}},
            "weird name": {"S": "w6"},
        }
    ]


def test_consumed_capacity_as_the_other_reads_report_it(served: Running) -> None:
    client = served.client()
    answer = select(
        client,
        f"SELECT * FROM \"{PAST}\" WHERE pk = 'c0'",
        ReturnConsumedCapacity="TOTAL",
        ConsistentRead=True,
    )
    queried = client.query(
        TableName=PAST,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "c0"}},
        ReturnConsumedCapacity="TOTAL",
        ConsistentRead=True,
    )
    assert answer["ConsumedCapacity"] == queried["ConsumedCapacity"]
    assert answer["ConsumedCapacity"]["TableName"] == PAST


@pytest.mark.parametrize(
    ("statement", "parameters", "error", "says"),
    [
        (f'SELECT * FROM "{TABLE}" WHERE', [], "ValidationException", "wasn't well formed"),
        (f'SELECT * FROM "{TABLE}" WHERE pk = ', [], "ValidationException", "wasn't well formed"),
        (f'SELECT * "{TABLE}"', [], "ValidationException", "Expected FROM"),
        (
            f'SELECT * FROM "{TABLE}" WHERE a = 1 LIMIT 3',
            [],
            "ValidationException",
            "wasn't well formed",
        ),
        (
            f'SELECT * FROM "{TABLE}" ORDER BY sk',
            [],
            "ValidationException",
            "Must have WHERE clause",
        ),
        (
            f'SELECT * FROM "{TABLE}" WHERE amount > 3 ORDER BY sk',
            [],
            "ValidationException",
            "one partition key value",
        ),
        (
            f"SELECT * FROM \"{TABLE}\" WHERE pk IN ['c0', 'c1'] ORDER BY sk",
            [],
            "ValidationException",
            "one partition key value",
        ),
        (
            f"SELECT * FROM \"{TABLE}\" WHERE pk = 'c0' ORDER BY amount",
            [],
            "ValidationException",
            "amount is not one",
        ),
        (
            f'SELECT * FROM "{TABLE}" WHERE pk = ?',
            [],
            "ValidationException",
            "Number of parameters",
        ),
        (f'SELECT * FROM "{TABLE}"', [{"S": "x"}], "ValidationException", "Number of parameters"),
        (
            f'SELECT * FROM "{TABLE}" WHERE amount + 1 > 3',
            [],
            "ValidationException",
            "does not answer the operator +",
        ),
        (
            f'SELECT count(*) FROM "{TABLE}"',
            [],
            "ValidationException",
            "does not answer the function count()",
        ),
        (
            f"SELECT * FROM \"{TABLE}\" WHERE attribute_type(pk, 'X')",
            [],
            "ValidationException",
            "attribute_type takes",
        ),
        (
            f'SELECT * FROM "{TABLE}"."nope"',
            [],
            "ValidationException",
            "does not have the specified index",
        ),
        ('SELECT * FROM "nope"', [], "ResourceNotFoundException", "nope not found"),
        (
            f'SELECT * FROM "{TABLE}@2020-01-01T00:00:00Z"',
            [],
            "ResourceNotFoundException",
            "did not exist",
        ),
        (f'SELECT * FROM "{TABLE}@yesterday"', [], "ValidationException", "ISO 8601"),
        (
            f"INSERT INTO \"{TABLE}\" VALUE {{'pk': 'x', 'sk': 1}}",
            [],
            "AccessDeniedException",
            "read-only",
        ),
        (
            f"UPDATE \"{TABLE}\" SET amount = 1 WHERE pk = 'c0' AND sk = 0",
            [],
            "AccessDeniedException",
            "read-only",
        ),
        (
            f"delete FROM \"{TABLE}\" WHERE pk = 'c0' AND sk = 0",
            [],
            "AccessDeniedException",
            "read-only",
        ),
        ("CREATE TABLE x", [], "ValidationException", "wasn't well formed"),
    ],
)
def test_statements_dynamodb_refuses_are_refused(
    served: Running, statement: str, parameters: list[Any], error: str, says: str
) -> None:
    with pytest.raises(ClientError) as caught:
        select(served.client(), statement, *parameters)
    assert code(caught.value) == error, message(caught.value)
    assert says in message(caught.value)


def test_request_level_refusals(served: Running) -> None:
    client = served.client()
    statement = f'SELECT * FROM "{TABLE}"'
    token = select(client, statement, Limit=2)["NextToken"]
    with pytest.raises(ClientError) as caught:
        select(client, f'SELECT pk FROM "{TABLE}"', NextToken=token)
    assert message(caught.value) == "NextToken does not match request"
    with pytest.raises(ClientError) as caught:
        select(client, statement, NextToken="garbage!")
    assert code(caught.value) == "ValidationException"
    with pytest.raises(ClientError) as caught:
        select(
            client, f"SELECT * FROM \"{TABLE}\".by_status WHERE status = 'new'", ConsistentRead=True
        )
    assert "Consistent reads are not supported on global secondary indexes" in message(caught.value)
    with pytest.raises(ClientError) as caught:
        client.batch_execute_statement(
            Statements=[{"Statement": f"DELETE FROM \"{TABLE}\" WHERE pk = 'c0' AND sk = 0"}]
        )
    assert code(caught.value) == "AccessDeniedException"
    with pytest.raises(ClientError) as caught:
        client.execute_transaction(
            TransactStatements=[
                {"Statement": f"SELECT * FROM \"{TABLE}\" WHERE pk = 'c0' AND sk = 0"}
            ]
        )
    assert code(caught.value) == "UnknownOperationException"
    assert "ExecuteStatement" in message(caught.value)


def test_moto_answers_the_same_for_simple_statements(served: Running, ddb: Any) -> None:
    """moto (py_partiql_parser) over the state now: where it answers, the same items.

    moto departs from DynamoDB elsewhere (moto 5.2.5, measured): it ignores ``Limit`` (one
    page, no NextToken), does not know ``"table"."index"`` (ResourceNotFoundException) and
    answers no items for ``begins_with``, ``IS MISSING``, ``IN`` or ``ORDER BY``; those forms
    are checked against the endpoint's own Query and Scan above."""
    client = served.client()
    create_table(ddb, TABLE, range_key="sk", key_types=("S", "N"), stream=None)
    for each in client.scan(TableName=TABLE)["Items"]:
        ddb.put_item(TableName=TABLE, Item=each)
    for statement, parameters, ordered in [
        (f"SELECT * FROM \"{TABLE}\" WHERE pk = 'c1'", [], True),
        (f'SELECT * FROM "{TABLE}" WHERE pk = ? AND sk = ?', [{"S": "c2"}, {"N": "5"}], True),
        (f"SELECT * FROM \"{TABLE}\" WHERE status = 'paid'", [], False),
        (f'SELECT pk, sk FROM "{TABLE}" WHERE amount = ?', [{"N": "120"}], False),
    ]:
        ours = select(client, statement, *parameters)["Items"]
        theirs = select(ddb, statement, *parameters)["Items"]
        assert ours, statement
        if ordered:
            assert ours == theirs, statement
        else:
            key = lambda i: json.dumps(i, sort_keys=True)  # noqa: E731
            assert sorted(ours, key=key) == sorted(theirs, key=key), statement


def test_the_aws_cli_runs_a_select(server: str) -> None:  # noqa: F811
    answer = aws(
        server,
        "execute-statement",
        "--statement",
        f'SELECT sk, status FROM "{TABLE}@{iso_ms(at(15))}" WHERE pk = ? AND sk < ?',
        "--parameters",
        '[{"S": "c0"}, {"N": "7"}]',
    )
    assert answer["Items"] == [{"sk": {"N": str(i)}, "status": {"S": "new"}} for i in (0, 3, 6)]
