"""The holes in the log: ``gaps.jsonl``, and the recorder that writes them at the right moment.

``_state/<table>/gaps.jsonl`` has one line per hole in the log: records that were trimmed
before they were read, a shard lost while the archiver was down past the stream's retention,
or a stream disabled and re-enabled (writes in between have no stream record at all)::

    {"table", "table_id", "stream_arn", "shard_id", "from", "to", "detected_at", "reason"}

``from`` and ``to`` bound the hole: records with ``from < event_time < to`` may be missing.
The poller and the Lambda handler record holes through :class:`GapRecorder` and
:func:`append_gap`; the replayer reads them through :func:`read_gaps`. Coverage, which says
where the log starts and how far it is complete, is :mod:`archiver.format.coverage`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from archiver.format import layout, statefiles
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow

log = logging.getLogger(__name__)

GAP_TRIMMED = "trimmed"
GAP_SHARD_LOST = "shard-lost"
GAP_STREAM_REENABLED = "stream-disabled-and-reenabled"
# Found live, never written to gaps.jsonl: failed Lambda batches until redriven
# (archiver.lambda_mode.failures) and a Lambda function stalled past its iterator-age threshold
# (archiver.lambda_mode.stall).
GAP_LAMBDA_BATCH_FAILED = "lambda-batch-failed"
GAP_LAMBDA_STALLED = "lambda-stalled"
GAP_FILE_LOST = "archive-file-lost"
# Holes in the history kept from incremental exports (``source: incremental-export``).
GAP_PITR_REENABLED = "pitr-disabled-and-reenabled"
GAP_EXPORT_FAILED = "export-failed"
GAP_WINDOW_EXPIRED = "export-window-expired"
# Holes in a log captured from Kinesis Data Streams (archiver.capture.kinesis).
GAP_KINESIS_RETENTION = "kinesis-retention-passed"
GAP_KINESIS_DISABLED = "kinesis-destination-disabled"
GAP_KINESIS_DELETED = "kinesis-stream-deleted"
GAP_REASONS = {
    GAP_TRIMMED: "records were trimmed from the stream before they were read",
    GAP_SHARD_LOST: "a shard expired (archiver down past the stream's 24 h retention)",
    GAP_STREAM_REENABLED: "the stream was disabled and re-enabled: writes in between have no "
    "stream record",
    GAP_LAMBDA_BATCH_FAILED: "a Lambda batch failed and went to the on-failure destination, "
    "not redriven yet",
    GAP_LAMBDA_STALLED: "the Lambda function was further behind the stream than its "
    "MaxIteratorAgeSeconds (IteratorAge in CloudWatch)",
    GAP_FILE_LOST: "an archived change file was lost or damaged after the stream stopped "
    "retaining its records",
    GAP_PITR_REENABLED: "point-in-time recovery was turned off and on: earlier windows can no "
    "longer be exported",
    GAP_EXPORT_FAILED: "the incremental export of this window failed",
    GAP_WINDOW_EXPIRED: "the window had left point-in-time recovery's period before it was "
    "exported",
    GAP_KINESIS_RETENTION: "records may have passed the Kinesis data stream's retention "
    "period before they were read",
    GAP_KINESIS_DISABLED: "the table's Kinesis streaming destination was not active: writes "
    "in between have no record",
    GAP_KINESIS_DELETED: "the Kinesis data stream was deleted: records not read by then are lost",
}


def read_gaps(archive: Archive, table: str) -> list[dict[str, Any]]:
    """Every recorded hole in ``table``'s log, in the order they were detected."""
    return statefiles.read_jsonl(archive, layout.gaps(table), statefiles.GAP, "gap record")


def append_gap(
    archive: Archive,
    table: str,
    *,
    table_id: str,
    stream_arn: str,
    shard_id: str | None,
    start: datetime,
    end: datetime,
    reason: str,
    detected_at: datetime | None = None,
    extra: dict[str, Any] | None = None,
    source: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """Record a hole in the log: records with ``start < event_time < end`` may be missing.

    ``source`` is ``incremental-export`` for a hole in the history kept from incremental
    exports (absent for the stream's: a stream's hole says nothing about exports, and the
    other way round); ``detail`` adds what AWS said, e.g. an export's failure.

    Call this *before* writing any record that follows the hole, so that a crash in between
    cannot leave files after the hole without the hole being on record.
    """
    if reason not in GAP_REASONS:
        raise ValueError(f"unknown gap reason {reason!r}")
    gap = {
        "table": table,
        "table_id": table_id,
        "stream_arn": stream_arn,
        "shard_id": shard_id,
        "from": iso_ms(start),
        "to": iso_ms(max(start, end)),
        "detected_at": iso_ms(detected_at or utcnow()),
        "reason": reason,
        **(extra or {}),
    }
    if source is not None:
        gap["source"] = source
    if detail is not None:
        gap["detail"] = detail
    archive.append_jsonl(layout.gaps(table), gap)
    return gap


@dataclass
class PendingGap:
    """A hole found while reading whose end is not known yet."""

    table_id: str
    stream_arn: str
    shard_id: str | None  # None: the hole is the stream's (an expired shard, …)
    start: datetime
    detected_at: datetime
    reason: str
    lost_checkpoints: list[dict[str, Any]] = field(default_factory=list)


def _single_lost_shard(gap: PendingGap) -> str | None:
    ids = {str(doc.get("shard_id")) for doc in gap.lost_checkpoints}
    return ids.pop() if len(ids) == 1 else None


class GapRecorder:
    """Holes found while reading a stream, written to gaps.jsonl at the right moment.

    A hole ends at the first record read after it, so it is held here until that record is
    read — and written *before* that record can reach a file. A crash in between loses
    nothing: no record after the hole was written, so the next run finds the same hole. A
    hole after which nothing is ever read ends when it was detected.
    """

    def __init__(self, archive: Archive, table: str) -> None:
        self.archive = archive
        self.table = table
        self.recorded: list[dict[str, Any]] = []
        self._pending: dict[tuple[str, str | None], PendingGap] = {}
        self._reenabled: set[str] = set()
        self._lock = asyncio.Lock()

    def load(self) -> None:
        """Learn the holes already on record (blocking I/O)."""
        for gap in read_gaps(self.archive, self.table):
            if gap.get("reason") == GAP_STREAM_REENABLED:
                self._reenabled.add(str(gap.get("stream_arn")))

    def hold(self, gap: PendingGap) -> bool:
        """Hold a hole until its end is known; ``False`` when one is held there already
        (the two merge: the earlier start wins)."""
        key = (gap.stream_arn, gap.shard_id)
        held = self._pending.get(key)
        if held is not None:
            held.start = min(held.start, gap.start)
            held.lost_checkpoints.extend(gap.lost_checkpoints)
            return False
        self._pending[key] = gap
        return True

    def holds(self, stream_arn: str, shard_id: str | None) -> bool:
        return (stream_arn, shard_id) in self._pending

    async def resolve(
        self, stream_arn: str, shard_id: str, end: datetime | None, *, stream_too: bool = True
    ) -> list[dict[str, Any]]:
        """Write the holes before ``end`` (None: their detection time) of this shard and, with
        ``stream_too``, of its stream. Returns the checkpoints of expired shards now on record."""
        keys: list[tuple[str, str | None]] = [(stream_arn, shard_id)]
        if stream_too:
            keys.append((stream_arn, None))
        covered: list[dict[str, Any]] = []
        for key in keys:
            gap = self._pending.pop(key, None)
            if gap is not None:
                await self._write(gap, end or gap.detected_at)
                covered.extend(gap.lost_checkpoints)
        return covered

    async def resolve_all(self) -> list[dict[str, Any]]:
        """End of a run: every hole still held ends at its detection time."""
        covered: list[dict[str, Any]] = []
        for gap in list(self._pending.values()):
            del self._pending[(gap.stream_arn, gap.shard_id)]
            await self._write(gap, gap.detected_at)
            covered.extend(gap.lost_checkpoints)
        return covered

    async def stream_reenabled(
        self, table_id: str, stream_arn: str, start: datetime, end: datetime
    ) -> None:
        """Record the hole before a re-enabled stream (once per stream)."""
        if stream_arn in self._reenabled:
            return
        self._reenabled.add(stream_arn)
        now = datetime.now(start.tzinfo)
        await self._write(
            PendingGap(table_id, stream_arn, None, start, now, GAP_STREAM_REENABLED), end
        )

    def knows_reenabled(self, stream_arn: str) -> bool:
        return stream_arn in self._reenabled

    async def _write(self, gap: PendingGap, end: datetime) -> None:
        async with self._lock:
            line = await asyncio.to_thread(
                append_gap,
                self.archive,
                self.table,
                table_id=gap.table_id,
                stream_arn=gap.stream_arn,
                shard_id=gap.shard_id or _single_lost_shard(gap),
                start=gap.start,
                end=end,
                reason=gap.reason,
                detected_at=gap.detected_at,
            )
        self.recorded.append(line)
        log.warning(
            "%s: GAP recorded in %s: %s → %s (%s)",
            self.table,
            layout.gaps(self.table),
            line["from"],
            line["to"],
            GAP_REASONS[gap.reason],
        )
