"""AWS's own copy of a table at ``T``: a native full export, or a PITR restore into a scratch table.

Both are driven with the archiver's own mechanisms — an export is requested with
``ExportTime = T`` (:func:`archiver.native.export_requests.start_export`), waited for and
located as a snapshot's is, and read through :func:`archiver.format.exports.full.export_rows`,
which checks every data file against the export's manifests; a PITR restore goes through
:func:`replayer.strategies.native_restore.start_pitr_restore` into a scratch table, which is scanned
(strongly consistent) and deleted afterwards unless it is to be kept.

Either copy comes back as ``(keys, item)`` record batches of canonical JSON, the form the
archive's fold produces, so the comparison is a join on ``keys``. Nothing here writes to the
archive: an export lands under a staging prefix (by default the archive's own
``_staging/<table>/drill-<id>/``), removed afterwards unless kept.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from botocore.exceptions import ClientError

from archiver.aws.error_table import ResourceNotFound, is_error
from archiver.format import layout
from archiver.format.errors import UsageError
from archiver.format.exports.full import ExportFolder, export_rows, read_export
from archiver.format.storage import Archive
from archiver.native.export_requests import locate_export_folder, start_export, wait_for_export
from replayer.exceptions import replay_error
from replayer.read.verify import key_names, scan_rows
from replayer.strategies.native_restore import start_pitr_restore
from replayer.write.target_table import wait_until_active

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

_ROWS = pa.schema([pa.field("keys", pa.string()), pa.field("item", pa.string())])
_BATCH = 5_000


@dataclass
class NativeCopy:
    """AWS's state at ``T``: rows to compare, where they came from, and how to clean up."""

    rows: Iterator[pa.RecordBatch]
    source: str  # the export folder's URL, or the scratch table's name
    cleanup: Callable[[], None]
    table_id: str | None = None  # the exported table's TableId, when the export says it


def staging_store(
    archive: Archive,
    table: str,
    staging: str | None,
    drill_id: str,
    *,
    endpoint_url: str | None = None,
) -> Archive:
    """Where a drill's export lands: ``--staging`` or the S3 archive's own staging area.

    Raises:
        UsageError: the archive is local and no ``--staging`` was given (exports write to S3).
    """
    rel = f"drill-{drill_id}"
    if staging:
        if not staging.startswith("s3://"):
            raise UsageError(f"--staging {staging!r} is not an s3://bucket/prefix URL")
        return Archive.open(f"{staging.rstrip('/')}/{rel}", endpoint_url=endpoint_url)
    if archive.s3_location() is None:
        raise UsageError(
            "a native export is written to S3 and the archive is a local folder: pass "
            "--staging s3://bucket/prefix for the drill's export, or use --method pitr"
        )
    folder = f"{layout.table_staging_dir(table)}/{rel}"
    return Archive(archive.fs, archive.path(folder), archive.uri(folder))


def _batches(rows: Iterator[tuple[str, str]]) -> Iterator[pa.RecordBatch]:
    keys: list[str] = []
    items: list[str] = []
    for key, item in rows:
        keys.append(key)
        items.append(item)
        if len(keys) >= _BATCH:
            yield pa.record_batch([keys, items], schema=_ROWS)
            keys, items = [], []
    if keys:
        yield pa.record_batch([keys, items], schema=_ROWS)


def export_copy(
    ddb: DynamoDBClient,
    table_arn: str,
    table: str,
    at: datetime,
    store: Archive,
    *,
    keep: bool = False,
    poll_seconds: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> NativeCopy:
    """Export ``table`` as of ``at`` into ``store`` and read it back (checked against its
    manifests). The export is removed by ``cleanup`` unless ``keep``."""
    location = store.s3_location()
    if location is None:
        raise UsageError(f"{store.url}: a native export needs an S3 destination")
    bucket, prefix = location
    before = set(store.listdir(layout.AWS_EXPORTS))
    export_arn = start_export(ddb, table_arn, bucket, prefix, "DYNAMODB_JSON", export_time=at)
    log.info("export %s of %s at %s started", export_arn, table, at)
    wait_for_export(ddb, export_arn, poll_seconds=poll_seconds, sleep=sleep)
    folder = read_export(locate_export_folder(store, export_arn, before))

    def cleanup() -> None:
        if keep:
            log.info("export kept at %s", folder.url)
            return
        with contextlib.suppress(FileNotFoundError):
            store.fs.rm(store.path(""), recursive=True)

    return folder_copy(folder, key_names(ddb, table), cleanup)


def folder_copy(
    folder: ExportFolder, names: list[str], cleanup: Callable[[], None] = lambda: None
) -> NativeCopy:
    """A completed full export's folder as AWS's copy: its items read lazily as ``(keys,
    item)`` batches, each data file checked against its manifest entry as it is read
    (:func:`export_rows`), and the exported table's id from its summary.

    What :func:`export_copy` returns once the export is written; also how a benchmark reads
    an export folder on local disk through the same path.
    """
    table_id = folder.summary.get("tableId") if folder.summary else None
    return NativeCopy(
        _batches(export_rows(folder, names)),
        folder.url,
        cleanup,
        str(table_id) if table_id else None,
    )


def scratch_name(table: str, drill_id: str) -> str:
    """The scratch table a PITR drill restores into (a valid table name, at most 255)."""
    return f"{table[: 255 - 7 - len(drill_id)]}-drill-{drill_id}"


def pitr_copy(
    ddb: DynamoDBClient,
    table: str,
    at: datetime,
    scratch: str,
    *,
    keep: bool = False,
    poll_seconds: float = 10.0,
    segments: int = 8,
) -> NativeCopy:
    """Restore ``table`` as of ``at`` into the new table ``scratch`` (PITR), and scan it.
    ``cleanup`` deletes the scratch table unless ``keep``."""
    start_pitr_restore(ddb, source_table=table, target_table=scratch, at=at)
    try:
        wait_until_active(
            ddb, scratch, poll_seconds=poll_seconds, timeout_seconds=24 * 3600.0, appearing=True
        )
    except BaseException:
        _delete_table(ddb, scratch)
        raise

    def cleanup() -> None:
        if keep:
            log.info("scratch table %s kept", scratch)
            return
        _delete_table(ddb, scratch)

    return NativeCopy(scan_rows(ddb, scratch, segments=segments), scratch, cleanup)


def _delete_table(ddb: DynamoDBClient, name: str) -> None:
    try:
        ddb.delete_table(TableName=name)
    except ClientError as exc:
        if not is_error(exc, ResourceNotFound):
            raise replay_error(exc, f"delete scratch table {name}") from exc


def table_size(ddb: DynamoDBClient, table: str) -> tuple[str, int]:
    """The live table's ARN and ``TableSizeBytes`` (DynamoDB updates it about every 6 hours)."""
    try:
        described: dict[str, Any] = dict(ddb.describe_table(TableName=table)["Table"])
    except ClientError as exc:
        raise replay_error(exc, f"table {table}") from exc
    return str(described["TableArn"]), int(described.get("TableSizeBytes") or 0)
