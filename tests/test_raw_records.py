"""GetRecords pages parsed by orjson give the same change rows as botocore's parser.

The same pages are served over HTTP (``tests/streams_http.py``) and read by a real
aiobotocore client twice: once through botocore's response parser (what the poller did before,
``ARCHIVER_GETRECORDS_PARSER=botocore``) and once through :mod:`archiver.capture.raw_records`.
Every column of every change row must be byte-identical — binary at any depth, sets, nested
maps deeper than the codec's fast grammar, 38-digit numbers, a TTL deletion's
``userIdentity``, creation times in whole seconds, with milliseconds, as a JSON integer and in
scientific notation. Error responses must reach the caller exactly as botocore raises them.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import ExpiredIterator, Throttled, TrimmedData, error_class, is_error
from archiver.aws.retry import RetryPolicy
from archiver.capture import raw_records
from archiver.capture.streams_api import Shard, StreamsApi, event_datetime
from archiver.format.changefiles import RunBuilder
from tests.streams_double import StreamsDouble
from tests.streams_http import StreamsHttp, wire_json
from tests.test_records import FULL_ITEM

STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-31T12:00:00.000"
SHARD = "shardId-00000001700000000001-abcdef01"


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"B": b"\x00deep\xff"}
    for level in range(levels):
        value = {"M": {f"l{level}": value, "n": {"N": "-0.000000000000000000000000000000000001"}}}
    return value


def _records() -> list[dict[str, Any]]:
    """Records in the shape botocore returns (bytes, datetimes)."""
    base = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
    item = {
        **FULL_ITEM,
        "big": {"N": "99999999999999999999999999999999999999"},
        "tiny": {"N": "-1E-130"},
        "wide": {"NS": ["1E+125", "12345678901234567890123456789012345678", "0.1", "-3"]},
        "deep": _deep(8),
        "odd": {"S": '\x00starts with NUL, has "quotes" \\ and \n'},
        "blobs": {"L": [{"BS": [b"\x02", b"\x01"]}, {"M": {"b": {"B": b""}}}]},
    }
    keys = {"dept": item["dept"], "emp_id": item["emp_id"]}
    records = []
    for n, (name, when) in enumerate(
        [
            ("INSERT", base),
            ("MODIFY", base + timedelta(milliseconds=123)),
            ("MODIFY", base + timedelta(seconds=1, milliseconds=999)),
            ("REMOVE", base + timedelta(seconds=2)),
            ("INSERT", base + timedelta(days=1, milliseconds=1)),  # the next dt
        ]
    ):
        new = {**item, "n": {"N": str(n)}}
        ddb: dict[str, Any] = {
            "ApproximateCreationDateTime": when,
            "Keys": copy.deepcopy(keys),
            "SequenceNumber": str(10**39 + 7 * n),
            "SizeBytes": 300 + n,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if name != "REMOVE":
            ddb["NewImage"] = new
        if name != "INSERT":
            ddb["OldImage"] = {**item, "n": {"N": str(n - 1)}}
        record: dict[str, Any] = {
            "eventID": f"event-{n}",
            "eventName": name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": ddb,
        }
        if name == "REMOVE":
            record["userIdentity"] = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
        records.append(record)
    return records


class FixedPages:
    """One shard whose pages are fixed bodies; the second page's times are written as AWS
    may write them (an integer, scientific notation)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        first = wire_json({"Records": records[:3], "NextShardIterator": "it-2"})
        second = wire_json({"Records": records[3:], "NextShardIterator": None})
        whole = records[3]["dynamodb"]["ApproximateCreationDateTime"].timestamp()
        assert whole == int(whole)
        second = second.replace(
            f'"ApproximateCreationDateTime":{whole}'.encode(),
            f'"ApproximateCreationDateTime":{int(whole)}'.encode(),
        )
        later = records[4]["dynamodb"]["ApproximateCreationDateTime"].timestamp()
        second = second.replace(
            f'"ApproximateCreationDateTime":{later}'.encode(),
            f'"ApproximateCreationDateTime":{later / 1e9!r}E9'.encode(),
        )
        assert b"E9" in second and b'DateTime":%d,' % int(whole) in second
        self.pages = {"it-1": first, "it-2": second}

    async def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": "it-1"}

    async def get_records(self, **kwargs: Any) -> bytes:
        return self.pages[kwargs["ShardIterator"]]


@pytest.fixture
def served() -> Iterator[StreamsHttp]:
    with StreamsHttp(FixedPages(_records())) as server:
        yield server


async def _read(url: str) -> tuple[list[dict[str, Any]], pa.Table, list[Any]]:
    async with AwsSettings(endpoint_url=url).aio_client(
        "dynamodbstreams", own_retries=True
    ) as client:
        api = StreamsApi(client)
        shard = Shard(STREAM, SHARD, None, "1", None)
        iterator: str | None = await api.shard_iterator(shard, None)
        records: list[dict[str, Any]] = []
        lasts = []
        while iterator:
            page = await api.get_records(iterator, 1000)
            records += page["Records"]
            last = page["Records"][-1]["dynamodb"]
            lasts.append(
                (last["SequenceNumber"], event_datetime(last["ApproximateCreationDateTime"]))
            )
            iterator = page.get("NextShardIterator")
    builder = RunBuilder(stream_arn=STREAM, shard_id=SHARD, table_id="t-1", origin="stream")
    for record in records:
        builder.add(record)
    tables = [run.rows.to_table() for run in builder.runs]
    runs = [(run.dt, run.first_seq, run.last_seq, run.last_event_ms) for run in builder.runs]
    return records, pa.concat_tables(tables), [*runs, *lasts]


def test_both_parsers_give_byte_identical_rows(
    served: StreamsHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw_records_read, raw_rows, raw_runs = asyncio.run(_read(served.url))
    monkeypatch.setenv(raw_records.PARSER_ENV, "botocore")
    boto_records_read, boto_rows, boto_runs = asyncio.run(_read(served.url))

    # The two paths really differ in what they hand over...
    assert isinstance(boto_records_read[0]["dynamodb"]["ApproximateCreationDateTime"], datetime)
    assert isinstance(raw_records_read[0]["dynamodb"]["ApproximateCreationDateTime"], float)
    assert isinstance(raw_records_read[3]["dynamodb"]["ApproximateCreationDateTime"], int)
    assert isinstance(boto_records_read[0]["dynamodb"]["NewImage"]["photo"]["B"], bytes)
    assert isinstance(raw_records_read[0]["dynamodb"]["NewImage"]["photo"]["B"], str)
    # ...and what the archive gets from them is the same, column for column.
    assert raw_rows.num_rows == 5
    assert raw_runs == boto_runs
    for name in raw_rows.column_names:
        assert raw_rows.column(name).equals(boto_rows.column(name)), name
    assert raw_rows.equals(boto_rows)
    rows = raw_rows.to_pylist()
    assert [r["user_identity"] for r in rows] == [
        None,
        None,
        None,
        "Service/dynamodb.amazonaws.com",
        None,
    ]
    assert [r["event_time"].microsecond for r in rows] == [0, 123000, 999000, 0, 1000]
    assert '"big":{"N":"99999999999999999999999999999999999999"}' in rows[0]["new_image"]
    assert '"emp_id":{"B":"AAH/"}' in rows[0]["keys"]


async def _errors(url: str, double: StreamsDouble) -> list[tuple[Any, ...]]:
    async with AwsSettings(endpoint_url=url).aio_client(
        "dynamodbstreams", own_retries=True
    ) as client:
        api = StreamsApi(client, RetryPolicy(base_seconds=0.001, cap_seconds=0.002, max_attempts=3))
        stream = next(iter(double.streams.values()))
        shard = Shard.from_api(stream.arn, next(iter(stream.shards.values())).describe())
        iterator = await api.shard_iterator(shard, None)
        seen: list[tuple[Any, ...]] = []
        for code, status in [
            ("ExpiredIteratorException", 400),
            ("TrimmedDataAccessException", 400),
            ("ResourceNotFoundException", 400),
            ("LimitExceededException", 400),
            ("InternalServerError", 500),
        ]:
            double.fail("get_records", code, times=3, status=status)
            try:
                await api.get_records(iterator, 1000)
            except Exception as exc:
                response = getattr(exc, "response", {})
                seen.append(
                    (
                        type(exc).__name__,
                        error_class(exc),
                        response.get("Error"),
                        response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
                        is_error(exc, ExpiredIterator),
                        is_error(exc, TrimmedData),
                        is_error(exc, Throttled),
                    )
                )
            double.faults.clear()
        page = await api.get_records(iterator, 1000)
        seen.append(("ok", len(page["Records"]), "NextShardIterator" in page))
        return seen


def test_error_responses_are_parsed_by_botocore_either_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Throttling, an expired iterator, trimmed data, a vanished shard and a 5xx reach the one
    error table exactly as before: only successful bodies take the fast path."""
    double = StreamsDouble()
    stream = double.add_stream("t", "2026-01-31T12:00:00.000")
    shard = stream.add_shard()
    stream.put(shard, {"pk": {"S": "a"}}, new={"pk": {"S": "a"}, "b": {"B": b"\x01"}})
    with StreamsHttp(double) as server:
        raw = asyncio.run(_errors(server.url, double))
        monkeypatch.setenv(raw_records.PARSER_ENV, "botocore")
        boto = asyncio.run(_errors(server.url, double))
    assert raw == boto
    kinds = [entry[0] for entry in raw]
    assert kinds == [
        "ExpiredIteratorException",
        "TrimmedDataAccessException",
        "ResourceNotFoundException",
        "Throttled",  # given up after the policy's attempts, translated by the error table
        "ServiceUnavailable",
        "ok",
    ]
    assert raw[0][4] and raw[1][5] and raw[3][6]
    assert raw[-1] == ("ok", 1, True)


def test_the_hook_leaves_what_botocore_must_decide() -> None:
    """Error statuses, bodies that are not JSON objects and times given as text stay botocore's."""
    ok = wire_json({"Records": [], "NextShardIterator": "x"})
    assert raw_records.records_page(ok) == {"Records": [], "NextShardIterator": "x"}
    assert raw_records.records_page(b'{"Records": [], "NextShardIterator": null}') == {
        "Records": []
    }
    assert raw_records.records_page(b"not json") is None
    assert raw_records.records_page(b"[1]") is None
    text_time = b'{"Records":[{"dynamodb":{"ApproximateCreationDateTime":"2026-01-31T12:00:00Z"}}]}'
    assert raw_records.records_page(text_time) is None
    response: dict[str, Any] = {"status_code": 400, "body": ok}
    custom: dict[str, Any] = {}
    raw_records.parse_page(response, custom)
    assert custom == {} and response["body"] == ok
    response["status_code"] = 200
    raw_records.parse_page(response, custom)
    assert custom == {"Records": [], "NextShardIterator": "x"} and response["body"] == b"{}"
