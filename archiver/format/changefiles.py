"""Change records as Parquet files with deterministic names; checkpoints and resume points.

* :func:`write_records` — one batch of one shard's records (either shape: GetRecords or a
  Lambda event) → one file per contiguous range within one ``dt`` (``layout.change_file``:
  the name is a function of the content, so writing the same records again rewrites the same
  objects). :class:`RunBuilder` splits the records into those ranges as they arrive, so the
  poller (``archiver.capture.change_writer.ChangeWriter``) builds rows while it buffers and
  :func:`write_builder` only has to write. The poller and the Lambda handler share it.
* Checkpoints: one JSON document per shard, written only after the files it covers are
  durable (:func:`write_checkpoint`, :func:`read_checkpoints`,
  :func:`checkpointed_streams`).
* :func:`resume_points` — the highest sequence number archived per shard, read from change
  file names: files are the truth, checkpoints a cache.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.format import footers, layout, statefiles
from archiver.format.errors import ArchiverError, PoisonRecord
from archiver.format.layout import pad_seq
from archiver.format.records import ChangeRows, event_time_ms
from archiver.format.storage import Archive

# -- one batch → files ----------------------------------------------------------------------


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds (``records.event_time_ms``) as a UTC datetime."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


_DAY_MS = 86_400_000


@functools.lru_cache(maxsize=64)
def _dt_of_day(day: int) -> str:
    """``layout.dt_of`` of the UTC day ``day`` (days since the epoch): one ``strftime`` per
    day instead of one per record."""
    return layout.dt_of(ms_to_datetime(day * _DAY_MS))


@dataclass
class Run:
    """Consecutive records of one shard within one ``dt``: the content of one file.

    ``first_seq``/``last_seq`` name the file: the records' sequence numbers, or — for rows
    captured from Kinesis — their positions in the shard's count of archived records, with
    the Kinesis sequence numbers they came at in ``first_source``/``last_source``.
    """

    dt: str
    rows: ChangeRows
    first_seq: str  # zero-padded
    last_seq: str
    last_event_ms: int
    first_source: str | None = None
    last_source: str | None = None


class RunBuilder:
    """Records of one shard, in sequence order, split into :class:`Run` s at ``dt`` changes.

    Rows are built as records arrive, so a flush only has to write.
    """

    def __init__(
        self,
        *,
        stream_arn: str,
        shard_id: str | None,
        table_id: str,
        origin: str,
        prev_last_seq: str | None = None,
        prev_chained: bool = False,
        kinesis_shard: str | None = None,
    ) -> None:
        self.stream_arn = stream_arn
        self.shard_id = shard_id
        # A Kinesis shard's records: its own id (``shard_id`` is its name in the archive,
        # ``layout.kinesis_chain_shard``); the footers record the Kinesis provenance.
        self.kinesis_shard = kinesis_shard
        # The last sequence number of the shard's previous file: the first run's chain link;
        # and whether that file carries a chain footer itself.
        self.prev_last_seq = prev_last_seq
        self.prev_chained = prev_chained
        self.table_id = table_id
        self.origin = origin
        self.runs: list[Run] = []
        self.count = 0
        self.first_event_ms: int | None = None
        self.started = time.monotonic()

    @property
    def nbytes(self) -> int:
        return sum(run.rows.nbytes for run in self.runs)

    @property
    def last_seq(self) -> str:
        return self.runs[-1].last_seq

    @property
    def last_event_time(self) -> datetime:
        return ms_to_datetime(self.runs[-1].last_event_ms)

    def add(
        self, record: Mapping[str, Any], position: str | None = None, source: str | None = None
    ) -> None:
        """Add one record; ``position`` (zero-padded) names it in the file names instead of
        its sequence number, ``source`` is where it came from (a Kinesis sequence number)."""
        if position is None and source is None:
            self.extend((record,))
            return
        ddb = record["dynamodb"]
        seq = position if position is not None else pad_seq(ddb["SequenceNumber"])
        ms = event_time_ms(ddb["ApproximateCreationDateTime"])
        dt = _dt_of_day(ms // _DAY_MS)
        if not self.runs or self.runs[-1].dt != dt:
            self.runs.append(Run(dt, ChangeRows(), seq, seq, ms, source, source))
        run = self.runs[-1]
        run.last_source = source
        run.rows.append_many(
            (record,), (self.stream_arn, self.shard_id, self.table_id, self.origin)
        )
        run.last_seq = seq
        run.last_event_ms = ms
        if self.first_event_ms is None:
            self.first_event_ms = ms
        self.count += 1

    def extend(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Add records of the shard, in sequence order (a page at a time costs least)."""
        if not records:
            return
        ddbs = [record["dynamodb"] for record in records]
        seqs = [pad_seq(ddb["SequenceNumber"]) for ddb in ddbs]
        times = [event_time_ms(ddb["ApproximateCreationDateTime"]) for ddb in ddbs]
        fields = (self.stream_arn, self.shard_id, self.table_id, self.origin)
        start = 0
        while start < len(records):
            # Consecutive records of one day make one run (event times may go back across
            # midnight: then the day after is a run of its own again).
            day = times[start] // _DAY_MS
            end = start + 1
            while end < len(records) and times[end] // _DAY_MS == day:
                end += 1
            dt = _dt_of_day(day)
            if not self.runs or self.runs[-1].dt != dt:
                self.runs.append(Run(dt, ChangeRows(), seqs[start], seqs[start], times[start]))
            run = self.runs[-1]
            run.rows.append_many(records[start:end], fields)
            run.last_seq = seqs[end - 1]
            run.last_event_ms = times[end - 1]
            start = end
        if self.first_event_ms is None:
            self.first_event_ms = times[0]
        self.count += len(records)


def write_run(
    archive: Archive,
    table: str,
    stream_arn: str,
    shard_id: str | None,
    run: Run,
    prev_last_seq: str | None = None,
    prev_chained: bool = False,
    kinesis_shard: str | None = None,
) -> str:
    """Write one run as one Parquet file (atomically), its chain footer linking to
    ``prev_last_seq`` (the shard's previous file; always ``None`` for Lambda); returns its path.

    ``kinesis_shard``: the Kinesis shard the run came from (the footer records the run's
    Kinesis provenance; its name counts the shard's records).
    """
    name = shard_id or layout.LAMBDA_SHARD
    kinesis = None
    if kinesis_shard is not None and run.first_source is not None:
        kinesis = {
            "stream_arn": stream_arn,
            "shard_id": kinesis_shard,
            "first_sequence_number": run.first_source,
            "last_sequence_number": run.last_source,
        }
    path = layout.change_file(
        table, run.dt, layout.stream_label_of(stream_arn), name, run.first_seq, run.last_seq
    )
    rows = run.rows.to_table()
    footer = footers.make_footer(
        rows,
        table=table,
        dt=run.dt,
        shard_id=name,
        first_seq=run.first_seq,
        last_seq=run.last_seq,
        prev_last_seq=prev_last_seq if shard_id else None,
        prev_chained=prev_chained,
        kinesis=kinesis,
    )
    archive.write_parquet(path, footers.with_footer(rows, footer))
    return path


class WriteFailed(ArchiverError):
    """Writing a batch failed part-way: files before ``first_unwritten_sequence_number`` are
    durable, that record and every later one are not."""

    def __init__(self, message: str, *, written: list[str], first_unwritten_sequence_number: str):
        super().__init__(message)
        self.written = written
        self.first_unwritten_sequence_number = first_unwritten_sequence_number


def write_records(
    archive: Archive,
    table: str,
    records: Iterable[Mapping[str, Any]],
    *,
    stream_arn: str,
    shard_id: str | None,
    table_id: str,
    origin: str,
) -> list[str]:
    """Write one shard's records (either shape: GetRecords or a Lambda event) to the archive.

    One file per contiguous range of records within one ``dt`` — one file per ``dt`` unless
    event times go back across midnight — written in sequence order, so that when a write
    fails every record before the failing file is durable.

    Args:
        archive: the archive.
        table: the table name (``table_name`` partition).
        records: one shard's records; sorted here by sequence number.
        stream_arn: the stream they came from (its label goes into the file names).
        shard_id: the shard, or ``None`` from Lambda (files named with ``lambda``, column null).
        table_id: the table generation (``archiver.format.tables.table_id_of``).
        origin: ``stream`` (poller) or ``lambda``.

    Returns:
        The paths written, in sequence order (empty for no records).

    Raises:
        WriteFailed: a file could not be written; says which records are durable.
    """
    ordered = sorted(records, key=lambda r: pad_seq(r["dynamodb"]["SequenceNumber"]))
    builder = RunBuilder(stream_arn=stream_arn, shard_id=shard_id, table_id=table_id, origin=origin)
    builder.extend(ordered)
    return write_builder(archive, table, builder)


def write_builder(archive: Archive, table: str, builder: RunBuilder) -> list[str]:
    """Write the builder's runs, one file each, in sequence order; returns the paths written.

    Raises:
        WriteFailed: a file could not be written; says which records are durable.
    """
    written: list[str] = []
    stream_arn = builder.stream_arn
    shard_id = builder.shard_id
    prev, chained = builder.prev_last_seq, builder.prev_chained
    for run in builder.runs:
        try:
            written.append(
                write_run(
                    archive, table, stream_arn, shard_id, run, prev, chained, builder.kinesis_shard
                )
            )
            prev, chained = run.last_seq, True
        except PoisonRecord:
            raise  # not a failed write: the record itself is refused
        except Exception as exc:
            first = run.first_seq.lstrip("0") or "0"
            raise WriteFailed(
                f"writing change records of {table} from sequence number {first} failed: {exc}",
                written=written,
                first_unwritten_sequence_number=first,
            ) from exc
    return written


# -- checkpoints and resume points ----------------------------------------------------------


def read_checkpoints(archive: Archive, table: str, label_stamp: str) -> dict[str, dict[str, Any]]:
    """The checkpoints of one stream (by its label stamp), by shard id."""
    folder = layout.checkpoints_stream_dir(table, label_stamp)
    out = {}
    for name in archive.listdir(folder):
        rel = f"{folder}/{name}"
        if layout.parse_checkpoint(rel) is not None:
            doc = statefiles.read_json(archive, rel, statefiles.CHECKPOINT, "checkpoint")
            assert doc is not None
            out[str(doc["shard_id"])] = doc
    return out


def write_checkpoint(archive: Archive, table: str, checkpoint: Mapping[str, Any]) -> None:
    """Write one shard's checkpoint: only ever after the files it covers are durable."""
    path = layout.checkpoint(
        table, layout.stream_label_of(str(checkpoint["stream_arn"])), str(checkpoint["shard_id"])
    )
    archive.write_json(path, dict(checkpoint))


def checkpointed_streams(archive: Archive, table: str) -> list[str]:
    """Label stamps of every stream that has checkpoints in the archive."""
    folder = layout.checkpoints_dir(table)
    found = (layout.parse_checkpoints_stream_dir(f"{folder}/{n}") for n in archive.listdir(folder))
    return [stream.label for stream in found if stream is not None]


def resume_points(
    archive: Archive, table: str, dt_from: str | None = None
) -> dict[tuple[str, str], str]:
    """The highest archived sequence number (zero-padded) per (label stamp, shard id), read
    from change file names — in ``dt`` partitions from ``dt_from`` on when given."""
    base = layout.changes_table_dir(table)
    points: dict[tuple[str, str], str] = {}
    for entry in archive.listdir(base):
        partition = layout.parse_changes_partition(f"{base}/{entry}")
        if partition is None or (dt_from and partition.dt < dt_from):
            continue
        for rel in archive.find(layout.changes_partition(table, partition.dt), ".parquet"):
            path = layout.parse_change_file(rel)
            name = None if path is None else path.name
            if name is None:
                continue
            key = (name.label, name.shard_id)
            if name.last_seq > points.get(key, ""):
                points[key] = name.last_seq
    return points
