"""Stream records → change rows: both record shapes give identical rows.

The poller reads records through boto3/aiobotocore (binary as ``bytes``, times as ``datetime``
in the local zone, ``userIdentity`` as ``Type``/``PrincipalId``); the Lambda handler gets them
as plain JSON (binary as base64 text, times as epoch seconds, ``type``/``principalId``,
``eventSourceARN``). The archive must not be able to tell them apart.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import boto3
import orjson
import pyarrow as pa
import pytest
from dateutil.tz import tzlocal
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.format.codec import canonical_json
from archiver.format.records import ChangeRows, event_time_ms
from archiver.format.schema import CHANGE_SCHEMA
from archiver.format.storage import Archive
from tests.conftest import REGION
from tests.helpers import lambda_value
from tests.test_codec import items, rendered_item

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/people/stream/2026-01-31T12:00:00.000"
TABLE_ID = "8e4b7a3c-1f2d-4c5e-9a6b-0d1e2f3a4b5c"
TTL = ("Service", "dynamodb.amazonaws.com")

PHOTO = bytes(range(200, 256)) + b"\x00PNG"
FULL_ITEM: dict[str, Any] = {
    "dept": {"S": "engineering"},
    "emp_id": {"B": b"\x00\x01\xff"},
    "name": {"S": "Zoë Åkesson 🚀"},
    "nickname": {"S": ""},
    "salary": {"N": "123456789012345678901234567890.12345678"},
    "rating": {"N": "4.50"},
    "active": {"BOOL": True},
    "manager": {"NULL": True},
    "photo": {"B": PHOTO},
    "skills": {"SS": ["rust", "python", "go"]},
    "lucky": {"NS": ["13", "7", "-1.5"]},
    "keys": {"BS": [b"\xff", b"\x00"]},
    "address": {
        "M": {
            "city": {"S": "Malmö"},
            "thumb": {"B": PHOTO[:8]},
            "geo": {"L": [{"N": "55.6050"}, {"N": "13.0038"}]},
        }
    },
    "history": {"L": [{"S": "hired"}, {"B": b"\x01"}, {"M": {"at": {"N": "1769860800"}}}]},
}
KEY_NAMES = ("dept", "emp_id")


def lambda_shape(record: dict[str, Any]) -> dict[str, Any]:
    """A boto3-shaped record as the Lambda event source mapping delivers the same record."""
    ddb = record["dynamodb"]
    out_ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": ddb["ApproximateCreationDateTime"].timestamp(),
        "SequenceNumber": ddb["SequenceNumber"],
        "SizeBytes": ddb["SizeBytes"],
        "StreamViewType": ddb["StreamViewType"],
    }
    for part in ("Keys", "NewImage", "OldImage"):
        if part in ddb:
            out_ddb[part] = {name: lambda_value(av) for name, av in ddb[part].items()}
    event: dict[str, Any] = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record["eventVersion"],
        "eventSource": "aws:dynamodb",
        "awsRegion": record["awsRegion"],
        "eventSourceARN": STREAM_ARN,
        "dynamodb": out_ddb,
    }
    if "userIdentity" in record:
        identity = record["userIdentity"]
        event["userIdentity"] = {"type": identity["Type"], "principalId": identity["PrincipalId"]}
    # exactly what json.loads of the Lambda payload gives: no bytes, no datetimes
    parsed: dict[str, Any] = json.loads(json.dumps(event))
    return parsed


def boto3_record(
    event_name: str,
    sequence: int,
    at: datetime,
    *,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    identity: tuple[str, str] | None = None,
) -> dict[str, Any]:
    image = new if new is not None else old
    assert image is not None
    ddb: dict[str, Any] = {
        # botocore hands out datetimes in the local zone
        "ApproximateCreationDateTime": at.astimezone(tzlocal()),
        "Keys": {name: image[name] for name in KEY_NAMES},
        "SequenceNumber": str(sequence),
        "SizeBytes": 321,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        ddb["NewImage"] = new
    if old is not None:
        ddb["OldImage"] = old
    record: dict[str, Any] = {
        "eventID": f"{sequence:032x}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": ddb,
    }
    if identity:
        record["userIdentity"] = {"Type": identity[0], "PrincipalId": identity[1]}
    return record


def change_rows(records: list[dict[str, Any]]) -> pa.Table:
    rows = ChangeRows()
    rows.extend(records, stream_arn=STREAM_ARN, shard_id=None, table_id=TABLE_ID, origin="stream")
    return rows.to_table()


def lifecycle() -> list[dict[str, Any]]:
    """INSERT, MODIFY, a user's REMOVE and a TTL REMOVE, in boto3 shape."""
    at = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
    raised = {**FULL_ITEM, "salary": {"N": "123456789012345678901234567890.5"}}
    second = {**FULL_ITEM, "emp_id": {"B": b"\x02"}, "skills": {"SS": ["sql"]}}
    return [
        boto3_record("INSERT", 100000000000000000001, at, new=FULL_ITEM),
        boto3_record(
            "MODIFY", 100000000000000000007, at + timedelta(seconds=1), new=raised, old=FULL_ITEM
        ),
        boto3_record("INSERT", 100000000000000000010, at + timedelta(seconds=1), new=second),
        boto3_record("REMOVE", 100000000000000000042, at + timedelta(seconds=2), old=raised),
        boto3_record(
            "REMOVE", 200000000000000000000, at + timedelta(days=1), old=second, identity=TTL
        ),
    ]


def test_both_record_shapes_give_identical_rows() -> None:
    records = lifecycle()
    from_poller = change_rows(records)
    from_lambda = change_rows([lambda_shape(record) for record in records])
    assert from_poller.schema == CHANGE_SCHEMA
    assert from_lambda.equals(from_poller)


def test_rows_say_what_each_record_was() -> None:
    rows = change_rows([lambda_shape(record) for record in lifecycle()]).to_pylist()
    insert, modify, _, remove, ttl = rows
    assert [row["event_name"] for row in rows] == ["INSERT", "MODIFY", "INSERT", "REMOVE", "REMOVE"]
    assert insert["event_time"] == datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
    assert ttl["event_time"] == datetime(2026, 2, 1, 12, 0, 0, tzinfo=UTC)
    assert insert["sequence_number"] == "0000000000000000000100000000000000000001"
    assert insert["keys"] == '{"dept":{"S":"engineering"},"emp_id":{"B":"AAH/"}}'
    assert insert["new_image"] == canonical_json(FULL_ITEM)
    assert insert["old_image"] is None
    assert modify["old_image"] == canonical_json(FULL_ITEM)
    assert orjson.loads(modify["new_image"])["salary"] == {"N": "123456789012345678901234567890.5"}
    assert remove["new_image"] is None and remove["old_image"] is not None
    assert remove["user_identity"] is None
    assert ttl["user_identity"] == "Service/dynamodb.amazonaws.com"
    assert {row["stream_arn"] for row in rows} == {STREAM_ARN}
    assert {row["table_id"] for row in rows} == {TABLE_ID}
    assert {row["size_bytes"] for row in rows} == {321}
    # the canonical image keeps everything, binary inside maps and lists included
    image = orjson.loads(insert["new_image"])
    assert base64.b64decode(image["address"]["M"]["thumb"]["B"]) == PHOTO[:8]
    assert base64.b64decode(image["history"]["L"][1]["B"]) == b"\x01"
    assert image["rating"] == {"N": "4.5"}


def test_ttl_deletions_are_marked_in_both_shapes() -> None:
    """GetRecords spells it Type/PrincipalId, Lambda type/principalId: both must mark TTL."""
    (record,) = lifecycle()[-1:]
    for shape in (record, lambda_shape(record)):
        (row,) = change_rows([shape]).to_pylist()
        assert row["user_identity"] == "Service/dynamodb.amazonaws.com"


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 3, 29, 1, 30, 5, 250000, tzinfo=UTC),
        datetime(2026, 3, 29, 7, 0, 5, 250000, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 3, 28, 20, 30, 5, 250000, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_event_times_in_any_zone_become_the_same_utc_instant(at: datetime) -> None:
    utc = datetime(2026, 3, 29, 1, 30, 5, 250000, tzinfo=UTC)
    assert at == utc
    assert event_time_ms(at) == event_time_ms(utc) == 1774747805250
    assert event_time_ms(at.astimezone(tzlocal())) == 1774747805250
    assert event_time_ms(utc.timestamp()) == 1774747805250  # Lambda: epoch seconds
    assert event_time_ms(1774747805) == 1774747805000  # AWS: whole seconds
    # a naive datetime is UTC, as everywhere in the archive — not this machine's local time
    assert event_time_ms(utc.replace(tzinfo=None)) == 1774747805250


@settings(max_examples=40, deadline=None)
@given(models=st.lists(items, min_size=1, max_size=4), data=st.data())
def test_any_items_give_identical_rows_from_either_shape(
    models: list[dict[str, Any]], data: st.DataObject
) -> None:
    at = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
    records = []
    for n, model in enumerate(models):
        image = {**data.draw(rendered_item(model)), "dept": {"S": "d"}, "emp_id": {"N": str(n)}}
        # boto3 hands binary out as bytes: normalise the drawn forms to that
        image = {name: _as_bytes(av) for name, av in image.items()}
        records.append(boto3_record("INSERT", 10**20 + n, at, new=image))
    assert change_rows([lambda_shape(r) for r in records]).equals(change_rows(records))


def _as_bytes(av: dict[str, Any]) -> dict[str, Any]:
    ((tag, value),) = av.items()
    if tag == "B":
        return {"B": base64.b64decode(value) if isinstance(value, str) else bytes(value)}
    if tag == "BS":
        return {"BS": [_as_bytes({"B": raw})["B"] for raw in value]}
    if tag == "M":
        return {"M": {name: _as_bytes(inner) for name, inner in value.items()}}
    if tag == "L":
        return {"L": [_as_bytes(inner) for inner in value]}
    return {tag: value}


def test_append_one_by_one_equals_extend_and_tracks_size() -> None:
    records = lifecycle()
    one_by_one = ChangeRows()
    for record in records:
        one_by_one.append(
            record, stream_arn=STREAM_ARN, shard_id="shardId-1", table_id=TABLE_ID, origin="stream"
        )
    at_once = ChangeRows()
    at_once.extend(
        iter(records), stream_arn=STREAM_ARN, shard_id="shardId-1", table_id=TABLE_ID,
        origin="stream",
    )  # fmt: skip
    assert len(one_by_one) == len(at_once) == len(records)
    assert (
        one_by_one.nbytes
        == at_once.nbytes
        > sum(
            len(canonical_json(r["dynamodb"].get("NewImage") or r["dynamodb"]["OldImage"]))
            for r in records
        )
    )
    assert one_by_one.to_table().equals(at_once.to_table())
    assert at_once.to_table().column("shard_id").to_pylist() == ["shardId-1"] * len(records)
    assert ChangeRows().to_table().num_rows == 0


def test_rows_survive_parquet(archive: Archive) -> None:
    table = change_rows(lifecycle())
    archive.write_parquet("changes/table_name=people/dt=2026-01-31/x.parquet", table)
    assert archive.read_parquet("changes/table_name=people/dt=2026-01-31/x.parquet").equals(table)


def test_a_real_stream_record_from_moto_gives_identical_rows_in_both_shapes(
    ddb: Any, aws_env: str
) -> None:
    ddb.create_table(
        TableName="people",
        KeySchema=[
            {"AttributeName": "dept", "KeyType": "HASH"},
            {"AttributeName": "emp_id", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "dept", "AttributeType": "S"},
            {"AttributeName": "emp_id", "AttributeType": "B"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    key = {name: FULL_ITEM[name] for name in KEY_NAMES}
    ddb.put_item(TableName="people", Item=FULL_ITEM)
    ddb.update_item(
        TableName="people",
        Key=key,
        UpdateExpression="SET rating = :r",
        ExpressionAttributeValues={":r": {"N": "5"}},
    )
    ddb.delete_item(TableName="people", Key=key)

    client = boto3.client("dynamodbstreams", region_name=REGION, endpoint_url=aws_env)
    stream_arn = ddb.describe_table(TableName="people")["Table"]["LatestStreamArn"]
    (shard,) = client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = client.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = client.get_records(ShardIterator=iterator)["Records"]
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    assert isinstance(records[0]["dynamodb"]["NewImage"]["photo"]["B"], bytes)
    assert isinstance(records[0]["dynamodb"]["ApproximateCreationDateTime"], datetime)

    from_poller = change_rows(records)
    from_lambda = change_rows([lambda_shape(record) for record in records])
    assert from_lambda.equals(from_poller)

    rows = from_poller.to_pylist()
    # lossless through the stream: what was written is what is archived
    assert rows[0]["new_image"] == canonical_json(FULL_ITEM)
    assert rows[1]["old_image"] == canonical_json(FULL_ITEM)
    assert orjson.loads(rows[1]["new_image"])["rating"] == {"N": "5"}
    assert rows[2]["new_image"] is None
    # the true key, although moto garbles binary key attributes in Keys (encodes them twice)
    assert {row["keys"] for row in rows} == {canonical_json(key)}
    sequence_numbers = [row["sequence_number"] for row in rows]
    assert sequence_numbers == sorted(sequence_numbers)
    assert all(len(number) == 40 for number in sequence_numbers)
