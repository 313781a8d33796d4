"""The archiver as an AWS Lambda function behind a Kinesis data stream's event source mapping.

Entry point: ``archiver.lambda_mode.kinesis_handler.handler``, for a table that streams its
changes to Kinesis Data Streams (docs/kinesis.md). Configuration (environment):

* ``ARCHIVE_URL`` — the archive root, required;
* ``TABLE_NAMES`` — the tables to archive, comma-separated, required: one data stream may carry
  several tables; records of others are counted and skipped;
* ``MAX_ITERATOR_AGE_SECONDS`` — as for the DynamoDB Streams function
  (``archiver.lambda_handler``): the watermark is *now − this − the reordering margin*;
* ``KINESIS_REORDER_SECONDS`` — the reordering margin (default 60, as ``run``'s
  ``--kinesis-reorder-seconds``);
* ``ACCEPT_MILLISECOND_ORDER`` — ``true`` to archive from a destination with
  ``MILLISECOND`` precision (checked on a cold start with
  ``DescribeKinesisStreamingDestination``; refused otherwise, as ``run`` refuses).

Each event record carries the change document base64 in ``kinesis.data``, the Kinesis
sequence number in ``kinesis.sequenceNumber`` and the stream in ``eventSourceARN``. A batch's
records of each table are decoded and ordered exactly as the poller does
(``archiver.capture.kinesis_records``, ``archiver.capture.kinesis_order``: the order key,
ties decided by images and recorded in ``kinesis-ties.jsonl``, duplicates seen by this
container dropped), then written with the shared writer as files of shard ``lambda`` (not
chained: a batch's predecessor is unknown here), named by the batch's lowest and highest order
keys per ``dt``. Rows have ``origin`` ``kinesis``, the Kinesis stream ARN as ``stream_arn``
and no ``shard_id``.

Partial batch responses (``FunctionResponseTypes: [ReportBatchItemFailures]``): the answer
names the Kinesis ``sequenceNumber`` of the first record in the batch's own order that is not
durable — a record that cannot be archived (a poison record: the records before it are
archived) or one whose file failed to write — and the event source mapping retries from it.
Rewriting records already durable is harmless: rows are deduplicated by ``event_id``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from archiver.aws import metrics
from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import ArchiverError, PoisonRecord
from archiver.capture import kinesis_records
from archiver.capture.kinesis_order import Orderer, remember_archived
from archiver.capture.kinesis_run import (
    DEFAULT_REORDER_SECONDS,
    Destination,
    check_precision,
)
from archiver.capture.sources import refuse_other_source
from archiver.format import coverage, tables, ties
from archiver.format.changefiles import RunBuilder, WriteFailed, write_builder
from archiver.format.records import ChangeRows
from archiver.format.storage import Archive
from archiver.format.timefmt import from_epoch, parse_iso, utcnow
from archiver.lambda_mode import handler as lambda_handler

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

ConfigurationError = lambda_handler.ConfigurationError
ORIGIN = "kinesis"


@dataclass
class TableContext:
    """What the container learned about one table on its first batch."""

    table_id: str
    created_at: datetime
    orderer: Orderer


@dataclass
class Container:
    """State that lives as long as the Lambda container (reset per test)."""

    archive: Archive | None = None
    tables: dict[str, TableContext] = field(default_factory=dict)
    # What answers DescribeKinesisStreamingDestination (a sync DynamoDB client by default;
    # tests set a double: moto does not implement the call).
    destinations: Any = None
    other_tables: Counter[str] = field(default_factory=Counter)


_container = Container()


def reset(*, destinations: Any = None) -> None:
    """Forget everything cached, as a new container would (for tests)."""
    global _container
    _container = Container(destinations=destinations)


def _archive() -> Archive:
    if _container.archive is None:
        url = os.environ.get("ARCHIVE_URL", "").strip()
        if not url:
            raise ConfigurationError("ARCHIVE_URL is not set: the function needs the archive root")
        _container.archive = Archive.open(url)
    return _container.archive


def table_names() -> frozenset[str]:
    """``TABLE_NAMES``: the tables this function archives."""
    names = frozenset(n.strip() for n in os.environ.get("TABLE_NAMES", "").split(",") if n.strip())
    if not names:
        raise ConfigurationError(
            "TABLE_NAMES is not set: name the tables to archive from the data stream"
        )
    return names


def reorder_margin() -> timedelta:
    """``KINESIS_REORDER_SECONDS`` as a timedelta."""
    text = os.environ.get("KINESIS_REORDER_SECONDS", "").strip()
    try:
        seconds = float(text) if text else DEFAULT_REORDER_SECONDS
    except ValueError:
        raise ConfigurationError(f"KINESIS_REORDER_SECONDS={text!r} is not a number") from None
    if seconds <= 0:
        raise ConfigurationError(f"KINESIS_REORDER_SECONDS={text!r} must be > 0")
    return timedelta(seconds=seconds)


def _destination(table: str, stream_arn: str) -> Destination:
    source = _container.destinations
    if source is None:
        source = _container.destinations = AwsSettings().client("dynamodb")
    answer = source.describe_kinesis_streaming_destination(TableName=table)
    for entry in answer.get("KinesisDataStreamDestinations") or []:
        if entry.get("StreamArn") == stream_arn:
            return Destination(
                stream_arn,
                entry.get("DestinationStatus"),
                entry.get("ApproximateCreationDateTimePrecision"),
            )
    return Destination(stream_arn, None, None)


def _open_table(archive: Archive, table: str, stream_arn: str, now: datetime) -> TableContext:
    accepted = os.environ.get("ACCEPT_MILLISECOND_ORDER", "").strip().lower() == "true"
    check_precision(_destination(table, stream_arn), table, accepted)
    doc = lambda_handler.describe_table(archive, table)
    table_id = str(doc["table_id"])
    coverage.check_owner(archive, table, str(doc["table_arn"]))
    refuse_other_source(archive, table, table_id, True)
    created = parse_iso(str(doc["Table"]["CreationDateTime"]))
    coverage.open_generation(
        archive,
        table,
        table_arn=str(doc["table_arn"]),
        table_id=table_id,
        table_created_at=created,
        covered_from=now,
        from_table_creation=False,
        mode="kinesis-lambda",
        now=now,
    )
    tables.store_description(archive, doc)
    lambda_handler.record_deployment(
        archive,
        table,
        now,
        kinesis_stream_arn=stream_arn,
        kinesis_reorder_seconds=reorder_margin().total_seconds(),
    )
    known = ties.read_ties(archive, table)
    log.info(
        "%s: archiving from %s (table_id %s) into %s", table, stream_arn, table_id, archive.url
    )
    return TableContext(table_id, created, Orderer(known=known))


def _context(archive: Archive, table: str, stream_arn: str, now: datetime) -> TableContext:
    context = _container.tables.get(table)
    if context is None:
        context = _open_table(archive, table, stream_arn, now)
        _container.tables[table] = context
    return context


@dataclass
class _Pending:
    """The batch's records of one table, in batch order, and where they came in the batch."""

    stream_arn: str
    records: list[tuple[int, kinesis_records.Change]] = field(default_factory=list)


def _kinesis(record: Mapping[str, Any]) -> Mapping[str, Any]:
    part = record.get("kinesis")
    if not isinstance(part, Mapping) or "data" not in part or "sequenceNumber" not in part:
        raise ConfigurationError("a record has no kinesis.data: not a Kinesis event")
    return part


def _write(
    archive: Archive, table: str, pending: _Pending, context: TableContext, now: datetime
) -> int | None:
    """Archive one table's records; the batch index of the first one not durable (None:
    all are)."""
    first_bad = _place_and_write(archive, table, pending, context, now)[1]
    if first_bad is not None:
        return first_bad
    margin = lambda_handler.max_iterator_age() + reorder_margin()
    coverage.advance_watermark(
        archive, table, context.table_id, now - margin, mode="kinesis-lambda", now=now
    )
    # The function's real lag: how old the newest record it just archived was.
    newest = max((item.micros for _, item in pending.records), default=None)
    metrics.current().lag(table, from_epoch(newest / 1e6) if newest else None, now)
    return None


def _place_and_write(
    archive: Archive,
    table: str,
    pending: _Pending,
    context: TableContext,
    now: datetime,
    *,
    dry_run: bool = False,
) -> tuple[list[str], int | None]:
    """Order one table's records (duplicates dropped, ties recorded) and write them: the
    files written, and the batch index of the first record not durable (None: all are)."""
    entries = []
    placed: list[tuple[int, str, dict[str, Any]]] = []
    for index, item in pending.records:
        sequence_number, entry = context.orderer.place(item, context.table_id, now)
        if sequence_number is None:
            continue
        if entry is not None:
            entries.append(entry)
        placed.append(
            (index, sequence_number, kinesis_records.archive_record(item, sequence_number))
        )
    if dry_run:
        return [f"{len(placed)} record(s)"] if placed else [], None
    if entries:
        ties.append_ties(archive, table, entries)
    placed.sort(key=lambda p: p[1])
    builder = RunBuilder(
        stream_arn=pending.stream_arn, shard_id=None, table_id=context.table_id, origin=ORIGIN
    )
    for _, _, record in placed:
        builder.add(record)
    try:
        files = write_builder(archive, table, builder)
    except WriteFailed as exc:
        log.error("%s (%d file(s) written before it)", exc, len(exc.written))
        cut = exc.first_unwritten_sequence_number.zfill(40)
        return list(exc.written), min(index for index, seq, _ in placed if seq >= cut)
    nbytes = sum(int(r["dynamodb"].get("SizeBytes") or 0) for _, _, r in placed)
    metrics.current().file_written(table, len(placed), nbytes, len(files))
    return list(files), None


# -- failed batches, redriven ---------------------------------------------------------------


@dataclass
class Redriven:
    """What archiving one table's records of a failed batch did."""

    files: list[str] = field(default_factory=list)
    malformed: list[dict[str, Any]] = field(default_factory=list)
    # Records of an earlier generation of the table (created before the archived one).
    earlier_generation: int = 0


def _row_problem(record: Mapping[str, Any], stream_arn: str, table_id: str) -> str | None:
    """Why the archive cannot take ``record`` (as ``archive_record`` shapes it), or None."""
    try:
        rows = ChangeRows()
        rows.append(record, stream_arn=stream_arn, shard_id=None, table_id=table_id, origin=ORIGIN)
        rows.to_table()
    except Exception as exc:  # any failure to build the row is the record's fault
        return f"{type(exc).__name__}: {exc}"
    return None


def redrive_records(
    archive: Archive,
    table: str,
    stream_arn: str,
    records: Sequence[Mapping[str, Any]],
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> Redriven:
    """Archive ``table``'s records among a failed batch's Kinesis event records (base64 in
    ``kinesis.data``) exactly as the function would have: the same order keys (ties with the
    archived records around them decided by the images, duplicates of archived records
    dropped), the same rows and file names — so redriving twice writes nothing new. Records
    of other tables are skipped; one the archive cannot take is reported, not written. The
    watermark is not moved: it already passed these records.

    Raises:
        ArchiverError: the archive holds no coverage of ``table``.
    """
    now = now or utcnow()
    current = coverage.current(archive, table)
    if current is None or not current.get("table_id"):
        raise ArchiverError(f"the archive {archive.url} holds no coverage of table {table!r}")
    table_id = str(current["table_id"])
    created = parse_iso(str(current.get("table_created_at") or "1970-01-01T00:00:00Z"))
    out = Redriven()
    pending = _Pending(stream_arn)
    for index, record in enumerate(records):
        part = _kinesis(record)
        doc = kinesis_records.parse(str(part["data"]), base64_text=True)
        if doc is None or doc["tableName"] != table:
            continue
        try:
            item = kinesis_records.change(doc, kinesis_sequence_number=str(part["sequenceNumber"]))
        except PoisonRecord as exc:
            out.malformed.append({"event_id": exc.event_id, "error": str(exc)})
            continue
        if item.micros < (created.timestamp() - 1) * 1_000_000:
            out.earlier_generation += 1
            continue
        problem = _row_problem(kinesis_records.archive_record(item, "0"), stream_arn, table_id)
        if problem is not None:
            out.malformed.append({"event_id": item.event_id, "error": problem})
            continue
        pending.records.append((index, item))
    if not pending.records:
        return out
    first = from_epoch(min(item.micros for _, item in pending.records) / 1e6)
    last = from_epoch(max(item.micros for _, item in pending.records) / 1e6)
    orderer = Orderer(
        horizon=(last - first) + timedelta(days=1), known=ties.read_ties(archive, table)
    )
    remember_archived(orderer, archive, table, first, last + timedelta(milliseconds=1))
    context = TableContext(table_id, created, orderer)
    files, first_bad = _place_and_write(archive, table, pending, context, now, dry_run=dry_run)
    if first_bad is not None:
        raise WriteFailed(
            f"writing the redriven records of {table} failed",
            written=files,
            first_unwritten_sequence_number="0",
        )
    out.files = files
    return out


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Archive one batch of Kinesis records; report the first record not durably written.

    Its metrics (records, bytes, files, lag, poison records, failed batches) are written as
    CloudWatch Embedded Metric Format lines at the end of each invocation, as the DynamoDB
    Streams function's are (``archiver.aws.metrics``).
    """
    with metrics.emf_at_end():
        return _handle(event)


def _handle(event: Mapping[str, Any]) -> dict[str, Any]:
    records: Sequence[Mapping[str, Any]] = list(event.get("Records") or [])
    if not records:
        return {"batchItemFailures": []}
    now = utcnow()
    archive = _archive()
    wanted = table_names()
    by_table: dict[str, _Pending] = {}
    failed_at: int | None = None
    for index, record in enumerate(records):
        part = _kinesis(record)
        doc = kinesis_records.parse(str(part["data"]), base64_text=True)
        if doc is None or doc["tableName"] not in wanted:
            _container.other_tables[str(doc["tableName"]) if doc else "(not DynamoDB)"] += 1
            continue
        try:
            item = kinesis_records.change(
                doc,
                kinesis_sequence_number=str(part["sequenceNumber"]),
                arrival=from_epoch(part["approximateArrivalTimestamp"])
                if part.get("approximateArrivalTimestamp") is not None
                else None,
            )
        except PoisonRecord as exc:
            log.error("POISON RECORD: %s; the records before it are archived", exc)
            metrics.current().poison(str(doc["tableName"]))
            failed_at = index
            break
        table = str(doc["tableName"])
        stream_arn = str(record.get("eventSourceARN") or "")
        by_table.setdefault(table, _Pending(stream_arn)).records.append((index, item))
    for table, pending in by_table.items():
        try:
            ctx = _context(archive, table, pending.stream_arn, now)
            keep = [(i, item) for i, item in pending.records if failed_at is None or i < failed_at]
            pending.records = [
                (i, item)
                for i, item in keep
                if item.micros >= (ctx.created_at.timestamp() - 1) * 1_000_000
            ]
            first_bad = _write(archive, table, pending, ctx, now)
        except (ArchiverError, OSError, ValueError) as exc:
            log.error("%s: batch failed: %s: %s", table, type(exc).__name__, exc)
            first_bad = min((i for i, _ in pending.records), default=0)
        if first_bad is not None:
            metrics.current().failed_batch(table)
            failed_at = first_bad if failed_at is None else min(failed_at, first_bad)
            # What the orderer saw of this batch is not all durable: the retry must not be
            # taken for duplicates of it.
            _container.tables.pop(table, None)
    if _container.other_tables:
        log.info(
            "records of other tables skipped so far: %s",
            ", ".join(f"{name} {count}" for name, count in sorted(_container.other_tables.items())),
        )
    if failed_at is None:
        return {"batchItemFailures": []}
    sequence_number = str(_kinesis(records[failed_at])["sequenceNumber"])
    return {"batchItemFailures": [{"itemIdentifier": sequence_number}]}
