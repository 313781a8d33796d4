"""Reading a Kinesis data stream that a DynamoDB table streams to, into the archive.

:class:`KinesisConsumer` reads every shard of one Kinesis data stream concurrently (one asyncio
task per shard) and hands what it reads, through :class:`Intake`, to a
``archiver.capture.kinesis_writer.KinesisWriter``. It follows Kinesis's rules (docs/format.md
"Kinesis Data Streams records"):

* a shard's parents — one for a split, two (``ParentShardId``, ``AdjacentParentShardId``) for
  a merge — are read to their end (``GetRecords`` answers no ``NextShardIterator``) before it;
  a parent no longer listed (past the retention) does not hold its children back;
* new shards are picked up as they appear (``ListShards`` every ``discover_seconds`` and
  whenever a shard ends);
* an open shard is caught up when an empty page says ``MillisBehindLatest: 0`` — AWS: "record
  processing is caught up, and there are no new records to process at this moment" (a page
  with records is read past, in case its zero was rounded down); a closed shard only at its
  end;
* ``ExpiredIteratorException`` (iterators live 5 minutes): a new iterator after the last record
  read; ``ResourceNotFoundException``: the stream (or shard) is gone, and the caller records
  the hole;
* resuming after a record whose arrival is older than the stream's retention, or answering
  empty pages about a retention behind the tip, means records were trimmed before they were
  read: the hole is held (recorded before any record after it reaches a file) and reading
  starts again at TRIM_HORIZON.

:class:`Intake` turns a page of Kinesis records into the archived table's records: other
tables' records (one data stream may carry several tables) and foreign data are counted and
dropped, the rest are checked and ordered (``archiver.capture.kinesis_order``), duplicates
dropped, and their ties recorded before they are handed on.

The calls themselves (paging, rate limits, retries) are :mod:`archiver.capture.kinesis_api`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.aws.error_table import ExpiredIterator, is_error
from archiver.aws.retry import Stopped, sleep_unless
from archiver.capture import kinesis_records
from archiver.capture.change_writer import LiveGeneration
from archiver.capture.kinesis_api import (
    PAGE_LIMIT,
    KinesisApi,
    KinesisShard,
    KinesisStream,
    is_gone,
    lineage_order,
)
from archiver.capture.kinesis_order import Orderer
from archiver.capture.kinesis_writer import Item, KinesisWriter
from archiver.capture.reader import first_of
from archiver.capture.streams_api import Shard, StreamInfo
from archiver.format import gap_log, layout, ties
from archiver.format.coverage import CREATED_WITH_TABLE_TOLERANCE
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, from_epoch, iso_ms, utcnow

log = logging.getLogger(__name__)

# Resuming within this of the retention period counts as possibly trimmed: the position's
# record may leave the stream while the first pages are read.
RETENTION_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class KinesisConfig:
    """How the consumer polls. Tests shrink the intervals."""

    once: bool = False
    poll_seconds: float = 1.0
    discover_seconds: float = 30.0
    page_limit: int = PAGE_LIMIT
    # --once stops reading a shard that reached records that arrived after the run began.
    once_started_at: datetime | None = None


def _arrival(record: Mapping[str, Any]) -> datetime | None:
    """The record's arrival time: a ``datetime`` from botocore's parser, epoch seconds from a
    page read by orjson (converted as botocore converts them)."""
    value = record.get("ApproximateArrivalTimestamp")
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    return datetime.fromtimestamp(float(value), UTC)


class Intake:
    """A page of Kinesis records → the archived table's records (see the module)."""

    def __init__(
        self, archive: Archive, table: str, generation: LiveGeneration, orderer: Orderer
    ) -> None:
        self.archive = archive
        self.table = table
        self.generation = generation
        self.orderer = orderer
        self.other_tables: Counter[str] = Counter()
        self.foreign = 0
        self.earlier_generation = 0
        self._lock = asyncio.Lock()
        # Records created from here on are the current generation's for sure (the generation's
        # own rule, LiveGeneration.table_id_at, decides the few before).
        created = generation.created_at + CREATED_WITH_TABLE_TOLERANCE
        self._current_from = int(created.timestamp() * 1_000_000)

    async def take(self, records: Sequence[Mapping[str, Any]], shard_id: str) -> list[Item]:
        """The archived table's records of a page, in order, each with its Kinesis sequence
        number and arrival time; the ties among them recorded first.

        Raises:
            PoisonRecord: a record of the table lacks what ordering it needs.
        """
        now = utcnow()
        out: list[Item] = []
        entries: list[dict[str, Any]] = []
        parse, change, archive_record = (
            kinesis_records.parse,
            kinesis_records.change,
            kinesis_records.archive_record,
        )
        place = self.orderer.place
        table, current, current_from = self.table, self.generation.table_id, self._current_from
        async with self._lock:  # one orderer for every shard: a key's records may move
            for raw in records:
                doc = parse(raw["Data"])
                if doc is None:
                    self.foreign += 1
                    continue
                if doc["tableName"] != table:
                    self.other_tables[str(doc["tableName"])] += 1
                    continue
                kseq = str(raw["SequenceNumber"])
                arrival = _arrival(raw)
                item = change(doc, kinesis_sequence_number=kseq, arrival=arrival, shard_id=shard_id)
                if item.micros < current_from:
                    at = from_epoch(item.micros / 1_000_000)
                    if (self.generation.table_id_at(at) or "") != current:
                        self.earlier_generation += 1
                        continue
                sequence_number, entry = place(item, current, now)
                if sequence_number is None:
                    continue
                if entry is not None:
                    entries.append(entry)
                out.append((archive_record(item, sequence_number), kseq, arrival))
            if entries:
                await asyncio.to_thread(ties.append_ties, self.archive, self.table, entries)
                for entry in entries:
                    if not entry["decided"]:
                        log.warning(
                            "%s: records %s of key %s have the same creation time (%s µs) and "
                            "their images do not prove their order: a restore whose result "
                            "depends on them is refused (recorded in %s)",
                            self.table,
                            ", ".join(entry["event_ids"]),
                            entry["key_sha256"],
                            entry["micros"],
                            layout.kinesis_ties(self.table),
                        )
        return out


class KinesisConsumer:
    """Reads every shard of one Kinesis data stream into a writer until done or stopped.

    With ``config.once`` it returns when every open shard is caught up and every closed one
    read to its end; otherwise it runs until ``stop`` is set. ``gone`` tells the caller the
    stream was deleted under it.
    """

    def __init__(
        self,
        api: KinesisApi,
        stream: KinesisStream,
        table: str,
        writer: KinesisWriter,
        intake: Intake,
        config: KinesisConfig,
        stop: asyncio.Event,
    ) -> None:
        self.api = api
        self.stream = stream
        self.table = table
        self.writer = writer
        self.intake = intake
        self.config = config
        self.stop = stop
        self.info = StreamInfo(
            arn=stream.arn,
            label=layout.KINESIS_STREAM_LABEL,
            table_name=table,
            status="ENABLED",
        )
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.settled: dict[str, asyncio.Event] = {}
        self.finished: set[str] = set()
        self.resting: set[str] = set()  # open shards done for this --once run
        self.listed: dict[str, KinesisShard] = {}
        self.gone = False
        self._rediscover = asyncio.Event()

    # -- names ------------------------------------------------------------------------------

    def chain_shard(self, shard_id: str) -> str:
        """The shard's name in the archive (files, checkpoints)."""
        return layout.kinesis_chain_shard(self.stream.arn, self.stream.created_at, shard_id)

    def archive_shard(self, shard: KinesisShard) -> Shard:
        """The shard as the writer knows it: by its name in the archive."""
        parent = shard.parent_shard_id
        return Shard(
            stream_arn=shard.stream_arn,
            shard_id=self.chain_shard(shard.shard_id),
            parent_shard_id=self.chain_shard(parent) if parent else None,
            starting_seq=shard.starting_seq,
            ending_seq=shard.ending_seq,
        )

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Discover, spawn readers, repeat as shards end or the interval passes."""
        need_discovery = True
        last_discovery = 0.0
        try:
            while True:
                if need_discovery:
                    self._rediscover.clear()
                    with contextlib.suppress(Stopped):
                        await self._discover()
                    last_discovery = time.monotonic()
                    need_discovery = False
                done = self.config.once or self.stop.is_set() or self.gone
                if not self.tasks and done:
                    return
                if self.stop.is_set():
                    await asyncio.gather(*self.tasks.values(), return_exceptions=True)
                    self._reap()
                    return
                timeout = None if self.config.once else self.config.discover_seconds
                await self._wait_for_change(timeout)
                self._reap()
                elapsed = time.monotonic() - last_discovery
                need_discovery = (
                    self._rediscover.is_set()
                    or (self.config.once and not self.tasks)
                    or (not self.config.once and elapsed >= self.config.discover_seconds)
                )
        finally:
            for task in self.tasks.values():
                task.cancel()
            if self.tasks:
                await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def _wait_for_change(self, timeout: float | None) -> None:
        helpers = [
            asyncio.ensure_future(self._rediscover.wait()),
            asyncio.ensure_future(self.stop.wait()),
        ]
        try:
            await asyncio.wait(
                [*self.tasks.values(), *helpers],
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for helper in helpers:
                helper.cancel()

    def _reap(self) -> None:
        """Forget finished reader tasks; re-raise the first failure."""
        for key, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[key]
                task.result()

    async def _discover(self) -> None:
        try:
            shards = await self.api.list_shards(self.stream.arn)
        except Exception as exc:
            if is_gone(exc):
                self._stream_gone()
                return
            raise
        self.listed = {s.shard_id: s for s in shards}
        if self.gone:
            return
        for shard in lineage_order(shards):
            key = shard.shard_id
            if key in self.tasks or key in self.finished:
                continue
            archived = self.archive_shard(shard)
            await asyncio.to_thread(self.writer.load_shard, self.info, archived, shard.shard_id)
            if self.writer.start(self.info, archived).finished:
                self.finished.add(key)
                self._settle(key)
                continue
            if key in self.resting and not shard.closed:
                continue
            self.resting.discard(key)
            waits = [p for p in shard.parents if p in self.listed and p not in self.finished]
            events = [self.settled.setdefault(p, asyncio.Event()) for p in waits]
            self.settled[key] = asyncio.Event()
            self.tasks[key] = asyncio.create_task(
                self._read_shard(shard, events), name=f"kinesis shard {key}"
            )

    def _settle(self, key: str) -> None:
        self.settled.setdefault(key, asyncio.Event()).set()

    def _stream_gone(self) -> None:
        if not self.gone:
            log.warning(
                "%s: the Kinesis data stream %s no longer exists", self.table, self.stream.arn
            )
        self.gone = True

    async def _read_shard(self, shard: KinesisShard, parents: list[asyncio.Event]) -> None:
        try:
            for event in parents:
                await first_of(event, self.stop)
            if not self.stop.is_set():
                await self._read(shard)
        except Stopped:
            return
        finally:
            self._settle(shard.shard_id)

    async def _iterator(self, shard: KinesisShard, after: str | None) -> str | None:
        """An iterator after ``after`` (TRIM_HORIZON without); ``None`` when gone."""
        try:
            return await self.api.shard_iterator(shard, after)
        except Exception as exc:
            if is_gone(exc):
                self._stream_gone()
                return None
            raise

    def _retention(self) -> timedelta:
        return timedelta(hours=self.stream.retention_hours)

    def _trimmed(self, shard: Shard, since: datetime, why: str) -> None:
        """Records after the last one read may have left the stream unread: hold the hole."""
        if self.writer.hold_gap(self.info, shard, gap_log.GAP_KINESIS_RETENTION, since, utcnow()):
            log.warning(
                "%s: RECORDS MAY BE LOST: shard %s %s (the stream keeps records %d h): "
                "recording a gap from %s and reading on from the trim horizon",
                self.table,
                shard.shard_id,
                why,
                self.stream.retention_hours,
                iso_ms(since),
            )

    async def _read(self, shard: KinesisShard) -> None:
        config = self.config
        archived = self.archive_shard(shard)
        start = self.writer.start(self.info, archived)
        last_read = start.after_seq
        arrival = self.writer.durable_arrival(self.info, archived)
        if (
            last_read
            and arrival is not None
            and utcnow() - arrival > (self._retention() - RETENTION_SLACK)
        ):
            self._trimmed(archived, start.event_time or arrival, "was last read more than the "
                          "retention period ago")  # fmt: skip
            last_read = None
        iterator = await self._iterator(shard, last_read)
        retention_ms = (self._retention() - RETENTION_SLACK).total_seconds() * 1000
        while iterator is not None and not self.stop.is_set():
            try:
                page = await self.api.get_records(shard, iterator, config.page_limit)
            except Exception as exc:
                if is_error(exc, ExpiredIterator):
                    log.info(
                        "shard %s: iterator expired, resuming after %s", shard.shard_id, last_read
                    )
                    iterator = await self._iterator(shard, last_read)
                    continue
                if is_gone(exc):
                    self._stream_gone()
                    return
                raise
            current = self.listed.get(shard.shard_id, shard)
            records = page.get("Records") or []
            behind = page.get("MillisBehindLatest")
            if records:
                items = await self.intake.take(records, archived.shard_id)
                last_read = str(records[-1]["SequenceNumber"])
                arrival = _arrival(records[-1])
                await self.writer.page(self.info, archived, items, last_read, arrival)
            iterator = page.get("NextShardIterator")
            if iterator is None:
                await self.writer.ended(self.info, archived)
                self.finished.add(shard.shard_id)
                self._rediscover.set()  # its children may be listed now
                return
            if behind == 0 and not records and not current.closed:
                await self.writer.caught_up(self.info, archived, utcnow())
                if config.once:
                    self.resting.add(shard.shard_id)
                    return
            elif not records and behind is not None and behind >= retention_ms and last_read:
                # An iterator after a record that left the stream walks the trimmed range:
                # empty pages about a retention period behind the tip.
                self._trimmed(archived, start.event_time or utcnow(), "answers empty pages a "
                              "retention period behind the tip")  # fmt: skip
                last_read = None
                iterator = await self._iterator(shard, None)
                continue
            if records:
                if self._once_reached_start(arrival) and not current.closed:
                    self.resting.add(shard.shard_id)
                    return
                continue
            await self.writer.idle(self.info, archived)
            await sleep_unless(self.stop, config.poll_seconds)

    def _once_reached_start(self, arrival: datetime | None) -> bool:
        started = self.config.once_started_at
        if not self.config.once or started is None or arrival is None:
            return False
        return (arrival - started).total_seconds() >= 1.0
