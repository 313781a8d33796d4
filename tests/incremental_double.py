"""A test double for DynamoDB's export API: full and incremental exports in AWS's exact layout.

moto accepts ``ExportType`` and ignores it (every export is a full dump of the table as it is
now, without manifests), and ignores ``ExportTime``. This double speaks the same API as a
boto3 DynamoDB client — ``export_table_to_point_in_time``, ``describe_export`` and
``describe_continuous_backups`` — and passes every other call through to the real client it
wraps (moto), so the code under test sends exactly its production requests.

What it models:

* **the table's real write history**: every write as ``(time, keys, new image, old image)``,
  read from moto's own DynamoDB stream of the table (:func:`history_from_stream`: moto's
  stream times are whole milliseconds, so ``WriteTimestampMicros`` ends in ``000``) or given
  by the test (:meth:`ExportDouble.add_writes`);
* **incremental exports** of ``[ExportFromTime, ExportToTime)``: compacted as AWS does — one
  line per key changed in the window, its last change: ``WriteTimestampMicros`` of that last
  write, ``Keys``, ``NewImage`` (absent for a delete) and, with ``NEW_AND_OLD_IMAGES``,
  ``OldImage`` = the item before the window (absent when it did not exist then; AWS does not
  document this precisely, see AWS-FORMATS.md). A key whose writes in the window leave it as
  it was before (inserted then deleted) still gets a line (its last change, a delete);
* **full exports** at ``ExportTime``: the table's state then;
* the layout: ``<prefix>/AWSDynamoDB/<ExportId>/`` with ``_started``,
  ``manifest-summary.json`` (version ``2023-08-01`` with ``exportType``, ``exportFromTime``,
  ``exportToTime``, ``outputView`` for incremental exports; ``2020-06-30`` with
  ``exportTime`` for full ones) and ``manifest-files.json`` with their ``.md5`` files, and
  gzip data files of JSON lines, several per export (some empty), with each object's base64
  MD5 and item count in ``manifest-files.json``; written into moto's S3 when the export
  completes;
* the rules that matter to a caller: PITR must be on (``PointInTimeRecoveryUnavailable
  Exception``); windows of 15 minutes to 24 hours inside PITR's restorable period
  (``ValidationException`` otherwise); an export time inside that period; ``ClientToken``
  idempotency (the same token and request give the same export; the same token with another
  request, ``ExportConflictException``);
* PITR's period over a clock the test controls: turned on at some time, off and on again
  (the earliest restorable time jumps to the re-enable time), at most ``RecoveryPeriodInDays``
  back, with the latest restorable time a few minutes behind "now";
* exports that stay ``IN_PROGRESS`` for some polls, and exports that end ``FAILED``.

What it cannot model: export durations and throughput, billing (``BilledSizeBytes`` is the
data's size), ION output (DYNAMODB_JSON only), more than one table partition's file layout
(data files are split arbitrarily), the exact content of ``OldImage`` for an item changed
several times in a window, sub-millisecond write times from moto, S3 encryption options, and
the minute of fuzziness of a real full export (this one is exact at ``ExportTime``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from archiver.format.codec import canonical_json
from archiver.format.tables import table_id_of
from archiver.format.timefmt import as_utc, iso_ms, utcnow
from tests.helpers import client_error

MIN_WINDOW = timedelta(minutes=15)
MAX_WINDOW = timedelta(hours=24)
LATEST_LAG = timedelta(minutes=5)


@dataclass(frozen=True)
class Write:
    """One write to the table: ``new`` is the item after it (None: a delete)."""

    time: datetime
    keys: Mapping[str, Any]  # DynamoDB JSON (binary as base64 text)
    new: Mapping[str, Any] | None
    old: Mapping[str, Any] | None = None

    @property
    def key_text(self) -> str:
        return canonical_json(dict(self.keys))


def _plain(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """DynamoDB JSON with binary as base64 text, whatever the SDK gave."""
    return None if item is None else orjson.loads(canonical_json(dict(item)))


def history_from_stream(streams: Any, stream_arn: str) -> list[Write]:
    """Every write recorded in moto's stream of a table, in order (moto: one shard)."""
    writes: list[Write] = []
    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    for shard in shards:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                ddb = record["dynamodb"]
                writes.append(
                    Write(
                        as_utc(ddb["ApproximateCreationDateTime"]),
                        _plain(ddb["Keys"]) or {},
                        _plain(ddb.get("NewImage")),
                        _plain(ddb.get("OldImage")),
                    )
                )
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return writes


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = as_utc(now or utcnow())

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class _Pitr:
    periods: list[list[datetime | None]] = field(default_factory=list)  # [on, off|None]
    recovery_days: int = 35

    def enabled(self) -> bool:
        return bool(self.periods) and self.periods[-1][1] is None


@dataclass
class _Export:
    arn: str
    request: dict[str, Any]
    token: str | None
    started: datetime
    polls_left: int
    failure: tuple[str, str] | None
    description: dict[str, Any]
    written: bool = False


def _micros(value: datetime) -> int:
    delta = as_utc(value) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class ExportDouble:
    """The export API over a wrapped boto3 DynamoDB client; see the module doc."""

    def __init__(
        self,
        ddb: Any,
        s3: Any,
        *,
        clock: Callable[[], datetime] | None = None,
        history: Callable[[str], list[Write]] | None = None,
        polls_before_done: int = 1,
        files_per_export: int = 3,
    ) -> None:
        self._ddb = ddb
        self._s3 = s3
        self.clock = clock or utcnow
        self._history_source = history
        self._writes: dict[str, list[Write]] = {}
        self._pitr: dict[str, _Pitr] = {}
        self._exports: dict[str, _Export] = {}
        self._tokens: dict[str, str] = {}
        self._fail: list[tuple[Callable[[dict[str, Any]], bool], str, str]] = []
        self.polls_before_done = polls_before_done
        self.files_per_export = files_per_export
        self.requests: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ddb, name)

    # -- what the test sets up ------------------------------------------------------------

    def add_writes(self, table: str, writes: Iterable[Write]) -> None:
        self._writes.setdefault(table, []).extend(writes)

    def enable_pitr(self, table: str, at: datetime, recovery_days: int = 35) -> None:
        pitr = self._pitr.setdefault(table, _Pitr())
        pitr.recovery_days = recovery_days
        if not pitr.enabled():
            pitr.periods.append([as_utc(at), None])

    def disable_pitr(self, table: str, at: datetime) -> None:
        pitr = self._pitr.setdefault(table, _Pitr())
        if pitr.enabled():
            pitr.periods[-1][1] = as_utc(at)

    def fail_exports(self, when: Callable[[dict[str, Any]], bool], code: str = "UNKNOWN",
                     message: str = "the export failed") -> None:  # fmt: skip
        """Exports whose request matches ``when`` end FAILED."""
        self._fail.append((when, code, message))

    def history(self, table: str) -> list[Write]:
        writes = list(self._writes.get(table, []))
        if self._history_source is not None:
            writes += self._history_source(table)
        return writes

    # -- PITR -----------------------------------------------------------------------------

    def _window(self, table: str) -> tuple[datetime, datetime] | None:
        pitr = self._pitr.get(table)
        if pitr is None or not pitr.enabled():
            return None
        now = self.clock()
        on = pitr.periods[-1][0]
        assert on is not None
        earliest = max(on, now - timedelta(days=pitr.recovery_days))
        return earliest, max(earliest, now - LATEST_LAG)

    def describe_continuous_backups(self, TableName: str) -> dict[str, Any]:
        self._ddb.describe_table(TableName=TableName)  # ResourceNotFoundException as AWS
        pitr = self._pitr.get(TableName)
        window = self._window(TableName)
        description: dict[str, Any] = {"PointInTimeRecoveryStatus": "DISABLED"}
        if window is not None:
            assert pitr is not None
            description = {
                "PointInTimeRecoveryStatus": "ENABLED",
                "EarliestRestorableDateTime": window[0],
                "LatestRestorableDateTime": window[1],
                "RecoveryPeriodInDays": pitr.recovery_days,
            }
        return {
            "ContinuousBackupsDescription": {
                "ContinuousBackupsStatus": "ENABLED",
                "PointInTimeRecoveryDescription": description,
            }
        }

    # -- exports --------------------------------------------------------------------------

    def export_table_to_point_in_time(self, **request: Any) -> dict[str, Any]:
        operation = "ExportTableToPointInTime"
        self.requests.append(dict(request))
        table_arn = str(request["TableArn"])
        table = table_arn.rsplit("/", 1)[-1]
        token = request.get("ClientToken")
        canonical = {k: v for k, v in request.items() if k != "ClientToken"}
        if token and token in self._tokens:
            known = self._exports[self._tokens[token]]
            if json.dumps(known.request, default=str, sort_keys=True) != json.dumps(
                canonical, default=str, sort_keys=True
            ):
                raise client_error("ExportConflictException", "ClientToken reused", operation)
            return {"ExportDescription": self._describe(known)}
        window = self._window(table)
        if window is None:
            raise client_error(
                "PointInTimeRecoveryUnavailableException",
                f"Point in time recovery is not enabled for table '{table}'",
                operation,
            )
        earliest, latest = window
        export_type = request.get("ExportType", "FULL_EXPORT")
        if export_type == "INCREMENTAL_EXPORT":
            spec = request.get("IncrementalExportSpecification") or {}
            start = as_utc(spec["ExportFromTime"])
            end = as_utc(spec.get("ExportToTime") or latest)
            if not MIN_WINDOW <= end - start <= MAX_WINDOW:
                raise client_error(
                    "ValidationException",
                    "Incremental export period must be between 15 minutes and 24 hours",
                    operation,
                )
            if start < earliest or end > latest:
                raise client_error(
                    "ValidationException",
                    "The export period is not within the point in time recovery window",
                    operation,
                )
        else:
            when = as_utc(request.get("ExportTime") or latest)
            if not earliest <= when <= latest:
                raise client_error(
                    "InvalidExportTimeException",
                    "Export time is not within the point in time recovery window",
                    operation,
                )
        now = self.clock()
        export_id = f"{_micros(now) // 1000:014d}-{secrets.token_hex(4)}"
        arn = f"{table_arn}/export/{export_id}"
        failure = next(((c, m) for when_, c, m in self._fail if when_(request)), None)
        export = _Export(
            arn=arn,
            request=canonical,
            token=token,
            started=now,
            polls_left=self.polls_before_done,
            failure=failure,
            description={},
        )
        self._exports[arn] = export
        if token:
            self._tokens[token] = arn
        return {"ExportDescription": self._describe(export)}

    def describe_export(self, ExportArn: str) -> dict[str, Any]:
        export = self._exports.get(ExportArn)
        if export is None:
            raise client_error(
                "ExportNotFoundException", f"{ExportArn} not found", "DescribeExport"
            )
        if export.polls_left > 0:
            description = self._describe(export)  # still IN_PROGRESS
            export.polls_left -= 1
            return {"ExportDescription": description}
        if not export.written and export.failure is None:
            self._write(export)
        return {"ExportDescription": self._describe(export)}

    def _status(self, export: _Export) -> str:
        if export.polls_left > 0:
            return "IN_PROGRESS"
        return "FAILED" if export.failure is not None else "COMPLETED"

    def _describe(self, export: _Export) -> dict[str, Any]:
        request = export.request
        out: dict[str, Any] = {
            "ExportArn": export.arn,
            "ExportStatus": self._status(export),
            "TableArn": request["TableArn"],
            "S3Bucket": request["S3Bucket"],
            "S3Prefix": request.get("S3Prefix", ""),
            "ExportFormat": request.get("ExportFormat", "DYNAMODB_JSON"),
            "ExportType": request.get("ExportType", "FULL_EXPORT"),
            "StartTime": export.started,
        }
        if export.token:
            out["ClientToken"] = export.token
        if out["ExportType"] == "INCREMENTAL_EXPORT":
            out["IncrementalExportSpecification"] = request["IncrementalExportSpecification"]
        else:
            out["ExportTime"] = request.get("ExportTime") or export.started
        if export.failure is not None and out["ExportStatus"] == "FAILED":
            out["FailureCode"], out["FailureMessage"] = export.failure
        out.update(export.description)
        return out

    # -- writing the export into S3 --------------------------------------------------------

    def _lines(self, export: _Export) -> tuple[list[bytes], dict[str, Any]]:
        request = export.request
        table = str(request["TableArn"]).rsplit("/", 1)[-1]
        history = sorted(enumerate(self.history(table)), key=lambda pair: (pair[1].time, pair[0]))
        if request.get("ExportType") == "INCREMENTAL_EXPORT":
            spec = request["IncrementalExportSpecification"]
            start, end = as_utc(spec["ExportFromTime"]), as_utc(spec["ExportToTime"])
            view = spec.get("ExportViewType", "NEW_AND_OLD_IMAGES")
            before: dict[str, Mapping[str, Any] | None] = {}
            last: dict[str, Write] = {}
            for _, write in history:
                if write.time < start:
                    before[write.key_text] = write.new
                elif write.time < end:
                    last[write.key_text] = write
            lines = []
            for key_text, write in sorted(last.items()):
                doc: dict[str, Any] = {
                    "Metadata": {"WriteTimestampMicros": {"N": str(_micros(write.time))}},
                    "Keys": dict(write.keys),
                }
                if write.new is not None:
                    doc["NewImage"] = dict(write.new)
                old = before.get(key_text)
                if view == "NEW_AND_OLD_IMAGES" and old is not None:
                    doc["OldImage"] = dict(old)
                lines.append(json.dumps(doc, separators=(",", ":")).encode())
            summary = {
                "version": "2023-08-01",
                "exportFromTime": iso_ms(start),
                "exportToTime": iso_ms(end),
                "outputView": view,
                "exportType": "INCREMENTAL_EXPORT",
            }
            return lines, summary
        when = as_utc(request.get("ExportTime") or export.started)
        state: dict[str, Mapping[str, Any] | None] = {}
        for _, write in history:
            if write.time <= when:
                state[write.key_text] = write.new
        lines = [
            json.dumps({"Item": dict(item)}, separators=(",", ":")).encode()
            for _, item in sorted(state.items())
            if item is not None
        ]
        return lines, {"version": "2020-06-30", "exportTime": iso_ms(when),
                       "exportType": "FULL_EXPORT"}  # fmt: skip

    def _write(self, export: _Export) -> None:
        request = export.request
        bucket = request["S3Bucket"]
        prefix = str(request.get("S3Prefix") or "").strip("/")
        export_id = export.arn.rsplit("/", 1)[-1]
        folder = f"{prefix}/AWSDynamoDB/{export_id}" if prefix else f"AWSDynamoDB/{export_id}"
        table = str(request["TableArn"]).rsplit("/", 1)[-1]
        described = self._ddb.describe_table(TableName=table)["Table"]
        lines, summary_extra = self._lines(export)
        self._s3.put_object(Bucket=bucket, Key=f"{folder}/_started", Body=b"")
        entries = []
        total_bytes = 0
        n = max(1, self.files_per_export)
        for index in range(n):
            chunk = lines[index::n]
            body = gzip.compress(b"".join(line + b"\n" for line in chunk), mtime=0)
            key = f"{folder}/data/{secrets.token_hex(8)}.json.gz"
            self._s3.put_object(Bucket=bucket, Key=key, Body=body)
            digest = hashlib.md5(body, usedforsecurity=False)
            entries.append(
                {
                    "itemCount": len(chunk),
                    "md5Checksum": base64.b64encode(digest.digest()).decode(),
                    "etag": digest.hexdigest(),
                    "dataFileS3Key": key,
                }
            )
            total_bytes += sum(len(line) for line in chunk)
        files_body = b"".join(json.dumps(e).encode() + b"\n" for e in entries)
        self._put_with_md5(bucket, f"{folder}/manifest-files.json", files_body)
        end_time = self.clock()
        summary = {
            "exportArn": export.arn,
            "startTime": iso_ms(export.started),
            "endTime": iso_ms(end_time),
            "tableArn": request["TableArn"],
            "tableId": table_id_of(described),
            "s3Bucket": bucket,
            "s3Prefix": prefix or None,
            "s3SseAlgorithm": "AES256",
            "s3SseKmsKeyId": None,
            "manifestFilesS3Key": f"{folder}/manifest-files.json",
            "billedSizeBytes": total_bytes,
            "itemCount": len(lines),
            "outputFormat": "DYNAMODB_JSON",
            **summary_extra,
        }
        self._put_with_md5(bucket, f"{folder}/manifest-summary.json", json.dumps(summary).encode())
        export.written = True
        export.description = {
            "EndTime": end_time,
            "ItemCount": len(lines),
            "BilledSizeBytes": total_bytes,
            "ExportManifest": f"{folder}/manifest-summary.json",
        }

    def _put_with_md5(self, bucket: str, key: str, body: bytes) -> None:
        self._s3.put_object(Bucket=bucket, Key=key, Body=body)
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        self._s3.put_object(Bucket=bucket, Key=key.rsplit(".", 1)[0] + ".md5", Body=md5.encode())
