"""The DynamoDB Streams API as the consumer sees it.

* What ``ListStreams`` and ``DescribeStream`` return: :class:`StreamInfo` and :class:`Shard`.
* Lineage: :func:`lineage_order` puts every parent shard before its children;
  :func:`check_lineage` finds children that do not start after their parent ends.
* :class:`StreamsApi`: the four calls the consumer makes. ``ListStreams`` and
  ``DescribeStream`` are paged to the end and kept under their rate limits (5 and 10 calls/s);
  ``GetShardIterator`` starts after a sequence number or at TRIM_HORIZON. Throttling, 5xx and
  dropped connections are retried under :mod:`archiver.aws.retry`'s policy (exponential backoff
  with full jitter) until it gives up or the consumer stops (``Stopped``); the client should
  have botocore's own retries off (``AwsSettings.aio_client(..., own_retries=True)``).

The client is passed in: any object with aiobotocore's async ``list_streams``,
``describe_stream``, ``get_shard_iterator`` and ``get_records`` (the tests pass a double).
``ExpiredIteratorException``, ``TrimmedDataAccessException`` and ``ResourceNotFoundException``
reach the caller as the client raised them: what to do about them is the reader's business
(:mod:`archiver.capture.reader`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from archiver.aws import retry as retry_module
from archiver.aws.retry import RateLimiter, RetryPolicy
from archiver.format import layout

if TYPE_CHECKING:
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient as AioDynamoDBStreamsClient

log = logging.getLogger(__name__)
T = TypeVar("T")


# -- what the API returns -------------------------------------------------------------------


@dataclass(frozen=True)
class StreamInfo:
    """One stream of the table (``ListStreams`` / ``DescribeStream``)."""

    arn: str
    label: str
    table_name: str
    status: str | None = None
    view_type: str | None = None

    @property
    def created_at(self) -> datetime:
        """When the stream was created: its label is that instant (UTC, ISO 8601)."""
        return layout.stream_label_time(self.label)

    @property
    def label_stamp(self) -> str:
        """The label as it appears in file names and checkpoint paths."""
        return layout.label_stamp(self.label)


@dataclass(frozen=True)
class Shard:
    """One shard: ``ending_seq`` is set once it is closed (no more records will arrive)."""

    stream_arn: str
    shard_id: str
    parent_shard_id: str | None
    starting_seq: str | None
    ending_seq: str | None

    @property
    def closed(self) -> bool:
        return self.ending_seq is not None

    @classmethod
    def from_api(cls, stream_arn: str, raw: Mapping[str, Any]) -> Shard:
        seq = raw.get("SequenceNumberRange") or {}
        return cls(
            stream_arn=stream_arn,
            shard_id=raw["ShardId"],
            parent_shard_id=raw.get("ParentShardId"),
            starting_seq=seq.get("StartingSequenceNumber"),
            ending_seq=seq.get("EndingSequenceNumber"),
        )


def seq_key(sequence_number: str | None) -> str:
    """A sequence number in a form that compares numerically ('' sorts first)."""
    return layout.pad_seq(sequence_number) if sequence_number else ""


def lineage_order(shards: list[Shard]) -> list[Shard]:
    """``shards`` with every parent before its children (listed parents only)."""
    by_id = {s.shard_id: s for s in shards}
    ordered: list[Shard] = []
    seen: set[str] = set()

    def visit(shard: Shard, path: frozenset[str]) -> None:
        if shard.shard_id in seen:
            return
        parent = by_id.get(shard.parent_shard_id or "")
        if parent is not None and parent.shard_id not in path:
            visit(parent, path | {shard.shard_id})
        seen.add(shard.shard_id)
        ordered.append(shard)

    for shard in sorted(shards, key=lambda s: seq_key(s.starting_seq)):
        visit(shard, frozenset())
    return ordered


def check_lineage(shards: list[Shard]) -> list[str]:
    """Warnings for children that do not start after their parent ends (DESIGN.md)."""
    by_id = {s.shard_id: s for s in shards}
    problems = []
    for shard in shards:
        parent = by_id.get(shard.parent_shard_id or "")
        if parent is None or not parent.ending_seq or not shard.starting_seq:
            continue
        if seq_key(shard.starting_seq) <= seq_key(parent.ending_seq):
            problems.append(
                f"shard {shard.shard_id} starts at {shard.starting_seq}, not after its parent "
                f"{parent.shard_id} ends at {parent.ending_seq}"
            )
    return problems


# -- calls: rate limits and backoff ---------------------------------------------------------


class StreamsApi:
    """The four DynamoDB Streams calls, rate-limited and retried.

    ``ExpiredIteratorException``, ``TrimmedDataAccessException`` and
    ``ResourceNotFoundException`` are raised as the client raised them: the reader decides.
    """

    def __init__(
        self,
        client: AioDynamoDBStreamsClient,
        retry: RetryPolicy | None = None,
        *,
        stop: asyncio.Event | None = None,
        describe_per_second: float = 10.0,
    ) -> None:
        self.client = client
        self.retry = retry or retry_module.STREAMS
        self.stop = stop
        self.describe_limiter = RateLimiter(describe_per_second)
        # ListStreams is limited to 5 calls/s.
        self.list_limiter = RateLimiter(5.0)
        self.throttled = 0

    async def call(self, what: str, make_call: Callable[[], Awaitable[T]]) -> T:
        """``make_call()``, retried under the policy while it fails in a retryable way."""
        return await retry_module.call_async(
            make_call, what, self.retry, stop=self.stop, on_retry=self._count_retry
        )

    def _count_retry(self, _exc: BaseException) -> None:
        self.throttled += 1

    async def list_streams(self, table_name: str) -> list[StreamInfo]:
        """Every stream of the table that ``ListStreams`` knows, oldest label first."""
        streams: list[StreamInfo] = []
        start: str | None = None
        while True:
            kwargs: dict[str, Any] = {"TableName": table_name}
            if start:
                kwargs["ExclusiveStartStreamArn"] = start
            await self.list_limiter.wait()
            page = await self.call(
                f"ListStreams {table_name}", functools.partial(self.client.list_streams, **kwargs)
            )
            for raw in page.get("Streams", []):
                streams.append(
                    StreamInfo(
                        raw["StreamArn"], raw["StreamLabel"], raw.get("TableName", table_name)
                    )
                )
            start = page.get("LastEvaluatedStreamArn")
            if not start:
                return sorted(streams, key=lambda s: s.created_at)

    async def describe_stream(self, stream_arn: str) -> tuple[StreamInfo, list[Shard]]:
        """The stream and all its shards, through every page of ``DescribeStream``."""
        shards: list[Shard] = []
        start: str | None = None
        info: StreamInfo | None = None
        while True:
            kwargs: dict[str, Any] = {"StreamArn": stream_arn}
            if start:
                kwargs["ExclusiveStartShardId"] = start
            await self.describe_limiter.wait()
            page = await self.call(
                f"DescribeStream {stream_arn}",
                functools.partial(self.client.describe_stream, **kwargs),
            )
            desc = page["StreamDescription"]
            if info is None:
                info = StreamInfo(
                    arn=desc.get("StreamArn", stream_arn),
                    label=desc.get("StreamLabel") or layout.stream_label_of(stream_arn),
                    table_name=desc.get("TableName", ""),
                    status=desc.get("StreamStatus"),
                    view_type=desc.get("StreamViewType"),
                )
            shards.extend(Shard.from_api(stream_arn, raw) for raw in desc.get("Shards", []))
            start = desc.get("LastEvaluatedShardId")
            if not start:
                unique = {s.shard_id: s for s in shards}
                return info, list(unique.values())

    async def shard_iterator(self, shard: Shard, after_seq: str | None) -> str:
        """An iterator after ``after_seq``, or at TRIM_HORIZON when there is none."""
        kwargs: dict[str, Any] = {"StreamArn": shard.stream_arn, "ShardId": shard.shard_id}
        if after_seq:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=after_seq)
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        response = await self.call(
            f"GetShardIterator {shard.shard_id}",
            lambda: self.client.get_shard_iterator(**kwargs),
        )
        return str(response["ShardIterator"])

    async def get_records(self, iterator: str, limit: int) -> Mapping[str, Any]:
        return await self.call(
            "GetRecords", lambda: self.client.get_records(ShardIterator=iterator, Limit=limit)
        )
