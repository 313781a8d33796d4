"""``check --repair``: re-read a broken range of a shard from its stream, or record it as lost.

A broken range is what :mod:`archiver.format.chain` reports: records after the last intact
file before the hole (``after_seq``, ``None`` when the hole starts the shard) up to the
``last_seq`` the next file links to (``until_seq``). Its shard's resume point goes back to
``after_seq`` and the shard is read the normal way (GetShardIterator AFTER_SEQUENCE_NUMBER,
GetRecords pages) up to ``until_seq``; the records are written the normal way
(``changefiles.write_builder``, chained to ``after_seq``), so the same records give the same
files, rows and names as before the damage. Damaged files the new ones replace are removed.

A Kinesis shard's range is read again from its data stream
(``archiver.capture.kinesis_reread``: the same order keys and counts, so the same names).

When the stream no longer holds the range (trimmed, the shard or stream gone, or the first
record of a shard that may have been trimmed), nothing can bring it back: the range is
recorded in ``gaps.jsonl`` with reason ``archive-file-lost`` (and the shard and sequence
numbers, so ``check`` and ``run`` know it is on record), restores across it refuse like
across any gap, and damaged files are moved to ``_state/<table>/quarantine/``.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import ResourceNotFound, TrimmedData, is_error
from archiver.capture.kinesis_reread import Reread, reread
from archiver.capture.kinesis_run import DEFAULT_REORDER_SECONDS
from archiver.capture.streams_api import Shard, StreamsApi
from archiver.format import chain, coverage, gap_log, layout
from archiver.format.chain import Problem
from archiver.format.changefiles import RunBuilder, write_builder
from archiver.format.footers import FileState
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow

if TYPE_CHECKING:
    from archiver.integrity.check import CheckResult

log = logging.getLogger(__name__)

# An open shard can answer empty pages before records it holds (AWS): only this many empty
# pages in a row mean the range is not there.
_CAUGHT_UP_PAGES = 10
_DAMAGED = (chain.UNREADABLE, chain.FOOTER_MISMATCH, chain.CONTENT_MISMATCH,
            chain.UNCHAINED_AFTER_CHAINED, "bad-rows")  # fmt: skip


@dataclass
class Hole:
    """One shard's broken range and the damaged files inside it."""

    label: str
    shard_id: str
    after_seq: str | None
    until_seq: str
    damaged: set[str] = field(default_factory=set)


@dataclass
class RepairReport:
    recovered: list[tuple[Hole, list[str], int]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for hole, paths, count in self.recovered:
            out.append(
                f"repaired: shard {hole.shard_id}: re-read {count} records after "
                f"{hole.after_seq or 'the trim horizon'} up to {hole.until_seq} from the "
                f"stream into {', '.join(paths)}"
            )
        for gap in self.gaps:
            out.append(
                f"GAP recorded in gaps.jsonl: shard {gap['shard_id']}: {gap['from']} .. "
                f"{gap['to']} (archive-file-lost: the stream no longer holds these records)"
            )
        for problem in self.skipped:
            out.append(f"not repairable here: {problem.line()}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "recovered": [
                {
                    "shard_id": h.shard_id,
                    "after_seq": h.after_seq,
                    "until_seq": h.until_seq,
                    "files": paths,
                    "records": count,
                }
                for h, paths, count in self.recovered
            ],
            "gaps": self.gaps,
            "not_repaired": [p.to_json() for p in self.skipped],
        }


def holes_from(problems: list[Problem]) -> tuple[list[Hole], list[Problem]]:
    """Merge the problems of each shard into broken ranges; the rest cannot be repaired by
    re-reading (state files, snapshots, overlaps, Lambda files)."""
    holes: list[Hole] = []
    rest: list[Problem] = []
    for problem in problems:
        if (
            problem.shard_id is None
            or problem.until_seq is None
            or problem.shard_id == layout.LAMBDA_SHARD
            or problem.kind == chain.OVERLAP
        ):
            rest.append(problem)
            continue
        hole = Hole(problem.label or "", problem.shard_id, problem.after_seq, problem.until_seq)
        if problem.kind in _DAMAGED:
            hole.damaged.add(problem.path)
        holes.append(hole)
    merged: list[Hole] = []
    for hole in sorted(holes, key=lambda h: (h.label, h.shard_id, h.after_seq or "")):
        last = merged[-1] if merged else None
        if (
            last is not None
            and (last.label, last.shard_id) == (hole.label, hole.shard_id)
            and (hole.after_seq or "") <= last.until_seq
        ):
            last.until_seq = max(last.until_seq, hole.until_seq)
            last.damaged |= hole.damaged
            continue
        merged.append(hole)
    return merged, rest


async def repair(
    archive: Archive,
    table: str,
    result: CheckResult,
    settings: AwsSettings,
    *,
    streams_client: Any = None,
    kinesis_client: Any = None,
) -> RepairReport:
    """Repair what ``result`` found: re-read each broken range, or record it as lost. A
    Kinesis shard's range is re-read from its Kinesis data stream
    (``archiver.capture.kinesis_reread``)."""
    report = RepairReport()
    holes, report.skipped = holes_from(result.problems)
    if not holes:
        return report
    ctx = result.context
    async with AsyncExitStack() as stack:
        for hole in holes:
            _resume_before(hole, ctx.states)
            stream_arn = _stream_arn(ctx.states, ctx.checkpoints, hole)
            if stream_arn is None:
                report.skipped.extend(p for p in result.problems if p.shard_id == hole.shard_id)
                continue
            if hole.label == layout.KINESIS_LABEL:
                if kinesis_client is None:
                    kinesis_client = await stack.enter_async_context(settings.aio_client("kinesis"))
                found = await _reread_kinesis(kinesis_client, archive, table, stream_arn, hole, ctx)
                if found is not None:
                    paths = _write_kinesis(archive, table, stream_arn, hole, found, ctx)
                    report.recovered.append((hole, paths, len(found)))
                else:
                    report.gaps.append(_record_lost(archive, table, stream_arn, hole, ctx))
                continue
            if streams_client is None:
                streams_client = await stack.enter_async_context(
                    settings.aio_client("dynamodbstreams")
                )
            records = await _reread(StreamsApi(streams_client), stream_arn, hole)
            if records is not None:
                paths = _write(archive, table, stream_arn, hole, records, ctx.states)
                report.recovered.append((hole, paths, len(records)))
            else:
                report.gaps.append(_record_lost(archive, table, stream_arn, hole, ctx))
    return report


def _kinesis_shard(hole: Hole, ctx: Any) -> str | None:
    """The Kinesis shard id of a chain (its checkpoint's, or a footer's)."""
    doc = ctx.checkpoints.get((hole.label, hole.shard_id)) or {}
    if doc.get("kinesis_shard_id"):
        return str(doc["kinesis_shard_id"])
    for state in ctx.states:
        if state.group == (hole.label, hole.shard_id) and state.footer and state.footer.kinesis:
            return str(state.footer.kinesis.get("shard_id"))
    return None


async def _reread_kinesis(
    client: Any, archive: Archive, table: str, stream_arn: str, hole: Hole, ctx: Any
) -> Reread | None:
    shard_id = _kinesis_shard(hole, ctx)
    before = [
        s
        for s in ctx.states
        if s.group == (hole.label, hole.shard_id)
        and hole.after_seq is not None
        and s.name.last_seq == hole.after_seq
        and s.footer is not None
        and s.footer.kinesis is not None
    ]
    if shard_id is None or not before:
        return None  # a range that starts the shard cannot be proven whole
    assert before[0].footer is not None and before[0].footer.kinesis is not None
    return await reread(
        client,
        archive,
        table,
        _table_id(ctx.states, hole, archive, table),
        stream_arn=stream_arn,
        shard_id=shard_id,
        after_kseq=str(before[0].footer.kinesis.get("last_sequence_number")),
        after=int(hole.after_seq or 0),
        until=int(hole.until_seq),
    )


def _write_kinesis(
    archive: Archive, table: str, stream_arn: str, hole: Hole, found: Reread, ctx: Any
) -> list[str]:
    builder = RunBuilder(
        stream_arn=stream_arn,
        shard_id=hole.shard_id,
        table_id=_table_id(ctx.states, hole, archive, table),
        origin="kinesis",
        prev_last_seq=hole.after_seq,
        prev_chained=True,
        kinesis_shard=_kinesis_shard(hole, ctx),
    )
    for record, count, kseq in found:
        builder.add(record, count, kseq)
    paths = write_builder(archive, table, builder)
    for rel in hole.damaged - set(paths):
        archive.delete(rel)
    return paths


def _resume_before(hole: Hole, states: list[FileState]) -> None:
    """Start the re-read just after the last intact file before the damaged ones."""
    damaged = [s for s in states if s.rel in hole.damaged]
    if not damaged:
        return
    first = min(s.name.first_seq for s in damaged)
    intact = [
        s.name.last_seq
        for s in states
        if s.group == (hole.label, hole.shard_id)
        and s.rel not in hole.damaged
        and s.name.last_seq < first
    ]
    hole.after_seq = max(intact) if intact else None


def _stream_arn(
    states: list[FileState], checkpoints: dict[tuple[str, str], dict[str, Any]], hole: Hole
) -> str | None:
    doc = checkpoints.get((hole.label, hole.shard_id))
    if doc is not None:
        return str(doc["stream_arn"])
    for state in states:
        if state.group == (hole.label, hole.shard_id) and state.footer is not None:
            return state.footer.stream_arn
    return None


async def _reread(api: StreamsApi, stream_arn: str, hole: Hole) -> list[dict[str, Any]] | None:
    """The records of the broken range, or ``None`` when the stream no longer holds them all."""
    try:
        _, shards = await api.describe_stream(stream_arn)
        shard = next((s for s in shards if s.shard_id == hole.shard_id), None)
        if shard is None:
            return None
        after = (hole.after_seq.lstrip("0") or "0") if hole.after_seq else None
        iterator: str | None = await api.shard_iterator(shard, after)
        records: list[dict[str, Any]] = []
        empty = 0
        while iterator is not None and empty < _CAUGHT_UP_PAGES:
            page = await api.get_records(iterator, 1000)
            batch = page.get("Records") or []
            empty = 0 if batch else empty + 1
            for record in batch:
                if layout.pad_seq(record["dynamodb"]["SequenceNumber"]) > hole.until_seq:
                    iterator = None
                    break
                records.append(record)
            else:
                iterator = page.get("NextShardIterator")
    except Exception as exc:
        if is_error(exc, TrimmedData) or is_error(exc, ResourceNotFound):
            return None
        raise
    if not records or layout.pad_seq(records[-1]["dynamodb"]["SequenceNumber"]) != hole.until_seq:
        return None
    if hole.after_seq is None and not _starts_shard(shard, records[0]):
        return None  # the shard's first records may have been trimmed: unprovable
    return records


def _starts_shard(shard: Shard, record: dict[str, Any]) -> bool:
    start = shard.starting_seq
    return bool(start) and layout.pad_seq(record["dynamodb"]["SequenceNumber"]) == layout.pad_seq(
        str(start)
    )


def _table_id(states: list[FileState], hole: Hole, archive: Archive, table: str) -> str:
    for state in states:
        if state.group == (hole.label, hole.shard_id) and state.footer is not None:
            return state.footer.table_id
    current = coverage.current(archive, table)
    return str(current["table_id"]) if current else ""


def _write(
    archive: Archive,
    table: str,
    stream_arn: str,
    hole: Hole,
    records: list[dict[str, Any]],
    states: list[FileState],
) -> list[str]:
    builder = RunBuilder(
        stream_arn=stream_arn,
        shard_id=hole.shard_id,
        table_id=_table_id(states, hole, archive, table),
        origin="stream",
        prev_last_seq=hole.after_seq,
        prev_chained=any(
            s.footer is not None and s.name.last_seq == hole.after_seq
            for s in states
            if s.group == (hole.label, hole.shard_id)
        ),
    )
    for record in records:
        builder.add(record)
    paths = write_builder(archive, table, builder)
    for rel in hole.damaged - set(paths):
        archive.delete(rel)  # replaced by the files just written
    return paths


def _record_lost(
    archive: Archive, table: str, stream_arn: str, hole: Hole, ctx: Any
) -> dict[str, Any]:
    """The range is gone from the stream: on record in gaps.jsonl, damaged files set aside."""
    group = [s for s in ctx.states if s.group == (hole.label, hole.shard_id)]
    before = [s for s in group if hole.after_seq is not None and s.name.last_seq == hole.after_seq]
    after = [s for s in group if s.name.first_seq > hole.until_seq and s.rel not in hole.damaged]
    # A Kinesis shard holds records in arrival order, not time order: a lost record was created
    # no earlier than the reordering margin before the earliest record of the file before it,
    # and no later than the margin after the latest of the file after it.
    kinesis = hole.label == layout.KINESIS_LABEL
    margin = timedelta(seconds=DEFAULT_REORDER_SECONDS if kinesis else 0)
    start = _event_bound(archive, before[0].rel, last=not kinesis) if before else None
    end = _event_bound(archive, min(after, key=lambda s: s.name.first_seq).rel, last=kinesis) if (
        after
    ) else None  # fmt: skip
    start = start - margin if start is not None else None
    end = end + margin if end is not None else None
    doc = ctx.checkpoints.get((hole.label, hole.shard_id)) or {}
    if start is None:
        current = coverage.current(archive, table) or {}
        start = parse_iso(current["covered_from"]) if current.get("covered_from") else utcnow()
    if end is None:
        end = parse_iso(doc["event_time"]) if doc.get("event_time") else utcnow()
    # Records sharing the boundary seconds may be lost too: the gap includes both ends.
    start, end = start - timedelta(milliseconds=1), end + timedelta(milliseconds=1)
    for rel in sorted(hole.damaged):
        if archive.exists(rel):
            archive.put_bytes(f"{layout.state_dir(table)}/quarantine/{rel}", archive.get_bytes(rel))
            archive.delete(rel)
    return gap_log.append_gap(
        archive,
        table,
        table_id=_table_id(ctx.states, hole, archive, table),
        stream_arn=stream_arn,
        shard_id=hole.shard_id,
        start=start,
        end=max(start, end),
        reason=gap_log.GAP_FILE_LOST,
        extra={"after_seq": hole.after_seq, "until_seq": hole.until_seq},
    )


def _event_bound(archive: Archive, rel: str, *, last: bool) -> datetime | None:
    """The first or last ``event_time`` of a change file, from its statistics."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(archive.path(rel), filesystem=archive.arrow_fs)
        index = metadata.schema.names.index("event_time")
        values = []
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(index).statistics
            if stats is not None and stats.has_min_max:
                values.append(stats.max if last else stats.min)
    except Exception:
        return None
    if not values:
        return None
    value = max(values) if last else min(values)
    return value if isinstance(value, datetime) else parse_iso(iso_ms(value))
