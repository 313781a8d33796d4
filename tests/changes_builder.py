"""Build small change-log archives directly, the way the archiver writes them.

Records are boto3-shaped stream records (what ``GetRecords`` returns), turned into rows by the
archiver's own ``records.ChangeRows`` and written under ``layout.change_file`` names, so the
files are indistinguishable from a poller's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.format import layout
from archiver.format.records import ChangeRows
from archiver.format.storage import Archive

LABEL = "2026-01-31T00:00:00.000"
TABLE_ID = "11111111-2222-3333-4444-555555555555"
T0 = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


ACCOUNT = "123456789012"


def table_arn(table: str) -> str:
    return f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{table}"


def stream_arn(table: str, label: str = LABEL) -> str:
    return f"{table_arn(table)}/stream/{label}"


def record(
    seq: int,
    key: Mapping[str, Any],
    event_name: str,
    *,
    new: Mapping[str, Any] | None = None,
    old: Mapping[str, Any] | None = None,
    at: datetime | None = None,
    ttl: bool = False,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A boto3-shaped stream record (times as datetimes, like aiobotocore returns them)."""
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": at or T0 + timedelta(seconds=seq),
        "Keys": dict(key),
        "SequenceNumber": str(seq),
        "SizeBytes": 100 + seq,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        ddb["NewImage"] = dict(new)
    if old is not None:
        ddb["OldImage"] = dict(old)
    out: dict[str, Any] = {
        "eventID": event_id or f"event-{seq}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": ddb,
    }
    if ttl:
        out["userIdentity"] = dict(TTL_IDENTITY)
    return out


def write_changes(
    archive: Archive,
    table: str,
    records: Sequence[Mapping[str, Any]],
    *,
    shard_id: str = "shardId-00000001",
    label: str = LABEL,
    table_id: str = TABLE_ID,
    per_file: int | None = None,
) -> list[str]:
    """Write ``records`` (one shard, in stream order) as change files, split by ``dt`` and then
    into files of ``per_file`` records; returns the paths written."""
    by_dt: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        at = rec["dynamodb"]["ApproximateCreationDateTime"]
        by_dt.setdefault(layout.dt_of(at), []).append(rec)
    paths = []
    for dt, group in sorted(by_dt.items()):
        size = per_file or len(group)
        for start in range(0, len(group), size):
            chunk = group[start : start + size]
            rows = ChangeRows()
            rows.extend(
                chunk,
                stream_arn=stream_arn(table, label),
                shard_id=shard_id,
                table_id=table_id,
                origin="stream",
            )
            path = layout.change_file(
                table,
                dt,
                label,
                shard_id,
                chunk[0]["dynamodb"]["SequenceNumber"],
                chunk[-1]["dynamodb"]["SequenceNumber"],
            )
            archive.write_parquet(path, rows.to_table())
            paths.append(path)
    return paths


def s(text: str) -> dict[str, str]:
    return {"S": text}


def n(text: str | int) -> dict[str, str]:
    return {"N": str(text)}
