"""The Kinesis Data Streams API as the Kinesis capture sees it.

* What ``DescribeStreamSummary`` and ``ListShards`` return: :class:`KinesisStream` and
  :class:`KinesisShard`. A shard has up to two parents: ``ParentShardId`` (a split's, or one
  of a merge's) and ``AdjacentParentShardId`` (a merge's other one); :func:`lineage_order` puts
  every listed parent before its children.
* :class:`KinesisApi`: the calls the capture makes. ``ListShards`` is paged to the end
  (``NextToken``; the first page names the stream, later pages only the token, as AWS
  requires; an expired token starts the listing again); ``GetShardIterator`` starts after a
  sequence number or at TRIM_HORIZON; ``GetRecords`` is kept under the per-shard limit of 5
  calls a second. Throttling (``ProvisionedThroughputExceededException``,
  ``LimitExceededException``, ``KMSThrottlingException``), 5xx and dropped connections are
  retried under :mod:`archiver.retry`'s policy until it gives up or the capture stops; the
  client should have botocore's own retries off (``AwsSettings.aio_client(...,
  own_retries=True)``). Its successful ``GetRecords`` pages are read by orjson, not by
  botocore's parser (:func:`archiver.capture.raw_records.install_kinesis`): ``Data`` comes back
  as base64 text and ``ApproximateArrivalTimestamp`` as epoch seconds, which
  :mod:`archiver.capture.kinesis` reads as it reads botocore's bytes and datetimes.

Kinesis sequence numbers are decimal strings of up to 129 digits (56 in practice), increasing
within a shard: they are compared as numbers here (:func:`seq_key`), never as text of unequal
length. ``ExpiredIteratorException`` (an iterator is valid for 5 minutes) and
``ResourceNotFoundException`` (the stream or shard is gone) reach the caller as the client
raised them: what they mean is the reader's business (:mod:`archiver.capture.kinesis`).

The client is passed in: any object with aiobotocore's async ``describe_stream_summary``,
``list_shards``, ``get_shard_iterator`` and ``get_records`` (the tests pass moto's, or a
double).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from archiver.aws import retry as retry_module
from archiver.aws.error_table import ExpiredNextToken, InvalidRequest, ResourceNotFound, is_error
from archiver.aws.retry import RateLimiter, RetryPolicy
from archiver.capture import raw_records
from archiver.format.timefmt import as_utc, from_epoch

T = TypeVar("T")
SEQ_DIGITS = 130  # Kinesis sequence numbers have at most 129 digits
GET_RECORDS_PER_SECOND = 5.0  # per shard (Kinesis Data Streams quotas)
PAGE_LIMIT = 10_000  # GetRecords' largest Limit


class KinesisClient(Protocol):
    """The calls of aiobotocore's ``kinesis`` client that the capture makes."""

    async def describe_stream_summary(self, **kwargs: Any) -> Mapping[str, Any]: ...
    async def list_shards(self, **kwargs: Any) -> Mapping[str, Any]: ...
    async def get_shard_iterator(self, **kwargs: Any) -> Mapping[str, Any]: ...
    async def get_records(self, **kwargs: Any) -> Mapping[str, Any]: ...


def seq_key(sequence_number: str | None) -> str:
    """A Kinesis sequence number in a form that compares numerically ('' sorts first)."""
    return sequence_number.zfill(SEQ_DIGITS) if sequence_number else ""


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    return from_epoch(float(value))


@dataclass(frozen=True)
class KinesisStream:
    """``DescribeStreamSummary``: the stream's name, status, retention and creation time."""

    arn: str
    name: str
    status: str
    retention_hours: int
    created_at: datetime


@dataclass(frozen=True)
class KinesisShard:
    """One shard: ``ending_seq`` is set once it is closed (split or merged)."""

    stream_arn: str
    shard_id: str
    parent_shard_id: str | None
    adjacent_parent_shard_id: str | None
    starting_seq: str | None
    ending_seq: str | None

    @property
    def closed(self) -> bool:
        return self.ending_seq is not None

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent_shard_id, self.adjacent_parent_shard_id) if p)

    @classmethod
    def from_api(cls, stream_arn: str, raw: Mapping[str, Any]) -> KinesisShard:
        seq = raw.get("SequenceNumberRange") or {}
        return cls(
            stream_arn=stream_arn,
            shard_id=str(raw["ShardId"]),
            parent_shard_id=raw.get("ParentShardId"),
            adjacent_parent_shard_id=raw.get("AdjacentParentShardId"),
            starting_seq=seq.get("StartingSequenceNumber"),
            ending_seq=seq.get("EndingSequenceNumber"),
        )


def lineage_order(shards: list[KinesisShard]) -> list[KinesisShard]:
    """``shards`` with every listed parent (both of a merge's) before its children."""
    by_id = {s.shard_id: s for s in shards}
    ordered: list[KinesisShard] = []
    seen: set[str] = set()

    def visit(shard: KinesisShard, path: frozenset[str]) -> None:
        if shard.shard_id in seen:
            return
        for parent_id in shard.parents:
            parent = by_id.get(parent_id)
            if parent is not None and parent.shard_id not in path:
                visit(parent, path | {shard.shard_id})
        seen.add(shard.shard_id)
        ordered.append(shard)

    for shard in sorted(shards, key=lambda s: (seq_key(s.starting_seq), s.shard_id)):
        visit(shard, frozenset())
    return ordered


class KinesisApi:
    """The Kinesis calls of the capture, rate-limited and retried (see the module)."""

    def __init__(
        self,
        client: KinesisClient,
        retry: RetryPolicy | None = None,
        *,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.client = client
        raw_records.install_kinesis(client)
        self.retry = retry or retry_module.STREAMS
        self.stop = stop
        self._readers: dict[str, RateLimiter] = {}
        self.throttled = 0

    async def call(self, what: str, make_call: Callable[[], Awaitable[T]]) -> T:
        """``make_call()``, retried under the policy while it fails in a retryable way."""
        return await retry_module.call_async(
            make_call, what, self.retry, stop=self.stop, on_retry=self._count_retry
        )

    def _count_retry(self, _exc: BaseException) -> None:
        self.throttled += 1

    async def describe(self, stream_arn: str) -> KinesisStream:
        """``DescribeStreamSummary`` of the stream."""
        page = await self.call(
            f"DescribeStreamSummary {stream_arn}",
            functools.partial(self.client.describe_stream_summary, StreamARN=stream_arn),
        )
        raw = page["StreamDescriptionSummary"]
        created = _time(raw.get("StreamCreationTimestamp"))
        return KinesisStream(
            arn=str(raw.get("StreamARN", stream_arn)),
            name=str(raw.get("StreamName", "")),
            status=str(raw.get("StreamStatus", "")),
            retention_hours=int(raw.get("RetentionPeriodHours") or 24),
            created_at=created or from_epoch(0),
        )

    async def list_shards(self, stream_arn: str) -> list[KinesisShard]:
        """Every shard ``ListShards`` knows, through every page."""
        for _ in range(3):
            shards: list[KinesisShard] = []
            token: str | None = None
            try:
                while True:
                    kwargs: dict[str, Any] = (
                        {"NextToken": token} if token else {"StreamARN": stream_arn}
                    )
                    page = await self.call(
                        f"ListShards {stream_arn}",
                        functools.partial(self.client.list_shards, **kwargs),
                    )
                    shards.extend(KinesisShard.from_api(stream_arn, r) for r in page["Shards"])
                    token = page.get("NextToken")
                    if not token:
                        return list({s.shard_id: s for s in shards}.values())
            except Exception as exc:
                # A token is good for 300 s: a listing that took longer starts again.
                if not is_error(exc, ExpiredNextToken):
                    raise
        raise InvalidRequest(f"ListShards {stream_arn}: the listing kept expiring")

    async def shard_iterator(self, shard: KinesisShard, after_seq: str | None) -> str:
        """An iterator after ``after_seq``, or at TRIM_HORIZON when there is none."""
        kwargs: dict[str, Any] = {"StreamARN": shard.stream_arn, "ShardId": shard.shard_id}
        if after_seq:
            kwargs.update(
                ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after_seq
            )
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        response = await self.call(
            f"GetShardIterator {shard.shard_id}",
            functools.partial(self.client.get_shard_iterator, **kwargs),
        )
        return str(response["ShardIterator"])

    async def get_records(
        self, shard: KinesisShard, iterator: str, limit: int
    ) -> Mapping[str, Any]:
        """One ``GetRecords`` page of the shard (at most 5 calls a second per shard). The
        stream's ARN goes with the iterator (AWS accepts it; moto needs it for an iterator it
        issued for an ARN)."""
        limiter = self._readers.setdefault(shard.shard_id, RateLimiter(GET_RECORDS_PER_SECOND))
        await limiter.wait()
        return await self.call(
            f"GetRecords {shard.shard_id}",
            functools.partial(
                self.client.get_records,
                ShardIterator=iterator,
                Limit=limit,
                StreamARN=shard.stream_arn,
            ),
        )


def is_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says the stream or shard no longer exists."""
    return is_error(exc, ResourceNotFound)
