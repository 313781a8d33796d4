"""``ddb-replayer serve``: DynamoDB's read API over the archive, as tables were at any instant.

Driven with boto3 as an application would: reads at several instants (ISO, epoch, bare
names), the planner's refusals as ``ResourceNotFoundException`` saying why, writes refused,
the archive never written, indexes as the table had them at T, paging and the 1 MB page as
DynamoDB draws it, ``BatchGetItem``'s unprocessed keys, signatures, and the state cache.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from archiver.format import tables
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from replayer.engines.fold import Fold
from replayer.serve import keys
from replayer.serve.dynamodb_errors import InvalidSignatureException
from replayer.serve.signatures import SignatureVerifier
from tests.replay_helpers import (
    TABLE,
    Change,
    at,
    write_changes,
    write_coverage,
    write_gap,
)
from tests.serve_helpers import describe, put_items, serving

S = {"S": "x"}


def code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def message(error: ClientError) -> str:
    return str(error.response["Error"]["Message"])


def orders(archive: Archive) -> Archive:
    """``orders`` (pk S, sk N): a, b created at +10 s, a changed at +20 s, b deleted at +30 s."""
    write_coverage(archive, watermark=at(100))
    describe(archive, keys=(("pk", "S"), ("sk", "N")))
    write_changes(
        archive,
        [
            Change(
                1,
                {"pk": {"S": "a"}, "sk": {"N": "1"}},
                {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"N": "1"}},
                at(10),
            ),
            Change(
                2,
                {"pk": {"S": "b"}, "sk": {"N": "1"}},
                {"pk": {"S": "b"}, "sk": {"N": "1"}, "v": {"N": "1"}},
                at(10),
            ),
            Change(
                3,
                {"pk": {"S": "a"}, "sk": {"N": "1"}},
                {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"N": "2"}},
                at(20),
            ),
            Change(4, {"pk": {"S": "b"}, "sk": {"N": "1"}}, None, at(30)),
        ],
    )
    return archive


def get(client: Any, name: str, pk: str) -> Any:
    return client.get_item(TableName=name, Key={"pk": {"S": pk}, "sk": {"N": "1"}}).get("Item")


def test_each_instant_reads_the_table_as_it_was(archive: Archive) -> None:
    orders(archive)
    with serving(archive) as served:
        client = served.client()
        iso = lambda s: iso_ms(at(s))  # noqa: E731
        assert get(client, f"{TABLE}@{iso(5)}", "a") is None
        assert get(client, f"{TABLE}@{iso(15)}", "a")["v"] == {"N": "1"}
        assert get(client, f"{TABLE}@{at(25).timestamp()}", "a")["v"] == {"N": "2"}
        assert get(client, f"{TABLE}@{iso(25)}", "b") is not None
        assert get(client, f"{TABLE}@{iso(35)}", "b") is None
        # a bare name is the latest restorable time, fixed when the server started
        assert served.catalog.start() == {TABLE: at(100)}
        assert get(client, TABLE, "a")["v"] == {"N": "2"} and get(client, TABLE, "b") is None
        # two spellings of one instant share one state
        get(client, f"{TABLE}@{at(100).timestamp()}", "a")
        assert len(served.store.states()) == 5  # +5, +15, +25, +35, +100
        scanned = client.scan(TableName=f"{TABLE}@{iso(25)}")
        assert scanned["Count"] == 2 and scanned["ScannedCount"] == 2


def test_an_explicit_at_is_what_a_bare_name_means(archive: Archive) -> None:
    orders(archive)
    with serving(archive, at=at(15)) as served:
        assert get(served.client(), TABLE, "a")["v"] == {"N": "1"}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("nope", "Requested resource not found: Table: nope not found"),
        (f"{TABLE}@2026-03-01T12:05:00Z", "is after the watermark"),
        (f"{TABLE}@2020-01-01T00:00:00Z", "did not exist at 2020-01-01T00:00:00.000Z"),
        (f"{TABLE}@2026-03-01T12:00:45Z", "has a gap in"),
    ],
)
def test_an_instant_the_archive_cannot_answer_is_not_found_saying_why(
    archive: Archive, name: str, reason: str
) -> None:
    orders(archive)
    write_gap(archive, at(40), at(50))
    with serving(archive) as served, pytest.raises(ClientError) as caught:
        get(served.client(), name, "a")
    assert code(caught.value) == "ResourceNotFoundException"
    assert reason in message(caught.value)


def test_a_malformed_instant_is_a_bad_request(archive: Archive) -> None:
    orders(archive)
    with serving(archive) as served, pytest.raises(ClientError) as caught:
        get(served.client(), f"{TABLE}@yesterday", "a")
    assert code(caught.value) == "ValidationException"
    assert "ISO 8601 with a zone" in message(caught.value)


def test_without_a_description_the_keys_are_unknown(archive: Archive) -> None:
    write_coverage(archive, watermark=at(100))
    write_changes(archive, [Change(1, {"pk": S}, {"pk": S}, at(10))])
    with serving(archive) as served, pytest.raises(ClientError) as caught:
        served.client().scan(TableName=TABLE)
    assert code(caught.value) == "ResourceNotFoundException"
    assert "holds no description" in message(caught.value)


def archive_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_the_archive_is_never_written(archive: Archive, archive_path: Path) -> None:
    # A log claiming to start at table creation whose first record for a key is a MODIFY:
    # restore records that refutation; serve only reports it.
    write_coverage(archive, watermark=at(100))
    describe(archive)
    write_changes(
        archive,
        [
            Change(1, {"pk": {"S": "a"}}, {"pk": {"S": "a"}}, at(10), "INSERT"),
            Change(2, {"pk": {"S": "b"}}, {"pk": {"S": "b"}}, at(20), "MODIFY"),
        ],
    )
    before = archive_digest(archive_path)
    with serving(archive) as served:
        client = served.client()
        with pytest.raises(ClientError) as caught:
            client.scan(TableName=f"{TABLE}@{iso_ms(at(30))}")
        assert code(caught.value) == "ResourceNotFoundException"
        assert "does not start there" in message(caught.value)
        assert client.scan(TableName=f"{TABLE}@{iso_ms(at(15))}")["Count"] == 1
        client.describe_table(TableName=f"{TABLE}@{iso_ms(at(15))}")
    assert archive_digest(archive_path) == before


def test_every_write_is_refused(archive: Archive) -> None:
    orders(archive)
    with serving(archive) as served:
        client = served.client()
        key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
        writes = [
            lambda: client.put_item(TableName=TABLE, Item=key),
            lambda: client.update_item(
                TableName=TABLE,
                Key=key,
                UpdateExpression="SET v = :v",
                ExpressionAttributeValues={":v": S},
            ),
            lambda: client.delete_item(TableName=TABLE, Key=key),
            lambda: client.batch_write_item(
                RequestItems={TABLE: [{"DeleteRequest": {"Key": key}}]}
            ),
            lambda: client.transact_write_items(
                TransactItems=[{"Delete": {"TableName": TABLE, "Key": key}}]
            ),
            lambda: client.delete_table(TableName=TABLE),
            lambda: client.execute_statement(Statement=f"DELETE FROM \"{TABLE}\" WHERE pk = 'a'"),
        ]
        for write in writes:
            with pytest.raises(ClientError) as caught:
                write()
            assert code(caught.value) == "AccessDeniedException"
            assert "read-only" in message(caught.value)
        # a PartiQL SELECT is a read, and answered
        selected = client.execute_statement(Statement=f'SELECT * FROM "{TABLE}"')
        assert selected["Items"] == [{"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"N": "2"}}]
        assert get(client, TABLE, "a")["v"] == {"N": "2"}


def raw(
    url: str, target: str, body: bytes, content_type: str = "application/x-amz-json-1.0"
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"X-Amz-Target": target, "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, orjson.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def test_errors_are_shaped_as_dynamodbs(archive: Archive) -> None:
    orders(archive)
    with serving(archive) as served:
        url = served.url
        status, body = raw(url, "DynamoDB_20120810.Query", b'{"TableName": "orders"}')
        assert status == 400 and body == {
            "__type": "com.amazon.coral.validate#ValidationException",
            "message": "Either the KeyConditions or KeyConditionExpression parameter must be "
            "specified in the request.",
        }
        status, body = raw(
            url, "DynamoDB_20120810.GetItem", b'{"TableName": "nope", "Key": {"pk": {"S": "a"}}}'
        )
        assert body["__type"] == "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"
        status, body = raw(url, "DynamoDB_20120810.Scan", b"{not json")
        assert body["__type"] == "com.amazon.coral.service#SerializationException"
        status, body = raw(
            url, "DynamoDB_20120810.Scan", b'{"TableName": "orders", "Limit": "ten"}'
        )
        assert body == {
            "__type": "com.amazon.coral.service#SerializationException",
            "Message": "STRING_VALUE cannot be converted to Integer",
        }
        status, body = raw(url, "DynamoDB_20120810.Scan", b'{"TableName": "orders", "Limit": 0}')
        assert body["message"] == (
            "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: "
            "Member must have value greater than or equal to 1"
        )
        status, body = raw(url, "Nope.Scan", b"{}")
        assert body["__type"] == "com.amazon.coral.service#UnknownOperationException"
        status, body = raw(
            url, "DynamoDB_20120810.GetItem", b'{"TableName": "orders", "Key": {"pk": {"S": "a"}}}'
        )
        assert body["message"] == "The provided key element does not match the schema"
        status, body = raw(
            url,
            "DynamoDB_20120810.GetItem",
            b'{"TableName": "orders", "Key": {"pk": {"S": "a"}, "sk": {"N": "x1"}}}',
        )
        assert body["message"] == "The parameter cannot be converted to a numeric value: x1"


# -- indexes --------------------------------------------------------------------------------


GSIS = [
    {
        "IndexName": "by_status",
        "KeySchema": [
            {"AttributeName": "status", "KeyType": "HASH"},
            {"AttributeName": "n", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    },
    {
        "IndexName": "by_colour",
        "KeySchema": [{"AttributeName": "colour", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["extra"]},
    },
]
LSIS = [
    {
        "IndexName": "by_n",
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "n", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    },
]


def indexed(archive: Archive) -> list[dict[str, Any]]:
    write_coverage(archive, watermark=at(100))
    describe(
        archive,
        keys=(("pk", "S"), ("sk", "S")),
        gsis=GSIS,
        lsis=LSIS,
        attributes={"status": "S", "n": "N", "colour": "S"},
    )
    items = []
    for i in range(12):
        item: dict[str, Any] = {
            "pk": {"S": f"p{i % 3}"},
            "sk": {"S": f"s{i:02d}"},
            "n": {"N": str(i % 4)},
        }
        if i % 2:
            item["status"] = {"S": "open" if i % 3 else "done"}
        if i % 4 == 1:
            item["colour"] = {"S": "red"}
            item["extra"] = {"S": f"e{i}"}
            item["other"] = {"S": "not projected"}
        if i == 11:
            item["status"] = {"N": "7"}  # not the index's type: not in the index
        items.append(item)
    put_items(archive, items, ["pk", "sk"], at=at(10))
    return items


def test_indexes_are_sparse_and_projected(archive: Archive) -> None:
    items = indexed(archive)
    with serving(archive) as served:
        client = served.client()
        found = client.query(
            TableName=TABLE,
            IndexName="by_status",
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "open"}},
        )["Items"]
        want = [i for i in items if i.get("status") == {"S": "open"}]
        assert sorted(int(i["n"]["N"]) for i in found) == sorted(int(i["n"]["N"]) for i in want)
        assert [int(i["n"]["N"]) for i in found] == sorted(int(i["n"]["N"]) for i in found)
        assert all(set(i) == {"pk", "sk", "status", "n"} for i in found)  # KEYS_ONLY
        red = client.query(
            TableName=TABLE,
            IndexName="by_colour",
            KeyConditionExpression="colour = :c",
            ExpressionAttributeValues={":c": {"S": "red"}},
        )["Items"]
        assert len(red) == 3 and all(set(i) == {"pk", "sk", "colour", "extra"} for i in red)
        with pytest.raises(ClientError) as caught:
            client.query(
                TableName=TABLE,
                IndexName="by_colour",
                Select="ALL_ATTRIBUTES",
                KeyConditionExpression="colour = :c",
                ExpressionAttributeValues={":c": {"S": "red"}},
            )
        assert "projection type is not ALL" in message(caught.value)
        # an LSI reads what it does not hold from the table
        local = client.query(
            TableName=TABLE,
            IndexName="by_n",
            Select="ALL_ATTRIBUTES",
            KeyConditionExpression="pk = :p AND n >= :n",
            ExpressionAttributeValues={":p": {"S": "p1"}, ":n": {"N": "1"}},
        )["Items"]
        want = sorted(
            (i for i in items if i["pk"] == {"S": "p1"} and int(i["n"]["N"]) >= 1),
            key=lambda i: (int(i["n"]["N"]), keys.tie_breaker(i["pk"], i["sk"])),
        )
        assert local == want
        scanned = client.scan(TableName=TABLE, IndexName="by_status")
        assert scanned["Count"] == sum(1 for i in items if "S" in i.get("status", {}))
        described = client.describe_table(TableName=TABLE)["Table"]
        counts = {i["IndexName"]: i["ItemCount"] for i in described["GlobalSecondaryIndexes"]}
        assert counts == {"by_status": 5, "by_colour": 3}
        assert described["LocalSecondaryIndexes"][0]["ItemCount"] == 12
        assert described["ItemCount"] == 12 and described["TableSizeBytes"] > 0


def test_an_index_created_later_is_not_there_before(archive: Archive) -> None:
    write_coverage(archive, watermark=at(100))
    describe(archive, keys=(("pk", "S"),), captured=at(0))
    describe(
        archive, keys=(("pk", "S"),), gsis=GSIS[1:], attributes={"colour": "S"}, captured=at(50)
    )
    put_items(archive, [{"pk": {"S": "a"}, "colour": {"S": "red"}}], ["pk"], at=at(10))
    with serving(archive) as served:
        client = served.client()
        query = dict(
            IndexName="by_colour",
            KeyConditionExpression="colour = :c",
            ExpressionAttributeValues={":c": {"S": "red"}},
        )
        assert client.query(TableName=f"{TABLE}@{iso_ms(at(60))}", **query)["Count"] == 1
        with pytest.raises(ClientError) as caught:
            client.query(TableName=f"{TABLE}@{iso_ms(at(20))}", **query)
        assert message(caught.value) == "The table does not have the specified index: by_colour"


# -- paging ----------------------------------------------------------------------------------


def test_limits_and_start_keys_page_as_dynamodb_does(archive: Archive) -> None:
    write_coverage(archive, watermark=at(100))
    describe(archive, keys=(("pk", "S"), ("sk", "N")))
    put_items(
        archive,
        [{"pk": {"S": "p"}, "sk": {"N": str(i)}} for i in range(10)],
        ["pk", "sk"],
        at=at(1),
    )
    with serving(archive) as served:
        client = served.client()
        query = dict(
            TableName=TABLE,
            KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
            ExpressionAttributeValues={":p": {"S": "p"}, ":a": {"N": "2"}, ":b": {"N": "7"}},
        )
        pages, start = [], None
        while True:
            page = client.query(**query, Limit=3, **({"ExclusiveStartKey": start} if start else {}))
            pages.append([int(i["sk"]["N"]) for i in page["Items"]])
            start = page.get("LastEvaluatedKey")
            if start is None:
                break
        # a page that stops at its Limit has a LastEvaluatedKey, even when nothing follows
        assert pages == [[2, 3, 4], [5, 6, 7], []]
        backwards = client.query(**query, ScanIndexForward=False, Limit=4)
        assert [int(i["sk"]["N"]) for i in backwards["Items"]] == [7, 6, 5, 4]
        rest = client.query(
            **query, ScanIndexForward=False, ExclusiveStartKey=backwards["LastEvaluatedKey"]
        )
        assert [int(i["sk"]["N"]) for i in rest["Items"]] == [3, 2]
        filtered = client.query(
            **query | {"ExpressionAttributeValues": query["ExpressionAttributeValues"]},
            Limit=3,
            Select="COUNT",
        )
        assert filtered["Count"] == 3 and "Items" not in filtered
        with pytest.raises(ClientError) as caught:
            client.query(**query, ExclusiveStartKey={"pk": {"S": "q"}, "sk": {"N": "3"}})
        assert (
            message(caught.value) == "The query can return at most one row and cannot be restarted"
        )
        with pytest.raises(ClientError) as caught:
            client.query(**query, ExclusiveStartKey={"pk": {"S": "p"}, "sk": {"N": "9"}})
        assert (
            message(caught.value)
            == "The provided starting key does not match the range key predicate"
        )


def test_parallel_scan_segments_partition_the_table(archive: Archive) -> None:
    write_coverage(archive, watermark=at(100))
    describe(archive)
    put_items(archive, [{"pk": {"S": f"k{i}"}} for i in range(200)], ["pk"], at=at(1))
    with serving(archive) as served:
        client = served.client()
        everything = [i["pk"]["S"] for i in client.scan(TableName=TABLE)["Items"]]
        assert everything == sorted(everything, key=lambda k: keys.item_key({"S": k}, None))
        for total in (1, 3, 16):
            seen: list[str] = []
            for segment in range(total):
                paginator = client.get_paginator("scan")
                for page in paginator.paginate(
                    TableName=TABLE,
                    Segment=segment,
                    TotalSegments=total,
                    PaginationConfig={"PageSize": 7},
                ):
                    seen += [i["pk"]["S"] for i in page["Items"]]
            assert sorted(seen) == sorted(everything) and len(seen) == 200
        start = client.scan(TableName=TABLE, Segment=0, TotalSegments=2, Limit=1)[
            "LastEvaluatedKey"
        ]
        with pytest.raises(ClientError) as caught:
            client.scan(TableName=TABLE, Segment=1, TotalSegments=2, ExclusiveStartKey=start)
        assert "Please use ExclusiveStartKey with correct Segment" in message(caught.value)


def page_items(names: list[str], big: int, second_last: dict[str, Any]) -> list[dict[str, Any]]:
    """25 items in scan order: 23 with a ``big``-character string, then ``second_last``'s
    attributes, then a small one (dynalite's boundary cases, measured against DynamoDB)."""
    order = sorted(names, key=lambda n: keys.item_key({"S": n}, None))
    items = []
    for index, name in enumerate(order):
        item: dict[str, Any] = {"a": {"S": name}}
        if index == 23:
            item.update(second_last)
        elif index == 24:
            item["b"] = {"S": "b"}
        else:
            item["b"] = {"S": "b" * big}
        items.append(item)
    return items


@pytest.mark.parametrize(("cut", "evaluated"), [(46, 25), (45, 24)])
def test_the_1mb_page_ends_where_dynamodbs_does(archive: Archive, cut: int, evaluated: int) -> None:
    write_coverage(archive, watermark=at(100))
    describe(archive, keys=(("a", "S"),))
    second_last = {
        "b": {"S": "b" * (43412 - cut)},
        "c": {"N": "12.3456"},
        "d": {"B": "AQI="},
        "e": {"SS": ["a", "bc"]},
        "f": {"NS": ["1.23", "12.3"]},
        "g": {"BS": ["AQI=", "Ag==", "AQ=="]},
    }
    items = page_items([f"{i:02d}" for i in range(25)], 43411, second_last)
    put_items(archive, items, ["a"], at=at(1))
    with serving(archive) as served:
        page = served.client().scan(TableName=TABLE, Select="COUNT")
        assert page["ScannedCount"] == evaluated
        assert "LastEvaluatedKey" in page  # the page reached 1 MB


def test_batch_get_answers_at_most_16mb_and_hands_back_the_rest(archive: Archive) -> None:
    write_coverage(archive, watermark=at(100))
    describe(archive)
    items = [
        {"pk": {"S": f"k{i:02d}"}, "blob": {"B": base64.b64encode(b"x" * 390_000).decode()}}
        for i in range(50)
    ]
    put_items(archive, items, ["pk"], at=at(1))
    with serving(archive) as served:
        client = served.client()
        wanted = [{"pk": i["pk"]} for i in items]
        first = client.batch_get_item(
            RequestItems={TABLE: {"Keys": wanted, "ProjectionExpression": "pk"}}
        )
        assert len(first["Responses"][TABLE]) == 50 and first["UnprocessedKeys"] == {}
        got: list[Any] = []
        request: dict[str, Any] = {TABLE: {"Keys": wanted}}
        rounds = 0
        while request:
            answer = client.batch_get_item(RequestItems=request)
            got += answer["Responses"].get(TABLE, [])
            request = answer["UnprocessedKeys"]
            rounds += 1
        assert rounds > 1
        assert sorted(i["pk"]["S"] for i in got) == [f"k{i:02d}" for i in range(50)]
        with pytest.raises(ClientError) as caught:
            client.batch_get_item(RequestItems={TABLE: {"Keys": [wanted[0], wanted[0]]}})
        assert message(caught.value) == "Provided list of item keys contains duplicates"


def test_transactions_read_each_item_once(archive: Archive) -> None:
    orders(archive)
    with serving(archive) as served:
        client = served.client()
        key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
        answer = client.transact_get_items(
            TransactItems=[
                {"Get": {"TableName": f"{TABLE}@{iso_ms(at(15))}", "Key": key}},
                {"Get": {"TableName": TABLE, "Key": key, "ProjectionExpression": "v"}},
                {"Get": {"TableName": TABLE, "Key": {"pk": {"S": "zz"}, "sk": {"N": "1"}}}},
            ]
        )["Responses"]
        assert answer == [
            {"Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"N": "1"}}},
            {"Item": {"v": {"N": "2"}}},
            {},
        ]
        with pytest.raises(ClientError) as caught:
            client.transact_get_items(TransactItems=[{"Get": {"TableName": TABLE, "Key": key}}] * 2)
        assert (
            message(caught.value)
            == "Transaction request cannot include multiple operations on one item"
        )


def test_list_tables_pages(archive: Archive) -> None:
    for name in ("aaa", "bbb", "ccc"):
        write_coverage(archive, table=name, watermark=at(100))
    with serving(archive) as served:
        client = served.client()
        first = client.list_tables(Limit=2)
        assert first["TableNames"] == ["aaa", "bbb"] and first["LastEvaluatedTableName"] == "bbb"
        rest = client.list_tables(ExclusiveStartTableName="bbb")
        assert rest["TableNames"] == ["ccc"] and "LastEvaluatedTableName" not in rest


# -- signatures ------------------------------------------------------------------------------


def test_with_credentials_only_signed_requests_are_answered(archive: Archive) -> None:
    orders(archive)
    with serving(archive, credentials={"AKIDSERVE": "s3cret"}) as served:
        assert get(served.client("AKIDSERVE", "s3cret"), TABLE, "a")["v"] == {"N": "2"}
        cases = [
            (served.client("AKIDSERVE", "wrong"), "InvalidSignatureException"),
            (served.client("AKIDOTHER", "s3cret"), "UnrecognizedClientException"),
            (served.client(signature_version=UNSIGNED), "MissingAuthenticationTokenException"),
        ]
        for client, error in cases:
            with pytest.raises(ClientError) as caught:
                client.list_tables()
            assert code(caught.value) == error


def test_an_old_signature_has_expired() -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:8000/",
        data=b"{}",
        headers={"X-Amz-Target": "DynamoDB_20120810.ListTables"},
    )
    SigV4Auth(Credentials("AK", "SK"), "dynamodb", "eu-west-1").add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()} | {"host": "127.0.0.1:8000"}
    verifier = SignatureVerifier({"AK": "SK"})
    assert verifier.verify("POST", "/", headers, b"{}") == "AK"
    from datetime import UTC, datetime

    later = datetime.now(UTC) + timedelta(minutes=16)
    with pytest.raises(InvalidSignatureException, match="Signature expired"):
        verifier.verify("POST", "/", headers, b"{}", now=later)
    with pytest.raises(InvalidSignatureException, match="does not match"):
        verifier.verify("POST", "/", headers, b'{"Limit": 1}')


# -- the state cache -------------------------------------------------------------------------


def test_states_past_the_cache_are_dropped_and_folded_again(archive: Archive) -> None:
    orders(archive)
    with serving(archive, cache_bytes=1) as served:
        client = served.client()
        assert get(client, f"{TABLE}@{iso_ms(at(15))}", "a")["v"] == {"N": "1"}
        assert get(client, f"{TABLE}@{iso_ms(at(25))}", "a")["v"] == {"N": "2"}
        assert len(served.store.states()) == 1  # the newest stays, however large
        assert get(client, f"{TABLE}@{iso_ms(at(15))}", "a")["v"] == {"N": "1"}


def test_concurrent_first_requests_fold_once(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders(archive)
    folds: list[int] = []
    original = Fold.state_at

    def counted(self: Fold, plan: Any) -> Any:
        folds.append(1)
        return original(self, plan)

    monkeypatch.setattr(Fold, "state_at", counted)
    with serving(archive) as served:
        results: list[Any] = []

        def read() -> None:
            results.append(get(served.client(), TABLE, "a"))

        threads = [threading.Thread(target=read) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 6 and all(r["v"] == {"N": "2"} for r in results)
        assert folds == [1]


@pytest.fixture
def big_strings() -> Iterator[None]:
    yield


def test_legacy_key_conditions_and_attributes_to_get(archive: Archive) -> None:
    orders(archive)
    with serving(archive) as served:
        client = served.client()
        answer = client.query(
            TableName=f"{TABLE}@{iso_ms(at(25))}",
            KeyConditions={
                "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "a"}]},
                "sk": {"ComparisonOperator": "GE", "AttributeValueList": [{"N": "1"}]},
            },
            AttributesToGet=["v"],
        )
        assert answer["Items"] == [{"v": {"N": "2"}}]
        answer = client.scan(
            TableName=TABLE,
            ScanFilter={"v": {"ComparisonOperator": "EQ", "AttributeValueList": [{"N": "2"}]}},
        )
        assert answer["Items"] == [{"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"N": "2"}}]


def test_inside_an_incremental_window_only_exact_instants_are_served(
    ddb: Any, s3: Any, archive: Archive
) -> None:
    from archiver.format.timefmt import as_utc
    from tests.incremental_helpers import delete, put, setup

    env = setup(ddb, s3, archive)
    t0 = as_utc(env.created) + timedelta(minutes=1)
    writes = [
        put(t0, "a", 1),
        put(t0, "b", 1),
        put(t0 + timedelta(minutes=20), "a", 2),
        put(t0 + timedelta(minutes=25), "b", 2),
        delete(t0 + timedelta(minutes=26), "a"),
    ]
    env.double.add_writes(env.table, writes)
    env.double.enable_pitr(env.table, env.created - timedelta(hours=1))
    env.clock.advance(timedelta(hours=2))
    env.chain().run(once=True, start=as_utc(env.created) - timedelta(minutes=5))
    tables.store_description(
        archive,
        tables.description_document(env.table, env.description, captured_at=env.created),
    )
    with serving(archive) as served:
        client = served.client()
        inside = f"{env.table}@{iso_ms(t0 + timedelta(minutes=22))}"
        answer = client.get_item(TableName=inside, Key={"pk": {"S": "a"}})
        assert answer["Item"]["v"] == {"N": "2"}
        with pytest.raises(ClientError) as caught:  # "a" is written later in that window
            client.get_item(
                TableName=f"{env.table}@{iso_ms(t0 + timedelta(minutes=12))}",
                Key={"pk": {"S": "a"}},
            )
        assert code(caught.value) == "ResourceNotFoundException"
        assert "1 key(s)" in message(caught.value)


def test_an_instant_before_the_log_covers_needs_a_base(archive: Archive) -> None:
    write_coverage(archive, covered_from=at(50), from_table_creation=False, watermark=at(100))
    describe(archive)
    write_changes(archive, [Change(1, {"pk": S}, {"pk": S}, at(60), "MODIFY")])
    with serving(archive) as served, pytest.raises(ClientError) as caught:
        served.client().get_item(TableName=f"{TABLE}@{iso_ms(at(70))}", Key={"pk": S})
    assert code(caught.value) == "ResourceNotFoundException"
    assert "no snapshot of table 'orders' is valid at" in message(caught.value)


def test_get_item_is_answered_before_the_state_is_sorted(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    from replayer.serve.state import StateStore

    orders(archive)
    release = threading.Event()
    original = StateStore._sort

    def held(self: StateStore, state: Any, fold_table: str) -> None:
        release.wait(timeout=30)
        original(self, state, fold_table)

    monkeypatch.setattr(StateStore, "_sort", held)
    with serving(archive) as served:
        client = served.client()
        name = f"{TABLE}@{iso_ms(at(25))}"
        assert get(client, name, "a")["v"] == {"N": "2"}  # from the fold's own table
        assert get(client, name, "zz") is None
        (state,) = served.store.states()
        assert not state._sorted.is_set()
        release.set()
        answer = client.query(
            TableName=name,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "b"}},
        )
        assert answer["Count"] == 1 and state._sorted.is_set()
        assert get(client, name, "a")["v"] == {"N": "2"}  # by the sorted keys
