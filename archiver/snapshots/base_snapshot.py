"""Take a base snapshot of a table: a native export (converted to Parquet) or a parallel scan.

A restore starts from a base snapshot and applies the archived change log over it. Two methods:

  export  ExportTableToPointInTime (needs point-in-time recovery; reads no capacity). Written
          to <archive>/exports/ when the archive is on S3, or to --s3-prefix for a local
          archive; waited for, then converted to a Parquet snapshot right away. Valid from
          ExportTime + 60 s; needs the log from ExportTime − 60 s.
  scan    a parallel, strongly consistent Scan (--segments threads). Valid from its finish
          + 5 s; needs the log from its start − 5 s. Refused (exit 4) when this machine's clock
          differs from DynamoDB's by more than 2 s, as seen in response Date headers.

Default: export when point-in-time recovery is on and the export can land in S3, else scan.
--export-from converts a completed export made by anyone (e.g. a scheduled one), now.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from tqdm import tqdm

from archiver.aws import retry
from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import (
    EXIT_REFUSED,
    ArchiverError,
    PitrUnavailable,
    ResourceNotFound,
    UsageError,
    translate_client_error,
)
from archiver.aws.scan import parallel_scan
from archiver.format import layout, tables
from archiver.format.codec import canonical_json, key_of
from archiver.format.exports.full import Conversion, convert_export, folder_in, read_export
from archiver.format.manifests import DEFAULT_PART_BYTES, SnapshotWriter
from archiver.format.storage import Archive
from archiver.format.tables import table_id_of
from archiver.format.timefmt import utcnow
from archiver.native.pitr import describe_pitr

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

SCAN_MARGIN = timedelta(seconds=5)
MAX_CLOCK_SKEW = 2.0  # seconds; the scan margin (5 s) absorbs up to this much
_SEGMENT_BYTES = 2 * 1024**3  # one scan segment per 2 GiB of table, as AWS suggests

Clock = Callable[[], datetime]


class ClockSkew(ArchiverError):
    """This machine's clock is too far from DynamoDB's for a scan's margins to hold."""

    exit_code = EXIT_REFUSED


class SkewGuard:
    """Bounds the skew between this machine's clock and DynamoDB's from response ``Date``s.

    A response's ``Date`` has whole-second resolution and was stamped somewhere between sending
    the request (``sent_at``) and reading the response (``received_at``), so the server's clock
    minus ours lies in ``[Date − received_at, Date + 1 s − sent_at]``. Only a skew that this
    interval *proves* to exceed the limit is refused: a slow response widens the interval and
    never causes a false refusal.
    """

    def __init__(self, limit: float = MAX_CLOCK_SKEW) -> None:
        self.limit = limit

    def observe(
        self, response: Mapping[str, Any], sent_at: datetime, received_at: datetime
    ) -> None:
        header = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        if not header:
            return
        try:
            server = parsedate_to_datetime(str(header))
        except (TypeError, ValueError):
            return
        at_least = (server - received_at).total_seconds()
        at_most = (server + timedelta(seconds=1) - sent_at).total_seconds()
        if at_least > self.limit:
            self._refuse(f"at least {at_least:.1f} s behind")
        if at_most < -self.limit:
            self._refuse(f"at least {-at_most:.1f} s ahead of")

    def _refuse(self, how: str) -> None:
        raise ClockSkew(
            f"refusing to snapshot: this machine's clock is {how} DynamoDB's (response Date "
            f"headers), more than the {self.limit:g} s a scan's margins allow; sync the clock "
            "(NTP/chrony) and retry"
        )


# -- scan -----------------------------------------------------------------------------------


def auto_segments(description: Mapping[str, Any]) -> int:
    """Segments for a table of this size: one per 2 GiB, at least 4, at most 64."""
    size = int(description.get("TableSizeBytes") or 0)
    return max(4, min(64, math.ceil(size / _SEGMENT_BYTES)))


def _describe(ddb: DynamoDBClient, table: str, guard: SkewGuard, clock: Clock) -> dict[str, Any]:
    sent_at = clock()
    response = retry.call(
        lambda: ddb.describe_table(TableName=table), f"DescribeTable {table}", retry.DATA
    )
    guard.observe(response, sent_at, clock())
    return dict(response["Table"])


async def scan_snapshot(
    settings: AwsSettings,
    archive: Archive,
    table: str,
    *,
    segments: int | None = None,
    part_bytes: int = DEFAULT_PART_BYTES,
    page_size: int | None = None,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Scan ``table`` (parallel, strongly consistent) into a committed Parquet snapshot.

    Pages (``page_size`` items at most, else DynamoDB's 1 MB) come from
    :func:`archiver.aws.scan.parallel_scan` to one writer that flushes a part file every
    ``part_bytes``, so memory stays bounded whatever the table's size. Every response's
    ``Date`` is checked against ``clock`` (default: the system clock), which also times the
    margins. Returns the manifest.
    """
    ddb = settings.client("dynamodb", own_retries=True)
    return await asyncio.to_thread(
        _scan_snapshot,
        ddb,
        archive,
        table,
        segments=segments,
        part_bytes=part_bytes,
        page_size=page_size,
        clock=clock or utcnow,
    )


def _scan_snapshot(
    ddb: DynamoDBClient,
    archive: Archive,
    table: str,
    *,
    segments: int | None,
    part_bytes: int,
    page_size: int | None,
    clock: Clock,
) -> dict[str, Any]:
    guard = SkewGuard()
    description = _describe(ddb, table, guard, clock)
    key_schema = list(description["KeySchema"])
    key_names = tables.key_names(key_schema)
    total_segments = segments or auto_segments(description)
    started_at = clock()
    writer = SnapshotWriter(
        archive, table, layout.new_snapshot_id(started_at), part_bytes=part_bytes
    )
    log.info("scanning %s with %d segments", table, total_segments)
    try:
        scan = parallel_scan(
            ddb,
            table,
            segments=total_segments,
            consistent=True,
            page_size=page_size,
            observe=guard.observe,
            clock=clock,
        )
        # Closing the scan on any failure stops its threads before the writer is aborted.
        with (
            closing(scan),
            tqdm(
                total=int(description.get("ItemCount") or 0) or None,
                unit="item",
                desc=f"scan {table}",
                disable=None,
            ) as bar,
        ):
            for items in scan:
                for item in items:
                    writer.add(canonical_json(key_of(item, key_names)), canonical_json(item))
                    if writer.full:
                        writer.flush()
                bar.update(len(items))
        finished_at = clock()
        return writer.commit(
            table_id=table_id_of(description),
            method="scan",
            valid_from=finished_at + SCAN_MARGIN,
            log_from=started_at - SCAN_MARGIN,
            started_at=started_at,
            finished_at=finished_at,
            key_schema=key_schema,
            source=str(description["TableArn"]),
        )
    except BaseException:
        writer.abort()
        raise


# -- export ---------------------------------------------------------------------------------


def pitr_enabled(ddb: DynamoDBClient, table: str) -> bool | None:
    """Whether point-in-time recovery is on (``None`` when it cannot be read)."""
    try:
        return describe_pitr(ddb, table).enabled
    except ResourceNotFound:
        raise
    except ArchiverError as exc:
        log.warning("cannot read %s's point-in-time recovery status (%s)", table, exc)
        return None


def export_snapshot(
    ddb: DynamoDBClient,
    archive: Archive,
    table: str,
    description: Mapping[str, Any],
    *,
    s3_prefix: str | None,
    export_format: str,
    poll_seconds: float,
    endpoint_url: str | None = None,
    part_bytes: int = DEFAULT_PART_BYTES,
) -> Conversion:
    """Export ``table`` as of now, wait for it, and convert it into a snapshot."""
    bucket, prefix, dest = export_destination(archive, s3_prefix, endpoint_url=endpoint_url)
    before = set(dest.listdir(layout.AWS_EXPORTS))
    export_arn = start_export(ddb, str(description["TableArn"]), bucket, prefix, export_format)
    log.info(
        "export %s started into %s; waiting for it (exports take minutes to hours; an "
        "interrupted wait leaves the export running)",
        export_arn,
        dest.uri(layout.AWS_EXPORTS),
    )
    done = wait_for_export(ddb, export_arn, poll_seconds=poll_seconds)
    folder = read_export(locate_export_folder(dest, export_arn, before))
    return convert_export(
        archive,
        table,
        folder,
        live=description,
        described=done,
        part_bytes=part_bytes,
    )


# -- requesting an export -------------------------------------------------------------------


def export_destination(
    archive: Archive, s3_prefix: str | None, *, endpoint_url: str | None = None
) -> tuple[str, str, Archive]:
    """``(bucket, prefix, store)`` of where an export of this archive's table lands.

    An S3 archive takes exports in its own ``exports/`` folder, where the replayer finds them
    too; a local archive needs ``--s3-prefix`` (ExportTableToPointInTime writes only to S3).
    """
    if s3_prefix:
        if not s3_prefix.startswith("s3://"):
            raise UsageError(f"--s3-prefix {s3_prefix!r} is not an s3://bucket/prefix URL")
        store = Archive.open(s3_prefix.rstrip("/"), endpoint_url=endpoint_url)
    else:
        store = folder_in(archive, layout.EXPORTS)
    location = store.s3_location()
    if location is None:
        raise UsageError(
            "a native export is written to S3 and the archive is a local folder: pass "
            "--s3-prefix s3://bucket/prefix for the export (it is converted into the local "
            "archive), or use --method scan"
        )
    bucket, prefix = location
    return bucket, prefix, store


def start_export(
    ddb: DynamoDBClient, table_arn: str, bucket: str, prefix: str, export_format: str
) -> str:
    """Request a full export of the table as of now; return its ARN."""
    kwargs: dict[str, Any] = {
        "TableArn": table_arn,
        "S3Bucket": bucket,
        "ExportFormat": export_format,
        "ExportType": "FULL_EXPORT",
    }
    if prefix:
        kwargs["S3Prefix"] = prefix
    try:
        response = ddb.export_table_to_point_in_time(**kwargs)
    except ClientError as exc:
        err = translate_client_error(exc, "ExportTableToPointInTime")
        if isinstance(err, PitrUnavailable):
            raise PitrUnavailable(
                f"{table_arn.rsplit('/', 1)[-1]}: point-in-time recovery is not enabled, which "
                "native exports need: `ddb-archiver pitr --enable`, or use --method scan"
            ) from exc
        raise err from exc
    return str(response["ExportDescription"]["ExportArn"])


def wait_for_export(
    ddb: DynamoDBClient,
    export_arn: str,
    *,
    poll_seconds: float,
    timeout_seconds: float = 24 * 3600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll ``DescribeExport`` until COMPLETED (returned), with progress.

    Raises:
        WaitFailed: the export FAILED.
        WaitTimedOut: it was not done after ``timeout_seconds``.
    """
    export_id = export_arn.rsplit("/", 1)[-1]
    with tqdm(
        desc=f"export {export_id}", bar_format="{desc}: {postfix} [{elapsed}]", disable=None
    ) as bar:
        return retry.wait_until(
            lambda: dict(ddb.describe_export(ExportArn=export_arn)["ExportDescription"]),
            what=f"export {export_arn}",
            ready=lambda d: d.get("ExportStatus") == "COMPLETED",
            failed=lambda d: (
                f"FAILED: {d.get('FailureCode')}: {d.get('FailureMessage')}"
                if d.get("ExportStatus") == "FAILED"
                else None
            ),
            poll_seconds=poll_seconds,
            timeout_seconds=timeout_seconds,
            sleep=sleep,
            on_poll=lambda d, _elapsed: bar.set_postfix_str(str(d.get("ExportStatus"))),
        )


def locate_export_folder(dest: Archive, export_arn: str, before: set[str]) -> Archive:
    """The folder a completed export wrote: ``AWSDynamoDB/<export id>`` on AWS.

    Emulators name the folder otherwise (moto: a random UUID); then the one folder that
    appeared since the export was requested is it.
    """
    root = layout.AWS_EXPORTS
    export_id = export_arn.rsplit("/", 1)[-1]
    if dest.listdir(layout.export_folder(export_id, "")):
        return folder_in(dest, layout.export_folder(export_id, ""))
    new = [name for name in dest.listdir(root) if name not in before]
    if len(new) == 1:
        log.warning(
            "export %s wrote folder %s instead of %s (an emulator?)", export_arn, new[0], export_id
        )
        return folder_in(dest, layout.export_folder(new[0], ""))
    raise UsageError(
        f"cannot tell which folder under {dest.uri(root)} export {export_arn} wrote "
        f"({len(new)} new folders)"
    )
