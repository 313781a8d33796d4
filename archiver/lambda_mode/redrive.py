"""Archive the Lambda batches that went to the on-failure destination, and close their gaps.

In Lambda mode a batch that keeps failing goes, after ``MaximumRetryAttempts``, to the event
source mapping's S3 on-failure destination (``s3://<archive bucket>/aws/lambda/…``) and the
stream moves on: until it is redriven it is a gap, and restores across it are refused.
``redrive`` reads every such object of the table (``archiver.lambda_mode.failures``) and writes its
records exactly as the function would have (``lambda_handler.archive_batch``: the same rows,
files named by their first and last sequence numbers, so a redrive run twice changes
nothing), then records the object as redriven in ``_state/<table>/lambda-redrives.jsonl``:
the gap closes.

An object whose invocation record carries no payload is redriven by re-reading its sequence
range from the stream (``GetShardIterator AT_SEQUENCE_NUMBER``) while the stream still holds
it (24 h); after that its gap stays, marked ``unavailable``. A record the archive cannot take
(most likely why the batch failed) is reported with its event id; the batch's other records
are archived, and the gap stays, marked ``malformed``, until the record is dealt with.

A table archived from a Kinesis data stream by the Kinesis function has failed batches there
too (``KinesisBatchInfo``): the table's records among them are archived as that function
would have (``kinesis_handler.redrive_records``: the same order keys, duplicates of archived
records dropped); without a payload the range is read again from the data stream
(``GetShardIterator AT_SEQUENCE_NUMBER``), which keeps records up to its retention period
(24 hours to 365 days).

Exit 0 when every failed batch is archived, 5 when a gap remains.

Examples:
  ddb-archiver redrive --table-name orders --archive s3://bucket --dry-run
  ddb-archiver redrive --table-name orders --archive s3://bucket --from s3://other/aws/lambda
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from archiver.aws import metrics
from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import UsageError, client_error_code
from archiver.format import coverage, layout, tables
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from archiver.lambda_mode import failures as failures
from archiver.lambda_mode import kinesis_handler
from archiver.lambda_mode.failures import FailedBatch
from archiver.lambda_mode.handler import archive_batch

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

log = logging.getLogger(__name__)


class KinesisClient(Protocol):
    """The calls of a boto3 ``kinesis`` client that redrive makes."""

    def get_shard_iterator(self, **kwargs: Any) -> Any: ...
    def get_records(self, **kwargs: Any) -> Any: ...


# GetRecords may answer empty pages before it reaches records; give up after this many.
MAX_EMPTY_PAGES = 50


class RangeUnavailable(Exception):
    """The stream no longer holds (all of) a batch's sequence range."""


@dataclass
class Outcome:
    """What redrive did with one on-failure object."""

    batch: FailedBatch
    status: str
    files: list[str] = field(default_factory=list)
    malformed: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""

    def line(self, dry_run: bool) -> str:
        b = self.batch
        what = (
            f"{b.uri}: {b.batch_size} record(s) of shard {b.shard_id}, "
            f"{iso_ms(b.first_time)} .. {iso_ms(b.last_time)}"
        )
        if self.status == failures.STATUS_REDRIVEN:
            verb = "would archive" if dry_run else "archived"
            return f"{what}: {verb} in {len(self.files) or 'its'} file(s)"
        if self.status == failures.STATUS_MALFORMED:
            ids = ", ".join(f"{m['event_id']} ({m['error']})" for m in self.malformed)
            return f"{what}: MALFORMED record(s), the gap stays: {ids}"
        return f"{what}: the gap stays: {self.detail}"


def table_id_for(archive: Archive, table: str, stream_arn: str) -> str:
    """The table generation a stream belongs to: the description naming that stream, else
    the current generation in coverage.json.

    Raises:
        UsageError: the archive knows nothing of the table.
    """
    for doc in reversed(tables.list_descriptions(archive, table)):
        if (doc.get("Table") or {}).get("LatestStreamArn") == stream_arn and doc.get("table_id"):
            return str(doc["table_id"])
    current = coverage.current(archive, table)
    if current is None or not current.get("table_id"):
        raise UsageError(
            f"the archive {archive.url} holds no coverage of table {table!r}: redrive into the "
            "archive the function writes to"
        )
    return str(current["table_id"])


def reread(streams: DynamoDBStreamsClient, batch: FailedBatch) -> list[Mapping[str, Any]]:
    """A batch's records read again from the stream, by its recorded sequence numbers.

    Raises:
        RangeUnavailable: trimmed, the shard gone, or the range not reached.
    """
    end = layout.pad_seq(batch.end_sequence_number)
    try:
        iterator = streams.get_shard_iterator(
            StreamArn=batch.stream_arn,
            ShardId=batch.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=batch.start_sequence_number,
        )["ShardIterator"]
        out: list[Mapping[str, Any]] = []
        empty = 0
        while iterator and empty < MAX_EMPTY_PAGES:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            records = page.get("Records") or []
            empty = 0 if records else empty + 1
            for record in records:
                if layout.pad_seq(record["dynamodb"]["SequenceNumber"]) > end:
                    return out
                out.append(record)
            if out and layout.pad_seq(out[-1]["dynamodb"]["SequenceNumber"]) >= end:
                return out
            iterator = page.get("NextShardIterator")
    except Exception as exc:
        code = client_error_code(exc) or type(exc).__name__
        raise RangeUnavailable(
            f"the invocation record has no payload and the stream no longer holds its range "
            f"({code})"
        ) from exc
    raise RangeUnavailable(
        "the invocation record has no payload and the stream did not return its whole range"
    )


def reread_kinesis(kinesis: KinesisClient, batch: FailedBatch) -> list[Mapping[str, Any]]:
    """A Kinesis batch's records read again from the data stream, by its recorded sequence
    numbers, in the shape of a Lambda event's records (data base64 in ``kinesis.data``).

    Raises:
        RangeUnavailable: past the stream's retention, the stream or shard gone, or the range
            not reached.
    """
    end = int(batch.end_sequence_number)
    try:
        iterator = kinesis.get_shard_iterator(
            StreamARN=batch.stream_arn,
            ShardId=batch.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=batch.start_sequence_number,
        )["ShardIterator"]
        out: list[Mapping[str, Any]] = []
        empty = 0
        while iterator and empty < MAX_EMPTY_PAGES:
            page = kinesis.get_records(
                ShardIterator=iterator, Limit=1000, StreamARN=batch.stream_arn
            )
            records = page.get("Records") or []
            empty = 0 if records else empty + 1
            for record in records:
                if int(record["SequenceNumber"]) > end:
                    return out
                arrival = record.get("ApproximateArrivalTimestamp")
                out.append(
                    {
                        "kinesis": {
                            "data": base64.b64encode(record["Data"]).decode(),
                            "sequenceNumber": record["SequenceNumber"],
                            "approximateArrivalTimestamp": arrival.timestamp() if arrival else None,
                        },
                        "eventSourceARN": batch.stream_arn,
                    }
                )
            if out and int(out[-1]["kinesis"]["sequenceNumber"]) >= end:
                return out
            if not records and page.get("MillisBehindLatest") == 0:
                break  # at the tip, the range not reached
            iterator = page.get("NextShardIterator")
    except Exception as exc:
        code = client_error_code(exc) or type(exc).__name__
        raise RangeUnavailable(
            f"the invocation record has no payload and the data stream no longer holds its "
            f"range ({code})"
        ) from exc
    raise RangeUnavailable(
        "the invocation record has no payload and the data stream did not return its whole range"
    )


def _records_of(
    batch: FailedBatch, reread_from: Callable[[], list[Mapping[str, Any]]] | None, what: str
) -> Sequence[Mapping[str, Any]] | Outcome:
    """The batch's records: its payload's, else read again from its stream (``reread_from``);
    an :class:`Outcome` saying why neither is possible."""
    if batch.records is not None:
        return batch.records
    if reread_from is None:
        detail = f"the invocation record has no payload and no {what} client was given"
        return Outcome(batch, failures.STATUS_UNAVAILABLE, detail=detail)
    try:
        return reread_from()
    except RangeUnavailable as exc:
        return Outcome(batch, failures.STATUS_UNAVAILABLE, detail=str(exc))


def _redrive_kinesis(
    archive: Archive,
    table: str,
    batch: FailedBatch,
    *,
    kinesis: KinesisClient | None,
    dry_run: bool,
) -> Outcome:
    client = kinesis
    records = _records_of(
        batch, (lambda: reread_kinesis(client, batch)) if client is not None else None, "Kinesis"
    )
    if isinstance(records, Outcome):
        return records
    done = kinesis_handler.redrive_records(
        archive, table, batch.stream_arn, records, dry_run=dry_run
    )
    if done.earlier_generation:
        log.warning(
            "%s: %d record(s) of an earlier generation of %s not archived",
            batch.uri,
            done.earlier_generation,
            table,
        )
    status = failures.STATUS_MALFORMED if done.malformed else failures.STATUS_REDRIVEN
    return Outcome(batch, status, files=done.files, malformed=done.malformed)


def redrive_batch(
    archive: Archive,
    table: str,
    batch: FailedBatch,
    *,
    streams: DynamoDBStreamsClient | None = None,
    kinesis: KinesisClient | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Archive one failed batch as the function would have; returns what happened (nothing
    is recorded here)."""
    if batch.source == failures.SOURCE_KINESIS:
        return _redrive_kinesis(archive, table, batch, kinesis=kinesis, dry_run=dry_run)
    client = streams
    records = _records_of(
        batch, (lambda: reread(client, batch)) if client is not None else None, "Streams"
    )
    if isinstance(records, Outcome):
        return records
    table_id = table_id_for(archive, table, batch.stream_arn)
    bad = failures.malformed_records(records, stream_arn=batch.stream_arn, table_id=table_id)
    bad_ids = {m["event_id"] for m in bad}
    good = [r for r in records if r.get("eventID") not in bad_ids]
    status = failures.STATUS_MALFORMED if bad else failures.STATUS_REDRIVEN
    files: list[str] = []
    if good and not dry_run:
        files = archive_batch(archive, table, table_id, batch.stream_arn, good)
    return Outcome(batch, status, files=files, malformed=bad)


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    already: int = 0  # redriven before

    @property
    def open(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != failures.STATUS_REDRIVEN]


def redrive(
    archive: Archive,
    table: str,
    location: Archive,
    *,
    streams: DynamoDBStreamsClient | None = None,
    kinesis: KinesisClient | None = None,
    dry_run: bool = False,
) -> Report:
    """Redrive every on-failure object of ``table`` under ``location`` not redriven yet."""
    done = failures.read_redrives(archive, table)
    closed = {uri for uri, line in done.items() if line.get("status") == failures.STATUS_REDRIVEN}
    report = Report()
    report.already = sum(1 for rel in location.find("") if location.uri(rel) in closed)
    side = failures.kinesis_side(archive, table)
    batches = failures.list_failed_batches(
        location, table, skip=closed, kinesis_streams=side.streams, margin=side.margin
    )
    for batch in batches:
        previous = done.get(batch.uri)
        outcome = redrive_batch(
            archive, table, batch, streams=streams, kinesis=kinesis, dry_run=dry_run
        )
        report.outcomes.append(outcome)
        if dry_run:
            continue
        unchanged = (
            previous is not None
            and previous.get("status") == outcome.status
            and list(previous.get("malformed") or []) == outcome.malformed
            and str(previous.get("detail") or "") == outcome.detail
        )
        if not unchanged:
            failures.record_redrive(
                archive,
                table,
                batch,
                outcome.status,
                files=outcome.files,
                malformed=outcome.malformed,
                detail=outcome.detail,
            )
    return report


# -- scheduled, as a Lambda function --------------------------------------------------------


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The stack's optional daily redrive (``ScheduleRedrive``): ``ARCHIVE_URL`` and
    ``TABLE_NAME`` from the environment, the on-failure location as for the command.

    Returns what it did; batches that stay gaps are logged as errors (and are in ``status``).
    """
    archive = Archive.open(os.environ["ARCHIVE_URL"])
    table = os.environ["TABLE_NAME"]
    location = failures.open_location(archive)
    if location is None:
        raise UsageError(f"no on-failure location for the archive {archive.url}")
    # What it archives is reported as the archiver function's is: EMF lines in its log.
    with metrics.emf_at_end():
        settings = AwsSettings()
        report = redrive(
            archive,
            table,
            location,
            streams=settings.client("dynamodbstreams"),
            kinesis=settings.client("kinesis"),
        )
    for outcome in report.outcomes:
        (log.info if outcome.status == failures.STATUS_REDRIVEN else log.error)(
            "%s", outcome.line(False)
        )
    return {
        "table": table,
        "redriven": [o.batch.uri for o in report.outcomes if o not in report.open],
        "still_gaps": [o.batch.uri for o in report.open],
        "redriven_before": report.already,
    }


__all__ = [
    "Outcome",
    "Report",
    "handler",
    "redrive",
    "redrive_batch",
    "reread",
    "reread_kinesis",
    "table_id_for",
]
