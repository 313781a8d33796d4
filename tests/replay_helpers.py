"""Helpers for replay tests: archives built directly, and the CLIs called in-process.

Direct archives are written with the archiver's own format modules (``records.ChangeRows``,
``layout``, ``coverage``, ``manifests``, ``tables``; change files by ``tests.changes_builder``), so
files are indistinguishable from the archiver's — with event times chosen by the test, which
lets a test put records at any instant without waiting for the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archiver.format import coverage, gap_log, layout, tables
from archiver.format.codec import canonical_json, key_of
from archiver.format.manifests import SnapshotWriter
from archiver.format.storage import Archive
from tests import changes_builder

TABLE = "orders"
TABLE_ID = "table-id-1"
LABEL = "2026-03-01T00:00:00.000"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Change:
    """One stream record: ``new`` is the item after the change (None for a REMOVE)."""

    seq: int
    key: Mapping[str, Any]
    new: Mapping[str, Any] | None
    time: datetime
    event_name: str = ""
    event_id: str = ""
    old: Mapping[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        name = self.event_name or ("REMOVE" if self.new is None else "MODIFY")
        ddb: dict[str, Any] = {
            "ApproximateCreationDateTime": self.time,
            "Keys": dict(self.key),
            "SequenceNumber": str(self.seq),
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if self.new is not None:
            ddb["NewImage"] = dict(self.new)
        if self.old is not None:
            ddb["OldImage"] = dict(self.old)
        return {
            "eventID": self.event_id or f"event-{self.seq}",
            "eventName": name,
            "dynamodb": ddb,
        }


def write_changes(
    archive: Archive,
    changes: Sequence[Change],
    *,
    table: str = TABLE,
    table_id: str = TABLE_ID,
    label: str = LABEL,
    shard_id: str = "shardId-00000001",
    per_file: int | None = None,
) -> list[str]:
    """:func:`tests.changes_builder.write_changes` for :class:`Change` lists, with this
    module's table, generation and stream label as defaults. A key's first change (in these
    changes) that names no event and has an item is an INSERT, as on a real stream."""
    records = [change.record() for change in changes]
    seen: set[str] = set()
    for index in sorted(range(len(changes)), key=lambda i: changes[i].seq):
        change = changes[index]
        name = canonical_json(change.key)
        if not change.event_name and change.new is not None and name not in seen:
            records[index]["eventName"] = "INSERT"
        seen.add(name)
    return changes_builder.write_changes(
        archive,
        table,
        records,
        shard_id=shard_id,
        label=label,
        table_id=table_id,
        per_file=per_file,
    )


def write_coverage(
    archive: Archive,
    *,
    table: str = TABLE,
    table_id: str = TABLE_ID,
    created: datetime = T0,
    covered_from: datetime | None = None,
    from_table_creation: bool = True,
    watermark: datetime | None = None,
) -> None:
    """Start (or continue) coverage of a generation, with its watermark."""
    coverage.open_generation(
        archive,
        table,
        table_arn=changes_builder.table_arn(table),
        table_id=table_id,
        table_created_at=created,
        covered_from=covered_from or created,
        from_table_creation=from_table_creation,
        mode="poller",
    )
    if watermark is not None:
        coverage.advance_watermark(archive, table, table_id, watermark)


def write_gap(
    archive: Archive,
    start: datetime,
    end: datetime,
    *,
    table: str = TABLE,
    table_id: str = TABLE_ID,
) -> None:
    gap_log.append_gap(
        archive,
        table,
        table_id=table_id,
        stream_arn=changes_builder.stream_arn(table, LABEL),
        shard_id="shardId-00000001",
        start=start,
        end=end,
        reason=gap_log.GAP_TRIMMED,
    )


def write_snapshot(
    archive: Archive,
    items: Sequence[Mapping[str, Any]],
    *,
    valid_from: datetime,
    log_from: datetime,
    table: str = TABLE,
    table_id: str = TABLE_ID,
    key_names: Sequence[str] = ("pk",),
    method: str = "scan",
) -> dict[str, Any]:
    """Commit a snapshot of ``items`` (DynamoDB JSON) with these margins; returns its manifest."""
    writer = SnapshotWriter(archive, table, layout.new_snapshot_id(valid_from), part_bytes=200)
    for item in items:
        writer.add(canonical_json(key_of(item, list(key_names))), canonical_json(item))
        if writer.full:
            writer.flush()
    return writer.commit(
        table_id=table_id,
        method=method,
        valid_from=valid_from,
        log_from=log_from,
        started_at=log_from,
        finished_at=valid_from,
        key_schema=[
            {"AttributeName": name, "KeyType": "HASH" if i == 0 else "RANGE"}
            for i, name in enumerate(key_names)
        ],
        source="test",
    )


def write_description(
    archive: Archive,
    *,
    table: str = TABLE,
    table_id: str = TABLE_ID,
    captured: datetime = T0,
    key_types: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Archive a table description (pay-per-request, ``pk`` [+ more keys]); returns it."""
    key_types = dict(key_types or {"pk": "S"})
    table_doc: dict[str, Any] = {
        "TableName": table,
        "TableArn": changes_builder.table_arn(table),
        "TableId": table_id,
        "TableStatus": "ACTIVE",
        "CreationDateTime": captured,
        "KeySchema": [
            {"AttributeName": name, "KeyType": "HASH" if i == 0 else "RANGE"}
            for i, name in enumerate(key_types)
        ],
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": kind} for name, kind in key_types.items()
        ],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0},
        **dict(extra or {}),
    }
    doc = tables.description_document(table, table_doc, captured_at=captured, tags=[])
    tables.store_description(archive, doc)
    return doc


def item(pk: str, **attrs: Any) -> dict[str, Any]:
    """``{"pk": {"S": pk}, name: {"S"|"N": value}}`` (ints become N)."""
    out: dict[str, Any] = {"pk": {"S": pk}}
    for name, value in attrs.items():
        out[name] = {"N": str(value)} if isinstance(value, int) else {"S": str(value)}
    return out


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}}


def canon(items: Sequence[Mapping[str, Any]], key_names: Sequence[str] = ("pk",)) -> dict[str, str]:
    """Items as canonical keys → canonical item (how states are compared)."""
    return {canonical_json(key_of(i, list(key_names))): canonical_json(i) for i in items}


def replayer(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``ddb-replayer`` in-process: (exit code, stdout, stderr)."""
    from replayer.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def archive_table(table: str, archive_url: str) -> None:
    """``ddb-archiver run --once`` over the table (the real stream consumer)."""
    from archiver.cli import main

    code = main(["run", "--table-name", table, "--archive", archive_url, "--once",
                 "--poll-seconds", "0.05"])  # fmt: skip
    assert code == 0, f"archiver run exited {code}"


def snapshot_table(table: str, archive_url: str) -> None:
    """``ddb-archiver snapshot --method scan`` (the real snapshot)."""
    from archiver.cli import main

    code = main(["snapshot", "--table-name", table, "--archive", archive_url, "--method", "scan"])
    assert code == 0, f"archiver snapshot exited {code}"
