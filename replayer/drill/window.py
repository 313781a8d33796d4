"""Which instants a drill can be run at: inside both the archive's exact coverage and PITR's window.

A drill compares the archive's state at ``T`` with AWS's own state at ``T`` (a native export
or a PITR restore), so ``T`` must be an instant both sides can give:

- the archive: at or after the earliest instant it rebuilds exactly (table creation when the
  log starts there, else the ``valid_from`` of the oldest base whose log it covers, and no
  earlier than ``margin`` after the log's start), and at or before ``watermark − margin`` — the
  margin because the keys written within ``margin`` of ``T`` are found in the log (they are the
  ones AWS's fuzzy copy cannot be compared on), so the log must cover ``T − margin`` (unless it
  starts at table creation: nothing was written before) to ``T + margin``;
- AWS: inside PITR's restorable window (``EarliestRestorableDateTime`` ..
  ``LatestRestorableDateTime``) as ``DescribeContinuousBackups`` reports it now.

``margin`` is the drill's: the method's (60 s for an export, 5 s for PITR) or the one given
(``--margin``, ``DRILL_MARGIN_SECONDS``), so a larger margin narrows the window at both ends
(where the log does not start at table creation) and a smaller one widens it.

The window is computed from small state files and one AWS call; the plan made at the chosen
``T`` still checks gaps and the integrity chain, and refuses as a restore would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms
from archiver.native.pitr import PitrStatus
from replayer.exceptions import AfterWatermark, NoUsableBase, OutsideCoverage, Refused
from replayer.planning import plan as planning

# Drawn instants are whole milliseconds, as the archive's times are.
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class DrillWindow:
    """Where a drill can run: ``[lo, hi]``, and the two windows it is the intersection of."""

    archive_from: datetime
    archive_to: datetime  # watermark − margin
    pitr_from: datetime
    pitr_to: datetime

    @property
    def lo(self) -> datetime:
        return max(self.archive_from, self.pitr_from)

    @property
    def hi(self) -> datetime:
        return min(self.archive_to, self.pitr_to)

    def contains(self, at: datetime) -> bool:
        return self.lo <= as_utc(at) <= self.hi

    def describe(self) -> str:
        return (
            f"archive exact {iso_ms(self.archive_from)} .. {iso_ms(self.archive_to)} (watermark "
            f"minus the margin), PITR {iso_ms(self.pitr_from)} .. {iso_ms(self.pitr_to)}"
        )


def archive_exact_from(archive: Archive, table: str, gen: planning.GenerationCoverage) -> datetime:
    """The earliest instant the archive rebuilds ``gen`` exactly at.

    Raises:
        Refused: no instant (no usable base and the log does not start at table creation).
    """
    if gen.from_table_creation:
        start = gen.table_created_at or gen.covered_from
        if start is not None:
            return as_utc(start)
    usable = [b for b in planning.bases(archive, table, gen.table_id) if gen.covers(b.log_from)]
    if not usable:
        raise NoUsableBase(
            f"table {table!r}: the archive has no base snapshot whose log it covers, and its log "
            "does not start at table creation: no instant can be drilled (take a snapshot with "
            "`ddb-archiver snapshot`)"
        )
    return min(b.valid_from for b in usable)


def drill_window(archive: Archive, table: str, pitr: PitrStatus, margin: timedelta) -> DrillWindow:
    """The instants a drill of ``table`` can be run at now (current generation).

    Raises:
        Refused: PITR is off or has no window yet, the archive has no watermark, or the two
            windows do not meet.
    """
    gens = planning.generations(archive, table)
    if not gens:
        raise OutsideCoverage(f"the archive {archive.url} holds no coverage of table {table!r}")
    gen = gens[-1]
    if gen.watermark is None:
        raise AfterWatermark(f"table {table!r}: the archiver has not caught up yet (no watermark)")
    if not pitr.enabled or pitr.earliest_restorable is None or pitr.latest_restorable is None:
        raise Refused(
            f"table {table!r}: point-in-time recovery is not enabled (or has no restorable window "
            "yet), so AWS has no copy to drill against: `ddb-archiver pitr --enable`"
        )
    exact_from = archive_exact_from(archive, table, gen)
    if not gen.from_table_creation and gen.covered_from is not None:
        exact_from = max(exact_from, as_utc(gen.covered_from) + margin)
    window = DrillWindow(
        archive_from=exact_from,
        archive_to=as_utc(gen.watermark) - margin,
        pitr_from=as_utc(pitr.earliest_restorable),
        pitr_to=as_utc(pitr.latest_restorable),
    )
    if window.lo > window.hi:
        raise Refused(f"table {table!r}: no instant is inside both windows ({window.describe()})")
    return window


def random_time(window: DrillWindow, rng: random.Random | None = None) -> datetime:
    """An instant drawn uniformly from ``[lo, hi]``, in whole milliseconds."""
    rng = rng or random.SystemRandom()
    span = int((window.hi - window.lo) / _MS)
    return window.lo + rng.randint(0, max(0, span)) * _MS


def check_time(window: DrillWindow, at: datetime) -> None:
    """Refuse a given ``--at`` outside the window, naming which side cannot give it."""
    at = as_utc(at)
    if window.contains(at):
        return
    if at > window.archive_to:
        raise AfterWatermark(
            f"{iso_ms(at)} is too recent to drill: the archive must reach it plus the margin "
            f"({window.describe()})"
        )
    raise OutsideCoverage(f"{iso_ms(at)} is outside the drillable window ({window.describe()})")
