"""The archiver as an AWS Lambda function behind a DynamoDB Streams event source mapping.

Entry point: ``archiver.lambda_handler.handler``. Configuration (environment):

* ``ARCHIVE_URL`` — the archive root (``s3://bucket/prefix``), required;
* ``MAX_ITERATOR_AGE_SECONDS`` — the deployment's maximum allowed iterator age, the same
  number its IteratorAge alarm fires at (default 600). In Lambda mode per-shard progress is
  not visible, so ``coverage.json``'s watermark is *now − this margin* (DESIGN.md).

Each record names its stream in ``eventSourceARN``
(``arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>``), which names the table.
A batch is written with the poller's own code (``records.ChangeRows`` via
``changefiles.write_records``): the same records give the same rows, one file per batch and
``dt``, named by ``layout.change_file`` with shard id ``lambda`` and the first and last
sequence numbers of the batch's records in that ``dt`` — so a retried batch rewrites the same
objects. When a write fails the function answers with a partial batch response naming the
first record that is not durable; the event source mapping retries from there.

A poison record (``records.check_record``: a part missing, an INSERT or MODIFY without its
``NewImage``, an attribute value that is not DynamoDB JSON) is never archived nor skipped: the
records before it are archived, it is reported as the batch item failure (with a log line
naming its event id and what is wrong), so it and every later record are retried and finally
kept by the stack's on-failure destination.

On a cold start the table's description (with tags, TTL, PITR and other settings) is captured
once per table and stream, coverage is opened in mode ``lambda``, and
``_state/<table>/lambda.json`` names the function (``AWS_LAMBDA_FUNCTION_NAME``) and its
iterator-age threshold, for planning to read the function's IteratorAge in CloudWatch. This
module imports neither DuckDB nor the replayer: the function's image does not ship them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from archiver.aws import describe, metrics
from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import ArchiverError, PoisonRecord, UnsupportedStreamView, UsageError
from archiver.format import coverage, gap_log, layout, statefiles, tables
from archiver.format.changefiles import WriteFailed, write_records
from archiver.format.records import event_time_ms, first_problem, poison, record_problem
from archiver.format.storage import Archive
from archiver.format.timefmt import from_epoch, iso_ms, parse_iso, utcnow

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

DEFAULT_MAX_ITERATOR_AGE_SECONDS = 600.0
REPLAYABLE_VIEWS = frozenset({"NEW_IMAGE", "NEW_AND_OLD_IMAGES"})


class ConfigurationError(UsageError):
    """The function's environment is incomplete or wrong (fails every batch until fixed)."""


@dataclass(frozen=True)
class StreamContext:
    """What the container learned about one stream on its first batch."""

    table: str
    table_id: str
    table_arn: str


@dataclass
class Container:
    """State that lives as long as the Lambda container (reset per test)."""

    archive: Archive | None = None
    streams: dict[str, StreamContext] = field(default_factory=dict)


_container = Container()


def reset() -> None:
    """Forget everything cached, as a new container would (for tests)."""
    global _container
    _container = Container()


# -- configuration --------------------------------------------------------------------------


def _archive() -> Archive:
    if _container.archive is None:
        url = os.environ.get("ARCHIVE_URL", "").strip()
        if not url:
            raise ConfigurationError("ARCHIVE_URL is not set: the function needs the archive root")
        _container.archive = Archive.open(url)
    return _container.archive


def max_iterator_age() -> timedelta:
    """``MAX_ITERATOR_AGE_SECONDS`` as a timedelta (the watermark margin)."""
    text = os.environ.get("MAX_ITERATOR_AGE_SECONDS", "").strip()
    if not text:
        return timedelta(seconds=DEFAULT_MAX_ITERATOR_AGE_SECONDS)
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigurationError(f"MAX_ITERATOR_AGE_SECONDS={text!r} is not a number") from None
    if seconds <= 0:
        raise ConfigurationError(f"MAX_ITERATOR_AGE_SECONDS={text!r} must be > 0")
    return timedelta(seconds=seconds)


def table_of(stream_arn: str) -> str:
    """The table name in ``arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>``."""
    parsed = layout.parse_stream_arn(stream_arn)
    if parsed is None:
        raise ConfigurationError(f"eventSourceARN {stream_arn!r} is not a DynamoDB stream ARN")
    return parsed.table


def stream_created_at(stream_arn: str) -> datetime:
    """A stream's creation time: its label (UTC, without a zone in the ARN)."""
    return layout.stream_label_time(layout.stream_label_of(stream_arn))


# -- cold start -----------------------------------------------------------------------------


def describe_table(archive: Archive, table: str) -> dict[str, Any]:
    """Capture the table's description (written when it changed); fall back to the newest
    archived one when DynamoDB cannot be asked (the records still need their table_id)."""
    try:
        return asyncio.run(describe.capture_description(AwsSettings(), archive, table))
    except Exception as exc:
        archived = tables.latest_description(archive, table)
        if archived is None:
            raise
        log.warning(
            "%s: describing the table failed (%s); using the archived description", table, exc
        )
        return archived


def _record_stream_change(
    archive: Archive, table: str, table_id: str, stream_arn: str, now: datetime
) -> None:
    """Record the hole left when the table's stream was disabled and re-enabled.

    Writes made while no stream was enabled have no stream record. When earlier descriptions
    of this table generation name another, older stream, everything between the archive's
    last claim (its watermark) and this stream's creation may be missing.
    """
    created = stream_created_at(stream_arn)
    gaps = gap_log.read_gaps(archive, table)
    if any(
        g.get("stream_arn") == stream_arn and g.get("reason") == gap_log.GAP_STREAM_REENABLED
        for g in gaps
    ):
        return
    older = {
        str(doc["Table"].get("LatestStreamArn"))
        for doc in tables.list_descriptions(archive, table)
        if doc.get("table_id") == table_id and (doc.get("Table") or {}).get("LatestStreamArn")
    }
    older = {arn for arn in older if arn != stream_arn and stream_created_at(arn) < created}
    generation = coverage.generation_of(archive, table, table_id)
    if not older or generation is None:
        return
    claimed = generation.get("watermark") or generation.get("covered_from")
    start = parse_iso(str(claimed)) if claimed else created
    if start >= created:
        return
    gap_log.append_gap(
        archive,
        table,
        table_id=table_id,
        stream_arn=stream_arn,
        shard_id=None,
        start=start,
        end=created,
        reason=gap_log.GAP_STREAM_REENABLED,
        detected_at=now,
    )
    log.warning(
        "%s: the stream was re-enabled; recorded a gap from %s to %s", table, start, created
    )


def record_deployment(
    archive: Archive,
    table: str,
    now: datetime,
    *,
    kinesis_stream_arn: str | None = None,
    kinesis_reorder_seconds: float | None = None,
) -> None:
    """Say which function archives the table and at what iterator-age threshold, so that
    planning can read its IteratorAge from CloudWatch (written only when it changed). The
    Kinesis function adds its data stream (to the ones named before: a batch that failed on
    any of them concerns the table) and its reordering margin."""
    doc: dict[str, Any] = {
        "function_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or None,
        "max_iterator_age_seconds": max_iterator_age().total_seconds(),
    }
    path = layout.lambda_deployment(table)
    try:
        known = statefiles.read_lambda_deployment(archive, table)
    except statefiles.StateFileError as exc:  # never overwrite a state file that is broken
        log.error("%s: not updating it", exc)
        return
    if kinesis_stream_arn is not None:
        arns = {str(a) for a in known.get("kinesis_stream_arns") or []} | {kinesis_stream_arn}
        doc["kinesis_stream_arns"] = sorted(arns)
        doc["kinesis_reorder_seconds"] = kinesis_reorder_seconds
    if {k: known.get(k) for k in doc} != doc:
        archive.write_json(path, {**known, **doc, "updated_at": iso_ms(now)})


def _open_stream(archive: Archive, stream_arn: str, now: datetime) -> StreamContext:
    table = table_of(stream_arn)
    doc = describe_table(archive, table)
    table_arn = str(doc["table_arn"])
    table_id = str(doc["table_id"])
    coverage.check_owner(archive, table, table_arn)
    _record_stream_change(archive, table, table_id, stream_arn, now)
    table_created_at = parse_iso(str(doc["Table"]["CreationDateTime"]))
    covered_from, from_creation = coverage.initial_window(
        table_created_at=table_created_at,
        stream_created_at=stream_created_at(stream_arn),
        now=now,
    )
    coverage.open_generation(
        archive,
        table,
        table_arn=table_arn,
        table_id=table_id,
        table_created_at=table_created_at,
        covered_from=covered_from,
        from_table_creation=from_creation,
        mode="lambda",
        now=now,
    )
    record_deployment(archive, table, now)
    log.info("%s: archiving %s (table_id %s) into %s", table, stream_arn, table_id, archive.url)
    return StreamContext(table=table, table_id=table_id, table_arn=table_arn)


def _context(archive: Archive, stream_arn: str, now: datetime) -> StreamContext:
    context = _container.streams.get(stream_arn)
    if context is None:
        context = _open_stream(archive, stream_arn, now)
        _container.streams[stream_arn] = context
    return context


# -- batches --------------------------------------------------------------------------------


def _check_views(records: Sequence[Mapping[str, Any]], table: str) -> None:
    parts = [r.get("dynamodb") for r in records if isinstance(r, Mapping)]
    views = {str(p.get("StreamViewType", "")) for p in parts if isinstance(p, Mapping)} - {""}
    bad = views - REPLAYABLE_VIEWS
    if bad:
        raise UnsupportedStreamView(
            f"table {table!r} has a {'/'.join(sorted(bad))} stream: replay needs new images "
            "(NEW_IMAGE or NEW_AND_OLD_IMAGES); disable the stream and enable one of those"
        )


def _by_stream(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        arn = record.get("eventSourceARN")
        if not arn:
            raise ConfigurationError("a record has no eventSourceARN: not a DynamoDB Streams event")
        groups.setdefault(str(arn), []).append(record)
    return groups


def archive_batch(
    archive: Archive,
    table: str,
    table_id: str,
    stream_arn: str,
    records: Sequence[Mapping[str, Any]],
) -> list[str]:
    """Write one stream's records as the function does: the same rows, one file per ``dt``
    named by the records' first and last sequence numbers (shard id ``lambda``), so writing
    the same records again rewrites the same objects. ``ddb-archiver redrive`` writes failed
    batches through here too.

    Raises:
        UnsupportedStreamView: the records carry no new images.
        WriteFailed: a file could not be written; says which records are durable.
    """
    _check_views(records, table)
    paths = write_records(
        archive,
        table,
        records,
        stream_arn=stream_arn,
        shard_id=None,
        table_id=table_id,
        origin="lambda",
    )
    nbytes = sum(int((r.get("dynamodb") or {}).get("SizeBytes") or 0) for r in records)
    metrics.current().file_written(table, len(records), nbytes, len(paths))
    return paths


def _archive_stream(
    archive: Archive, stream_arn: str, records: list[Mapping[str, Any]], now: datetime
) -> list[str]:
    # Refuse before anything is written, coverage included.
    _check_views(records, table_of(stream_arn))
    context = _context(archive, stream_arn, now)
    paths = archive_batch(archive, context.table, context.table_id, stream_arn, records)
    # Every record of this batch is durable; the event source mapping hands batches of one
    # shard over in order, and the IteratorAge alarm guards the margin.
    coverage.advance_watermark(
        archive, context.table, context.table_id, now - max_iterator_age(), mode="lambda", now=now
    )
    # The function's real lag: how old the newest record it just archived was.
    metrics.current().lag(context.table, _newest_event_time(records), now)
    return paths


def _newest_event_time(records: Sequence[Mapping[str, Any]]) -> datetime | None:
    times = [(r.get("dynamodb") or {}).get("ApproximateCreationDateTime") for r in records]
    found = [event_time_ms(t) for t in times if t is not None]
    return from_epoch(max(found) / 1000) if found else None


def _archive_until_poison(
    archive: Archive, stream_arn: str, records: list[Mapping[str, Any]], now: datetime
) -> tuple[list[str], PoisonRecord | None]:
    """Archive the records before the first poison record (all of them when there is none);
    returns the paths written and the poison record's error."""
    _check_views(records, table_of(stream_arn))
    found: PoisonRecord | None = None
    index = first_problem(records)
    if index is not None:
        found = poison(records[index], str(record_problem(records[index])))
        records = records[:index]
    while records:
        try:
            return _archive_stream(archive, stream_arn, records, now), found
        except PoisonRecord as exc:  # an attribute value: only the rows tell
            found = exc
            cut = layout.pad_seq(exc.sequence_number or "0")
            records = [r for r in records if layout.pad_seq(r["dynamodb"]["SequenceNumber"]) < cut]
    return [], found


def _original_sequence_number(records: Sequence[Mapping[str, Any]], digits: str) -> str:
    """The record's own SequenceNumber text for a (possibly re-padded) number."""
    wanted = layout.pad_seq(digits)
    for sequence_number in _sequence_numbers(records):
        if layout.pad_seq(sequence_number) == wanted:
            return sequence_number
    return digits


def _sequence_numbers(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The SequenceNumber of every record that has one."""
    numbers = []
    for record in records:
        ddb = record.get("dynamodb") if isinstance(record, Mapping) else None
        number = ddb.get("SequenceNumber") if isinstance(ddb, Mapping) else None
        if number is not None and str(number).isdigit():
            numbers.append(str(number))
    return numbers


def _first_sequence_number(records: Sequence[Mapping[str, Any]]) -> str:
    """The lowest SequenceNumber among ``records``; empty (the whole batch) when none has one."""
    return min(_sequence_numbers(records), key=layout.pad_seq, default="")


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Archive one batch of stream records; report the first record not durably written.

    Returns ``{"batchItemFailures": []}`` when every record is archived, else one entry with
    the ``SequenceNumber`` of the first record that is not: the event source mapping retries
    from it (``FunctionResponseTypes: [ReportBatchItemFailures]``), bisecting and finally
    sending the batch to the on-failure destination if it keeps failing.

    Its metrics (records, bytes, files, lag, poison records, failed batches) are written as
    CloudWatch Embedded Metric Format lines at the end of each invocation
    (``archiver.aws.metrics``).
    """
    with metrics.emf_at_end():
        return _handle(event)


def _handle(event: Mapping[str, Any]) -> dict[str, Any]:
    records: list[Mapping[str, Any]] = list(event.get("Records") or [])
    if not records:
        return {"batchItemFailures": []}
    now = utcnow()
    archive = _archive()
    failed: list[str] = []
    for stream_arn, group in _by_stream(records).items():
        try:
            paths, poisoned = _archive_until_poison(archive, stream_arn, group, now)
        except WriteFailed as exc:
            log.error("%s (%d file(s) written before it)", exc, len(exc.written))
            metrics.current().failed_batch(table_of(stream_arn))
            failed.append(_original_sequence_number(group, exc.first_unwritten_sequence_number))
            continue
        except (ArchiverError, OSError, ValueError) as exc:
            # Nothing of this group is known durable: retry it all (the names make it safe).
            log.error("%s: batch failed: %s: %s", stream_arn, type(exc).__name__, exc)
            metrics.current().failed_batch(table_of(stream_arn))
            failed.append(_first_sequence_number(group))
            continue
        if poisoned is not None:
            log.error(
                "%s: POISON RECORD, event id %s: %s; the records before it are archived, it "
                "and every later record are reported as failed (retried, then kept by the "
                "on-failure destination)",
                stream_arn,
                poisoned.event_id or "?",
                poisoned.reason,
            )
            metrics.current().poison(table_of(stream_arn))
            # Without a sequence number of its own, the whole batch is reported (the records
            # before it rewrite the same files).
            failed.append(poisoned.sequence_number or _first_sequence_number(group))
            continue
        log.info("%s: archived %d records in %d file(s)", stream_arn, len(group), len(paths))
    if not failed:
        return {"batchItemFailures": []}
    # One event source mapping reads one stream, so there is one group; should there be more,
    # the earliest failure is where the retry must start.
    # An empty identifier fails the whole batch (a poison record without a sequence number).
    first = min(failed, key=lambda number: layout.pad_seq(number) if number else "")
    return {"batchItemFailures": [{"itemIdentifier": first}]}
