"""Re-reading a broken range of a Kinesis shard's chain, for ``check --repair``.

A Kinesis shard's change files count its archived records (docs/format.md "Kinesis Data
Streams records"); a broken range is the records after count ``after`` up to count ``until``.
Kinesis keeps records up to a year, so the range can often be read again: from just after the
Kinesis sequence number the intact file before it ends at (its footer says), through the same
steps as the capture (:class:`archiver.capture.kinesis.Intake`: the table's records only,
ordered with the ties on record, duplicates dropped), counting on from ``after``. The records
come back with the same order keys and counts, so they are written into the same names.

What cannot be proven is not repaired (``None``): a range that starts the shard (its first
records may have left the stream), a stream or shard gone, or records that do not count up to
exactly ``until`` (a duplicate of a record before the range, dropped the first time, or a
record that left the stream).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from archiver.capture.change_writer import LiveGeneration
from archiver.capture.kinesis import Intake
from archiver.capture.kinesis_api import KinesisApi, KinesisClient, KinesisShard, is_gone
from archiver.capture.kinesis_order import Orderer
from archiver.format import ties
from archiver.format.layout import pad_seq
from archiver.format.storage import Archive

# Empty pages at the tip after which the range is taken as not there.
_EMPTY_PAGES = 5

Reread = list[tuple[dict[str, Any], str, str]]  # (record, count, Kinesis sequence number)


async def reread(
    client: KinesisClient,
    archive: Archive,
    table: str,
    table_id: str,
    *,
    stream_arn: str,
    shard_id: str,
    after_kseq: str | None,
    after: int,
    until: int,
) -> Reread | None:
    """The records counted ``after + 1`` … ``until`` of the shard, or ``None`` (see module)."""
    if after_kseq is None:
        return None
    api = KinesisApi(client)
    shard = KinesisShard(stream_arn, shard_id, None, None, None, None)
    # Every record of the table counts: the generation check of the capture is by time, and
    # this one's generation is the one the broken files belong to.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    intake = Intake(
        archive,
        table,
        LiveGeneration(table_id, epoch, epoch),
        Orderer(known=ties.read_ties(archive, table)),
    )
    out: Reread = []
    count = after
    try:
        iterator: str | None = await api.shard_iterator(shard, after_kseq)
        empty = 0
        while iterator is not None and count < until and empty < _EMPTY_PAGES:
            page = await api.get_records(shard, iterator, 1000)
            records = page.get("Records") or []
            if not records and page.get("MillisBehindLatest") == 0:
                empty += 1
            for record, kseq, _ in await intake.take(records, shard_id):
                count += 1
                out.append((record, pad_seq(count), kseq))
                if count == until:
                    break
            iterator = page.get("NextShardIterator")
    except Exception as exc:
        if is_gone(exc):
            return None
        raise
    return out if count == until else None
