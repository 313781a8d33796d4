"""Archive every change of a DynamoDB table from its stream(s) into the archive.

Reads every stream of the table (an older one still readable first) and every shard
concurrently, writes Parquet change files under changes/table_name=<table>/dt=<date>/,
checkpoints per shard, and keeps coverage.json (covered_from, watermark) and gaps.jsonl.
Safe to stop and restart at any point: it resumes after the last archived record and never
writes a record twice.

--table-name may be repeated, and --tables-tagged KEY=VALUE adds every table carrying the
tag (archiver.capture.many): one process archives them all, each with its own streams, state and
progress; one table's failure is reported and does not stop the others.

Without --once it runs until SIGINT/SIGTERM, then flushes its buffers and exits. With --once
it stops when every shard is caught up (for cron jobs and tests). Exit codes: 0 done; 2 bad
input, a state file that does not parse, or a table it refuses to archive; 4 the chain of a
shard it would resume is broken (a change file missing or damaged: run the `ddb-archiver
check --repair` it prints); 5 finished but recorded a new gap in the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from archiver.aws import describe
from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import (
    EXIT_NEW_GAP,
    EXIT_OK,
    StreamNotEnabled,
    UnsupportedStreamView,
)
from archiver.aws.retry import RetryPolicy
from archiver.capture.change_writer import ChangeWriter, FlushPolicy, LiveGeneration
from archiver.capture.processes import PooledWriter, ShardPool
from archiver.capture.reader import REPLAYABLE_VIEWS, ConsumerConfig, StreamConsumer, first_of
from archiver.capture.sources import refuse_other_source
from archiver.capture.streams_api import StreamInfo, StreamsApi
from archiver.format import coverage, tables
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow
from archiver.integrity.check import verify_resume

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient as AioDynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient as AioDynamoDBStreamsClient

log = logging.getLogger("archiver.run")


@dataclass(frozen=True)
class RunConfig:
    """Everything ``run`` needs besides AWS settings; tests shrink the intervals."""

    table_name: str
    archive_url: str
    once: bool = False
    flush: FlushPolicy = field(default_factory=FlushPolicy)
    poll_seconds: float = 1.0
    progress_seconds: float = 60.0
    discover_seconds: float = 30.0
    describe_seconds: float = 300.0
    persist_seconds: float = 10.0
    # How soon coverage.json's watermark follows files made durable (persist_watermark).
    watermark_seconds: float = 1.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_args(cls, args: Any) -> RunConfig:
        names = getattr(args, "table_names", None) or [getattr(args, "table_name", "")]
        return cls(
            table_name=names[0] or "",
            archive_url=args.archive,
            once=args.once,
            flush=FlushPolicy(args.flush_records, args.flush_seconds, args.flush_bytes),
            poll_seconds=args.poll_seconds,
            progress_seconds=args.progress_seconds,
        )


async def execute(
    config: RunConfig,
    settings: AwsSettings,
    archive: Archive,
    *,
    stop: asyncio.Event | None = None,
    streams_client: AioDynamoDBStreamsClient | None = None,
    pool: ShardPool | None = None,
) -> int:
    """Archive the table until done (``--once``) or ``stop``; returns the exit code.

    Args:
        config: what to archive and how.
        settings: AWS settings for the DynamoDB client (and the Streams client if not given).
        archive: the archive.
        stop: set it to make a long-running archiver flush and return.
        streams_client: any object with aiobotocore's async DynamoDB Streams methods; by
            default one is opened from ``settings``.
        pool: worker processes that read and write the shards (``--processes``); without
            it this process does.
    """
    stop = stop or asyncio.Event()
    async with AsyncExitStack() as stack:
        ddb = await stack.enter_async_context(settings.aio_client("dynamodb"))
        if streams_client is None:
            streams_client = await stack.enter_async_context(
                settings.aio_client("dynamodbstreams", own_retries=True)
            )
        gaps = 0
        while True:
            # Each session stops on the caller's stop, or by itself when the table was
            # recreated under it (then a new session follows the new table).
            session_stop = asyncio.Event()
            forward = asyncio.create_task(first_of(stop, session_stop))
            forward.add_done_callback(functools.partial(_set, session_stop))
            session = _Session(
                config, settings, archive, ddb, streams_client, session_stop, pool=pool
            )
            try:
                code = await session.run()
            finally:
                forward.cancel()
            gaps += len(session.writer.gaps.recorded) if session.writer else 0
            if not session.recreated or stop.is_set():
                return EXIT_NEW_GAP if gaps else code
            log.warning(
                "%s was deleted and recreated: starting over with the new table", config.table_name
            )


def _set(event: asyncio.Event, _: object) -> None:
    event.set()


def check_stream(doc: dict[str, Any]) -> str:
    """The table's stream view type; refuses a table whose stream cannot be replayed."""
    table = doc["Table"]
    name = doc["table_name"]
    spec = table.get("StreamSpecification") or {}
    if not spec.get("StreamEnabled") or not table.get("LatestStreamArn"):
        raise StreamNotEnabled(
            f"table {name!r} has no stream: enable one with new images, e.g. aws dynamodb "
            f"update-table --table-name {name} --stream-specification "
            "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
        )
    view = str(spec.get("StreamViewType", ""))
    if view not in REPLAYABLE_VIEWS:
        raise UnsupportedStreamView(
            f"table {name!r} has a {view} stream: replay needs new images "
            "(NEW_IMAGE or NEW_AND_OLD_IMAGES); disable the stream and enable one of those"
        )
    return view


class _Session:
    """One run over one table generation (a recreated table starts a new session)."""

    def __init__(
        self,
        config: RunConfig,
        settings: AwsSettings,
        archive: Archive,
        ddb: AioDynamoDBClient,
        streams_client: AioDynamoDBStreamsClient,
        stop: asyncio.Event,
        *,
        pool: ShardPool | None = None,
    ) -> None:
        self.config = config
        self.pool = pool
        self.settings = settings
        self.archive = archive
        self.ddb = ddb
        self.stop = stop
        self.api = StreamsApi(streams_client, config.retry, stop=stop)
        self.writer: ChangeWriter | None = None
        self.consumer: StreamConsumer | None = None
        self.recreated = False
        self.table_id = ""

    async def run(self) -> int:
        config = self.config
        table = config.table_name
        started = utcnow()
        doc = await describe.describe(self.settings, table, client=self.ddb)
        check_stream(doc)
        self.table_id = str(doc["table_id"])
        await asyncio.to_thread(coverage.check_owner, self.archive, table, str(doc["table_arn"]))
        await asyncio.to_thread(refuse_other_source, self.archive, table, self.table_id, False)
        # Before anything is written: state files that parse, resume points that can be trusted.
        await asyncio.to_thread(verify_resume, self.archive, table)
        await asyncio.to_thread(tables.store_description, self.archive, doc)
        streams = await self.api.list_streams(table)
        latest = _latest_stream(doc)
        if latest.arn not in {s.arn for s in streams}:
            streams = sorted([*streams, latest], key=lambda s: s.created_at)
        generation = await asyncio.to_thread(open_coverage, self.archive, doc, streams, started)
        writer: ChangeWriter
        if self.pool is None:
            writer = ChangeWriter(self.archive, table, generation, config.flush)
        else:
            writer = PooledWriter(
                self.archive, table, generation, config.flush,
                pool=self.pool, retry=config.retry, stop=self.stop,
            )  # fmt: skip
        self.writer = writer
        await asyncio.to_thread(writer.prepare, streams)
        consumer_config = ConsumerConfig(
            once=config.once,
            poll_seconds=config.poll_seconds,
            head_seconds=min(config.poll_seconds, ConsumerConfig.head_seconds),
            discover_seconds=config.discover_seconds,
            retry=config.retry,
            once_started_at=started,
        )
        self.consumer = StreamConsumer(
            self.api,
            table,
            writer,
            consumer_config,
            self.stop,
            known_streams=[latest],
            pages=writer if isinstance(writer, PooledWriter) else None,
        )
        log.info(
            "%s: archiving into %s (%s) from %d stream(s); covered from %s%s",
            table,
            self.archive.url,
            "once" if config.once else "until stopped",
            len(streams),
            iso_ms(generation.covered_from),
            " (table creation)" if generation.covered_from == generation.created_at else "",
        )
        background = [
            asyncio.create_task(self._every(config.persist_seconds, writer.persist)),
            asyncio.create_task(self._every(config.watermark_seconds, writer.persist_watermark)),
            asyncio.create_task(self._every(config.progress_seconds, self._progress)),
        ]
        if not config.once:
            background.append(
                asyncio.create_task(self._every(config.describe_seconds, self._describe))
            )
        try:
            await self.consumer.run()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        await writer.finish()
        self._summary()
        return EXIT_NEW_GAP if writer.gaps.recorded else EXIT_OK

    async def _every(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except Exception as exc:  # a transient failure must not stop archiving
                log.warning("%s: %s failed: %s", self.config.table_name, action.__name__, exc)

    async def _describe(self) -> None:
        """Capture the table description again when it changed; notice a recreated table."""
        try:
            doc = await describe.describe(self.settings, self.config.table_name, client=self.ddb)
        except Exception as exc:  # the stream stays readable for 24 h after a deletion
            log.warning("%s: cannot describe the table: %s", self.config.table_name, exc)
            return
        if str(doc["table_id"]) != self.table_id:
            self.recreated = True
            self.stop.set()
            return
        await asyncio.to_thread(tables.store_description, self.archive, doc)

    async def _progress(self) -> None:
        writer = self.writer
        if writer is None:
            return
        stats = writer.stats
        now = utcnow()
        lags = sorted(
            (
                ((now - p.read_event_time).total_seconds(), p.shard.shard_id)
                for p in writer.shards.values()
                if not p.finished
                and p.read_event_time is not None
                and not (p.caught_up_at and p.caught_up_seq == p.read_seq)
            ),
            reverse=True,
        )
        watermark = writer.watermark()
        if lags:
            detail = "; lag " + ", ".join(f"{shard} {lag:.1f} s" for lag, shard in lags[:3])
        else:
            detail = "; all shards caught up"
        # Shards answering empty pages that do not count as caught up (closed shards before
        # their end, open ones that may not have reached their records yet).
        reading_on = self.consumer.not_caught_up() if self.consumer else []
        if reading_on:
            detail = f"{detail if lags else ''}; empty pages, not caught up: " + ", ".join(
                reading_on
            )
        log.info(
            "%s: %d records read, %d written in %d files; watermark %s; %d/%d shards done%s",
            self.config.table_name,
            stats.records_read,
            stats.records_written,
            stats.files_written,
            _describe_watermark(watermark, now),
            sum(p.finished for p in writer.shards.values()),
            len(writer.shards),
            detail,
        )

    def _summary(self) -> None:
        writer = self.writer
        if writer is None:
            return
        stats = writer.stats
        gaps = writer.gaps.recorded
        streams = {p.stream.arn for p in writer.shards.values()}
        message = (
            f"{self.config.table_name}: {'done' if self.config.once else 'stopped'}: "
            f"{stats.records_written} records in {stats.files_written} files from "
            f"{len(streams)} stream(s), {len(writer.shards)} shard(s); watermark "
            f"{_describe_watermark(writer.watermark(), utcnow())}"
        )
        if gaps:
            log.warning("%s; %d NEW GAP(S) in the log (see gaps.jsonl)", message, len(gaps))
        else:
            log.info("%s; no new gaps", message)


def _describe_watermark(watermark: datetime | None, now: datetime) -> str:
    if watermark is None:
        return "not yet known"
    return f"{iso_ms(watermark)} (lag {(now - watermark).total_seconds():.1f} s)"


def _latest_stream(doc: dict[str, Any]) -> StreamInfo:
    table = doc["Table"]
    return StreamInfo(
        arn=str(table["LatestStreamArn"]),
        label=str(table["LatestStreamLabel"]),
        table_name=str(doc["table_name"]),
    )


def open_coverage(
    archive: Archive, doc: dict[str, Any], streams: list[StreamInfo], now: datetime
) -> LiveGeneration:
    """Start or continue coverage of the described table generation (blocking I/O)."""
    table = doc["Table"]
    name = str(doc["table_name"])
    table_id = str(doc["table_id"])
    created = parse_iso(str(table["CreationDateTime"]))
    previous = tuple(
        sorted(
            (parse_iso(g["table_created_at"]), str(g["table_id"]))
            for g in coverage.generations(archive, name)
            if g.get("table_id") != table_id and g.get("table_created_at")
        )
    )
    generation = LiveGeneration(table_id, created, covered_from=created, previous=previous)
    ours = [s.created_at for s in streams if generation.owns(s.created_at)]
    first_stream = min(ours) if ours else _latest_stream(doc).created_at
    covered_from, from_creation = coverage.initial_window(
        table_created_at=created, stream_created_at=first_stream, now=now
    )
    current = coverage.open_generation(
        archive,
        name,
        table_arn=str(doc["table_arn"]),
        table_id=table_id,
        table_created_at=created,
        covered_from=covered_from,
        from_table_creation=from_creation,
        mode="poller",
        now=now,
    )
    return dataclasses.replace(generation, covered_from=parse_iso(current["covered_from"]))
