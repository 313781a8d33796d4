"""Failed Lambda batches: the on-failure destination's objects, read as holes in the log.

In Lambda mode a batch that keeps failing goes, after ``MaximumRetryAttempts``, to the event
source mapping's on-failure destination, and the mapping moves on: those records are in no
change file, although the watermark (*now − MaxIteratorAgeSeconds*) passes them. This module
finds them, so that planning, ``status`` and ``check`` treat each one as a gap until
``ddb-archiver redrive`` has archived it.

**The object.** With an S3 destination Lambda writes one JSON object per failed batch, at
``aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<random UUID>`` in the
destination bucket (AWS Lambda Developer Guide, "Retain discarded records for a DynamoDB event
source in Lambda")::

    {"requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
     "responseContext": {"statusCode", "executedVersion", "functionError"},
     "version": "1.0", "timestamp": "2019-11-14T00:13:49.717Z",
     "DDBStreamBatchInfo": {"shardId", "startSequenceNumber", "endSequenceNumber",
                            "approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord",
                            "batchSize", "streamArn"},
     "payload": "<the invocation's event, {\\"Records\\": [...]}, as a JSON string>"}

SQS and SNS destinations carry the metadata only; for S3 AWS documents that "Lambda also sends
the entire invocation record along with the metadata", in ``payload``. It is read here as a
JSON string (AWS's form) or, as some emulators write it, an object. An object without a
payload is still a gap: ``redrive`` then re-reads its range from the stream by sequence
number while the stream retains it (24 h), else the gap stays.

**Kinesis.** A function behind a Kinesis data stream (``archiver.lambda_mode.kinesis_handler``)
has failed batches too; their objects carry ``KinesisBatchInfo`` (the same fields, the
Kinesis shard and sequence numbers, the data stream's ARN; AWS Lambda Developer Guide,
"Retain discarded batch records for a Kinesis Data Streams event source in Lambda"), and the
payload's records are Kinesis event records, the change document base64 in ``kinesis.data``.
One data stream may carry several tables: a batch with a payload concerns the tables its
records name, with the gap over each table's own records (their ``ApproximateCreationDateTime``);
a batch without one concerns every table archived from that data stream (``lambda.json``'s
``kinesis_stream_arns``; every table in mode ``kinesis-lambda`` when none is recorded), over its
arrival times moved back by the function's reordering margin (``kinesis_reorder_seconds``,
default 60 s): a record arrives after it was made, and within that margin of it — the bound the
function's watermark already rests on (docs/format.md, "Kinesis Data Streams records").

**The gap** of a failed batch is its shard's records from the first to the last event time of
the batch (the payload's ``ApproximateCreationDateTime`` values, else the approximate arrival
times), widened by a second on each side: gaps are open intervals (``from < event_time <
to``), and AWS reports whole seconds.

**Redriven** objects are recorded in ``_state/<table>/lambda-redrives.jsonl`` (one line per
object and attempt, the latest wins) rather than moved: the destination may be a bucket the
operator cannot write to, and the object stays as evidence. A line with ``status: redriven``
closes the gap; ``malformed`` (records the archive cannot take, with their event ids) and
``unavailable`` (no payload, and the stream no longer holds the range) keep it open.

Where the objects are: ``--lambda-failures S3URL`` / ``DDB_ARCHIVE_LAMBDA_FAILURES``, else the
stack's layout, ``s3://<archive bucket>/aws/lambda/``. A local archive has no stack layout: with
neither given, where its failed batches are is **unknown**, which is not "none" — planning
refuses, ``status`` says "unknown" and ``check`` lists it (:func:`location_unknown`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from archiver.capture import kinesis_records
from archiver.format import coverage, gap_log, layout, statefiles
from archiver.format.records import ChangeRows, event_time_ms
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow

log = logging.getLogger(__name__)

ENV_LOCATION = "DDB_ARCHIVE_LAMBDA_FAILURES"
# Where the stack's event source mapping delivers (the archive bucket's root).
STACK_PREFIX = "aws/lambda"
GAP_REASON = gap_log.GAP_LAMBDA_BATCH_FAILED
# The coverage modes whose records come through a Lambda event source mapping.
LAMBDA_MODES = ("lambda", "kinesis-lambda")
SOURCE_DYNAMODB = "dynamodb"
SOURCE_KINESIS = "kinesis"
# The Kinesis function's default reordering margin (KINESIS_REORDER_SECONDS).
DEFAULT_KINESIS_MARGIN = timedelta(seconds=60)
# Gaps are open intervals and AWS stream times are whole seconds.
_WIDEN = timedelta(seconds=1)

STATUS_PENDING = "pending"
STATUS_REDRIVEN = "redriven"
STATUS_MALFORMED = "malformed"
STATUS_UNAVAILABLE = "unavailable"


class MalformedInvocationRecord(ValueError):
    """An on-failure object that is not a DynamoDB Streams or Kinesis invocation record."""


@dataclass(frozen=True)
class FailedBatch:
    """One on-failure object: a batch of one shard that the function never archived."""

    uri: str  # where the object is (the key redrives are recorded under)
    stream_arn: str
    shard_id: str
    start_sequence_number: str
    end_sequence_number: str
    batch_size: int
    first_time: datetime  # earliest event (or arrival) time of the batch
    last_time: datetime
    failed_at: datetime | None  # the record's ``timestamp``
    condition: str
    function_arn: str
    records: tuple[Mapping[str, Any], ...] | None  # the payload's records; None: metadata only
    source: str = SOURCE_DYNAMODB  # or SOURCE_KINESIS
    # Kinesis with a payload: each table's (first, last) creation time among the records.
    table_times: Mapping[str, tuple[datetime, datetime]] | None = None

    @property
    def table(self) -> str:
        """The table of a DynamoDB stream's batch ("" for a Kinesis batch: see
        :meth:`concerns`)."""
        return table_of_stream(self.stream_arn) if self.source == SOURCE_DYNAMODB else ""

    def concerns(self, table: str, kinesis_streams: frozenset[str] | None = None) -> bool:
        """Whether records of ``table`` may be in the batch. ``kinesis_streams``: the data
        streams ``table`` is archived from (``None``: unknown, so any)."""
        if self.source == SOURCE_DYNAMODB:
            return self.table == table
        if self.table_times is not None:
            return table in self.table_times
        return kinesis_streams is None or self.stream_arn in kinesis_streams

    def times(
        self, table: str, margin: timedelta = DEFAULT_KINESIS_MARGIN
    ) -> tuple[datetime, datetime]:
        """The first and last event times the batch may hold for ``table``."""
        if self.source == SOURCE_DYNAMODB:
            return self.first_time, self.last_time
        if self.table_times is not None and table in self.table_times:
            return self.table_times[table]
        return self.first_time - margin, self.last_time

    def gap(
        self,
        table_id: str | None,
        status: str,
        *,
        table: str | None = None,
        margin: timedelta = DEFAULT_KINESIS_MARGIN,
        **extra: Any,
    ) -> dict[str, Any]:
        """The batch as a gap line (the shape of ``gaps.jsonl``, plus what explains it), for
        ``table`` (default: the DynamoDB stream's)."""
        name = table if table is not None else self.table
        first, last = self.times(name, margin)
        return {
            "table": name,
            "table_id": table_id,
            "stream_arn": self.stream_arn,
            "shard_id": self.shard_id,
            "from": iso_ms(first - _WIDEN),
            "to": iso_ms(last + _WIDEN),
            "detected_at": iso_ms(self.failed_at) if self.failed_at else None,
            "reason": GAP_REASON,
            "object": self.uri,
            "status": status,
            "batch_size": self.batch_size,
            "start_sequence_number": self.start_sequence_number,
            "end_sequence_number": self.end_sequence_number,
            **extra,
        }


def table_of_stream(stream_arn: str) -> str:
    """The table in ``arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>``."""
    parsed = layout.parse_stream_arn(stream_arn)
    return "" if parsed is None else parsed.table


def _time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), tz=UTC)
    return parse_iso(str(value))


def _payload_records(doc: Mapping[str, Any], uri: str) -> tuple[Mapping[str, Any], ...] | None:
    payload = doc.get("payload")
    if payload is None:
        return None
    if isinstance(payload, str | bytes):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise MalformedInvocationRecord(f"{uri}: payload is not JSON ({exc})") from exc
    if not isinstance(payload, Mapping) or not isinstance(payload.get("Records"), list):
        raise MalformedInvocationRecord(f"{uri}: payload holds no Records list")
    return tuple(r for r in payload["Records"] if isinstance(r, Mapping))


def _record_time(record: Mapping[str, Any]) -> datetime | None:
    try:
        ms = event_time_ms(record["dynamodb"]["ApproximateCreationDateTime"])
    except (KeyError, TypeError, ValueError):
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _kinesis_table_times(
    records: Sequence[Mapping[str, Any]], arrivals: Sequence[datetime], margin: timedelta
) -> dict[str, tuple[datetime, datetime]]:
    """Each table's first and last creation time among a Kinesis payload's records. A
    table with a record whose time cannot be read also gets the batch's arrival range (moved
    back by ``margin``), so its gap covers that record too."""
    found: dict[str, list[datetime]] = {}
    unreadable: set[str] = set()
    for record in records:
        part = record.get("kinesis")
        data = part.get("data") if isinstance(part, Mapping) else None
        doc = kinesis_records.parse(str(data), base64_text=True) if data is not None else None
        if doc is None:
            continue  # not a DynamoDB change record: no table's hole
        table = str(doc["tableName"])
        try:
            micros = kinesis_records.creation_micros(
                (doc.get("dynamodb") or {}).get("ApproximateCreationDateTime")
            )
        except (ValueError, AttributeError):
            unreadable.add(table)
            found.setdefault(table, [])
            continue
        found.setdefault(table, []).append(datetime.fromtimestamp(micros / 1e6, tz=UTC))
    if unreadable and arrivals:
        for table in unreadable:
            found[table] += [min(arrivals) - margin, max(arrivals)]
    return {table: (min(t), max(t)) for table, t in found.items() if t}


def parse_invocation_record(
    data: bytes, uri: str, *, margin: timedelta = DEFAULT_KINESIS_MARGIN
) -> FailedBatch:
    """Read one on-failure object (see the module docstring for the format). ``margin``: the
    Kinesis function's reordering margin (for a payload record whose time is unreadable).

    Raises:
        MalformedInvocationRecord: not JSON, or no ``DDBStreamBatchInfo`` or
            ``KinesisBatchInfo`` with its stream, shard and sequence numbers.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedInvocationRecord(f"{uri}: not JSON ({exc})") from exc
    if not isinstance(doc, Mapping):
        raise MalformedInvocationRecord(f"{uri}: not a JSON object")
    source, name = SOURCE_DYNAMODB, "DDBStreamBatchInfo"
    if "KinesisBatchInfo" in doc and "DDBStreamBatchInfo" not in doc:
        source, name = SOURCE_KINESIS, "KinesisBatchInfo"
    info = doc.get(name)
    if not isinstance(info, Mapping):
        raise MalformedInvocationRecord(f"{uri}: no DDBStreamBatchInfo or KinesisBatchInfo")
    try:
        stream_arn = str(info["streamArn"])
        shard_id = str(info["shardId"])
        start = str(info["startSequenceNumber"])
        end = str(info["endSequenceNumber"])
    except KeyError as exc:
        raise MalformedInvocationRecord(f"{uri}: {name} has no {exc}") from None
    records = _payload_records(doc, uri)
    arrivals = [_time(info.get("approximateArrivalOfFirstRecord")),
                _time(info.get("approximateArrivalOfLastRecord"))]  # fmt: skip
    times = list(arrivals)
    table_times = None
    if source == SOURCE_DYNAMODB:
        times += [_record_time(r) for r in records or ()]
    else:
        parts = [r.get("kinesis") for r in records or ()]
        times += [
            _time(p.get("approximateArrivalTimestamp")) for p in parts if isinstance(p, Mapping)
        ]
        if records is not None:
            known_arrivals = [t for t in times if t is not None]
            table_times = _kinesis_table_times(records, known_arrivals, margin)
    known = [t for t in times if t is not None]
    if not known:
        raise MalformedInvocationRecord(f"{uri}: no time for the batch's records")
    request = doc.get("requestContext") or {}
    return FailedBatch(
        uri=uri,
        stream_arn=stream_arn,
        shard_id=shard_id,
        start_sequence_number=start,
        end_sequence_number=end,
        batch_size=int(info.get("batchSize") or len(records or ())),
        first_time=min(known),
        last_time=max(known),
        failed_at=_time(doc.get("timestamp")),
        condition=str(request.get("condition") or ""),
        function_arn=str(request.get("functionArn") or ""),
        records=records,
        source=source,
        table_times=table_times,
    )


# -- where the objects are ------------------------------------------------------------------


def default_location(archive: Archive) -> str | None:
    """The stack's on-failure prefix for this archive: ``s3://<bucket>/aws/lambda``."""
    location = archive.s3_location()
    if location is None:
        return None
    return f"s3://{location[0]}/{STACK_PREFIX}"


def location_url(archive: Archive, override: str | None = None) -> str | None:
    """The on-failure location: ``override``, else ``DDB_ARCHIVE_LAMBDA_FAILURES``, else the
    stack's. ``None`` when there is none (a local archive and nothing configured)."""
    configured = (override or os.environ.get(ENV_LOCATION, "")).strip()
    return configured or default_location(archive)


def location_unknown(archive: Archive, flag: str | None = "--lambda-failures") -> str:
    """Why the on-failure location of ``archive`` is unknown, naming how to give it (``flag``:
    the command's option for it, if it has one)."""
    how = f"give {flag} S3URL or set {ENV_LOCATION}" if flag else f"set {ENV_LOCATION}"
    return (
        f"where the Lambda function's failed batches go is unknown for the archive "
        f"{archive.url} (it is not in S3, so not the stack's s3://<archive bucket>/"
        f"{STACK_PREFIX}/): {how} to the on-failure destination"
    )


def open_location(
    archive: Archive, override: str | None = None, *, endpoint_url: str | None = None
) -> Archive | None:
    url = location_url(archive, override)
    return Archive.open(url, endpoint_url=endpoint_url) if url else None


def list_failed_batches(
    location: Archive,
    table: str | None = None,
    *,
    skip: Iterable[str] = (),
    kinesis_streams: frozenset[str] | None = None,
    margin: timedelta = DEFAULT_KINESIS_MARGIN,
) -> list[FailedBatch]:
    """Every on-failure object under ``location`` (that may hold records of ``table``, when
    given: see :meth:`FailedBatch.concerns`), oldest batch first; objects whose URI is in
    ``skip`` are not read. An object that is not an invocation record is logged and skipped:
    it cannot name the records it stands for."""
    out = []
    skipped = set(skip)
    for rel in location.find(""):
        uri = location.uri(rel)
        if uri in skipped:
            continue
        try:
            batch = parse_invocation_record(location.get_bytes(rel), uri, margin=margin)
        except MalformedInvocationRecord as exc:
            log.warning("WARNING: skipping %s", exc)
            continue
        if table is None or batch.concerns(table, kinesis_streams):
            out.append(batch)
    return sorted(out, key=lambda b: (b.first_time, b.uri))


# -- what the Kinesis function recorded -------------------------------------------------------


@dataclass(frozen=True)
class KinesisSide:
    """What ``lambda.json`` says of a table's Kinesis function: the data streams it reads
    (``None``: unknown) and its reordering margin."""

    streams: frozenset[str] | None
    margin: timedelta


def kinesis_side(archive: Archive, table: str) -> KinesisSide:
    """The data streams ``table`` is archived from by a Kinesis function, and its margin.

    No ``kinesis_stream_arns`` in ``lambda.json``: none when no generation of the table was
    archived from Kinesis by a function, else unknown (``None``: every data stream's batches
    concern it)."""
    doc = statefiles.read_lambda_deployment(archive, table)
    seconds = doc.get("kinesis_reorder_seconds")
    margin = timedelta(seconds=float(seconds)) if seconds else DEFAULT_KINESIS_MARGIN
    arns = doc.get("kinesis_stream_arns")
    if arns:
        return KinesisSide(frozenset(str(a) for a in arns), margin)
    modes = {str(g.get("mode")) for g in coverage.generations(archive, table)}
    return KinesisSide(None if "kinesis-lambda" in modes else frozenset(), margin)


# -- what redrive recorded ------------------------------------------------------------------


def read_redrives(archive: Archive, table: str) -> dict[str, dict[str, Any]]:
    """The latest redrive line per object URI."""
    latest: dict[str, dict[str, Any]] = {}
    lines = statefiles.read_jsonl(
        archive, layout.lambda_redrives(table), statefiles.LAMBDA_REDRIVE, "redrive record"
    )
    for line in lines:
        latest[str(line.get("object"))] = line
    return latest


def record_redrive(
    archive: Archive,
    table: str,
    batch: FailedBatch,
    status: str,
    *,
    files: Iterable[str] = (),
    malformed: Iterable[Mapping[str, Any]] = (),
    detail: str = "",
    now: datetime | None = None,
) -> dict[str, Any]:
    line = {
        "object": batch.uri,
        "stream_arn": batch.stream_arn,
        "shard_id": batch.shard_id,
        "start_sequence_number": batch.start_sequence_number,
        "end_sequence_number": batch.end_sequence_number,
        "status": status,
        "files": list(files),
        "malformed": list(malformed),
        "detail": detail,
        "at": iso_ms(now or utcnow()),
    }
    archive.append_jsonl(layout.lambda_redrives(table), line)
    return line


def malformed_records(
    records: Iterable[Mapping[str, Any]], *, stream_arn: str, table_id: str
) -> list[dict[str, Any]]:
    """The records the archive cannot take, each ``{event_id, error}``: exactly the rows the
    handler would build (``records.ChangeRows``), one record at a time."""
    bad = []
    for record in records:
        try:
            if str(record["dynamodb"].get("StreamViewType", "")) in ("KEYS_ONLY", "OLD_IMAGE"):
                raise ValueError("the record has no new image (stream view without new images)")
            rows = ChangeRows()
            rows.append(
                record, stream_arn=stream_arn, shard_id=None, table_id=table_id, origin="lambda"
            )
            rows.to_table()
        except Exception as exc:  # any failure to build the row is the record's fault
            event_id = record.get("eventID") if isinstance(record, Mapping) else None
            bad.append({"event_id": event_id, "error": f"{type(exc).__name__}: {exc}"})
    return bad


def redrive_command(table: str, archive_url: str, location: str | None = None) -> str:
    """The command that closes a failed batch's gap."""
    where = f" --from {location}" if location else ""
    return f"ddb-archiver redrive --table-name {table} --archive {archive_url}{where}"


@dataclass
class FailureReport:
    """A table's failed batches: the open ones as gaps, and what is known of each."""

    location: str | None
    gaps: list[dict[str, Any]] = field(default_factory=list)
    redriven: int = 0


def lambda_failure_gaps(
    archive: Archive,
    table: str,
    *,
    location: str | None = None,
    table_id: str | None = None,
    endpoint_url: str | None = None,
) -> FailureReport:
    """The failed Lambda batches of ``table`` that are not redriven, as gap lines.

    For ``check``, ``status`` and planning: each gap is the shape of a ``gaps.jsonl`` line
    (``reason`` ``lambda-batch-failed``) plus ``object``, ``status`` (``pending``,
    ``malformed`` or ``unavailable``), ``malformed`` (``[{event_id, error}]``), ``redrive``
    (the command that closes it) and the batch's sequence numbers.

    Args:
        location: the on-failure location (default: ``DDB_ARCHIVE_LAMBDA_FAILURES`` or the
            stack's ``s3://<archive bucket>/aws/lambda``).
        table_id: the generation to stamp on the gaps (default: none, so every generation
            of the table meets them).
    """
    url = location_url(archive, location)
    report = FailureReport(location=url)
    if url is None:
        return report
    where = Archive.open(url, endpoint_url=endpoint_url)
    done = read_redrives(archive, table)
    closed = {uri for uri, line in done.items() if line.get("status") == STATUS_REDRIVEN}
    command = redrive_command(table, archive.url, location)
    side = kinesis_side(archive, table)
    # Redriven objects are not read again: planning stays cheap as they accumulate.
    report.redriven = sum(1 for rel in where.find("") if where.uri(rel) in closed)
    batches = list_failed_batches(
        where, table, skip=closed, kinesis_streams=side.streams, margin=side.margin
    )
    for batch in batches:
        line = done.get(batch.uri)
        status = str(line.get("status")) if line else STATUS_PENDING
        report.gaps.append(
            batch.gap(
                table_id,
                status,
                table=table,
                margin=side.margin,
                malformed=list(line.get("malformed") or []) if line else [],
                detail=str(line.get("detail") or "") if line else "",
                redrive=command,
            )
        )
    return report


__all__ = [
    "ENV_LOCATION",
    "GAP_REASON",
    "LAMBDA_MODES",
    "SOURCE_DYNAMODB",
    "SOURCE_KINESIS",
    "STACK_PREFIX",
    "FailedBatch",
    "FailureReport",
    "KinesisSide",
    "MalformedInvocationRecord",
    "kinesis_side",
    "lambda_failure_gaps",
    "list_failed_batches",
    "location_unknown",
    "location_url",
    "open_location",
    "parse_invocation_record",
    "read_redrives",
    "record_redrive",
    "redrive_command",
]
