"""Reading DynamoDB Streams: every stream and shard of a table, in order, into a sink.

:class:`StreamConsumer` reads every stream of one table and every shard of each stream
concurrently (one asyncio task, hence one reader, per shard) and hands what it reads to a
:class:`ShardSink` (``archiver.capture.change_writer.ChangeWriter`` in production). It follows AWS's
rules:

* streams in label order: an older stream still readable is drained before the next one;
* a parent shard is read to its end (no ``NextShardIterator``, or its last sequence number
  reached its ``EndingSequenceNumber``) before any of its children, however many empty pages
  it answers on the way: AWS says ``GetRecords`` "might take multiple calls to get to a portion
  of the shard that contains stream records", so a closed shard is never caught up;
* an open shard is caught up after consecutive empty pages — more of them when it has never
  returned a record, or when other shards of the stream hold records newer than its own — and
  never while it has returned no record at all and other shards hold records written after it
  opened (:meth:`StreamConsumer.verdict`; docs/format.md, ``caught_up_at``);
* a page that read an open shard up to its newest records is followed by a short pause
  (``head_seconds``) rather than another call at once: it gathers records instead of paying a
  call for a handful;
* new shards are picked up as they appear (``DescribeStream`` every ``discover_seconds`` and
  whenever a shard ends); a drained closed shard is left;
* ``ExpiredIteratorException``: a new iterator after the last record handed to the sink;
  ``TrimmedDataAccessException``: the sink records the hole, reading resumes at TRIM_HORIZON;
  ``ResourceNotFoundException``: the shard or stream is gone, reading it stops.

The calls themselves — paging, rate limits, retries with backoff and jitter — and the shapes
they return are :mod:`archiver.capture.streams_api`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from archiver.aws import metrics
from archiver.aws.error_table import ExpiredIterator, ResourceNotFound, TrimmedData, is_error
from archiver.aws.retry import RetryPolicy, Stopped, sleep_unless
from archiver.capture.streams_api import (
    Page,
    Shard,
    StreamInfo,
    StreamsApi,
    check_lineage,
    lineage_order,
    seq_key,
)
from archiver.format.timefmt import utcnow

log = logging.getLogger(__name__)

REPLAYABLE_VIEWS = frozenset({"NEW_IMAGE", "NEW_AND_OLD_IMAGES"})

# What a run of empty pages means for a shard (StreamConsumer.verdict).
CAUGHT_UP = "caught-up"
READING_TO_END = "reading-to-end"  # closed: only its end counts
COUNTING = "counting"  # open, fewer empty pages than it needs
AWAITING_OTHERS = "awaiting-others"  # open, other shards of the stream not read yet
BEHIND_OTHERS = "behind-others"  # open, another shard holds a newer record
FIRST_RECORDS = "first-records"  # open, never a record, none elsewhere since it opened
NO_RECORD_YET = "no-record-yet"  # open, never a record, others hold newer ones
LEFT_UNREAD = "left-unread"  # the same, past give_up_pages: --once leaves it

# A short page whose last record is younger than this read the shard to its head (records
# are stamped to the second, rounded down; a page can be short for its 1 MB limit too).
_HEAD_AGE_SECONDS = 5.0


# -- the sink -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardStart:
    """Where a shard's reading starts: after ``after_seq`` (None: TRIM_HORIZON), whose record
    has ``event_time`` (when known)."""

    after_seq: str | None
    finished: bool = False
    event_time: datetime | None = None


class ShardSink(Protocol):
    """What the consumer hands its reads to (``archiver.capture.change_writer.ChangeWriter``)."""

    def accepts(self, stream: StreamInfo) -> bool:
        """Whether records of this stream are to be archived at all."""

    async def streams_listed(self, streams: list[StreamInfo]) -> None:
        """Every discovery pass: the table's streams (described), oldest first."""

    async def shards_listed(self, stream: StreamInfo, shards: list[Shard]) -> None:
        """Every discovery pass: the shards of an accepted stream (load state for them)."""

    def start(self, stream: StreamInfo, shard: Shard) -> ShardStart:
        """Where to start reading the shard (files and checkpoints say)."""

    async def records(self, stream: StreamInfo, shard: Shard, page: Page) -> None:
        """A non-empty page (from :class:`PageReader`), its records in sequence order."""

    async def idle(self, stream: StreamInfo, shard: Shard) -> None:
        """An empty page (a chance to flush by age)."""

    async def caught_up(self, stream: StreamInfo, shard: Shard, at: datetime) -> None:
        """The open shard is caught up at ``at`` (:meth:`StreamConsumer.verdict`)."""

    async def trimmed(self, stream: StreamInfo, shard: Shard, detected_at: datetime) -> None:
        """Records after the last one read were trimmed before they were read."""

    async def ended(self, stream: StreamInfo, shard: Shard) -> None:
        """The shard is closed and every record of it was handed over."""


class PageReader(Protocol):
    """Where the consumer's pages come from: :class:`archiver.capture.streams_api.StreamsApi` reads
    them itself; ``archiver.capture.processes`` has them read in worker processes, which keep
    the records and hand the consumer only what it needs (:class:`Page`'s count, last record
    and iterator)."""

    async def page(self, shard: Shard, iterator: str, limit: int) -> Page:
        """One ``GetRecords`` page of ``shard``; errors raised as the client raised them."""


# -- the consumer ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerConfig:
    """How the consumer polls. Tests shrink the intervals."""

    once: bool = False
    poll_seconds: float = 1.0
    discover_seconds: float = 30.0
    # Consecutive empty pages after which an open shard is caught up (StreamConsumer.verdict):
    # one that returned records and is not behind the others; one that never returned a
    # record or is behind the others; and how long --once reads a shard that never returned a
    # record while the others hold newer ones before leaving it, not caught up.
    caught_up_pages: int = 3
    wary_pages: int = 10
    give_up_pages: int = 60
    page_limit: int = 1000
    # A page that took what the shard held and ends with a record of the last few seconds:
    # the reader is at the shard's head, and asking again at once would fetch the handful of
    # records written during one call — a call costs the poller about as much CPU as ten
    # records. Pausing gathers some (AWS's own Lambda poller asks 4 times a second).
    head_seconds: float = 0.25
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # --once stops reading a shard that reached records written after the run began, so a
    # busy table cannot keep a cron run going forever.
    once_started_at: datetime | None = None


ShardKey = tuple[str, str]


class StreamConsumer:
    """Reads every stream and shard of one table into a sink until done or stopped.

    With ``config.once`` it returns when every open shard is caught up and every closed one
    drained; otherwise it runs until ``stop`` is set, then lets each reader finish its page.
    """

    def __init__(
        self,
        api: StreamsApi,
        table_name: str,
        sink: ShardSink,
        config: ConsumerConfig,
        stop: asyncio.Event,
        *,
        known_streams: list[StreamInfo] | None = None,
        pages: PageReader | None = None,
    ) -> None:
        self.api = api
        self.pages: PageReader = pages or api
        self.table_name = table_name
        self.sink = sink
        self.config = config
        self.stop = stop
        self.known_streams = list(known_streams or [])
        self.tasks: dict[ShardKey, asyncio.Task[None]] = {}
        self.settled: dict[ShardKey, asyncio.Event] = {}
        self.finished: set[ShardKey] = set()
        # Open shards done for this --once run (caught up, or left without a record).
        self.resting: set[ShardKey] = set()
        self.lag_event_time: dict[ShardKey, datetime] = {}
        # Shards answering empty pages that do not make them caught up (progress lines).
        self.empty_streaks: dict[ShardKey, tuple[Shard, int, str]] = {}
        self.listed_shards: dict[str, dict[str, Shard]] = {}  # stream → shard ID → shard
        # Shards that answered a page this run (or will not be read): their evidence is in.
        self.answered: set[ShardKey] = set()
        self.drained_streams: set[str] = set()
        self._rediscover = asyncio.Event()
        self._warned: set[str] = set()

    async def run(self) -> None:
        """Discover, spawn readers, repeat as shards end or the interval passes."""
        need_discovery = True
        last_discovery = 0.0
        try:
            while True:
                if need_discovery:
                    self._rediscover.clear()
                    with contextlib.suppress(Stopped):
                        await self._discover_and_spawn()
                    last_discovery = time.monotonic()
                    need_discovery = False
                if not self.tasks and (self.config.once or self.stop.is_set()):
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

    async def _discover_and_spawn(self) -> None:
        listed = await self.api.list_streams(self.table_name)
        by_arn = {s.arn: s for s in listed}
        for extra in self.known_streams:
            by_arn.setdefault(extra.arn, extra)
        described: list[tuple[StreamInfo, list[Shard]]] = []
        for stream in sorted(by_arn.values(), key=lambda s: s.created_at):
            if stream.arn in self.drained_streams:
                continue
            try:
                info, shards = await self.api.describe_stream(stream.arn)
            except Exception as exc:
                if is_error(exc, ResourceNotFound):
                    continue  # gone meanwhile: the sink records the hole if it matters
                raise
            described.append((info, shards))
        await self.sink.streams_listed([info for info, _ in described])
        # Streams whose readers must settle before a younger stream's shards start.
        older: list[ShardKey] = []
        for info, shards in described:
            if not self.sink.accepts(info):
                continue
            if info.view_type and info.view_type not in REPLAYABLE_VIEWS:
                self._warn_once(
                    info.arn,
                    f"skipping stream {info.arn}: view type {info.view_type} has no new images",
                )
                continue
            await self.sink.shards_listed(info, shards)
            for problem in check_lineage(shards):
                self._warn_once(problem, problem)
            keys = self._spawn_stream(info, shards, older)
            if info.status == "DISABLED" and all(k in self.finished for k in keys):
                self.drained_streams.add(info.arn)
            older.extend(keys)

    def _spawn_stream(
        self, stream: StreamInfo, shards: list[Shard], older: list[ShardKey]
    ) -> list[ShardKey]:
        self.listed_shards[stream.arn] = {s.shard_id: s for s in shards}
        listed = {s.shard_id for s in shards}
        keys = []
        for shard in lineage_order(shards):
            key = (stream.arn, shard.shard_id)
            keys.append(key)
            if key in self.tasks or key in self.finished:
                continue
            if self.sink.start(stream, shard).finished:
                self.finished.add(key)
                self._settle(key)
                continue
            if key in self.resting and not shard.closed:
                continue  # done for this run and still open: nothing to do until it changes
            self.resting.discard(key)
            waits = [k for k in older if k not in self.finished]
            if shard.parent_shard_id in listed:
                parent = (stream.arn, shard.parent_shard_id)
                if parent not in self.finished:
                    waits.append(parent)
            events = [self.settled.setdefault(k, asyncio.Event()) for k in waits]
            self.settled[key] = asyncio.Event()
            self.tasks[key] = asyncio.create_task(
                self._read_shard(stream, shard, events), name=f"shard {shard.shard_id}"
            )
        return keys

    def _settle(self, key: ShardKey) -> None:
        self.settled.setdefault(key, asyncio.Event()).set()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    async def _read_shard(
        self, stream: StreamInfo, shard: Shard, prerequisites: list[asyncio.Event]
    ) -> None:
        key = (stream.arn, shard.shard_id)
        try:
            for event in prerequisites:
                await first_of(event, self.stop)
            if self.stop.is_set():
                return
            await self._read(stream, shard, key)
        except Stopped:
            return
        finally:
            self.answered.add(key)
            self._settle(key)

    async def _iterator(
        self, stream: StreamInfo, shard: Shard, after_seq: str | None
    ) -> str | None:
        """An iterator after ``after_seq``; on a trimmed position the hole is reported and
        reading restarts at TRIM_HORIZON; ``None`` when the shard no longer exists."""
        try:
            return await self.api.shard_iterator(shard, after_seq)
        except Exception as exc:
            if is_error(exc, TrimmedData) and after_seq:
                await self.sink.trimmed(stream, shard, utcnow())
                return await self._iterator(stream, shard, None)
            if is_error(exc, ResourceNotFound):
                log.warning("shard %s of %s no longer exists", shard.shard_id, stream.arn)
                return None
            raise

    async def _read(self, stream: StreamInfo, shard: Shard, key: ShardKey) -> None:
        config = self.config
        start = self.sink.start(stream, shard)
        last_read = start.after_seq
        metrics.current().shard_read(self.table_name, shard.shard_id)  # reading starts now
        if _at_end(shard, last_read):
            await self._ended(stream, shard, key)
            return
        iterator = await self._iterator(stream, shard, last_read)
        empty_pages = 0
        try:
            while iterator is not None and not self.stop.is_set():
                try:
                    page = await self.pages.page(shard, iterator, config.page_limit)
                except Exception as exc:
                    if is_error(exc, ExpiredIterator):
                        log.info(
                            "shard %s: iterator expired, resuming after %s",
                            shard.shard_id,
                            last_read,
                        )
                        iterator = await self._iterator(stream, shard, last_read)
                        continue
                    if is_error(exc, TrimmedData):
                        await self.sink.trimmed(stream, shard, utcnow())
                        last_read = None
                        iterator = await self._iterator(stream, shard, None)
                        continue
                    if is_error(exc, ResourceNotFound):
                        log.warning("shard %s of %s no longer exists", shard.shard_id, stream.arn)
                        return
                    raise
                shard = self._current(stream, shard)  # it may have closed since
                if page.count:
                    empty_pages = 0
                    self.empty_streaks.pop(key, None)
                    await self.sink.records(stream, shard, page)
                    last_read, self.lag_event_time[key] = page.last()
                self.answered.add(key)
                metrics.current().shard_read(self.table_name, shard.shard_id)
                iterator = page.next_iterator
                if iterator is None or _at_end(shard, last_read):
                    await self._ended(stream, shard, key)
                    return
                if page.count:
                    if not shard.closed and self._once_reached_start(key):
                        self.resting.add(key)
                        return
                    if self._at_head(key, page.count):
                        await sleep_unless(self.stop, config.head_seconds)
                    continue
                empty_pages += 1
                verdict = self.verdict(stream, shard, empty_pages, positioned=bool(last_read))
                done_for_now = config.once or stream.status == "DISABLED"
                if verdict == CAUGHT_UP:
                    self.empty_streaks.pop(key, None)
                    await self.sink.caught_up(stream, shard, utcnow())
                    if done_for_now:
                        self.resting.add(key)
                        return
                else:
                    self.empty_streaks[key] = (shard, empty_pages, verdict)
                    if verdict == LEFT_UNREAD and done_for_now:
                        log.warning(
                            "shard %s of %s: no record after %d empty pages while other shards "
                            "hold records written since it opened: leaving it for this run, "
                            "not caught up (the watermark waits for it)",
                            shard.shard_id,
                            stream.arn,
                            empty_pages,
                        )
                        self.resting.add(key)
                        return
                    await self.sink.idle(stream, shard)
                await sleep_unless(self.stop, config.poll_seconds)
        finally:
            self.empty_streaks.pop(key, None)

    def _at_head(self, key: ShardKey, count: int) -> bool:
        """Whether a page of ``count`` records read the shard up to its newest records."""
        if count >= self.config.page_limit:
            return False
        last = self.lag_event_time.get(key)
        return last is not None and (utcnow() - last).total_seconds() < _HEAD_AGE_SECONDS

    def verdict(
        self, stream: StreamInfo, shard: Shard, empty_pages: int, *, positioned: bool
    ) -> str:
        """What ``empty_pages`` consecutive empty pages mean for the shard.

        Empty pages alone prove little: AWS may need several calls to reach the portion of a
        shard that holds records. So:

        * a **closed** shard is never caught up: only its end counts (``READING_TO_END``);
        * an open shard is not caught up before every other shard of the stream answered a
          page this run (what they hold is the evidence below);
        * an open shard that returned records (``positioned``: this run or an earlier one)
          is caught up after ``caught_up_pages`` empty pages, or ``wary_pages`` when another
          shard of the stream holds a record newer than its own last one (it may be walking
          an empty stretch towards newer records);
        * an open shard that never returned a record is caught up after ``wary_pages`` while
          no other shard holds a record written since it opened; while one does, it is never
          caught up (``NO_RECORD_YET``) and ``--once`` leaves it after ``give_up_pages``,
          without a claim (``LEFT_UNREAD``): the watermark waits for it.
        """
        config = self.config
        if shard.closed:
            return READING_TO_END
        if not self._evidence_in(stream, shard):
            return AWAITING_OTHERS
        others = self._newest_elsewhere(stream, shard)
        if positioned:
            own = self._last_event_time(stream, shard)
            if others is not None and (own is None or others > own):
                return CAUGHT_UP if empty_pages >= config.wary_pages else BEHIND_OTHERS
            return CAUGHT_UP if empty_pages >= config.caught_up_pages else COUNTING
        if others is None or others < self._opened_at(stream, shard):
            return CAUGHT_UP if empty_pages >= config.wary_pages else FIRST_RECORDS
        return LEFT_UNREAD if empty_pages >= config.give_up_pages else NO_RECORD_YET

    def _current(self, stream: StreamInfo, shard: Shard) -> Shard:
        """The shard as last listed: one read as open may have closed since."""
        return self.listed_shards.get(stream.arn, {}).get(shard.shard_id, shard)

    def _evidence_in(self, stream: StreamInfo, shard: Shard) -> bool:
        """Whether every other shard of the stream answered a page this run, or is done
        (children waiting for their parent have not: their records may be the newer ones)."""
        for other in self.listed_shards.get(stream.arn, {}).values():
            key = (stream.arn, other.shard_id)
            if other.shard_id == shard.shard_id or key in self.finished:
                continue
            if key not in self.answered:
                return False
        return True

    def _last_event_time(self, stream: StreamInfo, shard: Shard) -> datetime | None:
        """The event_time of the newest record known of the shard (read or archived)."""
        read = self.lag_event_time.get((stream.arn, shard.shard_id))
        archived = self.sink.start(stream, shard).event_time
        known = [t for t in (read, archived) if t is not None]
        return max(known) if known else None

    def _newest_elsewhere(self, stream: StreamInfo, shard: Shard) -> datetime | None:
        times = [
            self._last_event_time(stream, other)
            for other in self.listed_shards.get(stream.arn, {}).values()
            if other.shard_id != shard.shard_id
        ]
        known = [t for t in times if t is not None]
        return max(known) if known else None

    def _opened_at(self, stream: StreamInfo, shard: Shard) -> datetime:
        """The earliest event_time a record written after the shard opened can carry: its
        parent's last record's, else the stream's creation to the second (AWS rounds
        event_time down to the second; a shard's ID is not documented to carry its
        creation time)."""
        parent = self.listed_shards.get(stream.arn, {}).get(shard.parent_shard_id or "")
        parent_last = self._last_event_time(stream, parent) if parent else None
        return parent_last or stream.created_at.replace(microsecond=0)

    def not_caught_up(self) -> list[str]:
        """Shards that answered more empty pages than would once have made them caught up,
        and why they read on (progress lines)."""
        why = {
            READING_TO_END: "closed, reading on to its end",
            COUNTING: "open",
            AWAITING_OTHERS: "open, other shards of the stream not read yet",
            BEHIND_OTHERS: "open, other shards have newer records",
            FIRST_RECORDS: "open, no record yet",
            NO_RECORD_YET: "open, no record yet while other shards have newer ones",
            LEFT_UNREAD: "open, no record yet while other shards have newer ones",
        }
        return [
            f"{shard.shard_id} {why[verdict]} ({pages} empty pages)"
            for shard, pages, verdict in self.empty_streaks.values()
            if pages >= self.config.caught_up_pages
        ]

    def _once_reached_start(self, key: ShardKey) -> bool:
        started = self.config.once_started_at
        if not self.config.once or started is None:
            return False
        last = self.lag_event_time.get(key)
        return last is not None and (last - started).total_seconds() >= 1.0

    async def _ended(self, stream: StreamInfo, shard: Shard, key: ShardKey) -> None:
        await self.sink.ended(stream, shard)
        self.finished.add(key)
        metrics.current().shard_done(self.table_name, shard.shard_id)
        self._rediscover.set()  # its children may be listed now


async def first_of(*events: asyncio.Event) -> None:
    """Wait until any of ``events`` is set."""
    if any(event.is_set() for event in events):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _at_end(shard: Shard, last_read: str | None) -> bool:
    """Whether the closed shard's last record was read (its ending sequence number)."""
    return bool(shard.closed and last_read and seq_key(last_read) >= seq_key(shard.ending_seq))
