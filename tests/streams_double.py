"""A test double that speaks the DynamoDB Streams API, for the AWS behaviour moto lacks.

It is an object with the same async methods as aiobotocore's ``dynamodbstreams`` client
(``list_streams``, ``describe_stream``, ``get_shard_iterator``, ``get_records``), returning
what botocore returns (``ApproximateCreationDateTime`` as a ``datetime``) and raising real
``botocore.exceptions.ClientError`` s with AWS's error codes. It models:

* several streams per table (``ListStreams``), ENABLED or DISABLED (a stream disabled and a
  new one enabled later: the writes in between have no record anywhere);
* several shards per stream, and splits: closing a shard sets its ``EndingSequenceNumber``;
  children carry ``ParentShardId`` and start after the parent's last sequence number;
* a closed shard, once drained, returns no ``NextShardIterator``;
* ``DescribeStream`` paging (``Limit``/``page_size`` shards a page, ``LastEvaluatedShardId``,
  ``ExclusiveStartShardId``);
* sequence numbers that increase but are not contiguous (random steps, 21+ digits);
* ``ApproximateCreationDateTime`` rounded down to the whole second;
* ``ExpiredIteratorException`` (iterators issued before :meth:`StreamsDouble.expire_iterators`);
* throttling and server errors injected per call (``LimitExceededException``,
  ``ProvisionedThroughputExceededException``, HTTP 500 ``InternalServerError``);
* the trim horizon: :meth:`DoubleShard.trim` drops the oldest records; reading behind it
  raises ``TrimmedDataAccessException`` (``GetShardIterator`` AFTER_SEQUENCE_NUMBER of a
  trimmed record, or ``GetRecords`` on an iterator the trim overtook); TRIM_HORIZON starts at
  the oldest record still held; a shard can disappear from the listing altogether (expired);
* empty pages where a shard has records: AWS says ``GetRecords`` "might take multiple calls to
  get to a portion of the shard that contains stream records", so an iterator can answer empty
  pages (with a ``NextShardIterator``) before the first records, in the middle of a shard's
  range or before a closed shard's end. :meth:`DoubleShard.empty_run` puts such a run of
  pages before any record; a page never reads across one, and a fresh iterator (after expiry,
  or from ``GetShardIterator``) walks it again, as a new iterator walks the same portions.

It also records every call (``calls``), every ``GetRecords`` answer (``pages``: when, which
shard, how many records, whether it ended the shard) and the number of concurrent
``GetRecords`` per shard, so tests can check reading order, concurrency and call rates.

It cannot model: how many empty pages AWS really answers (it depends on how AWS lays a shard
out over time; here it is a fixed count per position); the delay between a write and its
record appearing; sequence numbers' relation across shards or the time in a shard id; the
1 MB page limit; GetRecords' per-shard rate limit except as injected faults.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.helpers import client_error

ACCOUNT = "123456789012"
REGION = "us-east-1"


def whole_second(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(microsecond=0)


@dataclass
class DoubleShard:
    shard_id: str
    parent_shard_id: str | None
    starting_seq: int
    records: list[dict[str, Any]] = field(default_factory=list)
    ending_seq: int | None = None
    trimmed: int = 0  # index of the oldest record still held
    listed: bool = True
    next_seq: int = 0
    # index of a record → empty pages an iterator answers before reaching it (an index of
    # len(records) is before a closed shard's end, or before records not written yet)
    empty_runs: dict[int, int] = field(default_factory=dict)

    @property
    def closed(self) -> bool:
        return self.ending_seq is not None

    def trim(self, count: int) -> None:
        """Drop the ``count`` oldest records still held (they passed the 24 h retention)."""
        self.trimmed = min(len(self.records), self.trimmed + count)

    def empty_run(self, pages: int, *, before: int | None = None) -> None:
        """Make an iterator answer ``pages`` empty pages before the record at index ``before``
        (0: before the first; default: after the records held now, before the next one or
        before a closed shard's end)."""
        self.empty_runs[len(self.records) if before is None else before] = pages

    def seq_of(self, index: int) -> int:
        return int(self.records[index]["dynamodb"]["SequenceNumber"])

    def describe(self) -> dict[str, Any]:
        seq_range = {"StartingSequenceNumber": str(self.starting_seq)}
        if self.ending_seq is not None:
            seq_range["EndingSequenceNumber"] = str(self.ending_seq)
        out: dict[str, Any] = {"ShardId": self.shard_id, "SequenceNumberRange": seq_range}
        if self.parent_shard_id:
            out["ParentShardId"] = self.parent_shard_id
        return out


@dataclass
class DoubleStream:
    arn: str
    label: str
    table_name: str
    status: str = "ENABLED"
    view_type: str = "NEW_AND_OLD_IMAGES"
    shards: dict[str, DoubleShard] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=lambda: random.Random(7))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_shard(self, parent: DoubleShard | None = None) -> DoubleShard:
        """A new open shard (a child of ``parent``, which must be closed, when given)."""
        stamp = 1_700_000_000_000 + next(self._ids)
        shard_id = f"shardId-{stamp:020d}-{uuid.uuid4().hex[:8]}"
        if parent is not None:
            assert parent.ending_seq is not None, "close the parent before adding children"
            start = parent.ending_seq + self._rng.randint(10, 1000)
        else:
            start = max((s.next_seq for s in self.shards.values()), default=0) or (
                10**20 * len(self.shards) + 4_000_000_000_000_000_000_000
            )
            start += self._rng.randint(1, 10**6)
        shard = DoubleShard(shard_id, parent.shard_id if parent else None, start, next_seq=start)
        self.shards[shard_id] = shard
        return shard

    def put(
        self,
        shard: DoubleShard,
        keys: dict[str, Any],
        *,
        new: dict[str, Any] | None = None,
        old: dict[str, Any] | None = None,
        at: datetime | None = None,
        ttl: bool = False,
    ) -> dict[str, Any]:
        """Append one change record to an open shard; returns it as GetRecords returns it."""
        assert not shard.closed, "a closed shard gets no more records"
        event = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
        ddb: dict[str, Any] = {
            "ApproximateCreationDateTime": whole_second(at or datetime.now(UTC)),
            "Keys": keys,
            "SequenceNumber": str(shard.next_seq),
            "SizeBytes": 100,
            "StreamViewType": self.view_type,
        }
        if new is not None and self.view_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
            ddb["NewImage"] = new
        if old is not None and self.view_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
            ddb["OldImage"] = old
        record: dict[str, Any] = {
            "eventID": uuid.uuid4().hex,
            "eventName": event,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": REGION,
            "dynamodb": ddb,
        }
        if ttl:
            record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
        shard.records.append(record)
        shard.next_seq += self._rng.randint(1, 10**6)
        return record

    def close(self, shard: DoubleShard) -> None:
        shard.ending_seq = shard.seq_of(-1) if shard.records else shard.starting_seq

    def split(self, shard: DoubleShard, children: int = 2) -> list[DoubleShard]:
        """Close ``shard`` and open ``children`` shards descending from it."""
        self.close(shard)
        return [self.add_shard(parent=shard) for _ in range(children)]


@dataclass
class _Iterator:
    stream_arn: str
    shard_id: str
    position: int
    epoch: int
    waited: int = 0  # empty pages this chain of iterators answered at ``position``


@dataclass(frozen=True)
class Page:
    """One GetRecords answer: at ``time.monotonic()``, how many records, the index after
    them in the shard, whether it was the shard's last (no ``NextShardIterator``)."""

    at: float
    shard_id: str
    records: int
    position: int
    ended: bool


class StreamsDouble:
    """The DynamoDB Streams API of one account and region (see module doc)."""

    def __init__(self, *, describe_page_size: int = 100, latency: float = 0.002) -> None:
        self.streams: dict[str, DoubleStream] = {}
        self.describe_page_size = describe_page_size
        self.latency = latency
        self.calls: list[tuple[float, str, dict[str, Any]]] = []
        self.pages: list[Page] = []
        self.faults: list[tuple[str, str, int, str | None]] = []  # method, code, status, shard
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight_per_shard = 0
        self.max_in_flight_total = 0
        self.before_get_records: Callable[[DoubleShard, int], None] | None = None
        self._iterators: dict[str, _Iterator] = {}
        self._epoch = 0
        self._get_records_calls = 0

    # -- test controls --------------------------------------------------------------------

    def add_stream(
        self,
        table_name: str,
        label: str,
        *,
        status: str = "ENABLED",
        view_type: str = "NEW_AND_OLD_IMAGES",
    ) -> DoubleStream:
        arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table_name}/stream/{label}"
        stream = DoubleStream(arn, label, table_name, status, view_type)
        self.streams[arn] = stream
        return stream

    def fail(
        self,
        method: str,
        code: str,
        times: int = 1,
        *,
        status: int = 400,
        shard_id: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (on that shard, if given) raise ``code``."""
        self.faults.extend([(method, code, status, shard_id)] * times)

    def expire_iterators(self) -> None:
        """Every iterator issued so far expires (as after 15 minutes on AWS)."""
        self._epoch += 1

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [kwargs for _, name, kwargs in self.calls if name == method]

    def pages_of(self, shard: DoubleShard) -> list[Page]:
        return [p for p in self.pages if p.shard_id == shard.shard_id]

    # -- internals ------------------------------------------------------------------------

    def _record_call(self, method: str, kwargs: dict[str, Any]) -> None:
        self.calls.append((time.monotonic(), method, dict(kwargs)))

    def _maybe_fail(self, method: str, operation: str, shard_id: str | None = None) -> None:
        for i, (name, code, status, shard) in enumerate(self.faults):
            if name == method and (shard is None or shard == shard_id):
                del self.faults[i]
                raise client_error(code, operation=operation, status=status)

    def _stream(self, arn: str, operation: str) -> DoubleStream:
        stream = self.streams.get(arn)
        if stream is None:
            raise client_error("ResourceNotFoundException", operation=operation)
        return stream

    def _shard(self, stream: DoubleStream, shard_id: str, operation: str) -> DoubleShard:
        shard = stream.shards.get(shard_id)
        if shard is None or not shard.listed:
            raise client_error("ResourceNotFoundException", operation=operation)
        return shard

    # -- the API --------------------------------------------------------------------------

    async def list_streams(self, **kwargs: Any) -> dict[str, Any]:
        self._record_call("list_streams", kwargs)
        self._maybe_fail("list_streams", "ListStreams")
        table = kwargs.get("TableName")
        streams = [
            {"StreamArn": s.arn, "TableName": s.table_name, "StreamLabel": s.label}
            for s in self.streams.values()
            if table is None or s.table_name == table
        ]
        return {"Streams": streams}

    async def describe_stream(self, **kwargs: Any) -> dict[str, Any]:
        self._record_call("describe_stream", kwargs)
        self._maybe_fail("describe_stream", "DescribeStream")
        stream = self._stream(kwargs["StreamArn"], "DescribeStream")
        shards = [s for s in stream.shards.values() if s.listed]
        start = kwargs.get("ExclusiveStartShardId")
        if start:
            ids = [s.shard_id for s in shards]
            shards = shards[ids.index(start) + 1 :] if start in ids else []
        limit = min(kwargs.get("Limit") or 100, self.describe_page_size)
        page = shards[:limit]
        description: dict[str, Any] = {
            "StreamArn": stream.arn,
            "StreamLabel": stream.label,
            "StreamStatus": stream.status,
            "StreamViewType": stream.view_type,
            "TableName": stream.table_name,
            "Shards": [s.describe() for s in page],
        }
        if len(shards) > limit:
            description["LastEvaluatedShardId"] = page[-1].shard_id
        return {"StreamDescription": description}

    async def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self._record_call("get_shard_iterator", kwargs)
        self._maybe_fail("get_shard_iterator", "GetShardIterator", kwargs.get("ShardId"))
        stream = self._stream(kwargs["StreamArn"], "GetShardIterator")
        shard = self._shard(stream, kwargs["ShardId"], "GetShardIterator")
        kind = kwargs["ShardIteratorType"]
        if kind == "TRIM_HORIZON":
            position = shard.trimmed
        elif kind == "LATEST":
            position = len(shard.records)
        else:
            seq = int(kwargs["SequenceNumber"])
            if shard.trimmed and seq < shard.seq_of(shard.trimmed - 1):
                raise client_error("TrimmedDataAccessException", operation="GetShardIterator")
            after = [i for i, _ in enumerate(shard.records) if shard.seq_of(i) > seq]
            at = [i for i, _ in enumerate(shard.records) if shard.seq_of(i) >= seq]
            chosen = after if kind == "AFTER_SEQUENCE_NUMBER" else at
            position = max(chosen[0] if chosen else len(shard.records), shard.trimmed)
        token = uuid.uuid4().hex
        self._iterators[token] = _Iterator(stream.arn, shard.shard_id, position, self._epoch)
        return {"ShardIterator": token}

    async def get_records(self, **kwargs: Any) -> dict[str, Any]:
        state = self._iterators.get(kwargs["ShardIterator"])
        self._record_call("get_records", {**kwargs, "ShardId": state.shard_id if state else None})
        if state is None:
            raise client_error("ValidationException", operation="GetRecords")
        stream = self._stream(state.stream_arn, "GetRecords")
        shard = self._shard(stream, state.shard_id, "GetRecords")
        self._get_records_calls += 1
        if self.before_get_records is not None:
            self.before_get_records(shard, self._get_records_calls)
        self.in_flight[shard.shard_id] += 1
        self.max_in_flight_per_shard = max(
            self.max_in_flight_per_shard, self.in_flight[shard.shard_id]
        )
        self.max_in_flight_total = max(self.max_in_flight_total, sum(self.in_flight.values()))
        try:
            await asyncio.sleep(self.latency)
            self._maybe_fail("get_records", "GetRecords", shard.shard_id)
            if state.epoch != self._epoch:
                raise client_error("ExpiredIteratorException", operation="GetRecords")
            if state.position < shard.trimmed:
                raise client_error("TrimmedDataAccessException", operation="GetRecords")
            limit = kwargs.get("Limit") or 1000
            start = state.position
            in_run = state.waited < shard.empty_runs.get(start, 0)
            if in_run:
                page: list[dict[str, Any]] = []
                waited = state.waited + 1
            else:
                # A page never reads past the start of the next run of empty pages.
                later_runs = [i for i, n in shard.empty_runs.items() if i > start and n > 0]
                stop = min([start + limit, len(shard.records), *later_runs])
                page = shard.records[start:stop]
                waited = state.waited if not page else 0
            position = start + len(page)
            out: dict[str, Any] = {"Records": [dict(r) for r in page]}
            at_end = position >= len(shard.records)
            ended = (
                not in_run
                and shard.closed
                and at_end
                and waited >= shard.empty_runs.get(position, 0)
            )
            if not ended:
                token = uuid.uuid4().hex
                self._iterators[token] = _Iterator(
                    stream.arn, shard.shard_id, position, self._epoch, waited
                )
                out["NextShardIterator"] = token
            self.pages.append(Page(time.monotonic(), shard.shard_id, len(page), position, ended))
            return out
        finally:
            self.in_flight[shard.shard_id] -= 1
