"""Native point-in-time recovery (PITR): turn it on or off, set its recovery period, see its window.

PITR lets DynamoDB restore the table to any second of the last 1–35 days (the recovery
period) into a new table; ``ddb-replayer restore --strategy auto`` uses it when the requested
time is inside the restorable window. The archive keeps history beyond that window.

Examples:
  ddb-archiver pitr --table-name orders --status
  ddb-archiver pitr --table-name orders --enable --recovery-period-in-days 7
  ddb-archiver pitr --table-name orders --disable
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from archiver.aws.error_table import translate_client_error
from archiver.format.timefmt import as_utc, from_epoch, iso_ms, parse_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import PointInTimeRecoverySpecificationTypeDef

MIN_RECOVERY_DAYS = 1
MAX_RECOVERY_DAYS = 35
DEFAULT_RECOVERY_DAYS = 35


@dataclass(frozen=True)
class PitrStatus:
    """What ``DescribeContinuousBackups`` says about one table's point-in-time recovery."""

    table_name: str
    enabled: bool
    status: str  # PointInTimeRecoveryStatus: ENABLED | DISABLED
    continuous_backups_status: str
    recovery_period_in_days: int | None
    earliest_restorable: datetime | None
    latest_restorable: datetime | None

    @classmethod
    def from_description(cls, table_name: str, description: Mapping[str, Any]) -> PitrStatus:
        """From a ``ContinuousBackupsDescription`` (datetimes, or iso strings from an archive)."""
        pitr = description.get("PointInTimeRecoveryDescription") or {}
        status = str(pitr.get("PointInTimeRecoveryStatus") or "DISABLED")
        period = pitr.get("RecoveryPeriodInDays")
        enabled = status == "ENABLED"
        if enabled and period is None:
            period = DEFAULT_RECOVERY_DAYS  # AWS omits it for tables on the default
        return cls(
            table_name=table_name,
            enabled=enabled,
            status=status,
            continuous_backups_status=str(description.get("ContinuousBackupsStatus") or "UNKNOWN"),
            recovery_period_in_days=int(period) if period is not None else None,
            earliest_restorable=_as_time(pitr.get("EarliestRestorableDateTime")),
            latest_restorable=_as_time(pitr.get("LatestRestorableDateTime")),
        )

    def covers(self, at: datetime) -> bool:
        """Whether ``at`` is inside the restorable window right now."""
        if not self.enabled or self.earliest_restorable is None or self.latest_restorable is None:
            return False
        return self.earliest_restorable <= as_utc(at) <= self.latest_restorable

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("earliest_restorable", "latest_restorable"):
            value = out[name]
            out[name] = iso_ms(value) if value is not None else None
        return out

    def describe(self) -> str:
        """Human-readable lines for the terminal."""
        lines = [
            f"{self.table_name}: point-in-time recovery {self.status} "
            f"(continuous backups {self.continuous_backups_status})"
        ]
        if self.enabled:
            lines.append(f"  recovery period:   {self.recovery_period_in_days} days")
            if self.earliest_restorable and self.latest_restorable:
                lines.append(
                    f"  restorable window: {iso_ms(self.earliest_restorable)} .. "
                    f"{iso_ms(self.latest_restorable)} "
                    "(EarliestRestorableDateTime .. LatestRestorableDateTime)"
                )
            else:
                lines.append("  restorable window: not yet available (PITR was just enabled)")
        return "\n".join(lines)


def _as_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, int | float):
        return from_epoch(value)
    return parse_iso(str(value))


def describe_pitr(ddb: DynamoDBClient, table_name: str) -> PitrStatus:
    """The table's PITR status and restorable window (``DescribeContinuousBackups``)."""
    try:
        response = ddb.describe_continuous_backups(TableName=table_name)
    except ClientError as exc:
        raise translate_client_error(
            exc, f"describe point-in-time recovery of {table_name}"
        ) from exc
    return PitrStatus.from_description(table_name, response["ContinuousBackupsDescription"])


def set_pitr(
    ddb: DynamoDBClient,
    table_name: str,
    *,
    enabled: bool,
    recovery_period_in_days: int | None = None,
) -> PitrStatus:
    """Enable (optionally with a recovery period) or disable PITR; returns the new status."""
    spec: PointInTimeRecoverySpecificationTypeDef = {"PointInTimeRecoveryEnabled": enabled}
    if enabled and recovery_period_in_days is not None:
        spec["RecoveryPeriodInDays"] = recovery_period_in_days
    try:
        response = ddb.update_continuous_backups(
            TableName=table_name, PointInTimeRecoverySpecification=spec
        )
    except ClientError as exc:
        action = "enable" if enabled else "disable"
        raise translate_client_error(
            exc, f"{action} point-in-time recovery of {table_name}"
        ) from exc
    return PitrStatus.from_description(table_name, response["ContinuousBackupsDescription"])
