"""The Kinesis capture's sink: the poller's change-file writer, with Kinesis positions.

:class:`KinesisWriter` is ``archiver.writer.ChangeWriter`` — the same buffers, flush policy,
files, chain footers, checkpoints after durable files, gaps recorded before the records after
them, and watermark — for the records of one Kinesis data stream (docs/format.md "Kinesis Data
Streams records"). What differs:

* **Names and chain.** A Kinesis shard's files are the shard's chain, named
  ``<KINESIS_LABEL>_kinesis-<stream>-<created>-<shard id>_<first>_<last>``, where ``first`` and
  ``last`` count the shard's archived records (1, 2, …), in the order the shard holds them: so
  each file is a contiguous range of the count and the chain links, checks and repairs as for
  DynamoDB Streams. The rows' ``sequence_number`` is the order key (creation time first), and
  the footer records its range and the Kinesis sequence numbers of the file's first and last
  record (provenance).
* **Resume.** A shard resumes after a Kinesis sequence number: the later of its checkpoint's
  ``kinesis_sequence_number`` (which also moves past records of other tables, never archived)
  and the footer of its file with the highest count (files are the truth).
* **Watermark.** A shard is archived up to the arrival time of its last durable record (a
  shard holds records in arrival order) or the moment it was last caught up
  (``MillisBehindLatest`` 0); the minimum over open shards, less the reordering margin (a
  record's creation precedes its arrival by up to that much), is the watermark.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from archiver.capture.change_writer import ChangeWriter, FlushPolicy, LiveGeneration, ShardProgress
from archiver.capture.kinesis_api import seq_key
from archiver.capture.reader import ShardStart
from archiver.capture.streams_api import Shard, StreamInfo
from archiver.format import footers, gap_log, layout
from archiver.format.changefiles import RunBuilder, ms_to_datetime
from archiver.format.layout import pad_seq
from archiver.format.records import event_time_ms
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow

log = logging.getLogger(__name__)

ORIGIN = "kinesis"
# (record in the archive's shape, its Kinesis sequence number, its arrival time)
Item = tuple[dict[str, Any], str, datetime | None]


def _parse(text: Any) -> datetime | None:
    return parse_iso(str(text)) if text else None


def kinesis_heads(archive: Archive, table: str) -> dict[str, tuple[str, str]]:
    """Per Kinesis chain shard: the ``last_seq`` and path of its file with the highest count,
    from file names in every ``dt`` (a late record lands in an old ``dt``)."""
    heads: dict[str, tuple[str, str]] = {}
    base = layout.changes_table_dir(table)
    for entry in archive.listdir(base):
        partition = layout.parse_changes_partition(f"{base}/{entry}")
        if partition is None:
            continue
        for rel in archive.find(layout.changes_partition(table, partition.dt), ".parquet"):
            parsed = layout.parse_change_file(rel)
            name = parsed.name if parsed else None
            if name is None or name.label != layout.KINESIS_LABEL:
                continue
            if name.last_seq > heads.get(name.shard_id, ("", ""))[0]:
                heads[name.shard_id] = (name.last_seq, rel)
    return heads


class KinesisWriter(ChangeWriter):
    """``ChangeWriter`` for the records of one Kinesis data stream (see the module)."""

    mode = "kinesis"

    def __init__(
        self,
        archive: Archive,
        table: str,
        generation: LiveGeneration,
        policy: FlushPolicy,
        *,
        margin: timedelta,
    ) -> None:
        super().__init__(archive, table, generation, policy)
        self.margin = margin
        self._heads: dict[str, tuple[str, str]] = {}

    # -- setup ------------------------------------------------------------------------------

    def prepare(self, streams: list[StreamInfo]) -> None:
        """Load the checkpoints and every Kinesis shard's last file (blocking I/O)."""
        self.gaps.load()
        self._load_checkpoints(layout.KINESIS_LABEL)
        self._heads = kinesis_heads(self.archive, self.table)
        self._resume = {
            (layout.KINESIS_LABEL, shard): last for shard, (last, _) in self._heads.items()
        }

    def load_shard(self, stream: StreamInfo, shard: Shard, kinesis_shard: str) -> ShardProgress:
        """The shard's progress, resumed from its checkpoint and its last file (blocking I/O:
        a footer read when the files are ahead of the checkpoint)."""
        key = (stream.arn, shard.shard_id)
        if key in self.shards:
            return self.shards[key]
        progress = self._progress(stream, shard)
        doc = self._checkpoints.get(layout.KINESIS_LABEL, {}).get(shard.shard_id, {})
        extra = progress.extra
        extra["kinesis_shard"] = kinesis_shard
        extra["durable_kseq"] = doc.get("kinesis_sequence_number")
        extra["durable_arrival"] = _parse(doc.get("kinesis_arrival"))
        from_doc = pad_seq(doc["sequence_number"]) if doc.get("sequence_number") else ""
        head = self._heads.get(shard.shard_id)
        if head is not None and head[0] > from_doc:
            footer = footers.read_state(self.archive, head[1]).footer
            found = (footer.kinesis or {}).get("last_sequence_number") if footer else None
            if found and _later(str(found), extra["durable_kseq"]):
                extra["durable_kseq"] = str(found)
                extra["durable_arrival"] = None  # not recorded in files
        extra["read_kseq"] = extra["durable_kseq"]
        extra["read_arrival"] = extra["durable_arrival"]
        return progress

    def start(self, stream: StreamInfo, shard: Shard) -> ShardStart:
        """Where the shard's reading starts: after a Kinesis sequence number (None:
        TRIM_HORIZON)."""
        progress = self._progress(stream, shard)
        return ShardStart(
            progress.extra.get("durable_kseq"),
            finished=progress.finished,
            event_time=progress.durable_event_time,
        )

    def durable_arrival(self, stream: StreamInfo, shard: Shard) -> datetime | None:
        """The arrival time of the shard's last durable record, when known."""
        arrival = self._progress(stream, shard).extra.get("durable_arrival")
        return arrival if isinstance(arrival, datetime) else None

    # -- reading ----------------------------------------------------------------------------

    async def page(
        self,
        stream: StreamInfo,
        shard: Shard,
        items: Sequence[Item],
        last_kseq: str | None,
        last_arrival: datetime | None,
    ) -> None:
        """One page of the shard: the archived table's records (``items``, in the shard's
        order) and the position after the whole page (records of other tables included)."""
        progress = self._progress(stream, shard)
        if items:
            first = min(
                event_time_ms(r["dynamodb"]["ApproximateCreationDateTime"]) for r, _, _ in items
            )
            # A hole must be on record before any record after it can reach a file.
            await self._resolve_gaps(progress, ms_to_datetime(first))
            if progress.buffer is None:
                progress.buffer = RunBuilder(
                    stream_arn=stream.arn,
                    shard_id=shard.shard_id,
                    table_id=progress.table_id,
                    origin=ORIGIN,
                    kinesis_shard=str(progress.extra.get("kinesis_shard") or shard.shard_id),
                )
            count = int(progress.read_seq or 0)
            for record, kseq, _ in items:
                count += 1
                progress.buffer.add(record, pad_seq(count), kseq)
            progress.read_seq = progress.buffer.last_seq
            progress.read_event_time = progress.buffer.last_event_time
            self.stats.records_read += len(items)
        if last_kseq is not None:
            progress.extra["read_kseq"] = last_kseq
            progress.extra["read_arrival"] = last_arrival
        if progress.buffer is None:
            # Nothing of ours is buffered: the position is durable as it is.
            progress.extra["durable_kseq"] = progress.extra["read_kseq"]
            progress.extra["durable_arrival"] = progress.extra["read_arrival"]
            progress.dirty = True
        elif self.policy.due(progress.buffer):
            await self.flush(progress)

    async def flush(self, progress: ShardProgress) -> None:
        progress.extra["flushing"] = (
            progress.extra.get("read_kseq"),
            progress.extra.get("read_arrival"),
        )
        await super().flush(progress)

    def _flushed(self, progress: ShardProgress) -> None:
        kseq, arrival = progress.extra.pop("flushing", (None, None))
        if kseq is not None:
            progress.extra["durable_kseq"] = kseq
            progress.extra["durable_arrival"] = arrival

    # -- holes ------------------------------------------------------------------------------

    def hold_gap(
        self, stream: StreamInfo, shard: Shard, reason: str, start: datetime, at: datetime
    ) -> bool:
        """Hold a hole of this shard until the first record read after it (or the run's end)."""
        progress = self._progress(stream, shard)
        gap = gap_log.PendingGap(progress.table_id, stream.arn, shard.shard_id, start, at, reason)
        return self.gaps.hold(gap)

    async def record_gap(
        self, stream_arn: str, start: datetime, end: datetime, reason: str, **extra: Any
    ) -> dict[str, Any]:
        """Write a hole of the whole stream now (destination disabled, stream deleted)."""
        line = await asyncio.to_thread(
            gap_log.append_gap,
            self.archive,
            self.table,
            table_id=self.generation.table_id,
            stream_arn=stream_arn,
            shard_id=None,
            start=start,
            end=end,
            reason=reason,
            extra=extra or None,
        )
        self.gaps.recorded.append(line)
        log.warning(
            "%s: GAP recorded in %s: %s → %s (%s)",
            self.table,
            layout.gaps(self.table),
            line["from"],
            line["to"],
            gap_log.GAP_REASONS[reason],
        )
        return line

    # -- state ------------------------------------------------------------------------------

    def _checkpoint_doc(self, progress: ShardProgress) -> dict[str, Any]:
        doc = super()._checkpoint_doc(progress)
        arrival = progress.extra.get("durable_arrival")
        doc.update(
            kinesis_shard_id=progress.extra.get("kinesis_shard"),
            kinesis_sequence_number=progress.extra.get("durable_kseq"),
            kinesis_arrival=iso_ms(arrival) if isinstance(arrival, datetime) else None,
        )
        return doc

    def watermark(self) -> datetime | None:
        """Min over the open shards of how far each is durably read (its last durable record's
        arrival, or when it was last caught up), less the reordering margin; ``None`` while any
        of them has nothing to go by."""
        times = []
        for progress in self.shards.values():
            if not progress.current or progress.finished:
                continue
            arrival = progress.extra.get("durable_arrival")
            known = [t for t in (progress.durable_caught_up_at, arrival) if t is not None]
            if not known:
                return None
            times.append(max(known))
        if not times:
            return None
        return min(min(times), utcnow()) - self.margin


def _later(candidate: str, known: Any) -> bool:
    return not known or seq_key(candidate) > seq_key(str(known))
