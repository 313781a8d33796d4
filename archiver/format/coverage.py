"""What the archive covers: ``coverage.json``, per table generation.

``_state/<table>/coverage.json`` holds the current table generation's coverage (DESIGN.md
"State files") plus ``previous``: the same objects for earlier generations of the same table
name (a table deleted and recreated gets a new ``table_id``)::

    {"table", "table_arn", "table_id", "table_created_at", "covered_from",
     "from_table_creation", "watermark", "mode", "updated_at", "previous": [...]}

The holes in the log are kept beside it, in ``gaps.jsonl`` (:mod:`archiver.format.gap_log`).

The poller (``archiver.capture.runner``) and the Lambda handler both keep this file through this
module; the replayer reads it through :func:`generations`.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

from archiver.format import layout, statefiles
from archiver.format.errors import ArchiveOwnedElsewhere
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow

log = logging.getLogger(__name__)

MODES = ("poller", "lambda", "incremental", "kinesis", "kinesis-lambda")
# Captured from Kinesis Data Streams for DynamoDB (the poller, or the Lambda function).
KINESIS_MODES = ("kinesis", "kinesis-lambda")

# DynamoDB Streams keeps records for 24 hours.
STREAM_RETENTION = timedelta(hours=24)
# A stream counts as created with its table when its creation time is this close to the
# table's CreationDateTime. AWS cannot enable a stream on an existing table before the table
# is ACTIVE, and no write can happen before that either, so a small tolerance is safe.
CREATED_WITH_TABLE_TOLERANCE = timedelta(seconds=1)
# The watermark stays this far behind what was observed (DESIGN.md): stream times are
# approximate (whole seconds on AWS) and records take a moment to appear in the stream.
WATERMARK_MARGIN = timedelta(seconds=2)

SOURCE_STREAM = "stream"
SOURCE_INCREMENTAL = "incremental-export"


# -- coverage.json --------------------------------------------------------------------------


def _read_state(archive: Archive, table: str) -> dict[str, Any] | None:
    return statefiles.read_json(
        archive, layout.coverage(table), statefiles.COVERAGE, "coverage.json", missing_ok=True
    )


def _current_of(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "previous"}


def generations(archive: Archive, table: str) -> list[dict[str, Any]]:
    """Coverage of every archived generation of ``table``: oldest first, the current one last.

    Empty when the table was never archived.
    """
    state = _read_state(archive, table)
    if not state:
        return []
    return [dict(g) for g in state.get("previous", [])] + [_current_of(state)]


def current(archive: Archive, table: str) -> dict[str, Any] | None:
    """Coverage of the current generation of ``table`` (``None`` when never archived)."""
    state = _read_state(archive, table)
    return _current_of(state) if state else None


def generation_of(archive: Archive, table: str, table_id: str) -> dict[str, Any] | None:
    """Coverage of the generation with this ``table_id``, if archived."""
    for generation in generations(archive, table):
        if generation.get("table_id") == table_id:
            return generation
    return None


def account_and_region(table_arn: str) -> tuple[str, str]:
    """``(account, region)`` of ``arn:aws:dynamodb:<region>:<account>:table/<name>``."""
    parts = table_arn.split(":")
    if len(parts) < 6:
        return "", ""
    return parts[4], parts[3]


def check_owner(archive: Archive, table: str, table_arn: str) -> None:
    """Refuse to mix two tables of the same name from different accounts or regions.

    One archive root serves one AWS account and region; a table name it already holds for
    another one is a misconfiguration (an archive URL shared by mistake).

    Raises:
        ArchiveOwnedElsewhere: ``coverage.json`` names another account or region.
    """
    ours = account_and_region(table_arn)
    for generation in generations(archive, table):
        theirs = account_and_region(str(generation.get("table_arn", "")))
        if theirs != ("", "") and theirs != ours:
            raise ArchiveOwnedElsewhere(
                f"archive {archive.url} already holds table {table!r} of account {theirs[0]} "
                f"in {theirs[1]} (this one is account {ours[0]} in {ours[1]}): "
                "use one archive per account and region"
            )


def initial_window(
    *,
    table_created_at: datetime,
    stream_created_at: datetime,
    now: datetime | None = None,
) -> tuple[datetime, bool]:
    """``(covered_from, from_table_creation)`` for a first start reading from TRIM_HORIZON.

    The stream holds 24 hours, so the log is complete from max(stream creation, now − 24 h).
    When the stream was created with the table and the table is younger than that, nothing
    was ever trimmed: the log starts at table creation and a restore needs no base snapshot.
    """
    now = now or utcnow()
    with_table = abs(stream_created_at - table_created_at) <= CREATED_WITH_TABLE_TOLERANCE
    if with_table and now - table_created_at < STREAM_RETENTION:
        return table_created_at, True
    return max(stream_created_at, now - STREAM_RETENTION), False


def open_generation(
    archive: Archive,
    table: str,
    *,
    table_arn: str,
    table_id: str,
    table_created_at: datetime,
    covered_from: datetime,
    from_table_creation: bool,
    mode: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Start (or continue) coverage of the table generation ``table_id``; returns it.

    Continuing a known generation keeps its ``covered_from`` and watermark (coverage only
    grows). A new ``table_id`` moves the current generation, with its last watermark, into
    ``previous``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    now = now or utcnow()
    state = _read_state(archive, table) or {}
    previous = list(state.get("previous", []))
    if state and state.get("table_id") == table_id:
        generation = _current_of(state)
        generation.update(mode=mode, updated_at=iso_ms(now), table_arn=table_arn)
        if generation.get("covered_from") is None and mode != "incremental":
            # Known so far from incremental exports only: the stream's coverage starts now.
            generation.update(
                covered_from=iso_ms(covered_from), from_table_creation=bool(from_table_creation)
            )
    else:
        if state:
            previous.append(_current_of(state))
        known = next((g for g in previous if g.get("table_id") == table_id), None)
        if known is not None:
            # The archiver met an older generation again (runs against a stale description):
            # never let it push the newer generation into history.
            previous.remove(known)
        generation = {
            "table": table,
            "table_arn": table_arn,
            "table_id": table_id,
            "table_created_at": iso_ms(table_created_at),
            # No stream coverage for a generation known only from incremental exports.
            "covered_from": None if mode == "incremental" else iso_ms(covered_from),
            "from_table_creation": bool(from_table_creation) and mode != "incremental",
            "watermark": None,
            "mode": mode,
            "updated_at": iso_ms(now),
        }
    previous.sort(key=lambda g: str(g.get("table_created_at", "")))
    archive.write_json(layout.coverage(table), {**generation, "previous": previous})
    return generation


def key_hash(keys: str) -> str:
    """A short hash naming a key in state files and logs without its contents."""
    return hashlib.sha256(keys.encode("utf-8")).hexdigest()[:16]


def refute_from_table_creation(
    archive: Archive,
    table: str,
    table_id: str,
    *,
    keys: str,
    event_id: str,
    event_name: str,
    event_time: datetime,
    detected_by: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record that the log of generation ``table_id`` does not start at table creation.

    The claim ``from_table_creation`` rests on the stream's creation time being within
    :data:`CREATED_WITH_TABLE_TOLERANCE` of the table's; in such a log every key's first record
    is an INSERT. A key first seen as a MODIFY or REMOVE disproves it: ``from_table_creation``
    becomes false for good (restores then need a base snapshot) and ``from_table_creation_refuted``
    keeps the evidence (the key's hash, the record's event id, name and time). Returns it.
    """
    evidence = {
        "key_sha256": key_hash(keys),
        "event_id": event_id,
        "event_name": event_name,
        "event_time": iso_ms(event_time),
        "detected_by": detected_by,
        "detected_at": iso_ms(now or utcnow()),
    }
    state = _read_state(archive, table)
    if not state:
        return evidence
    targets = [state, *state.get("previous", [])]
    target = next((g for g in targets if g.get("table_id") == table_id), None)
    if target is None:
        return evidence
    if target.get("from_table_creation_refuted"):
        return dict(target["from_table_creation_refuted"])
    target["from_table_creation"] = False
    target["from_table_creation_refuted"] = evidence
    archive.write_json(layout.coverage(table), state)
    log.warning(
        "%s: the log does not start at table creation (key %s first appears as a %s, event "
        "id %s): restores now need a base snapshot (ddb-archiver snapshot)",
        table,
        evidence["key_sha256"],
        event_name,
        event_id,
    )
    return evidence


def advance_watermark(
    archive: Archive,
    table: str,
    table_id: str,
    watermark: datetime,
    *,
    mode: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """Move the watermark of generation ``table_id`` forward to ``watermark``; returns it.

    The watermark never moves back (a claim "everything up to W is archived" stays true), so
    an older value is ignored. Returns ``None`` when that generation is not in coverage.json.
    """
    now = now or utcnow()
    state = _read_state(archive, table)
    if not state:
        return None
    targets = [state, *state.get("previous", [])]
    target = next((g for g in targets if g.get("table_id") == table_id), None)
    if target is None:
        return None
    old = target.get("watermark")
    if old is None or parse_iso(old) < watermark:
        target["watermark"] = iso_ms(watermark)
    if mode is not None:
        target["mode"] = mode
    target["updated_at"] = iso_ms(now)
    archive.write_json(layout.coverage(table), state)
    return _current_of(target) if target is state else dict(target)


# -- segments -----------------------------------------------------------------------------


def merge_windows(windows: list[tuple[datetime, datetime]]) -> list[dict[str, Any]]:
    """Contiguous windows merged into segments ``{kind, from, to, exact, granularity_seconds,
    windows}``: restores inside them are exact at window ends (``granularity_seconds`` apart
    at most), elsewhere only per key (DESIGN.md "History from incremental exports")."""
    segments: list[dict[str, Any]] = []
    last_end: datetime | None = None
    for start, end in sorted(windows):
        length = (end - start).total_seconds()
        if segments and last_end == start:
            segment = segments[-1]
            segment["to"] = iso_ms(end)
            segment["windows"] += 1
            segment["granularity_seconds"] = max(segment["granularity_seconds"], length)
        else:
            segments.append(
                {
                    "kind": SOURCE_INCREMENTAL,
                    "from": iso_ms(start),
                    "to": iso_ms(end),
                    "exact": False,
                    "granularity_seconds": length,
                    "windows": 1,
                }
            )
        last_end = end
    return segments


def stream_segment(generation: dict[str, Any]) -> dict[str, Any] | None:
    """The stream's segment of a generation: exact from ``covered_from`` (or table creation)
    to the watermark; ``None`` without stream coverage."""
    start = (
        generation.get("table_created_at")
        if generation.get("from_table_creation")
        else generation.get("covered_from")
    )
    if not start:
        return None
    return {
        "kind": SOURCE_STREAM,
        "from": start,
        "to": generation.get("watermark"),
        "exact": True,
        "granularity_seconds": 0,
    }


def segments_of(generation: dict[str, Any]) -> list[dict[str, Any]]:
    """Every segment of a generation, by start: the stream's and the incremental ones."""
    out = list(generation.get("segments") or [])
    stream = stream_segment(generation)
    if stream is not None:
        out.append(stream)
    return sorted(out, key=lambda s: str(s.get("from")))


def record_incremental_segments(
    archive: Archive,
    table: str,
    *,
    table_id: str,
    table_arn: str,
    table_created_at: datetime | None,
    windows: list[tuple[datetime, datetime]],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store the incremental segments of generation ``table_id`` (from its converted windows).

    A generation known only from incremental exports is created (``mode: incremental``, no
    stream coverage: ``covered_from`` null); the stream's fields of a known one are kept.
    """
    now = now or utcnow()
    state = _read_state(archive, table) or {}
    targets = [state, *state.get("previous", [])] if state else []
    target = next((g for g in targets if g.get("table_id") == table_id), None)
    if target is None:
        first = min(windows)[0] if windows else now
        open_generation(
            archive,
            table,
            table_arn=table_arn,
            table_id=table_id,
            table_created_at=table_created_at or first,
            covered_from=first,
            from_table_creation=False,
            mode="incremental",
            now=now,
        )
        state = _read_state(archive, table) or {}
        targets = [state, *state.get("previous", [])]
        target = next(g for g in targets if g.get("table_id") == table_id)
    target["segments"] = merge_windows(windows)
    target["updated_at"] = iso_ms(now)
    archive.write_json(layout.coverage(table), state)
    return _current_of(target) if target is state else dict(target)


def retention_horizon(archive: Archive, table: str) -> datetime | None:
    """Where ``ddb-archiver expire`` deleted the table's history up to (``retention.json``)."""
    doc = statefiles.read_json(
        archive, layout.retention(table), statefiles.RETENTION, "retention.json", missing_ok=True
    )
    return parse_iso(str(doc["horizon"])) if doc else None
