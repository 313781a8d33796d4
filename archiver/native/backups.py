"""Native on-demand backups: create, list, delete, and prune by retention.

A native backup restores into a new table in minutes whatever the table's age;
``ddb-replayer restore --strategy backup`` (or ``auto``) restores the newest backup at or
before the requested time and applies the archived change log after it.

Examples:
  ddb-archiver backup create --table-name orders                      # name: orders-<UTC stamp>
  ddb-archiver backup list   --table-name orders --json
  ddb-archiver backup delete --table-name orders --backup-name orders-nightly
  ddb-archiver backup prune  --table-name orders --keep-days 30 --keep-last 7 --dry-run

prune deletes USER backups of the table that no retention rule keeps: a backup is kept when it
is younger than --keep-days or among the --keep-last newest (either rule keeps it), and the
newest backup is never deleted.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from archiver.aws import retry
from archiver.aws.error_table import BackupNotFound, UsageError, translate_client_error
from archiver.format.timefmt import as_utc, iso_ms, parse_iso, stamp, utcnow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

# AWS: BackupName is 3..255 characters of [a-zA-Z0-9_.-].
_BACKUP_NAME = re.compile(r"^[a-zA-Z0-9_.-]{3,255}$")
MAX_NAME = 255
ACTIONS = ("create", "list", "delete", "prune")


@dataclass(frozen=True)
class Backup:
    """One on-demand backup, as ``ListBackups``/``DescribeBackup`` report it."""

    arn: str
    name: str
    table_name: str
    table_arn: str | None
    table_id: str | None
    created_at: datetime
    status: str  # CREATING | AVAILABLE | DELETED
    backup_type: str  # USER | SYSTEM | AWS_BACKUP
    size_bytes: int | None

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> Backup:
        """From a ``BackupSummaries`` entry of ``ListBackups``."""
        created = summary["BackupCreationDateTime"]
        return cls(
            arn=str(summary["BackupArn"]),
            name=str(summary.get("BackupName", "")),
            table_name=str(summary.get("TableName", "")),
            table_arn=summary.get("TableArn"),
            table_id=summary.get("TableId"),
            created_at=as_utc(created) if isinstance(created, datetime) else parse_iso(created),
            status=str(summary.get("BackupStatus", "")),
            backup_type=str(summary.get("BackupType", "")),
            size_bytes=summary.get("BackupSizeBytes"),
        )

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> Backup:
        """From ``DescribeBackup``'s ``BackupDescription``."""
        details = description["BackupDetails"]
        source = description.get("SourceTableDetails") or {}
        return cls.from_summary(
            {
                **details,
                "TableName": source.get("TableName", ""),
                "TableArn": source.get("TableArn"),
                "TableId": source.get("TableId"),
            }
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_arn": self.arn,
            "backup_name": self.name,
            "table_name": self.table_name,
            "table_arn": self.table_arn,
            "table_id": self.table_id,
            "created_at": iso_ms(self.created_at),
            "status": self.status,
            "backup_type": self.backup_type,
            "size_bytes": self.size_bytes,
        }


def validate_backup_name(name: str) -> str:
    """``name`` if AWS accepts it as a backup name, else ``UsageError`` saying why."""
    if len(name) < 3:
        raise UsageError(f"backup name {name!r} is too short: AWS needs at least 3 characters")
    if not _BACKUP_NAME.match(name):
        raise UsageError(
            f"backup name {name!r}: use 3..255 characters of letters, digits, '_', '-' and '.'"
        )
    return name


def default_backup_name(table_name: str, at: datetime) -> str:
    """``<table>-<UTC stamp>``, shortened to fit AWS's 255 characters."""
    suffix = f"-{stamp(at)}"
    return f"{table_name[: MAX_NAME - len(suffix)]}{suffix}"


def describe_backup(ddb: DynamoDBClient, backup_arn: str) -> Backup:
    try:
        response = ddb.describe_backup(BackupArn=backup_arn)
    except ClientError as exc:
        raise translate_client_error(exc, f"describe backup {backup_arn}") from exc
    return Backup.from_description(response["BackupDescription"])


def create_backup(
    ddb: DynamoDBClient,
    table_name: str,
    backup_name: str | None = None,
    *,
    wait: bool = True,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 3600.0,
    now: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> Backup:
    """Start ``CreateBackup`` and (by default) wait until the backup is ``AVAILABLE``.

    Raises ``WaitFailed`` when the backup is deleted meanwhile, ``WaitTimedOut`` when it is
    still ``CREATING`` after ``timeout_seconds``.
    """
    name = validate_backup_name(backup_name or default_backup_name(table_name, now()))
    try:
        response = ddb.create_backup(TableName=table_name, BackupName=name)
    except ClientError as exc:
        raise translate_client_error(exc, f"create backup of {table_name}") from exc
    details = response["BackupDetails"]
    backup = Backup.from_summary({**details, "TableName": table_name})
    if not wait or backup.status != "CREATING":
        return backup
    return retry.wait_until(
        lambda: describe_backup(ddb, backup.arn),
        what=f"backup {backup.arn}",
        ready=lambda b: b.status == "AVAILABLE",
        failed=lambda b: f"is {b.status}, not AVAILABLE" if b.status != "CREATING" else None,
        poll_seconds=poll_seconds,
        timeout_seconds=timeout_seconds,
        sleep=sleep,
    )


def list_backups(
    ddb: DynamoDBClient,
    table_name: str,
    *,
    backup_type: str = "ALL",
    created_before: datetime | None = None,
) -> list[Backup]:
    """Every backup of ``table_name`` (all pages), oldest first.

    ``created_before`` is passed to AWS as ``TimeRangeUpperBound`` and applied here as well
    (inclusive), because some endpoints ignore the bound.
    """
    kwargs: dict[str, Any] = {"TableName": table_name, "BackupType": backup_type}
    if created_before is not None:
        # AWS's upper bound is exclusive: add a millisecond so "at or before" holds.
        kwargs["TimeRangeUpperBound"] = as_utc(created_before) + timedelta(milliseconds=1)
    backups: list[Backup] = []
    while True:
        try:
            response = ddb.list_backups(**kwargs)
        except ClientError as exc:
            raise translate_client_error(exc, f"list backups of {table_name}") from exc
        backups.extend(Backup.from_summary(s) for s in response.get("BackupSummaries", []))
        last = response.get("LastEvaluatedBackupArn")
        if not last:
            break
        kwargs["ExclusiveStartBackupArn"] = last
    if created_before is not None:
        backups = [b for b in backups if b.created_at <= as_utc(created_before)]
    backups = [b for b in backups if b.table_name in ("", table_name)]
    return sorted(backups, key=lambda b: (b.created_at, b.arn))


def find_backup(
    ddb: DynamoDBClient, table_name: str, *, arn: str | None, name: str | None
) -> Backup:
    """The backup of ``table_name`` named by ARN or by (unique) name."""
    if arn:
        backup = describe_backup(ddb, arn)
        if backup.table_name and backup.table_name != table_name:
            raise UsageError(
                f"backup {arn} belongs to table {backup.table_name!r}, not {table_name!r}"
            )
        return backup
    if not name:
        raise UsageError("name the backup: --backup-arn ARN or --backup-name NAME")
    matches = [b for b in list_backups(ddb, table_name) if b.name == name]
    if not matches:
        raise BackupNotFound(f"table {table_name!r} has no backup named {name!r}")
    if len(matches) > 1:
        arns = ", ".join(b.arn for b in matches)
        raise UsageError(f"{len(matches)} backups are named {name!r}; use --backup-arn ({arns})")
    return matches[0]


def delete_backup(ddb: DynamoDBClient, backup: Backup) -> Backup:
    try:
        ddb.delete_backup(BackupArn=backup.arn)
    except ClientError as exc:
        raise translate_client_error(exc, f"delete backup {backup.name} ({backup.arn})") from exc
    return backup


def prune_selection(
    backups: Iterable[Backup],
    *,
    keep_days: float | None,
    keep_last: int | None,
    now: datetime,
) -> list[Backup]:
    """The backups a prune deletes: USER, AVAILABLE, kept by no rule, never the newest.

    A backup is kept when it is younger than ``keep_days`` or among the ``keep_last`` newest
    (either rule keeps it). SYSTEM and AWS Backup backups are never touched: the first are
    AWS's own, the second belong to AWS Backup's plans.
    """
    if keep_days is None and keep_last is None:
        raise UsageError("prune needs a retention rule: --keep-days D and/or --keep-last K")
    candidates = sorted(
        (b for b in backups if b.backup_type == "USER" and b.status == "AVAILABLE"),
        key=lambda b: (b.created_at, b.arn),
    )
    newest_first = list(reversed(candidates))
    kept: set[str] = set()
    if newest_first:
        kept.add(newest_first[0].arn)
    if keep_last is not None:
        kept.update(b.arn for b in newest_first[:keep_last])
    if keep_days is not None:
        cutoff = as_utc(now) - timedelta(days=keep_days)
        kept.update(b.arn for b in candidates if b.created_at >= cutoff)
    return [b for b in candidates if b.arn not in kept]


def prune_backups(
    ddb: DynamoDBClient,
    table_name: str,
    *,
    keep_days: float | None,
    keep_last: int | None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[Backup]:
    """Delete (unless ``dry_run``) what :func:`prune_selection` selects; returns it."""
    doomed = prune_selection(
        list_backups(ddb, table_name, backup_type="USER"),
        keep_days=keep_days,
        keep_last=keep_last,
        now=now or utcnow(),
    )
    if not dry_run:
        for backup in doomed:
            delete_backup(ddb, backup)
    return doomed
