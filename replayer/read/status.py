"""What the archive holds, per table: coverage, watermark and lag, gaps, snapshots, streams and
shards, files and bytes, and the archiver's last run.

Reads only the archive (no AWS call) — and, for a table archived by the Lambda function, the
on-failure destination's objects: each failed batch not redriven yet is listed with the
command that archives it (``ddb-archiver redrive``), or the event ids of its malformed
records; where that destination is unknown (a local archive, without ``--lambda-failures`` or
``DDB_ARCHIVE_LAMBDA_FAILURES``) it says "unknown", never "none". Human-readable by default;
--json for scripts and monitoring (lag_seconds is what to alarm on). A table the archive does
not hold is exit 2, with the list of those it does; so is a root that holds no archive at all
(a mistyped --archive), as in ``query``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from archiver.format import changefiles, coverage, gap_log, layout
from archiver.format import erasure_log as erasures
from archiver.format.manifests import list_snapshots
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow
from archiver.lambda_mode import failures as lambda_failures
from replayer.drill import record as drill_record
from replayer.exceptions import BadInput
from replayer.planning.export_conversion import pending_exports


def archived_tables(archive: Archive) -> list[str]:
    """Every table name the archive holds anything for (state, change log or snapshots)."""
    names = set()
    for root in (layout.STATE, layout.CHANGES, layout.SNAPSHOTS):
        for entry in archive.listdir(root):
            folder = layout.parse_table_dir(f"{root}/{entry}")
            if folder is not None:
                names.add(folder.table)
    # "@archive" holds archive-wide state (layout.ARCHIVE_STATE), no table.
    return sorted(name for name in names if not name.startswith((".", "@")))


def _files(archive: Archive, rel: str, suffix: str) -> dict[str, int]:
    count = size = 0
    for _, nbytes in archive.walk_files(rel, suffix):
        count += 1
        size += nbytes
    return {"count": count, "bytes": size}


def _streams(archive: Archive, table: str) -> list[dict[str, Any]]:
    streams: dict[str, dict[str, Any]] = {}
    for label in changefiles.checkpointed_streams(archive, table):
        for shard_id, checkpoint in sorted(
            changefiles.read_checkpoints(archive, table, label).items()
        ):
            arn = str(checkpoint.get("stream_arn", ""))
            stream = streams.setdefault(
                arn, {"stream_arn": arn, "label": layout.stream_label_of(arn), "shards": []}
            )
            stream["shards"].append(
                {
                    "shard_id": shard_id,
                    "parent_shard_id": checkpoint.get("parent_shard_id"),
                    "sequence_number": checkpoint.get("sequence_number"),
                    "event_time": checkpoint.get("event_time"),
                    "caught_up_at": checkpoint.get("caught_up_at"),
                    "closed": bool(checkpoint.get("closed")),
                    "updated_at": checkpoint.get("updated_at"),
                }
            )
    return sorted(streams.values(), key=lambda s: str(s["label"]))


def _lambda_failures(
    archive: Archive,
    table: str,
    current: dict[str, Any] | None,
    location: str | None,
    endpoint_url: str | None,
) -> dict[str, Any] | None:
    """Failed Lambda batches not redriven (Lambda mode, or any mode with a location given)."""
    explicit = bool(location or os.environ.get(lambda_failures.ENV_LOCATION))
    if not explicit and (
        current is None or current.get("mode") not in lambda_failures.LAMBDA_MODES
    ):
        return None
    try:
        report = lambda_failures.lambda_failure_gaps(
            archive,
            table,
            location=location,
            table_id=current.get("table_id") if current else None,
            endpoint_url=endpoint_url,
        )
    except Exception as exc:  # unreadable: say so, the rest of the status still holds
        where = lambda_failures.location_url(archive, location)
        return {"location": where, "error": f"{type(exc).__name__}: {exc}", "open": []}
    if report.location is None:  # unknown is not none
        reason = lambda_failures.location_unknown(archive)
        return {"location": None, "unknown": reason, "open": []}
    return {"location": report.location, "redriven": report.redriven, "open": report.gaps}


def table_status(
    archive: Archive,
    table: str,
    now: datetime,
    *,
    lambda_failures_url: str | None = None,
    endpoint_url: str | None = None,
) -> dict[str, Any]:
    """Everything ``status`` reports about one table, JSON-ready."""
    generations = coverage.generations(archive, table)
    current = generations[-1] if generations else None
    watermark = current.get("watermark") if current else None
    gaps = gap_log.read_gaps(archive, table)
    erased = erasures.read_log(archive, table)
    return {
        "table": table,
        "table_id": current.get("table_id") if current else None,
        "table_arn": current.get("table_arn") if current else None,
        "coverage": None
        if current is None
        else {
            "covered_from": current.get("covered_from"),
            "from_table_creation": current.get("from_table_creation"),
            "mode": current.get("mode"),
            "table_created_at": current.get("table_created_at"),
        },
        "segments": coverage.segments_of(current) if current else [],
        "watermark": watermark,
        "lag_seconds": (now - parse_iso(watermark)).total_seconds() if watermark else None,
        "previous_generations": [
            {k: g.get(k) for k in ("table_id", "covered_from", "watermark", "table_created_at")}
            for g in generations[:-1]
        ],
        "gaps": {"count": len(gaps), "list": gaps},
        "erasures": {
            "count": len(erased),
            "last": erased[-1]["at"] if erased else None,
            "unfinished": archive.exists(layout.forget_pending(table)),
        },
        "retention_horizon": _iso_or_none(coverage.retention_horizon(archive, table)),
        "snapshots": [
            {
                "snapshot_id": m["snapshot_id"],
                "method": m["method"],
                "valid_from": m["valid_from"],
                "log_from": m["log_from"],
                "item_count": m["item_count"],
                "table_id": m.get("table_id"),
            }
            for m in list_snapshots(archive, table)
        ],
        "exports_pending_conversion": [
            p.export_id for p in pending_exports(archive, table, warn=False)
        ],
        "streams": _streams(archive, table),
        "files": {
            "changes": _files(archive, layout.changes_table_dir(table), ".parquet"),
            "snapshots": _files(archive, layout.snapshots_table_dir(table), ".parquet"),
        },
        "last_run": current.get("updated_at") if current else None,
        "lambda_failures": _lambda_failures(
            archive, table, current, lambda_failures_url, endpoint_url
        ),
        "last_drill": drill_record.last(archive, table),
    }


def _iso_or_none(value: datetime | None) -> str | None:
    return iso_ms(value) if value is not None else None


def archive_status(
    archive: Archive,
    table: str | None = None,
    *,
    lambda_failures_url: str | None = None,
    endpoint_url: str | None = None,
) -> dict[str, Any]:
    """``status`` of one table or of every table in the archive.

    Raises:
        BadInput: ``table`` is not in the archive (the message lists those that are).
    """
    names = archived_tables(archive)
    if table is not None:
        if table not in names:
            held = ", ".join(names) if names else "none"
            raise BadInput(
                f"table {table} is not in archive {archive.url} (archived tables: {held})"
            )
        names = [table]
    now = utcnow()
    return {
        "archive": archive.url,
        "generated_at": iso_ms(now),
        "tables": [
            table_status(
                archive,
                name,
                now,
                lambda_failures_url=lambda_failures_url,
                endpoint_url=endpoint_url,
            )
            for name in names
        ],
    }


# -- human-readable output ------------------------------------------------------------------


def _duration(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{sign}{seconds:.1f} s"
    if seconds < 7200:
        return f"{sign}{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{sign}{seconds / 3600:.1f} h"
    return f"{sign}{seconds / 86400:.1f} d"


def _size(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _shard_line(shard: dict[str, Any]) -> str:
    seq = str(shard.get("sequence_number") or "-").lstrip("0") or "0"
    parts = [
        f"{shard['shard_id']}",
        f"seq {seq}",
        f"last event {shard.get('event_time') or '-'}",
        f"caught up {shard.get('caught_up_at') or 'not yet'}",
    ]
    if shard.get("closed"):
        parts.append("closed")
    return "  ".join(parts)


def _segment_line(segment: dict[str, Any]) -> str:
    span = f"{segment.get('from')} .. {segment.get('to') or 'not caught up yet'}"
    if segment.get("exact"):
        return f"{span}  {segment.get('kind')}, exact at every instant"
    granularity = _duration(float(segment.get("granularity_seconds") or 0))
    return (
        f"{span}  {segment.get('kind')}, {segment.get('windows')} window(s) of up to "
        f"{granularity}: exact at window ends, elsewhere per key"
    )


def render_table(status: dict[str, Any]) -> list[str]:
    lines = [
        f"{status['table']}" + (f"  (table id {status['table_id']})" if status["table_id"] else "")
    ]
    cov = status["coverage"]
    if cov is None:
        lines.append("  coverage     none: the archiver has not run for this table")
    elif cov.get("covered_from") is None:
        lines.append(f"  coverage     no stream archived, mode {cov.get('mode')} (segments below)")
    else:
        origin = " (from table creation)" if cov.get("from_table_creation") else ""
        lines.append(
            f"  coverage     from {cov.get('covered_from')}{origin}, mode {cov.get('mode')}"
        )
    for segment in status.get("segments") or []:
        lines.append(f"  segment      {_segment_line(segment)}")
    if status["watermark"]:
        lines.append(
            f"  watermark    {status['watermark']} (lag {_duration(status['lag_seconds'])})"
        )
    else:
        lines.append("  watermark    none yet")
    for gen in status["previous_generations"]:
        span = f"{gen['covered_from']} .. {gen['watermark']}"
        lines.append(f"  earlier      table id {gen['table_id']}: {span}")
    gaps = status["gaps"]
    lines.append(f"  gaps         {gaps['count'] or 'none'}")
    for gap in gaps["list"]:
        where = gap.get("shard_id") or "all shards"
        lines.append(f"    {gap.get('from')} .. {gap.get('to')}  {gap.get('reason')} ({where})")
    erased = status["erasures"]
    if erased["count"] or erased["unfinished"]:
        unfinished = (
            "; one unfinished: run ddb-archiver forget --resume" if erased["unfinished"] else ""
        )
        lines.append(f"  erasures     {erased['count']} (last {erased['last']}){unfinished}")
    if status["retention_horizon"]:
        lines.append(f"  retention    history before {status['retention_horizon']} expired")
    snapshots = status["snapshots"]
    lines.append(f"  snapshots    {len(snapshots) or 'none'}")
    for snap in snapshots:
        lines.append(
            f"    {snap['snapshot_id']}  {snap['method']:<6}  valid from {snap['valid_from']}  "
            f"{snap['item_count']:,} items"
        )
    if status["exports_pending_conversion"]:
        pending = ", ".join(status["exports_pending_conversion"])
        lines.append(f"  exports      not converted yet (done on first use): {pending}")
    streams = status["streams"]
    shards = sum(len(s["shards"]) for s in streams)
    closed = sum(1 for s in streams for shard in s["shards"] if shard["closed"])
    lines.append(f"  streams      {len(streams)}, shards {shards} ({closed} closed)")
    for stream in streams:
        lines.append(f"    {stream['label']}")
        lines.extend(f"      {_shard_line(shard)}" for shard in stream["shards"])
    changes, snaps = status["files"]["changes"], status["files"]["snapshots"]
    lines.append(
        f"  files        changes {changes['count']:,} ({_size(changes['bytes'])}), "
        f"snapshots {snaps['count']:,} ({_size(snaps['bytes'])})"
    )
    lines.append(f"  last run     {status['last_run'] or 'never'}")
    lines.extend(_failure_lines(status.get("lambda_failures")))
    lines.extend(_drill_lines(status.get("last_drill")))
    return lines


def _drill_lines(drill: dict[str, Any] | None) -> list[str]:
    if drill is None:
        return ["  last drill   never (ddb-replayer drill)"]
    outcome = "identical" if not drill["differences"] else f"{drill['differences']} DIFFERENCE(S)"
    rpo = drill.get("rpo_seconds")
    return [
        f"  last drill   {drill['at']} {drill['method']}: {outcome} "
        f"({drill['items_compared']:,} compared, {drill['not_comparable']:,} not comparable; "
        f"run {drill['finished_at']}, RPO {_duration(rpo) if rpo is not None else '?'})"
    ]


def _failure_lines(failed: dict[str, Any] | None) -> list[str]:
    if failed is None:
        return []
    if failed.get("error"):
        return [f"  lambda       cannot list {failed.get('location')}: {failed['error']}"]
    if failed.get("unknown"):
        return [f"  failed       unknown Lambda batch(es): {failed['unknown']}"]
    open_ = failed["open"]
    head = f"  failed       {len(open_) or 'none'} Lambda batch(es) not archived"
    lines = [f"{head} ({failed.get('redriven', 0)} redriven; {failed.get('location')})"]
    for gap in open_:
        where = f"shard {gap.get('shard_id')}, {gap.get('batch_size')} record(s)"
        lines.append(f"    {gap.get('from')} .. {gap.get('to')}  GAP ({where}) {gap['object']}")
        if gap.get("status") == lambda_failures.STATUS_MALFORMED:
            for bad in gap.get("malformed") or []:
                lines.append(f"      malformed record {bad.get('event_id')}: {bad.get('error')}")
            lines.append("      stays a gap until the record is dealt with (--allow-gaps)")
        elif gap.get("status") == lambda_failures.STATUS_UNAVAILABLE:
            lines.append(f"      cannot be redriven: {gap.get('detail')}")
        else:
            lines.append(f"      redrive: {gap.get('redrive')}")
    return lines


def render(report: dict[str, Any]) -> str:
    if not report["tables"]:
        return f"archive {report['archive']} holds no tables"
    blocks = ["\n".join(render_table(t)) for t in report["tables"]]
    return f"archive {report['archive']}  (as of {report['generated_at']})\n\n" + "\n\n".join(
        blocks
    )


__all__: Sequence[str] = ["archive_status", "archived_tables", "table_status"]
