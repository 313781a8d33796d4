"""Test doubles for Kinesis Data Streams for DynamoDB, where moto lacks or bends the behaviour.

:class:`KinesisDouble` speaks the Kinesis calls the capture makes, with aiobotocore's async
method names (``describe_stream_summary``, ``list_shards``, ``get_shard_iterator``,
``get_records``), returning what botocore returns (``Data`` as bytes,
``ApproximateArrivalTimestamp`` as a ``datetime``) and raising real
``botocore.exceptions.ClientError`` s with Kinesis's error codes. It models:

* shards and resharding as AWS does it: :meth:`split` closes a shard (its
  ``EndingSequenceNumber`` set) and new records go to its two children (``ParentShardId``);
  :meth:`merge` closes two and opens one child (``ParentShardId`` and
  ``AdjacentParentShardId``). moto's ``SplitShard`` keeps routing records to the closed parent
  (AWS-FORMATS.md), so no test of lineage can use it;
* sequence numbers as AWS gives them: 56 digits, increasing across the stream, not contiguous;
* a closed shard, once read to its end, answers no ``NextShardIterator``;
* ``MillisBehindLatest``: 0 when a page reaches the shard's last record (no new records "at
  this moment"), else the arrival time between the page's last record and the shard's newest
  (at least 1);
* ``ListShards`` paging (``page_size`` shards a page, ``NextToken`` alone on later pages —
  AWS refuses the stream name with a token);
* trimming (:meth:`trim`): records that arrived before a time are gone; an iterator after a
  trimmed record walks on silently from the next record still held, first answering
  ``trimmed_empty_pages`` empty pages about a retention period behind the tip (how AWS
  answers, as consumers report; AWS documents no error for it);
* ``ExpiredIteratorException`` for iterators issued before :meth:`expire_iterators`;
* throttling and server errors injected per call (:meth:`fail_next`);
* the stream deleted (:meth:`delete`): every call answers ``ResourceNotFoundException``.

Records are put with their arrival time (default: now), so tests can age them. It cannot
model: DynamoDB's own delay between a write and its record (the test picks creation times),
the 1 MB and 5-reads-a-second limits except as injected faults, enhanced fan-out.

:class:`DestinationDouble` answers DynamoDB's ``DescribeKinesisStreamingDestination``, which
moto does not implement: the table's destinations, their ``DestinationStatus`` and
``ApproximateCreationDateTimePrecision``, as the tests set them (async, as aiobotocore's
client; :meth:`DestinationDouble.sync` for the Lambda function's boto3 client). It cannot
model how long ENABLING or DISABLING take, nor the records DynamoDB drops while disabled
(tests simply put none).
"""

from __future__ import annotations

import base64
import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from botocore.exceptions import ClientError

ACCOUNT = "123456789012"
REGION = "us-east-1"
_FIRST_SEQ = 49590338271490256608559692538361571095921575989136588898


def client_error(code: str, operation: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} (test double)"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


def stream_arn(name: str) -> str:
    return f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"


@dataclass
class _Record:
    sequence_number: int
    data: bytes
    partition_key: str
    arrival: datetime


@dataclass
class _Shard:
    shard_id: str
    parent: str | None = None
    adjacent_parent: str | None = None
    records: list[_Record] = field(default_factory=list)
    starting_seq: int = 0
    ending_seq: int | None = None


class KinesisDouble:
    """A Kinesis data stream (see the module)."""

    def __init__(
        self,
        name: str = "orders-cdc",
        *,
        shards: int = 1,
        retention_hours: int = 24,
        page_size: int = 100,
        created_at: datetime | None = None,
    ) -> None:
        self.name = name
        self.arn = stream_arn(name)
        self.retention_hours = retention_hours
        self.page_size = page_size
        self.created_at = created_at or datetime.now(UTC) - timedelta(days=2)
        self._seq = itertools.count(_FIRST_SEQ, 7919)
        self._ids = itertools.count()
        self.shards: dict[str, _Shard] = {}
        for _ in range(shards):
            self._new_shard()
        self.deleted = False
        self.trimmed_before: datetime | None = None
        self.trimmed_empty_pages = 2
        self._epoch = 0  # iterators of an older epoch have expired
        self._faults: dict[str, list[str]] = {}
        self.calls: list[str] = []
        # Every GetRecords answer: (shard id, records, whether it ended the shard).
        self.reads: list[tuple[str, int, bool]] = []

    # -- building the stream ----------------------------------------------------------------

    def _new_shard(self, parent: str | None = None, adjacent: str | None = None) -> _Shard:
        shard = _Shard(f"shardId-{next(self._ids):012d}", parent, adjacent)
        shard.starting_seq = next(self._seq)
        self.shards[shard.shard_id] = shard
        return shard

    def open_shards(self) -> list[str]:
        return [s.shard_id for s in self.shards.values() if s.ending_seq is None]

    def put(
        self,
        data: bytes | Mapping[str, Any],
        *,
        shard: str | int | None = None,
        partition_key: str = "pk",
        arrival: datetime | None = None,
    ) -> str:
        """Put one record (a dict is JSON-encoded); into ``shard`` (an id or an index among the
        open shards), by default the first open one. Returns its sequence number."""
        if self.deleted:
            raise client_error("ResourceNotFoundException", "PutRecord")
        open_ids = self.open_shards()
        if isinstance(shard, int):
            shard = open_ids[shard % len(open_ids)]
        target = self.shards[shard or open_ids[0]]
        if target.ending_seq is not None:
            raise client_error("InvalidArgumentException", "PutRecord")
        payload = orjson.dumps(data) if isinstance(data, Mapping) else data
        number = next(self._seq)
        target.records.append(_Record(number, payload, partition_key, arrival or datetime.now(UTC)))
        return str(number)

    def split(self, shard_id: str) -> tuple[str, str]:
        """Close ``shard_id``; returns its two children's ids."""
        parent = self.shards[shard_id]
        parent.ending_seq = next(self._seq)
        return self._new_shard(shard_id).shard_id, self._new_shard(shard_id).shard_id

    def merge(self, shard_id: str, adjacent: str) -> str:
        """Close both shards; returns the child's id."""
        for sid in (shard_id, adjacent):
            self.shards[sid].ending_seq = next(self._seq)
        return self._new_shard(shard_id, adjacent).shard_id

    def trim(self, before: datetime) -> None:
        """Drop every record that arrived before ``before`` (the retention passed)."""
        self.trimmed_before = before
        for shard in self.shards.values():
            shard.records = [r for r in shard.records if r.arrival >= before]

    def delete(self) -> None:
        self.deleted = True

    def expire_iterators(self) -> None:
        self._epoch += 1

    def fail_next(self, operation: str, code: str, times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` raise ``code``."""
        self._faults.setdefault(operation, []).extend([code] * times)

    # -- the API ----------------------------------------------------------------------------

    def _enter(self, operation: str) -> None:
        self.calls.append(operation)
        faults = self._faults.get(operation)
        if faults:
            code = faults.pop(0)
            status = 500 if code in ("InternalFailure", "InternalFailureException") else 400
            raise client_error(code, operation, status)
        if self.deleted:
            raise client_error("ResourceNotFoundException", operation)

    async def describe_stream_summary(self, **kwargs: Any) -> dict[str, Any]:
        self._enter("DescribeStreamSummary")
        return {
            "StreamDescriptionSummary": {
                "StreamName": self.name,
                "StreamARN": self.arn,
                "StreamStatus": "ACTIVE",
                "RetentionPeriodHours": self.retention_hours,
                "StreamCreationTimestamp": self.created_at,
                "OpenShardCount": len(self.open_shards()),
            }
        }

    async def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        self._enter("ListShards")
        token = kwargs.get("NextToken")
        if token and "StreamARN" in kwargs:
            raise client_error("InvalidArgumentException", "ListShards")
        start = int(token) if token else 0
        shards = list(self.shards.values())[start : start + self.page_size]
        page: dict[str, Any] = {"Shards": [self._shard_json(s) for s in shards]}
        if start + self.page_size < len(self.shards):
            page["NextToken"] = str(start + self.page_size)
        return page

    def _shard_json(self, shard: _Shard) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ShardId": shard.shard_id,
            "SequenceNumberRange": {"StartingSequenceNumber": str(shard.starting_seq)},
        }
        if shard.parent:
            out["ParentShardId"] = shard.parent
        if shard.adjacent_parent:
            out["AdjacentParentShardId"] = shard.adjacent_parent
        if shard.ending_seq is not None:
            out["SequenceNumberRange"]["EndingSequenceNumber"] = str(shard.ending_seq)
        return out

    async def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self._enter("GetShardIterator")
        shard = self.shards.get(kwargs["ShardId"])
        if shard is None:
            raise client_error("ResourceNotFoundException", "GetShardIterator")
        kind = kwargs["ShardIteratorType"]
        if kind == "TRIM_HORIZON":
            after, empty = 0, 0
        elif kind == "AFTER_SEQUENCE_NUMBER":
            after = int(kwargs["StartingSequenceNumber"])
            held = [r.sequence_number for r in shard.records]
            gone = self.trimmed_before is not None and (not held or after < min(held))
            empty = self.trimmed_empty_pages if gone and after >= shard.starting_seq else 0
        else:
            raise client_error("InvalidArgumentException", "GetShardIterator")
        return {"ShardIterator": self._iterator(shard.shard_id, after, empty)}

    def _iterator(self, shard_id: str, after: int, empty: int) -> str:
        return f"{self._epoch}:{shard_id}:{after}:{empty}:{uuid.uuid4().hex[:6]}"

    async def get_records(self, **kwargs: Any) -> dict[str, Any]:
        self._enter("GetRecords")
        epoch, shard_id, after_text, empty_text, _ = kwargs["ShardIterator"].split(":")
        if int(epoch) != self._epoch:
            raise client_error("ExpiredIteratorException", "GetRecords")
        shard = self.shards[shard_id]
        after, empty = int(after_text), int(empty_text)
        limit = min(int(kwargs.get("Limit", 10_000)), self.page_size)
        newest = shard.records[-1].arrival if shard.records else None
        if empty:
            behind = self.retention_hours * 3_600_000
            return {
                "Records": [],
                "NextShardIterator": self._iterator(shard_id, after, empty - 1),
                "MillisBehindLatest": behind,
            }
        pending = [r for r in shard.records if r.sequence_number > after]
        page = pending[:limit]
        last = page[-1].sequence_number if page else after
        rest = pending[limit:]
        out: dict[str, Any] = {
            "Records": [
                {
                    "SequenceNumber": str(r.sequence_number),
                    "ApproximateArrivalTimestamp": r.arrival,
                    "Data": r.data,
                    "PartitionKey": r.partition_key,
                }
                for r in page
            ],
            "MillisBehindLatest": (
                0
                if not rest
                else max(1, int((newest - page[-1].arrival).total_seconds() * 1000))  # type: ignore[operator]
                if page
                else 1
            ),
        }
        ended = shard.ending_seq is not None and not rest
        if not ended:
            out["NextShardIterator"] = self._iterator(shard_id, last, 0)
        self.reads.append((shard_id, len(page), ended))
        return out


class DestinationDouble:
    """DynamoDB's ``DescribeKinesisStreamingDestination`` for the tables the tests set."""

    def __init__(self) -> None:
        self.destinations: dict[str, list[dict[str, Any]]] = {}
        self.calls = 0

    def set(
        self,
        table: str,
        arn: str,
        status: str = "ACTIVE",
        precision: str | None = "MICROSECOND",
    ) -> None:
        entries = [d for d in self.destinations.get(table, []) if d["StreamArn"] != arn]
        entry: dict[str, Any] = {"StreamArn": arn, "DestinationStatus": status}
        if precision is not None:
            entry["ApproximateCreationDateTimePrecision"] = precision
        self.destinations[table] = [*entries, entry]

    def answer(self, table: str) -> dict[str, Any]:
        self.calls += 1
        return {
            "TableName": table,
            "KinesisDataStreamDestinations": self.destinations.get(table, []),
        }

    async def describe_kinesis_streaming_destination(self, **kwargs: Any) -> dict[str, Any]:
        return self.answer(kwargs["TableName"])

    @property
    def sync(self) -> Any:
        """The same answers through a synchronous method (the Lambda function's client)."""
        double = self

        class _Sync:
            def describe_kinesis_streaming_destination(self, **kwargs: Any) -> dict[str, Any]:
                return double.answer(kwargs["TableName"])

        return _Sync()


# -- DynamoDB change documents as the destination writes them -------------------------------


def change_doc(
    table: str,
    keys: Mapping[str, Any],
    *,
    micros: int,
    new: Mapping[str, Any] | None = None,
    old: Mapping[str, Any] | None = None,
    event_id: str | None = None,
    event_name: str | None = None,
    precision: str = "MICROSECOND",
    ttl: bool = False,
) -> dict[str, Any]:
    """One change document as DynamoDB puts it into the Kinesis data stream (docs/format.md
    "Kinesis Data Streams records"): ``ApproximateCreationDateTime`` in microseconds, or
    milliseconds at ``MILLISECOND`` precision."""
    name = event_name or ("INSERT" if old is None else "REMOVE" if new is None else "MODIFY")
    stamp = micros if precision == "MICROSECOND" else micros // 1000
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": stamp,
        "Keys": dict(keys),
        "SizeBytes": 64,
    }
    if new is not None:
        ddb["NewImage"] = dict(new)
    if old is not None:
        ddb["OldImage"] = dict(old)
    return {
        "awsRegion": REGION,
        "eventID": event_id or str(uuid.uuid4()),
        "eventName": name,
        "userIdentity": (
            {"type": "Service", "principalId": "dynamodb.amazonaws.com"} if ttl else None
        ),
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": ddb,
        "eventSource": "aws:dynamodb",
    }


def lambda_event(
    arn: str, shard_id: str, records: list[tuple[str, Mapping[str, Any], datetime]]
) -> dict[str, Any]:
    """A Lambda event of a Kinesis event source mapping: (sequence number, document,
    arrival) per record, the document base64 in ``kinesis.data``."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "pk",
                    "sequenceNumber": seq,
                    "data": base64.b64encode(orjson.dumps(doc)).decode(),
                    "approximateArrivalTimestamp": arrival.timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{seq}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/archiver",
                "awsRegion": REGION,
                "eventSourceARN": arn,
            }
            for seq, doc, arrival in records
        ]
    }
