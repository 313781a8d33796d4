"""Keep a table's history from incremental exports: no stream reader needed.

``ddb-archiver incremental`` chains DynamoDB incremental exports window after window, each
from the previous window's end and ``--every`` long (15 minutes to 24 hours, default 1 hour),
waits for each, and converts it into change rows of the archive
(``archiver.format.exports.incremental``). A window is exported once it has entirely left
point-in-time recovery's latest restorable time; ``--once`` exports every window available
now and exits (for cron), otherwise the command waits for the next one.

Where the chain stands is read from the archive each time — the end of the last converted
window, or of the last hole recorded — so the command is idempotent and crash-safe: a
converted window is skipped; an export is requested with a ``ClientToken`` derived from the
table and the window, so a rerun after a crash finds the same export instead of starting
another (AWS keeps a token for 8 hours); a conversion cut short is redone under the same
file names, and a window exists for restores only once its commit record is written.

Holes are recorded in ``gaps.jsonl`` (``source: incremental-export``) with their reason:

* ``pitr-disabled-and-reenabled`` / ``export-window-expired``: the next window starts before
  PITR's earliest restorable time (PITR was turned off and on, or the chain stopped for longer
  than the recovery period): those writes can no longer be exported;
* ``export-failed``: DynamoDB reports the window's export FAILED.

After a hole the chain resumes with a base: a full export just after the hole's end (its
``log_from`` is the hole's end), then windows from there, so restores after it are possible
again; restores across it are refused like any gap.

The first window starts at ``--from``, else at the newest base snapshot's ``log_from``
(``ddb-archiver backfill`` makes one 35 days back; ``snapshot`` makes one now).
``--export-from`` converts one incremental export made by someone else, now.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from archiver.aws import error_table as errors
from archiver.aws.error_table import (
    EXIT_REFUSED,
    ArchiverError,
    UsageError,
    client_error_code,
    is_error,
    translate_client_error,
)
from archiver.aws.retry import WaitFailed
from archiver.format import coverage, gap_log
from archiver.format.exports.full import EXPORT_MARGIN, convert_export, read_export
from archiver.format.exports.incremental import (
    EXPORT_TYPE,
    MAX_WINDOW,
    MIN_WINDOW,
    WindowConversion,
    convert_incremental,
    describe_export,
    list_windows,
    record_coverage,
)
from archiver.format.manifests import list_snapshots
from archiver.format.storage import Archive
from archiver.format.tables import table_id_of
from archiver.format.timefmt import as_utc, iso_ms, parse_iso
from archiver.snapshots.base_snapshot import locate_export_folder, wait_for_export

log = logging.getLogger(__name__)

DEFAULT_EVERY = timedelta(hours=1)
# A base after a hole is taken this long after PITR's earliest restorable time, so the export
# time is still inside the period when the request arrives (the period's start moves on).
BASE_MARGIN = timedelta(minutes=15)
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

Say = Callable[[str], None]
CONVERTED, FAILED, PENDING = "converted", "failed", "pending"


class PitrUnavailable(ArchiverError):
    """Point-in-time recovery is off: no export can be made (the hole is recorded once it is
    back on)."""

    exit_code = EXIT_REFUSED


def parse_duration(text: str) -> timedelta:
    """``15m``, ``1h``, ``1h30m``, ``24h``, ``1d``, ``900s`` → a timedelta."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or not match or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 15m, 1h or 24h")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def window_length(text: str) -> timedelta:
    """A ``--every`` value: a duration AWS accepts for one window (15 minutes to 24 hours)."""
    value = parse_duration(text)
    if not MIN_WINDOW <= value <= MAX_WINDOW:
        raise argparse.ArgumentTypeError(
            f"{text!r}: an incremental export window is 15 minutes to 24 hours"
        )
    return value


def client_token(table_id: str, kind: str, start: datetime, end: datetime | None = None) -> str:
    """A ``ClientToken`` that is a function of the table and the window (or export time), so a
    request repeated after a crash finds the export already made."""
    text = f"{table_id}|{kind}|{iso_ms(start)}|{iso_ms(end) if end else ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:48]


# -- PITR -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PitrPeriod:
    """What ``DescribeContinuousBackups`` says about point-in-time recovery now."""

    enabled: bool
    earliest: datetime | None
    latest: datetime | None
    recovery_days: int

    @classmethod
    def read(cls, ddb: Any, table: str) -> PitrPeriod:
        try:
            response = ddb.describe_continuous_backups(TableName=table)
        except Exception as exc:
            if client_error_code(exc):
                raise translate_client_error(exc, f"DescribeContinuousBackups {table}") from exc
            raise
        pitr = response["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
        earliest = pitr.get("EarliestRestorableDateTime")
        latest = pitr.get("LatestRestorableDateTime")
        return cls(
            enabled=pitr.get("PointInTimeRecoveryStatus") == "ENABLED",
            earliest=as_utc(earliest) if isinstance(earliest, datetime) else None,
            latest=as_utc(latest) if isinstance(latest, datetime) else None,
            recovery_days=int(pitr.get("RecoveryPeriodInDays") or 35),
        )

    def require(self, table: str) -> tuple[datetime, datetime]:
        if not self.enabled or self.earliest is None or self.latest is None:
            raise PitrUnavailable(
                f"point-in-time recovery is off for {table}: incremental exports need it "
                "(`ddb-archiver pitr --enable`); writes while it is off cannot be exported "
                "and are recorded as a gap once it is back on"
            )
        return self.earliest, self.latest

    def hole_reason(self) -> str:
        """Why a window before ``earliest`` cannot be exported any more."""
        assert self.earliest is not None and self.latest is not None
        limit = self.latest - timedelta(days=self.recovery_days)
        if self.earliest > limit + timedelta(hours=1):
            return gap_log.GAP_PITR_REENABLED
        return gap_log.GAP_WINDOW_EXPIRED


# -- the chain ------------------------------------------------------------------------------


class Chain:
    """One table's chain of incremental exports into the archive; see the module doc.

    Clients are passed in (``ddb`` may be a test double speaking the export API); nothing is
    read or requested before :meth:`step` or :meth:`run`.
    """

    def __init__(
        self,
        ddb: Any,
        archive: Archive,
        table: str,
        description: Mapping[str, Any],
        *,
        dest: tuple[str, str, Archive],
        every: timedelta = DEFAULT_EVERY,
        view: str = "NEW_AND_OLD_IMAGES",
        poll_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        say: Say = print,
        wait: bool = True,
    ) -> None:
        self.ddb = ddb
        self.archive = archive
        self.table = table
        self.description = description
        self.table_id = table_id_of(description)
        self.table_arn = str(description["TableArn"])
        created = description.get("CreationDateTime")
        self.table_created_at = (
            as_utc(created)
            if isinstance(created, datetime)
            else (parse_iso(str(created)) if created else None)
        )
        self.bucket, self.prefix, self.dest = dest
        self.every = every
        self.view = view
        self.poll_seconds = poll_seconds
        self.sleep = sleep
        self.say = say
        # False: never wait for an export; a step that meets one still running ends there,
        # and the next step (a later invocation) finds it again by its client token.
        self.wait = wait

    # -- where the chain stands (read from the archive) ----------------------------------

    def _gaps(self) -> list[dict[str, Any]]:
        return [
            g
            for g in gap_log.read_gaps(self.archive, self.table)
            if g.get("source") == coverage.SOURCE_INCREMENTAL
            and g.get("table_id") in (None, "", self.table_id)
        ]

    def position(self, start: datetime | None = None) -> datetime | None:
        """Where the next window starts: the end of the last window or hole, else ``start``,
        else the newest base snapshot's ``log_from``."""
        ends = [w.end for w in list_windows(self.archive, self.table, self.table_id)]
        ends += [parse_iso(str(g["to"])) for g in self._gaps()]
        if ends:
            return max(ends)
        if start is not None:
            return as_utc(start)
        bases = [
            parse_iso(str(m["log_from"]))
            for m in list_snapshots(self.archive, self.table)
            if m.get("table_id") == self.table_id
        ]
        return max(bases) if bases else None

    def _needs_base(self, position: datetime) -> bool:
        """After a hole ending at ``position``, a base whose log starts there is needed."""
        if not any(parse_iso(str(g["to"])) == position for g in self._gaps()):
            return False
        return not any(
            parse_iso(str(m["log_from"])) >= position
            for m in list_snapshots(self.archive, self.table)
            if m.get("table_id") == self.table_id
        )

    # -- requests -------------------------------------------------------------------------

    def _request(self, kind: str, **extra: Any) -> str:
        kwargs: dict[str, Any] = {
            "TableArn": self.table_arn,
            "S3Bucket": self.bucket,
            "ExportFormat": "DYNAMODB_JSON",
            **extra,
        }
        if self.prefix:
            kwargs["S3Prefix"] = self.prefix
        try:
            response = self.ddb.export_table_to_point_in_time(**kwargs)
        except Exception as exc:
            # The error table's PitrUnavailable (exit 2), refined here into this module's (exit 4).
            if is_error(exc, errors.PitrUnavailable):
                raise PitrUnavailable(
                    f"point-in-time recovery is off for {self.table}: {kind} export refused"
                ) from exc
            if client_error_code(exc):
                raise translate_client_error(exc, f"ExportTableToPointInTime ({kind})") from exc
            raise
        return str(response["ExportDescription"]["ExportArn"])

    def request_window(self, start: datetime, end: datetime) -> str:
        return self._request(
            "incremental",
            ExportType=EXPORT_TYPE,
            IncrementalExportSpecification={
                "ExportFromTime": start,
                "ExportToTime": end,
                "ExportViewType": self.view,
            },
            ClientToken=client_token(self.table_id, "incremental", start, end),
        )

    def request_base(self, at: datetime) -> str:
        return self._request(
            "full",
            ExportType="FULL_EXPORT",
            ExportTime=at,
            ClientToken=client_token(self.table_id, "full", at),
        )

    def folder_of(self, export_arn: str, before: set[str]) -> Archive:
        return locate_export_folder(self.dest, export_arn, before)

    def _listing(self) -> set[str]:
        return set(self.dest.listdir("AWSDynamoDB"))

    def convert_window(self, export_arn: str, before: set[str]) -> WindowConversion:
        folder = read_export(self.folder_of(export_arn, before), EXPORT_TYPE)
        return convert_incremental(
            self.archive,
            self.table,
            describe_export(folder),
            live=self.description,
            table_created_at=self.table_created_at,
        )

    def finished(self, export_arn: str) -> dict[str, Any] | None:
        """The export's description once COMPLETED; ``None`` while it runs (only when not
        waiting). Raises :class:`WaitFailed` when it FAILED."""
        if self.wait:
            return wait_for_export(
                self.ddb, export_arn, poll_seconds=self.poll_seconds, sleep=self.sleep
            )
        try:
            described = dict(self.ddb.describe_export(ExportArn=export_arn)["ExportDescription"])
        except Exception as exc:
            if client_error_code(exc):
                raise translate_client_error(exc, f"DescribeExport {export_arn}") from exc
            raise
        status = described.get("ExportStatus")
        if status == "FAILED":
            raise WaitFailed(
                f"export {export_arn} failed: {described.get('FailureCode')}: "
                f"{described.get('FailureMessage')}"
            )
        return described if status == "COMPLETED" else None

    def take_base(self, at: datetime) -> dict[str, Any] | None:
        """A full export at ``at``, converted into a base snapshot (log from ``at − 60 s``);
        ``None`` while the export runs (when not waiting)."""
        before = self._listing()
        arn = self.request_base(at)
        self.say(f"{self.table}: base export at {iso_ms(at)} ({arn.rsplit('/', 1)[-1]})")
        done = self.finished(arn)
        if done is None:
            return None
        folder = read_export(self.folder_of(arn, before))
        conversion = convert_export(
            self.archive, self.table, folder, live=self.description, described=done
        )
        return conversion.manifest

    def record_hole(
        self, start: datetime, end: datetime, reason: str, detail: str | None = None
    ) -> None:
        gap = gap_log.append_gap(
            self.archive,
            self.table,
            table_id=self.table_id,
            stream_arn=self.table_arn,
            shard_id=None,
            start=start,
            end=end,
            reason=reason,
            source=coverage.SOURCE_INCREMENTAL,
            detail=detail,
        )
        self.say(
            f"{self.table}: GAP recorded: {gap['from']} .. {gap['to']} "
            f"({gap_log.GAP_REASONS[reason]})"
        )

    # -- one step -------------------------------------------------------------------------

    def step(self, start: datetime | None = None) -> bool:
        """Do the next thing due (a hole, a base, a window); ``False`` when nothing is due."""
        position = self.position(start)
        if position is None:
            raise UsageError(
                f"{self.table}: no window converted yet and no base snapshot to start from: "
                "pass --from TIME, or run `ddb-archiver backfill` (or `snapshot`) first"
            )
        pitr = PitrPeriod.read(self.ddb, self.table)
        earliest, latest = pitr.require(self.table)
        if position < earliest:
            resume = earliest + BASE_MARGIN
            self.record_hole(position, resume, pitr.hole_reason())
            return True
        if self._needs_base(position):
            at = position + EXPORT_MARGIN
            if at > latest:
                return False
            return self.take_base(at) is not None
        end = position + self.every
        if end > latest:
            return False
        return self.export_window(position, end) != PENDING

    def export_window(self, start: datetime, end: datetime) -> str:
        """Export, wait for and convert one window: :data:`CONVERTED`, :data:`FAILED` (the
        hole is recorded) or, when not waiting, :data:`PENDING`."""
        before = self._listing()
        arn = self.request_window(start, end)
        try:
            done = self.finished(arn)
        except WaitFailed as exc:
            self.record_hole(start, end, gap_log.GAP_EXPORT_FAILED, detail=str(exc))
            return FAILED
        if done is None:
            return PENDING
        conversion = self.convert_window(arn, before)
        record_coverage(
            self.archive, self.table, self.table_id, self.table_arn, self.table_created_at
        )
        window = conversion.window
        self.say(
            f"{self.table}: window [{iso_ms(window.start)}, {iso_ms(window.end)}): "
            f"{window.item_count} changed items" + ("" if conversion.new else " (converted before)")
        )
        return CONVERTED

    def run(self, *, once: bool, start: datetime | None = None) -> int:
        """Export windows until none is due (``once``) or forever; returns the steps done."""
        done = 0
        while True:
            if self.step(start):
                done += 1
                continue
            if once:
                return done
            position = self.position(start)
            latest = PitrPeriod.read(self.ddb, self.table).latest
            wait = self.poll_seconds
            if position is not None and latest is not None:
                wait = max(wait, (position + self.every - latest).total_seconds())
            self.sleep(wait)
