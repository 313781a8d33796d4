"""The plan's model: what the archive covers of a table generation, its base snapshots, its
recorded gaps, and the plans made of them (:class:`Plan`, :class:`LogPlan`).

Both planners build on it — :mod:`replayer.planning.plan` over the stream and
:mod:`replayer.planning.windows` over incremental-export windows — so it imports neither.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from archiver.format import gap_log
from archiver.format.manifests import list_snapshots
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms, parse_iso
from replayer.planning import lambda_gaps
from replayer.planning.segments import Inexact, LogSegment

if TYPE_CHECKING:
    from replayer.planning.kinesis_order import EqualTimeOrder

log = logging.getLogger(__name__)


def _time(value: Any) -> datetime | None:
    return parse_iso(str(value)) if value else None


@dataclass(frozen=True)
class GenerationCoverage:
    """What the archive covers of one table generation (one ``table_id``), from coverage.json."""

    table: str
    table_id: str
    table_arn: str
    table_created_at: datetime | None
    covered_from: datetime | None
    from_table_creation: bool
    watermark: datetime | None
    # The evidence that the log does not start at table creation after all, when found.
    refuted: Mapping[str, Any] | None = None

    @classmethod
    def from_coverage(cls, doc: Mapping[str, Any]) -> GenerationCoverage:
        refuted = doc.get("from_table_creation_refuted")
        return cls(
            table=str(doc.get("table", "")),
            table_id=str(doc.get("table_id", "")),
            table_arn=str(doc.get("table_arn", "")),
            table_created_at=_time(doc.get("table_created_at")),
            covered_from=_time(doc.get("covered_from")),
            from_table_creation=bool(doc.get("from_table_creation")) and not refuted,
            watermark=_time(doc.get("watermark")),
            refuted=dict(refuted) if isinstance(refuted, Mapping) else None,
        )

    @property
    def log_start(self) -> datetime | None:
        """Where the log is complete from; ``None`` when it is complete from table creation
        (then nothing earlier can be missing: the table did not exist)."""
        return None if self.from_table_creation else self.covered_from

    def covers(self, start: datetime) -> bool:
        """Whether the log holds every change from ``start`` on (up to the watermark)."""
        return self.log_start is None or start >= self.log_start


@dataclass(frozen=True)
class Base:
    """A committed base snapshot (its ``_manifest.json``)."""

    snapshot_id: str
    method: str
    table_id: str
    valid_from: datetime
    log_from: datetime
    item_count: int
    files: tuple[str, ...]
    source: str = ""

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> Base:
        return cls(
            snapshot_id=str(manifest["snapshot_id"]),
            method=str(manifest.get("method", "")),
            table_id=str(manifest.get("table_id", "")),
            valid_from=parse_iso(str(manifest["valid_from"])),
            log_from=parse_iso(str(manifest["log_from"])),
            item_count=int(manifest.get("item_count") or 0),
            files=tuple(str(f["path"]) for f in manifest.get("files", [])),
            source=str(manifest.get("source") or ""),
        )


@dataclass(frozen=True)
class Plan:
    """How to rebuild ``table`` as it was at ``at``: base (or none) + log ``[log_from, at]``."""

    table: str
    at: datetime
    generation: GenerationCoverage
    base: Base | None
    log_from: datetime
    change_files: tuple[str, ...]
    gaps: tuple[dict[str, Any], ...] = field(default=())  # met, and allowed
    # History kept from incremental exports: the log as segments in time order (replayer.
    # windows); empty for a plan over the stream alone, which reads ``change_files``.
    segments: tuple[LogSegment, ...] = field(default=())
    # Set only when --allow-inexact took some keys' state: inside an incremental-export
    # window, or where equal-time Kinesis records' order is not proven.
    inexact: Inexact | EqualTimeOrder | None = None

    @property
    def table_id(self) -> str:
        return self.generation.table_id

    @property
    def dt_range(self) -> tuple[date, date]:
        return as_utc(self.log_from).date(), as_utc(self.at).date()

    def describe(self, counts: Mapping[str, int] | None = None) -> str:
        """The plan as a few lines for people (``--dry-run``, logs)."""
        g = self.generation
        lines = [
            f"table          {self.table} (generation {g.table_id})",
            f"restore time   {iso_ms(self.at)}  (watermark {iso_or_none_yet(g.watermark)})",
        ]
        if self.base is None:
            lines.append("base           none: the log starts at table creation")
        else:
            b = self.base
            lines.append(
                f"base           snapshot {b.snapshot_id} ({b.method}, valid from "
                f"{iso_ms(b.valid_from)}, {b.item_count} items, {len(b.files)} files)"
            )
        lo, hi = self.dt_range
        lines.append(f"log            [{iso_ms(self.log_from)}, {iso_ms(self.at)}]  dt {lo}..{hi}")
        lines.append(f"change files   {len(self.change_files)}")
        for segment in self.segments:
            lines.append(f"segment        {segment.describe()}")
        if self.inexact is not None:
            lines.append(self.inexact.describe())
        if counts:
            for name, value in counts.items():
                lines.append(f"{name:<14} {value}")
        for gap in self.gaps:
            lines.append(f"GAP (allowed)  {describe_gap(gap)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class LogPlan:
    """The log alone over ``(after, until]`` of one generation: per key its latest image."""

    table: str
    generation: GenerationCoverage
    after: datetime
    until: datetime
    change_files: tuple[str, ...]
    gaps: tuple[dict[str, Any], ...] = field(default=())
    # ``[after, until]`` instead: a range that starts where the log does (table creation).
    lower_inclusive: bool = False

    @property
    def table_id(self) -> str:
        return self.generation.table_id


def iso_or_none_yet(value: datetime | None) -> str:
    return iso_ms(value) if value else "none yet"


def describe_gap(gap: Mapping[str, Any]) -> str:
    reason = gap_log.GAP_REASONS.get(str(gap.get("reason")), str(gap.get("reason")))
    what = lambda_gaps.describe(dict(gap))
    return f"{gap.get('from')} .. {gap.get('to')} ({reason}{': ' + what if what else ''})"


# -- gaps and bases ---------------------------------------------------------------------


def gaps_met(
    archive: Archive, gen: GenerationCoverage, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Recorded gaps of this generation that meet ``[start, end]``.

    A gap's records may be missing for ``from < event_time < to`` (archiver.format.coverage).
    """
    met = []
    for gap in gap_log.read_gaps(archive, gen.table):
        if gap.get("table_id") not in (None, "", gen.table_id):
            continue
        lo = _time(gap.get("from"))
        hi = _time(gap.get("to"))
        if lo is None:
            continue
        if hi is None:  # not closed yet: everything after ``from`` may be missing
            hit = lo < end
        elif hi <= lo:  # a single instant
            hit = start <= lo <= end
        else:
            hit = lo < end and hi > start
        if hit:
            met.append(gap)
    return met


def bases(archive: Archive, table: str, table_id: str) -> list[Base]:
    """Committed snapshots of this generation, oldest ``valid_from`` first."""
    out = []
    for manifest in list_snapshots(archive, table):
        if str(manifest.get("table_id", "")) != table_id:
            continue
        try:
            out.append(Base.from_manifest(manifest))
        except (KeyError, ValueError) as exc:
            log.warning("skipping snapshot %s: unreadable manifest (%s)",
                        manifest.get("snapshot_id"), exc)  # fmt: skip
    return out
