"""Native DynamoDB exports → Parquet snapshots, converted on first use.

Full exports land in ``<archive>/exports/AWSDynamoDB/<export_id>/`` (AWS's layout) — written
there by ``ddb-archiver snapshot --method export`` or by a scheduled export that nobody
converted. The planner calls :func:`convert_new_exports` before it picks a base, so every
completed export of the table becomes a snapshot once (its manifest's ``source`` names the
export); the conversion itself, with all its checks, is
:func:`archiver.format.exports.full.convert_export`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from archiver.aws.clients import AwsSettings
from archiver.aws.describe import live_lookup
from archiver.aws.error_table import ArchiverError
from archiver.format import layout
from archiver.format.exports.full import (
    DATA,
    STARTED,
    SUMMARY,
    Conversion,
    ExportFolder,
    ExportNotReady,
    NotAFullExport,
    archived_export_folders,
    convert_export,
    folder_in,
    read_export,
)
from archiver.format.manifests import converted_exports
from archiver.format.storage import Archive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingExport:
    """A completed export of the table in the archive that has no snapshot yet."""

    export_id: str
    folder: ExportFolder


def pending_exports(archive: Archive, table: str, *, warn: bool = True) -> list[PendingExport]:
    """Completed full exports of ``table`` under ``<archive>/exports/`` not converted yet.

    Skipped: exports still running or failed (``_started`` but no summary), incremental
    exports, exports of other tables, and folders without manifests (an emulator's export:
    nothing in them says which table they are of — convert one with
    ``ddb-archiver snapshot --export-from``).
    """
    done = converted_exports(archive, table)
    pending = []
    for export_id in (folder.export_id for folder in archived_export_folders(archive)):
        if export_id in done:
            continue
        store = folder_in(archive, layout.export_folder(export_id))
        if not store.exists(SUMMARY):
            if warn and not store.exists(STARTED) and store.listdir(DATA):
                log.warning(
                    "export folder %s has no manifests, so nothing says which table it is of; "
                    "convert it with `ddb-archiver snapshot --table-name T --export-from %s`",
                    store.uri(""),
                    store.uri(""),
                )
            continue
        try:
            folder = read_export(store)
        except (ExportNotReady, NotAFullExport):
            continue
        if folder.table_name != table:
            continue
        pending.append(PendingExport(export_id, folder))
    return pending


def convert_export_folder(
    archive: Archive, table: str, folder: ExportFolder, settings: AwsSettings | None = None
) -> Conversion:
    """Convert one export folder (checked against its manifests) into a snapshot of ``table``.

    With ``settings`` the live table's description is used where the archive has none (the
    archived ones are preferred: the live table may be a later generation); without AWS
    access the archive's descriptions must do.
    """
    live = live_lookup(settings, table) if settings is not None else None
    return convert_export(archive, table, folder, live=live)


def convert_new_exports(
    archive: Archive, table: str, settings: AwsSettings | None = None
) -> list[str]:
    """Convert every completed native export of ``table`` under ``<archive>/exports/`` that has no
    snapshot yet; return the new snapshot ids.

    A corrupt export (bad MD5, wrong item count, missing data file) registers nothing; the
    other exports are still converted, then the first such error is raised
    (:class:`archiver.format.exports.full.CorruptExport`, exit 2): move the folder away, or fix it.
    """
    created = []
    errors: list[ArchiverError] = []
    for pending in pending_exports(archive, table):
        try:
            conversion = convert_export_folder(archive, table, pending.folder, settings)
        except ArchiverError as exc:
            errors.append(exc)
            continue
        if conversion.new:
            created.append(str(conversion.manifest["snapshot_id"]))
    if errors:
        if created:
            log.info("converted %d other export(s) of %s: %s", len(created), table, created)
        raise errors[0]
    return created
