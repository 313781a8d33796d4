"""Pieces of a replay whose records come from different sources, and what a plan may promise.

A plan over the stream alone reads one list of change files with one time range. A plan that
uses history kept from incremental exports (``replayer.planning.windows``) reads a sequence of
:class:`LogSegment` s instead, each with its own files and time range, in time order: a
segment's records outrank every earlier segment's, whatever their sequence numbers say (an
export's "sequence numbers" are write times, a stream's are not comparable to them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from archiver.format.exports.incremental import RESOLUTION
from archiver.format.timefmt import iso_ms

STREAM = "stream"
WINDOW = "incremental-export"


@dataclass(frozen=True)
class LogSegment:
    """Records of ``files`` with ``lo ≤ event_time ≤ hi``; later segments outrank earlier ones."""

    kind: str  # STREAM or WINDOW
    files: tuple[str, ...]
    lo: datetime
    hi: datetime
    window: tuple[datetime, datetime] | None = None  # [from, to) of a WINDOW segment

    def describe(self) -> str:
        if self.window is not None:
            start, end = self.window
            span = f"window [{iso_ms(start)}, {iso_ms(end)})"
            if self.hi < end - RESOLUTION:
                span += f" up to {iso_ms(self.hi)}"
            return f"incremental export {span}, {len(self.files)} file(s)"
        return f"stream [{iso_ms(self.lo)}, {iso_ms(self.hi)}], {len(self.files)} file(s)"


@dataclass(frozen=True)
class Inexact:
    """A restore inside an incremental-export window that took some keys' state at its start.

    ``uncertain_keys`` were written in the window after the restore time; any earlier writes
    of theirs in the window are not in the export, so their state at the restore time is not
    known. ``--allow-inexact`` restores them as they were at the window's start.
    """

    window: tuple[datetime, datetime]
    uncertain_keys: int
    exact_before: datetime | None  # the nearest exact instants around the restore time
    exact_after: datetime

    def describe(self) -> str:
        start, end = self.window
        return (
            f"INEXACT: {self.uncertain_keys} key(s) written after the restore time within the "
            f"incremental-export window [{iso_ms(start)}, {iso_ms(end)}) are restored as they "
            "were at the window's start"
        )

    def as_json(self) -> dict[str, object]:
        start, end = self.window
        return {
            "window_from": iso_ms(start),
            "window_to": iso_ms(end),
            "uncertain_keys": self.uncertain_keys,
            "state_of_uncertain_keys": "at the window's start",
            "exact_before": iso_ms(self.exact_before) if self.exact_before else None,
            "exact_after": iso_ms(self.exact_after),
        }
