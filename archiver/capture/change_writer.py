"""The poller's sink: stream records buffered per shard, flushed to change files.

:class:`ChangeWriter` is the poller's :class:`archiver.capture.reader.ShardSink`: per-shard buffers
flushed by record count, age or size (:class:`FlushPolicy`) through
:mod:`archiver.format.changefiles`; a checkpoint written only after the files it covers are durable;
resume after the highest sequence number in the files or the checkpoint, whichever is later
(files are the truth, checkpoints a cache); holes recorded in ``gaps.jsonl`` before any record
after them is written; the watermark.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from archiver.aws import metrics
from archiver.capture.reader import ShardStart
from archiver.capture.streams_api import Page, Shard, StreamInfo
from archiver.format import coverage, gap_log, layout
from archiver.format.changefiles import (
    RunBuilder,
    checkpointed_streams,
    ms_to_datetime,
    read_checkpoints,
    resume_points,
    write_builder,
    write_checkpoint,
)
from archiver.format.layout import pad_seq
from archiver.format.records import event_time_ms, first_problem, poison, record_problem
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, parse_stamp, utcnow

log = logging.getLogger(__name__)

DEFAULT_FLUSH_RECORDS = 50_000
DEFAULT_FLUSH_SECONDS = 60.0
DEFAULT_FLUSH_BYTES = 64 * 1024 * 1024
CHECKPOINT_REFRESH_SECONDS = 60.0
# "Just before" a record: the archive keeps times to the millisecond.
_BEFORE = timedelta(milliseconds=1)


# -- the poller's sink ----------------------------------------------------------------------


@dataclass(frozen=True)
class FlushPolicy:
    """Flush a shard's buffer when any limit is reached."""

    records: int = DEFAULT_FLUSH_RECORDS
    seconds: float = DEFAULT_FLUSH_SECONDS
    bytes: int = DEFAULT_FLUSH_BYTES

    def due(self, buffer: RunBuilder) -> bool:
        # nbytes first: it canonicalises the records just added, so a poison record among
        # them raises here, before any flush.
        return (
            buffer.nbytes >= self.bytes
            or buffer.count >= self.records
            or time.monotonic() - buffer.started >= self.seconds
        )


@dataclass
class ShardProgress:
    """What the writer knows of one shard. Sequence numbers are zero-padded here."""

    stream: StreamInfo
    shard: Shard
    table_id: str
    current: bool  # of the current table generation: counts for its watermark
    durable_seq: str | None = None
    durable_event_time: datetime | None = None
    read_seq: str | None = None
    read_event_time: datetime | None = None
    caught_up_at: datetime | None = None
    caught_up_seq: str | None = None
    durable_caught_up_at: datetime | None = None
    finished: bool = False
    dirty: bool = False
    buffer: RunBuilder | None = None
    checkpointed: float = 0.0  # time.monotonic() of the last checkpoint write
    head_chained: bool = False  # the last durable file carries a chain footer
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Where the shard is read in another process (archiver.capture.processes): what that
    # process last reported of its buffer (held records; the first one's event time).
    reported_buffer: tuple[bool, datetime | None] = (False, None)

    def holds_records(self) -> bool:
        """Whether records of the shard are read but not yet in a file."""
        return self.buffer is not None or self.reported_buffer[0]

    def buffered_from(self) -> datetime | None:
        """The event time of the first buffered record — not while the buffer is being
        written (the lock is held): its records are then neither buffered nor durable."""
        buffer = self.buffer
        if buffer is None:
            return self.reported_buffer[1]
        if buffer.first_event_ms is None or self.lock.locked():
            return None
        return ms_to_datetime(buffer.first_event_ms)

    # What a source other than DynamoDB Streams keeps per shard (the Kinesis capture: its
    # sequence numbers and arrival times, read and durable).
    extra: dict[str, Any] = field(default_factory=dict)

    def watermark_time(self) -> datetime | None:
        """Up to when this shard is durably archived (see DESIGN.md "watermark").

        Besides its files and its last durable caught-up time: while records are buffered,
        every record before the first of them was read and is in a file (or in a recorded
        gap) — so the shard holds the watermark just before its first buffered record, not at
        its last file (a child shard has none yet).
        """
        times = [t for t in (self.durable_caught_up_at, self.durable_event_time) if t is not None]
        buffered_from = self.buffered_from()
        if buffered_from is not None:
            times.append(buffered_from - _BEFORE)
        return max(times) if times else None

    def state(self) -> dict[str, Any]:
        """What another process needs to know of the shard's progress (:meth:`apply`)."""
        state = {name: getattr(self, name) for name in _SHARED_FIELDS}
        state["reported_buffer"] = (self.holds_records(), self.buffered_from())
        return state

    def apply(self, state: dict[str, Any]) -> None:
        """Take over what another process reported (:meth:`state`)."""
        for name in (*_SHARED_FIELDS, "reported_buffer"):
            setattr(self, name, state[name])


# What ShardProgress.state() hands between processes (the buffer and the lock stay).
_SHARED_FIELDS = (
    "durable_seq",
    "durable_event_time",
    "read_seq",
    "read_event_time",
    "caught_up_at",
    "caught_up_seq",
    "durable_caught_up_at",
    "finished",
    "head_chained",
)


@dataclass
class Stats:
    records_read: int = 0
    records_written: int = 0
    files_written: int = 0


@dataclass(frozen=True)
class LiveGeneration:
    """The live table's generation (one ``table_id``) whose records are being archived, and
    the generations before it, to tell which one each stream belongs to."""

    table_id: str
    created_at: datetime
    covered_from: datetime
    previous: tuple[tuple[datetime, str], ...] = ()  # (created_at, table_id) of older ones

    def table_id_at(self, at: datetime) -> str | None:
        """The generation a stream created at ``at`` belongs to: the newest created before it.
        A stream created up to the tolerance before the current table counts as created with
        it — unless an older generation existed then (a table deleted and recreated within a
        second)."""
        older = [t for created, t in self.previous if created <= at]
        tolerance = coverage.CREATED_WITH_TABLE_TOLERANCE
        if at >= self.created_at or (at >= self.created_at - tolerance and not older):
            return self.table_id
        return older[-1] if older else None

    def owns(self, at: datetime) -> bool:
        """Whether a stream created at ``at`` belongs to this generation."""
        return self.table_id_at(at) == self.table_id


class ChangeWriter:
    """The poller's sink: buffers per shard, flushes to files, checkpoints, gaps, watermark.

    Archive I/O runs in worker threads so the readers of other shards keep going.
    """

    # The coverage mode its watermark is recorded under.
    mode = "poller"

    def __init__(
        self,
        archive: Archive,
        table: str,
        generation: LiveGeneration,
        policy: FlushPolicy,
        *,
        owns_watermark: bool = True,
    ) -> None:
        self.archive = archive
        # False in a worker process: it sees some of the shards, the poller writes the
        # watermark of all of them (archiver.capture.processes).
        self.owns_watermark = owns_watermark
        self.table = table
        self.generation = generation
        self.policy = policy
        self.stats = Stats()
        self.gaps = gap_log.GapRecorder(archive, table)
        self._gaps_reported = 0  # how many of gaps.recorded the metrics have counted
        self.shards: dict[tuple[str, str], ShardProgress] = {}
        self._checkpoints: dict[str, dict[str, dict[str, Any]]] = {}  # label stamp → shard → doc
        self._resume: dict[tuple[str, str], str] = {}
        self._state_lock = asyncio.Lock()
        self._warned: set[str] = set()
        # Files became durable since coverage.json's watermark was last written.
        self._durable_since_watermark = False

    # -- setup ------------------------------------------------------------------------------

    def prepare(self, streams: list[StreamInfo]) -> None:
        """Load what the archive knows (blocking I/O: call before reading starts)."""
        self.gaps.load()
        earliest: datetime | None = None
        complete = bool(streams)
        for stream in streams:
            docs = self._load_checkpoints(stream.label_stamp)
            complete = complete and bool(docs)
            for doc in docs.values():
                if doc.get("event_time"):
                    at = parse_iso(doc["event_time"])
                    earliest = at if earliest is None else min(earliest, at)
        # Files beyond a checkpoint were written after it (a day of slack for clocks); with a
        # stream that has no checkpoint at all, every file name must be read.
        dt_from = layout.dt_of(earliest - timedelta(days=1)) if complete and earliest else None
        self._resume = resume_points(self.archive, self.table, dt_from)

    def _load_checkpoints(self, label_stamp: str) -> dict[str, dict[str, Any]]:
        if label_stamp not in self._checkpoints:
            self._checkpoints[label_stamp] = read_checkpoints(self.archive, self.table, label_stamp)
        return self._checkpoints[label_stamp]

    def adopt(
        self, stream: StreamInfo, shard: Shard, table_id: str, current: bool, state: dict[str, Any]
    ) -> None:
        """Read ``shard`` from where another process found it (:meth:`ShardProgress.state`):
        a worker process takes a shard over from the poller that owns the table's state."""
        progress = ShardProgress(stream=stream, shard=shard, table_id=table_id, current=current)
        progress.apply(state)
        progress.reported_buffer = (False, None)
        self.shards[(stream.arn, shard.shard_id)] = progress

    def table_id_for(self, stream: StreamInfo) -> str | None:
        """The generation a stream belongs to: the newest created before it."""
        return self.generation.table_id_at(stream.created_at)

    # -- ShardSink --------------------------------------------------------------------------

    def accepts(self, stream: StreamInfo) -> bool:
        if self.table_id_for(stream) is not None:
            return True
        if stream.arn not in self._warned:
            self._warned.add(stream.arn)
            log.warning(
                "skipping stream %s: older than table %s and of no archived generation",
                stream.arn,
                self.table,
            )
        return False

    async def streams_listed(self, streams: list[StreamInfo]) -> None:
        await self._record_reenabled_streams(streams)

    async def shards_listed(self, stream: StreamInfo, shards: list[Shard]) -> None:
        docs = await asyncio.to_thread(self._load_checkpoints, stream.label_stamp)
        listed = {s.shard_id for s in shards}
        for shard in shards:
            self._progress(stream, shard)
        lost = [d for sid, d in docs.items() if sid not in listed and not d.get("closed")]
        if not lost or self.gaps.holds(stream.arn, None):
            return
        # Checkpointed, not drained and no longer listed: it expired while the archiver was
        # down past the retention. The hole ends at the first record read from the stream.
        starts = [parse_iso(d["event_time"]) for d in lost if d.get("event_time")]
        start = min(starts) if starts else stream.created_at
        table_id = self.table_id_for(stream) or self.generation.table_id
        gap = gap_log.PendingGap(
            table_id, stream.arn, None, start, utcnow(), gap_log.GAP_SHARD_LOST, lost
        )
        self.gaps.hold(gap)
        log.warning(
            "%s: RECORDS LOST: shard(s) %s of %s expired before they were fully read (archiver "
            "down past the stream's retention?): recording a gap from %s",
            self.table,
            ", ".join(str(d["shard_id"]) for d in lost),
            stream.arn,
            iso_ms(start),
        )

    def start(self, stream: StreamInfo, shard: Shard) -> ShardStart:
        progress = self._progress(stream, shard)
        return ShardStart(
            _plain(progress.durable_seq),
            finished=progress.finished,
            event_time=progress.durable_event_time,
        )

    async def records(self, stream: StreamInfo, shard: Shard, page: Page) -> None:
        records = page.records
        try:
            await self._records(stream, shard, records)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A record without the parts every record has: name it, never a bare KeyError.
            index = first_problem(records)
            if index is None:
                raise
            before = str(records[index - 1]["dynamodb"]["SequenceNumber"]) if index else None
            reason = str(record_problem(records[index]))
            raise poison(records[index], reason, shard.shard_id, before) from exc

    async def _records(
        self, stream: StreamInfo, shard: Shard, records: Sequence[Mapping[str, Any]]
    ) -> None:
        progress = self._progress(stream, shard)
        last = progress.read_seq or ""
        # A page is in sequence order: when its first record is new, all of them are.
        fresh = (
            records
            if pad_seq(records[0]["dynamodb"]["SequenceNumber"]) > last
            else [r for r in records if pad_seq(r["dynamodb"]["SequenceNumber"]) > last]
        )
        if not fresh:
            return  # already read (a re-acquired iterator may repeat records)
        first = fresh[0]["dynamodb"]["ApproximateCreationDateTime"]
        # A hole must be on record before any record after it can reach a file.
        await self._resolve_gaps(progress, ms_to_datetime(event_time_ms(first)))
        if progress.buffer is None:
            progress.buffer = RunBuilder(
                stream_arn=stream.arn,
                shard_id=shard.shard_id,
                table_id=progress.table_id,
                origin="stream",
            )
        progress.buffer.extend(fresh)
        progress.read_seq = progress.buffer.last_seq
        progress.read_event_time = progress.buffer.last_event_time
        self.stats.records_read += len(fresh)
        if self.policy.due(progress.buffer):
            await self.flush(progress)

    async def idle(self, stream: StreamInfo, shard: Shard) -> None:
        progress = self._progress(stream, shard)
        if progress.buffer is not None and self.policy.due(progress.buffer):
            await self.flush(progress)

    async def caught_up(self, stream: StreamInfo, shard: Shard, at: datetime) -> None:
        progress = self._progress(stream, shard)
        progress.caught_up_at = at
        progress.caught_up_seq = progress.read_seq
        if progress.buffer is None:
            progress.durable_caught_up_at = at
            progress.dirty = True
        await self._resolve_gaps(progress, None, stream_too=False)
        await self.idle(stream, shard)

    async def trimmed(self, stream: StreamInfo, shard: Shard, detected_at: datetime) -> None:
        progress = self._progress(stream, shard)
        start = (
            progress.read_event_time
            or progress.durable_event_time
            or max(stream.created_at, self.generation.covered_from)
        )
        gap = gap_log.PendingGap(
            progress.table_id, stream.arn, shard.shard_id, start, detected_at, gap_log.GAP_TRIMMED
        )
        if self.gaps.hold(gap):
            log.warning(
                "%s: RECORDS LOST: shard %s was trimmed past the last record read (%s): the "
                "stream dropped records before they were archived; recording a gap and "
                "continuing from the trim horizon",
                self.table,
                shard.shard_id,
                iso_ms(start),
            )

    async def ended(self, stream: StreamInfo, shard: Shard) -> None:
        progress = self._progress(stream, shard)
        await self.flush(progress)
        await self._resolve_gaps(progress, None, stream_too=False)
        async with progress.lock:
            progress.finished = True
            progress.dirty = True
            await asyncio.to_thread(self._write_checkpoint, progress)
        self._durable_since_watermark = True

    # -- flushing ---------------------------------------------------------------------------

    async def flush(self, progress: ShardProgress) -> None:
        """Write the shard's buffer, then (only then) its checkpoint."""
        async with progress.lock:
            buffer = progress.buffer
            if buffer is None:
                return
            progress.buffer = None
            # The chain link: the shard's last durable file (flushes of a shard are serial).
            buffer.prev_last_seq = progress.durable_seq
            buffer.prev_chained = progress.head_chained
            paths = await asyncio.to_thread(write_builder, self.archive, self.table, buffer)
            progress.durable_seq = buffer.last_seq
            progress.durable_event_time = buffer.last_event_time
            progress.head_chained = True
            self._flushed(progress)
            caught_up_seq = progress.caught_up_seq or ""
            if progress.caught_up_at is not None and caught_up_seq <= buffer.last_seq:
                progress.durable_caught_up_at = progress.caught_up_at
            progress.dirty = True
            await asyncio.to_thread(self._write_checkpoint, progress)
            self.stats.files_written += len(paths)
            self.stats.records_written += buffer.count
            metrics.current().file_written(self.table, buffer.count, buffer.nbytes, len(paths))
            self._durable_since_watermark = True

    def _flushed(self, progress: ShardProgress) -> None:
        """The shard's buffer is durable now (its checkpoint is written next)."""

    async def flush_all(self) -> None:
        for progress in list(self.shards.values()):
            await self.flush(progress)

    async def finish(self) -> None:
        """End of a run: flush everything, close pending gaps, save checkpoints and coverage."""
        await self.flush_all()
        await self._close_lost(await self.gaps.resolve_all())
        await self.persist(force=True)

    async def persist(self, *, force: bool = False) -> None:
        """Save changed checkpoints and move the watermark (periodically and at the end).

        A checkpoint that would only refresh ``caught_up_at`` is rewritten at most every
        :data:`CHECKPOINT_REFRESH_SECONDS` (an S3 PUT per shard every few seconds adds up);
        the watermark in coverage.json moves every time.
        """
        now = time.monotonic()
        for progress in list(self.shards.values()):
            if not progress.dirty or progress.buffer is not None:
                continue
            if not force and now - progress.checkpointed < CHECKPOINT_REFRESH_SECONDS:
                continue
            # The lock orders this write after any flush's own checkpoint of the shard.
            async with progress.lock:
                if progress.dirty:
                    await asyncio.to_thread(self._write_checkpoint, progress)
        await self._write_watermark()

    async def persist_watermark(self) -> None:
        """Write coverage.json's watermark if files became durable since it was last written
        (every second or so while the poller runs: so that under load the watermark trails by
        the flush interval, not by the flush interval plus the persist interval; an idle
        table's watermark moves with :meth:`persist`)."""
        if self._durable_since_watermark:
            await self._write_watermark()

    async def _write_watermark(self) -> None:
        self._durable_since_watermark = False
        watermark = self.watermark() if self.owns_watermark else None
        if watermark is not None:
            async with self._state_lock:
                await asyncio.to_thread(
                    coverage.advance_watermark,
                    self.archive,
                    self.table,
                    self.generation.table_id,
                    watermark,
                    mode=self.mode,
                )
            metrics.current().lag(self.table, watermark)
        metrics.current().gaps(self.table, len(self.gaps.recorded) - self._gaps_reported)
        self._gaps_reported = len(self.gaps.recorded)

    def watermark(self) -> datetime | None:
        """Min over the current generation's unfinished shards of how far each is durably
        archived, minus the margin; ``None`` while any of them has nothing to go by.

        A child shard not read yet (its parent was read to its end only now) holds nothing
        unread before its parent's last record: it opened when its parent closed, so each of
        its records was written after that one. It holds the watermark just before it.
        """
        times = []
        for progress in self.shards.values():
            if not progress.current or progress.finished:
                continue
            if progress.stream.status == "DISABLED" and progress.durable_caught_up_at:
                continue  # a disabled stream's open shard will get nothing more
            at = progress.watermark_time() or self._opened_after(progress)
            if at is None:
                return None
            times.append(at)
        if not times:
            return None
        return min(min(times), utcnow()) - coverage.WATERMARK_MARGIN

    def _opened_after(self, progress: ShardProgress) -> datetime | None:
        """Just before the last record of the nearest ancestor read to its end (and durable),
        when every shard between them was read to its end with no record: the child's
        records were all written after that one."""
        seen: set[str] = set()
        parent_id = progress.shard.parent_shard_id
        while parent_id and parent_id not in seen:
            seen.add(parent_id)
            parent = self.shards.get((progress.stream.arn, parent_id))
            if parent is None or not parent.finished:
                return None
            if parent.durable_event_time is not None:
                return parent.durable_event_time - _BEFORE
            parent_id = parent.shard.parent_shard_id
        return None

    def _checkpoint_doc(self, progress: ShardProgress) -> dict[str, Any]:
        """The shard's checkpoint as of what is durable (DESIGN.md "State files")."""
        return {
            "stream_arn": progress.stream.arn,
            "shard_id": progress.shard.shard_id,
            "parent_shard_id": progress.shard.parent_shard_id,
            "sequence_number": _plain(progress.durable_seq),
            "event_time": _iso(progress.durable_event_time),
            "caught_up_at": _iso(progress.durable_caught_up_at),
            "closed": progress.finished,
            "updated_at": iso_ms(utcnow()),
            "chain_head": _chain_head(progress),
        }

    def _write_checkpoint(self, progress: ShardProgress) -> None:
        write_checkpoint(self.archive, self.table, self._checkpoint_doc(progress))
        progress.dirty = False
        progress.checkpointed = time.monotonic()

    # -- state ------------------------------------------------------------------------------

    def _progress(self, stream: StreamInfo, shard: Shard) -> ShardProgress:
        key = (stream.arn, shard.shard_id)
        progress = self.shards.get(key)
        if progress is not None:
            if shard.closed and not progress.shard.closed:
                progress.shard = shard
            if stream.status:
                progress.stream = stream
            return progress
        table_id = self.table_id_for(stream) or self.generation.table_id
        doc = self._checkpoints.get(stream.label_stamp, {}).get(shard.shard_id, {})
        from_doc = pad_seq(doc["sequence_number"]) if doc.get("sequence_number") else None
        from_files = self._resume.get((stream.label_stamp, shard.shard_id))
        durable = max(filter(None, (from_doc, from_files)), default=None)
        event_time = _parse(doc.get("event_time"))
        progress = ShardProgress(
            stream=stream,
            shard=shard,
            table_id=table_id,
            current=table_id == self.generation.table_id,
            durable_seq=durable,
            durable_event_time=event_time,
            read_seq=durable,
            read_event_time=event_time,
            durable_caught_up_at=_parse(doc.get("caught_up_at")),
            finished=bool(doc.get("closed")),
            # A checkpoint with a chain head was written after a file with a footer.
            head_chained=bool(doc.get("chain_head")),
        )
        self.shards[key] = progress
        return progress

    async def _resolve_gaps(
        self, progress: ShardProgress, end: datetime | None, *, stream_too: bool = True
    ) -> None:
        covered = await self.gaps.resolve(
            progress.stream.arn, progress.shard.shard_id, end, stream_too=stream_too
        )
        await self._close_lost(covered)

    async def _close_lost(self, checkpoints: list[dict[str, Any]]) -> None:
        """Expired shards whose hole is on record: never look for them again."""
        for doc in checkpoints:
            closed = {**doc, "closed": True, "updated_at": iso_ms(utcnow())}
            await asyncio.to_thread(write_checkpoint, self.archive, self.table, closed)
            stamp = layout.label_stamp(layout.stream_label_of(str(doc["stream_arn"])))
            self._checkpoints.setdefault(stamp, {})[str(doc["shard_id"])] = closed

    async def _record_reenabled_streams(self, streams: list[StreamInfo]) -> None:
        """A stream disabled and another enabled later: writes in between were never streamed.
        The hole runs from the last record archived from the older stream to the newer
        stream's creation; it is recorded once the older one is drained (or gone)."""
        ours = [s for s in streams if self.table_id_for(s) == self.generation.table_id]
        listed = {s.label_stamp for s in ours}
        timeline: list[tuple[datetime, str, StreamInfo | None]] = [
            (s.created_at, s.label_stamp, s) for s in ours
        ]
        for stamp in await asyncio.to_thread(checkpointed_streams, self.archive, self.table):
            at = _parse_stamp(stamp)
            if stamp not in listed and at and self.generation.owns(at):
                timeline.append((at, stamp, None))  # known from the archive, expired since
        timeline.sort(key=lambda entry: entry[0])
        for (a_created, a_stamp, a), (b_created, _, b) in itertools.pairwise(timeline):
            if b is None or self.gaps.knows_reenabled(b.arn):
                continue
            if a is not None and not self._drained(a):
                continue  # still being read: the hole starts after its last record
            docs = await asyncio.to_thread(self._load_checkpoints, a_stamp)
            times = [parse_iso(d["event_time"]) for d in docs.values() if d.get("event_time")]
            times += [
                p.durable_event_time
                for p in self.shards.values()
                if a is not None and p.stream.arn == a.arn and p.durable_event_time
            ]
            start = max(times, default=a_created)
            await self.gaps.stream_reenabled(self.generation.table_id, b.arn, start, b_created)

    def _drained(self, stream: StreamInfo) -> bool:
        shards = [p for p in self.shards.values() if p.stream.arn == stream.arn]
        return (
            stream.status == "DISABLED"
            and bool(shards)
            and all(
                p.finished or (p.durable_caught_up_at and not p.holds_records()) for p in shards
            )
        )


def _chain_head(progress: ShardProgress) -> dict[str, Any] | None:
    """The last durable file of the shard (``archiver.format.chain``): its ``last_seq`` and
    ``dt``, so that a missing tail file is noticed."""
    if progress.durable_seq is None:
        return None
    at = progress.durable_event_time
    return {"last_seq": progress.durable_seq, "dt": layout.dt_of(at) if at else None}


def _plain(seq: str | None) -> str | None:
    """A zero-padded sequence number as AWS writes it."""
    return (seq.lstrip("0") or "0") if seq else None


def _iso(at: datetime | None) -> str | None:
    return iso_ms(at) if at else None


def _parse(text: str | None) -> datetime | None:
    return parse_iso(text) if text else None


def _parse_stamp(stamp: str) -> datetime | None:
    try:
        return parse_stamp(stamp)
    except ValueError:
        return None
