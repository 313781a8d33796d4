"""Planning a replay over history kept from incremental exports (and the stream, where it is).

An incremental export of the window ``[a, b)`` holds, per key changed in it, only its last
change (DESIGN.md "History from incremental exports"). So, for a restore to ``T``:

* at a window's last instant (``b − 1 ms``: ``b`` is exclusive, times are kept to the
  millisecond) every key is exact: the state there is the state before the window plus each
  changed key's last change;
* inside a window (``a ≤ T < b − 1 ms``) a key whose last write in the window is ``≤ T`` is
  exact; a key written after ``T`` in the window may have had other writes in ``[a, T]``
  that no export shows. The plan counts those keys: none, and the restore is exact;
  otherwise it refuses (:class:`InexactRestore`, exit 4) naming the count and the nearest
  exact instants, unless ``allow_inexact``, which takes those keys' state at ``a`` (the fold
  before the window) and says so.

The log from the base's ``log_from`` to ``T`` is built as a chain of segments
(:class:`replayer.planning.segments.LogSegment`), preferring the stream wherever it is complete: a
window, then the stream from the window's end when the stream covers it, or the stream up to
just before a window that starts inside its coverage. Each segment's records outrank every
earlier segment's. Windows must chain (each starts where the previous ended); a hole between
them is refused like a gap in the log (``--allow-gaps`` crosses it, loudly). A window's rows
before ``log_from`` are harmless: a row is its key's state from its write to the window's end.

Planning reads the commit records of the windows and, for a restore inside a window, that
window's ``event_time`` column (to count the uncertain keys); never other change records.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from archiver.format import coverage, gap_log
from archiver.format.exports.incremental import RESOLUTION, Window, list_windows
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms
from replayer.engines import dataset
from replayer.exceptions import (
    AfterWatermark,
    GapInLog,
    InexactRestore,
    NoUsableBase,
    OutsideCoverage,
    Refused,
)
from replayer.planning.log_files import drop_later_streams
from replayer.planning.model import Base, GenerationCoverage, Plan, bases, gaps_met
from replayer.planning.segments import STREAM, WINDOW, Inexact, LogSegment

log = logging.getLogger(__name__)

# A chain of windows is followed at most this many steps (35 days of 15-minute windows).
_MAX_STEPS = 4000


def windows_of(archive: Archive, table: str, table_id: str) -> list[Window]:
    """The generation's committed windows, by start."""
    return list_windows(archive, table, table_id)


def latest_exact(gen: GenerationCoverage, windows: Sequence[Window]) -> datetime | None:
    """The latest instant a restore can reach: the stream's watermark or the last window's
    last instant, whichever is later."""
    candidates = [w.last_exact for w in windows]
    if gen.watermark is not None and _stream_start(gen) is not None:
        candidates.append(gen.watermark)
    return max(candidates) if candidates else None


def _stream_start(gen: GenerationCoverage) -> datetime | None:
    if gen.from_table_creation:
        return gen.table_created_at or gen.covered_from
    return gen.covered_from


def _count_after(archive: Archive, window: Window, table_id: str, at: datetime) -> int:
    """Rows of ``window`` written after ``at``: one per key (exports are compacted)."""
    total = 0
    for rel in window.files:
        table = pq.read_table(
            archive.path(rel), columns=["event_time", "table_id"], filesystem=archive.arrow_fs
        )
        later = pc.and_(
            pc.greater(table["event_time"], pa.scalar(as_utc(at), table.schema.field(0).type)),
            pc.equal(table["table_id"], table_id),
        )
        total += int(pc.sum(pc.cast(later, "int64")).as_py() or 0)
    return total


class _Chain:
    """Builds the segments from ``log_from`` to ``at`` (see the module doc)."""

    def __init__(
        self,
        archive: Archive,
        gen: GenerationCoverage,
        windows: Sequence[Window],
        at: datetime,
        allow_gaps: bool,
    ) -> None:
        self.archive = archive
        self.gen = gen
        self.windows = list(windows)
        self.at = at
        self.allow_gaps = allow_gaps
        self.stream_from = _stream_start(gen) if gen.watermark is not None else None
        self.gaps: list[dict[str, object]] = []

    def _in_stream(self, instant: datetime) -> bool:
        return (
            self.stream_from is not None
            and self.gen.watermark is not None
            and self.stream_from <= instant <= self.gen.watermark
        )

    def _stream_piece(self, lo: datetime, hi: datetime) -> LogSegment:
        met = [
            g
            for g in gaps_met(self.archive, self.gen, lo, hi)
            if g.get("source", coverage.SOURCE_STREAM) == coverage.SOURCE_STREAM
        ]
        self._meet(met, lo, hi)
        files = dataset.change_files(self.archive, self.gen.table, lo.date(), hi.date())
        return LogSegment(STREAM, tuple(drop_later_streams(files, lo, hi)), lo, hi)

    def _meet(self, met: list[dict[str, object]], lo: datetime, hi: datetime) -> None:
        if not met:
            return
        gap = met[0]
        reason = gap_log.GAP_REASONS.get(str(gap.get("reason")), str(gap.get("reason")))
        if not self.allow_gaps:
            raise GapInLog(
                f"the history of table {self.gen.table!r} has a gap in [{iso_ms(lo)}, "
                f"{iso_ms(hi)}]: {gap.get('from')} .. {gap.get('to')} ({reason}); "
                "--allow-gaps restores anyway, with changes in the gap missing"
            )
        for each in met:
            log.warning(
                "WARNING: --allow-gaps: restoring across a gap in the history, changes "
                "in it are MISSING: %s .. %s",
                each.get("from"),
                each.get("to"),
            )
        self.gaps.extend(met)

    def _window_at(self, instant: datetime) -> Window | None:
        for window in self.windows:
            if window.start <= instant < window.end:
                return window
        return None

    def _hole(self, cursor: datetime) -> datetime:
        """No segment covers ``cursor``: refuse, or (``allow_gaps``) skip to the next one."""
        later = [w.start for w in self.windows if w.start > cursor]
        if self.stream_from is not None and self.stream_from > cursor:
            later.append(self.stream_from)
        resume = min(later) if later else None
        recorded = [
            g
            for g in gap_log.read_gaps(self.archive, self.gen.table)
            if g.get("source") == coverage.SOURCE_INCREMENTAL
            and g.get("table_id") in (None, "", self.gen.table_id)
            and str(g.get("from")) <= iso_ms(resume or self.at)
            and str(g.get("to")) >= iso_ms(cursor)
        ]
        if resume is None:
            end = latest_exact(self.gen, self.windows)
            raise AfterWatermark(
                f"{iso_ms(self.at)} is after the latest restorable time of table "
                f"{self.gen.table!r} ({iso_ms(end) if end else 'none yet'}): nothing in the "
                f"archive covers it from {iso_ms(cursor)} on"
            )
        if recorded:
            self._meet(recorded, cursor, resume)
        elif not self.allow_gaps:
            raise OutsideCoverage(
                f"nothing in the archive covers table {self.gen.table!r} from {iso_ms(cursor)} "
                f"to {iso_ms(resume)} (no incremental-export window and no stream there)"
            )
        else:
            log.warning(
                "WARNING: --allow-gaps: nothing covers %s .. %s; changes in between are MISSING",
                iso_ms(cursor),
                iso_ms(resume),
            )
            self.gaps.append({"from": iso_ms(cursor), "to": iso_ms(resume), "reason": "uncovered"})
        return resume

    def build(self, log_from: datetime) -> tuple[list[LogSegment], Window | None, bool]:
        """Segments from ``log_from`` to ``at``; the window ``at`` falls inside (if any) and
        whether that window was entered at its start (so its start is an exact instant)."""
        cursor = log_from
        segments: list[LogSegment] = []
        entered_at_start = False
        for _ in range(_MAX_STEPS):
            if self._in_stream(cursor):
                watermark = self.gen.watermark
                assert watermark is not None
                if self.at <= watermark:
                    segments.append(self._stream_piece(cursor, self.at))
                    return segments, None, False
                exits = [w for w in self.windows if cursor <= w.start <= watermark + RESOLUTION]
                if not exits:
                    raise AfterWatermark(
                        f"{iso_ms(self.at)} is after the watermark {iso_ms(watermark)} of table "
                        f"{self.gen.table!r} and no incremental-export window continues from "
                        "there (use --use-latest-restorable-time, or let the archiver catch up)"
                    )
                exit_window = max(exits, key=lambda w: w.start)
                if exit_window.start > cursor:
                    segments.append(self._stream_piece(cursor, exit_window.start - RESOLUTION))
                cursor = exit_window.start
                entered_at_start = True
                continue
            window = self._window_at(cursor)
            if window is None:
                cursor = self._hole(cursor)
                if cursor > self.at:  # allowed: the hole reaches past T
                    return segments, None, False
                entered_at_start = True
                continue
            started = entered_at_start or cursor == window.start
            if self.at < window.end:
                segments.append(
                    LogSegment(
                        WINDOW, window.files, window.start, self.at, (window.start, window.end)
                    )
                )
                return segments, window, started
            segments.append(
                LogSegment(
                    WINDOW,
                    window.files,
                    window.start,
                    window.last_exact,
                    (window.start, window.end),
                )
            )
            cursor = window.end
            entered_at_start = True
        raise Refused(f"table {self.gen.table!r}: the chain of windows is too long to plan")


def _starts(
    gen: GenerationCoverage, candidates: Sequence[Base], windows: Sequence[Window], at: datetime
) -> list[tuple[Base | None, datetime]]:
    """Where the history can start: bases valid at ``at`` (newest first), then table
    creation when the stream or the first window starts there."""
    out: list[tuple[Base | None, datetime]] = [
        (b, b.log_from)
        for b in sorted(candidates, key=lambda b: b.valid_from, reverse=True)
        if b.valid_from <= at
    ]
    created = gen.table_created_at
    if gen.from_table_creation and created is not None:
        out.append((None, created))
    elif created is not None and windows and windows[0].start <= created:
        out.append((None, windows[0].start))
    return out


def plan_with_windows(
    archive: Archive,
    table: str,
    at: datetime,
    gen: GenerationCoverage,
    windows: Sequence[Window],
    *,
    allow_gaps: bool = False,
    allow_inexact: bool = False,
) -> Plan:
    """Plan the state of ``table`` at ``at`` over bases, windows and the stream.

    Raises:
        Refused: no base and history reach ``at`` (the subclass says why), or ``at`` is
            inside a window with uncertain keys and ``allow_inexact`` is false
            (:class:`InexactRestore`).
    """
    at = as_utc(at)
    starts = _starts(gen, bases(archive, table, gen.table_id), windows, at)
    if not starts:
        first = windows[0].start if windows else None
        raise NoUsableBase(
            f"no snapshot of table {table!r} is valid at {iso_ms(at)}, and its history from "
            f"incremental exports starts at {iso_ms(first) if first else 'none'}, not at table "
            "creation: take a base (ddb-archiver backfill, or snapshot) first"
        )
    refusal: Refused | None = None
    for base, log_from in starts:
        chain = _Chain(archive, gen, windows, at, allow_gaps)
        try:
            segments, inside, entered = chain.build(log_from)
        except Refused as exc:
            refusal = refusal or exc
            continue
        inexact = None
        if inside is not None:
            uncertain = _count_after(archive, inside, gen.table_id, at)
            earliest = base.valid_from if base is not None else log_from
            before = inside.start - RESOLUTION
            exact_before = before if entered and before >= earliest else None
            if uncertain:
                inexact = Inexact(
                    (inside.start, inside.end), uncertain, exact_before, inside.last_exact
                )
                if not allow_inexact:
                    nearest = " and ".join(
                        iso_ms(t) for t in (exact_before, inside.last_exact) if t is not None
                    )
                    raise InexactRestore(
                        f"{iso_ms(at)} is inside the incremental-export window "
                        f"[{iso_ms(inside.start)}, {iso_ms(inside.end)}) of table {table!r}: "
                        f"{uncertain} key(s) were written after it in the window, and their "
                        "earlier writes there are not exported, so their state at that time is "
                        f"unknown; the nearest exact instants are {nearest} (window ends); "
                        "--allow-inexact restores those keys as they were at the window's start"
                    )
                log.warning("WARNING: --allow-inexact: %s", inexact.describe())
        files = tuple(f for segment in segments for f in segment.files)
        return Plan(
            table=table,
            at=at,
            generation=gen,
            base=base,
            log_from=log_from,
            change_files=files,
            gaps=tuple(chain.gaps),  # type: ignore[arg-type]
            segments=tuple(segments),
            inexact=inexact,
        )
    assert refusal is not None
    raise refusal


def uses_windows(plan: Plan) -> bool:
    """Whether a plan reads rows converted from incremental exports."""
    return any(segment.kind == WINDOW for segment in plan.segments)
