"""Kinesis ``GetRecords`` pages read by orjson give what botocore's parser gives.

The same HTTP bodies go through botocore's response parser (what the Kinesis capture did
before) and through :func:`archiver.capture.raw_records.kinesis_records_page` (the
``before-parse`` hook its client now has); :class:`archiver.capture.kinesis.Intake` must make
the same archive records of both — binary inside the change documents, other tables'
records, data that is not a change document, data that is not JSON, a duplicate — with the
same Kinesis sequence numbers and arrival times. What the hook must leave to botocore (error
responses, records it cannot vouch for) is left untouched. ``tests/test_kinesis_capture.py``
reads moto's stream through a real client with the hook in place.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import botocore.parsers
import botocore.session
import orjson
import pytest

from archiver.capture import raw_records
from archiver.capture.kinesis import Intake
from archiver.capture.kinesis_order import Orderer
from archiver.format.storage import Archive
from bench.bench_kinesis import TABLE, changes, generation, kinesis_bodies, kinesis_pages


def _botocore(body: bytes) -> Mapping[str, Any]:
    model = botocore.session.get_session().get_service_model("kinesis")
    shape = model.operation_model("GetRecords").output_shape
    response = {"status_code": 200, "headers": {}, "body": body}
    return botocore.parsers.create_parser("json").parse(response, shape)


def _bodies() -> list[bytes]:
    pages, _ = kinesis_pages(changes(300))
    bodies = kinesis_bodies([pages[0][i : i + 100] for i in range(0, len(pages[0]), 100)])
    # Data that is no change document, and data that is not JSON at all.
    extra = orjson.loads(bodies[-1])
    for n, data in enumerate([b'{"hello": "world"}', b"\x00\xffnot json"]):
        extra["Records"].append(
            {
                "SequenceNumber": f"{9 * 10**55 + n}",
                "ApproximateArrivalTimestamp": 1767225600.123,
                "Data": base64.b64encode(data).decode(),
                "PartitionKey": "p",
            }
        )
    extra["ChildShards"] = [
        {"ShardId": "shardId-000000000001", "ParentShards": ["shardId-000000000000"],
         "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "9"}}
    ]  # fmt: skip
    return [*bodies[:-1], orjson.dumps(extra)]


def _take(tmp_path: Path, pages: list[Mapping[str, Any]]) -> tuple[list[Any], Intake]:
    intake = Intake(Archive.open(str(tmp_path)), TABLE, generation(), Orderer())

    async def run() -> list[Any]:
        return [await intake.take(page["Records"], "shard") for page in pages]

    return asyncio.run(run()), intake


def test_both_parsers_give_the_same_archive_records(tmp_path: Path) -> None:
    bodies = _bodies()
    by_botocore = [_botocore(body) for body in bodies]
    by_orjson = [raw_records.kinesis_records_page(body) for body in bodies]
    assert all(page is not None for page in by_orjson)
    assert isinstance(by_orjson[0]["Records"][0]["Data"], str)  # base64 text, not decoded
    for old, new in zip(by_botocore, by_orjson, strict=True):
        assert new is not None
        assert {k: v for k, v in old.items() if k not in ("Records", "ResponseMetadata")} == {
            k: v for k, v in new.items() if k not in ("Records", "ResponseMetadata")
        }
    old_items, old_intake = _take(tmp_path / "botocore", by_botocore)
    new_items, new_intake = _take(tmp_path / "orjson", [p or {} for p in by_orjson])
    assert sum(len(items) for items in new_items) > 200
    assert new_items == old_items  # records, Kinesis sequence numbers, arrival times
    assert new_intake.other_tables == old_intake.other_tables and new_intake.other_tables
    assert new_intake.foreign == old_intake.foreign == 2
    assert new_intake.orderer.duplicates == old_intake.orderer.duplicates


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"Records": {}}',
        b'{"Records": [{"Data": "e30=", "ApproximateArrivalTimestamp": "2026-01-01"}]}',
        b'{"Records": [{"Data": "e30=", "ApproximateArrivalTimestamp": true}]}',
        b'{"Records": [{"Data": null, "ApproximateArrivalTimestamp": 1.5}]}',
        b'{"Records": ["x"]}',
    ],
)
def test_the_hook_leaves_what_botocore_must_decide(body: bytes) -> None:
    response = {"status_code": 200, "body": body}
    custom: dict[str, Any] = {}
    raw_records.parse_kinesis_page(response, custom)
    assert response["body"] == body and custom == {}


def test_error_responses_are_left_to_botocore() -> None:
    body = b'{"__type": "ExpiredIteratorException", "message": "Iterator expired"}'
    response = {"status_code": 400, "body": body}
    custom: dict[str, Any] = {}
    raw_records.parse_kinesis_page(response, custom)
    assert response["body"] == body and custom == {}


def test_the_hook_is_installed_unless_botocore_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = botocore.session.get_session().create_client(
        "kinesis", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    assert raw_records.install_kinesis(client)
    monkeypatch.setenv(raw_records.PARSER_ENV, "botocore")
    assert not raw_records.install_kinesis(client)
    assert not raw_records.install_kinesis(object())  # a test double: nothing to hook
