"""Table identity and archived table descriptions.

``table_id`` tells a recreated table from its predecessor of the same name. AWS returns it in
``DescribeTable`` as ``TableId``; where an endpoint omits it (moto does), a stable stand-in is
derived from the table ARN and creation time, which also differ between generations.

An archived description (``_state/<table>/table-description-<stamp>.json``) is
``DescribeTable`` plus what it does not include, so that a restore can recreate the table as
it was::

    {"captured_at", "table_name", "table_id", "table_arn",
     "Table": <DescribeTable's Table, datetimes as ISO strings>,
     "Tags": [...] | null, "TimeToLiveDescription": {...} | null,
     "ContinuousBackupsDescription": {...} | null,
     "extras": <archiver.aws.describe.capture_extras(...)>,
     "unavailable": {"<what>": "<error code>"}}

A table's key attribute names come from one place, :func:`key_names` (hash key first), for a
live description, an archived one or a snapshot's manifest alike.

A new file is written at archiver start and whenever any of it changed. Counters and
timestamps that move on their own (item counts, sizes, PITR's restorable window, statuses,
alarm states) are left out of that comparison: they are not settings.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from archiver.format import layout, statefiles
from archiver.format.manifests import list_snapshots
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms, parse_iso

log = logging.getLogger(__name__)

# Values DynamoDB (or CloudWatch) changes without anyone changing a setting.
VOLATILE_KEYS = frozenset(
    {
        "ItemCount",
        "TableSizeBytes",
        "IndexSizeBytes",
        "TableStatus",
        "IndexStatus",
        "Backfilling",
        "NumberOfDecreasesToday",
        "EarliestRestorableDateTime",
        "LatestRestorableDateTime",
        "StateValue",
        "StateReason",
        "StateReasonData",
        "StateUpdatedTimestamp",
        "StateTransitionedTimestamp",
        "ResponseMetadata",
    }
)


def json_safe(value: Any) -> Any:
    """``value`` with datetimes as ISO 8601 UTC strings and bytes as hex, recursively."""
    if isinstance(value, datetime):
        return iso_ms(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return value


def table_id_of(description: Mapping[str, Any]) -> str:
    """The ``TableId`` of a ``DescribeTable`` ``Table`` dict (or its stand-in, see module doc).

    Works on the raw response and on its JSON-safe form (datetimes as ISO strings) alike.
    """
    table_id = description.get("TableId")
    if table_id:
        return str(table_id)
    created = description.get("CreationDateTime")
    created_text = iso_ms(as_utc(created)) if isinstance(created, datetime) else str(created)
    digest = hashlib.sha256(f"{description.get('TableArn')}|{created_text}".encode()).hexdigest()
    return f"derived-{digest[:32]}"


def settings_of(doc: Mapping[str, Any]) -> Any:
    """What of a description counts as its settings: everything but ``captured_at`` and the
    values in :data:`VOLATILE_KEYS`."""

    def strip(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip({k: v for k, v in doc.items() if k != "captured_at"})


def description_document(
    table_name: str,
    table: Mapping[str, Any],
    *,
    captured_at: datetime,
    tags: Sequence[Any] | None = None,
    time_to_live: Mapping[str, Any] | None = None,
    continuous_backups: Mapping[str, Any] | None = None,
    extras: Mapping[str, Any] | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An archived description (the shape in the module doc), ready for
    :func:`store_description`.

    Args:
        table_name: the table's name (the ``_state/<table>/`` it is archived under).
        table: ``DescribeTable``'s ``Table``, raw or JSON-safe; ``table_id`` is taken from it.
        captured_at: when it was described.
        tags: ``ListTagsOfResource``'s tags; ``None`` when they could not be read.
        time_to_live: ``DescribeTimeToLive``'s ``TimeToLiveDescription``, or ``None``.
        continuous_backups: ``DescribeContinuousBackups``'
            ``ContinuousBackupsDescription``, or ``None``.
        extras: what ``archiver.aws.describe.capture_extras`` found (auto scaling, alarms, policy).
        unavailable: what could not be read, and the error code that said so.
    """
    safe = json_safe(table)
    return {
        "captured_at": iso_ms(captured_at),
        "table_name": table_name,
        "table_id": table_id_of(safe),
        "table_arn": safe.get("TableArn"),
        "Table": safe,
        "Tags": None if tags is None else list(tags),
        "TimeToLiveDescription": time_to_live,
        "ContinuousBackupsDescription": continuous_backups,
        "extras": dict(extras or {}),
        "unavailable": dict(unavailable or {}),
    }


def store_description(archive: Archive, doc: Mapping[str, Any]) -> str | None:
    """Write ``doc`` unless the newest archived description has the same settings.

    Returns the path written, or ``None`` when nothing changed.
    """
    table = str(doc["table_name"])
    latest = latest_description(archive, table)
    if latest is not None and settings_of(latest) == settings_of(doc):
        return None
    path = layout.table_description(table, parse_iso(str(doc["captured_at"])))
    archive.write_json(path, dict(doc))
    return path


# -- reading --------------------------------------------------------------------------------


def _description_paths(archive: Archive, table: str) -> list[str]:
    state = layout.state_dir(table)
    paths = [f"{state}/{name}" for name in archive.listdir(state)]
    return sorted(path for path in paths if layout.parse_table_description(path) is not None)


def list_descriptions(archive: Archive, table: str) -> list[dict[str, Any]]:
    """Every archived description of ``table``, oldest ``captured_at`` first."""
    docs = [_read_description(archive, path) for path in _description_paths(archive, table)]
    return sorted(docs, key=lambda d: parse_iso(d["captured_at"]))


def latest_description(archive: Archive, table: str) -> dict[str, Any] | None:
    """The newest archived description of ``table`` (one read: names sort by time)."""
    paths = _description_paths(archive, table)
    if not paths:
        return None
    return _read_description(archive, paths[-1])


def _read_description(archive: Archive, path: str) -> dict[str, Any]:
    doc = statefiles.read_json(archive, path, statefiles.TABLE_DESCRIPTION, "table description")
    assert doc is not None
    return doc


def description_at(
    archive: Archive, table: str, at: datetime, table_id: str | None = None
) -> dict[str, Any] | None:
    """The description in force at ``at``: the newest captured at or before it.

    With ``table_id``, only that table generation's descriptions count, and when none was
    captured at or before ``at`` its earliest is returned (the table existed, the archiver
    just described it later). ``None`` when there is none at all.
    """
    docs = list_descriptions(archive, table)
    if table_id is not None:
        docs = [d for d in docs if d.get("table_id") == table_id]
    at = as_utc(at)
    before = [d for d in docs if parse_iso(d["captured_at"]) <= at]
    if before:
        return before[-1]
    if table_id is not None and docs:
        return docs[0]
    return None


# -- key names ------------------------------------------------------------------------------


def key_names(key_schema: Iterable[Mapping[str, Any]]) -> list[str]:
    """The attribute names of a key schema (``DescribeTable``'s ``KeySchema``, a snapshot
    manifest's ``key_schema``), hash key first."""
    schema = sorted(key_schema, key=lambda k: k["KeyType"] != "HASH")
    return [str(k["AttributeName"]) for k in schema]


def archived_key_names(
    archive: Archive, table: str, *, from_snapshots: bool = True
) -> list[str] | None:
    """The table's key attribute names as the archive knows them: from its newest archived
    description, else (``from_snapshots``) from a snapshot's manifest; ``None`` when neither
    says."""
    description = latest_description(archive, table)
    schema = ((description or {}).get("Table") or {}).get("KeySchema")
    if not schema and from_snapshots:
        schema = next((m.get("key_schema") for m in list_snapshots(archive, table)), None)
    return key_names(schema) if schema else None
