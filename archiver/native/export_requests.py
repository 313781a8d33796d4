"""Requesting a native full export (``ExportTableToPointInTime``), waiting for it, finding it.

Shared by everything that asks AWS for a table's state: base snapshots
(``archiver.snapshots.base_snapshot``), incremental-export chains and backfills, and the replayer's
drills (an export at ``T`` is AWS's own copy to compare the archive with). Only the request side
lives here: reading an export folder is the format's (``archiver.format.exports.full``). Waiting
uses the one wait policy (``archiver.aws.retry.wait_until``), with a deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from tqdm import tqdm

from archiver.aws import retry
from archiver.aws.error_table import PitrUnavailable, UsageError, translate_client_error
from archiver.format import layout
from archiver.format.exports.full import folder_in
from archiver.format.storage import Archive

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)


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
    ddb: DynamoDBClient,
    table_arn: str,
    bucket: str,
    prefix: str,
    export_format: str,
    *,
    export_time: datetime | None = None,
) -> str:
    """Request a full export of the table as of ``export_time`` (default: now); return its ARN."""
    kwargs: dict[str, Any] = {
        "TableArn": table_arn,
        "S3Bucket": bucket,
        "ExportFormat": export_format,
        "ExportType": "FULL_EXPORT",
    }
    if export_time is not None:
        kwargs["ExportTime"] = export_time
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
