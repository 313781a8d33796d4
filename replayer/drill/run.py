"""One drill: fold the archive at ``T``, take AWS's own copy at ``T``, compare them exactly.

The comparison is made exact despite AWS's copy being fuzzy by a margin (DESIGN.md: a native
export is accurate to about a minute; a PITR restore to about a second, against stream times
that are AWS's approximate creation times): every key the archived log shows written within
``margin`` of ``T`` — a record with ``T − margin ≤ event_time ≤ T + margin`` — is left out of
the comparison on both sides and counted as *not comparable*, since AWS's copy may hold it
before or after that write. Every other key was not written in the margin, so its state at any
instant inside it is its state at ``T``: the archive and AWS must agree on it byte for byte
(canonical JSON). A write the archive never received, to a key it shows no write for in the
margin, is therefore always a difference (the drill's purpose); a write it lost inside the
margin, to a key written there anyway, is not seen (the margin is kept as short as each method
allows).

The margin is the method's (:data:`MARGINS`) unless one is given (``--margin``, or the
scheduled function's ``DRILL_MARGIN_SECONDS``: :func:`drill_margin`): a larger one for an
export AWS documents only as "about a minute" accurate, a smaller one for a quiet table. One
smaller than the method's accuracy risks false differences — a key AWS's copy shows as of
another instant inside that accuracy but outside the margin is compared, and differs —
which :func:`margin_risk` says in one line.

The result — counts, the first differences in full, how long each side took and the measured
RPO (now − watermark) — is appended to ``_state/<table>/drills.jsonl`` (:mod:`replayer.drill.
record`) whatever it is, and returned for the command to print and exit on (0 identical, 3
differences).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from archiver.aws import metrics
from archiver.aws.clients import AwsSettings
from archiver.format.errors import UsageError
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms, stamp, utcnow
from replayer.drill import native, record
from replayer.engines.fold import Fold, FoldSettings
from replayer.exceptions import Refused
from replayer.planning import plan as planning
from replayer.read.verify import compare, load_rows

log = logging.getLogger(__name__)

EXPORT_MARGIN = timedelta(seconds=60)
PITR_MARGIN = timedelta(seconds=5)
MARGINS = {"export": EXPORT_MARGIN, "pitr": PITR_MARGIN}
# A day: a wider margin leaves most of a busy table out, and the window shrinks by it twice.
MAX_MARGIN_SECONDS = 86_400.0
DEFAULT_EXAMPLES = 10
_MS = timedelta(milliseconds=1)


@dataclass
class DrillResult:
    """What one drill found (one line of ``drills.jsonl``)."""

    drill_id: str
    table: str
    at: datetime
    method: str
    margin: timedelta
    started_at: datetime
    finished_at: datetime
    items_compared: int
    not_comparable: int
    missing: int  # in AWS's copy, not in the archive's state
    extra: int  # in the archive's state, not in AWS's copy
    different: int
    fold_seconds: float
    native_seconds: float
    watermark: datetime | None
    native_source: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    # Leaving the margin's keys out, joining and counting (printed, not recorded).
    compare_seconds: float = 0.0

    @property
    def differences(self) -> int:
        return self.missing + self.extra + self.different

    @property
    def identical(self) -> bool:
        return self.differences == 0

    @property
    def rpo_seconds(self) -> float | None:
        """The measured recovery point objective: how far behind now the archive was."""
        if self.watermark is None:
            return None
        return round((self.finished_at - self.watermark).total_seconds(), 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "drill_id": self.drill_id,
            "table": self.table,
            "at": iso_ms(self.at),
            "method": self.method,
            "started_at": iso_ms(self.started_at),
            "finished_at": iso_ms(self.finished_at),
            "margin_seconds": self.margin.total_seconds(),
            "items_compared": self.items_compared,
            "not_comparable": self.not_comparable,
            "differences": self.differences,
            "missing": self.missing,
            "extra": self.extra,
            "different": self.different,
            "examples": [
                orjson.dumps(e, option=orjson.OPT_SORT_KEYS).decode() for e in self.examples
            ],
            "fold_seconds": round(self.fold_seconds, 3),
            "native_seconds": round(self.native_seconds, 3),
            "rpo_seconds": self.rpo_seconds,
            "watermark": iso_ms(self.watermark) if self.watermark else None,
            "native_source": self.native_source,
        }

    def report(self) -> str:
        head = (
            f"drill of {self.table} at {iso_ms(self.at)} ({self.method}): "
            f"{self.items_compared:,} items compared, {self.not_comparable:,} not comparable "
            f"(written within {self.margin.total_seconds():g} s of T)"
        )
        rpo = self.rpo_seconds if self.rpo_seconds is not None else "?"
        timing = (
            f"fold {self.fold_seconds:.1f} s, {self.method} {self.native_seconds:.1f} s, "
            f"compare {self.compare_seconds:.1f} s, RPO {rpo} s"
        )
        if self.identical:
            return f"identical: {head}\n{timing}"
        lines = [
            f"DIFFERENT: {self.missing:,} only in AWS's copy, {self.extra:,} only in the archive, "
            f"{self.different:,} different; {head}",
            timing,
        ]
        for example in self.examples:
            lines.append(f"  {example['kind']:<9} {example['keys']}")
            lines.append(f"    archive: {example['archive'] or '-'}")
            lines.append(f"    aws:     {example['aws'] or '-'}")
        return "\n".join(lines)


def new_drill_id(now: datetime) -> str:
    """A drill's id: its start as a stamp plus a short random suffix (lower case, a valid part
    of a table name and of an S3 key)."""
    return f"{stamp(now).lower()}-{secrets.token_hex(2)}"


def _examples(con: Any, expected: str, actual: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` differing keys (by key), with both sides in full."""
    rows = con.execute(
        f"""SELECT e.keys, a.keys, e.item, a.item
            FROM {expected} AS e FULL OUTER JOIN {actual} AS a ON e.keys = a.keys
            WHERE e.keys IS NULL OR a.keys IS NULL OR e.item IS DISTINCT FROM a.item
            ORDER BY coalesce(e.keys, a.keys) LIMIT {int(limit)}"""
    ).fetchall()
    out = []
    for e_keys, a_keys, e_item, a_item in rows:
        kind = "missing" if e_keys is None else "extra" if a_keys is None else "different"
        out.append({"kind": kind, "keys": e_keys or a_keys, "archive": e_item, "aws": a_item})
    return out


def drill_margin(method: str, seconds: float | None = None) -> timedelta:
    """The margin of a drill by ``method``: ``seconds`` when given, else the method's own.

    Raises:
        UsageError: ``seconds`` is not a number above 0 and at most :data:`MAX_MARGIN_SECONDS`.
    """
    if seconds is None:
        return MARGINS[method]
    if not 0 < seconds <= MAX_MARGIN_SECONDS:  # NaN fails too
        raise UsageError(
            f"a drill margin of {seconds:g} s is not above 0 and at most "
            f"{MAX_MARGIN_SECONDS:g} s (a day)"
        )
    return timedelta(seconds=seconds)


def margin_risk(method: str, margin: timedelta) -> str | None:
    """One line saying what ``margin`` risks when it is below an export's accuracy, else None."""
    if method != "export" or margin >= EXPORT_MARGIN:
        return None
    return (
        f"a margin of {margin.total_seconds():g} s is below an export's accuracy (about a "
        f"minute, {EXPORT_MARGIN.total_seconds():g} s): a key written between the two may be "
        "seen by the export as of another instant and reported as a false difference"
    )


NativeSide = Callable[[datetime], native.NativeCopy]


def _margin_log(
    archive: Archive, table: str, plan: planning.Plan, at: datetime, margin: timedelta
) -> planning.LogPlan:
    """The log over ``[at − margin, at + margin]``: every key written there is not comparable.

    Where that range starts before the log does, it is clamped to the log's start — inclusive
    of it — only when the log starts at table creation (nothing was written before); else the
    keys written between ``at − margin`` and the log's start are unknown.

    Raises:
        Refused: the log starts after ``at − margin``, not at table creation.
    """
    gen = plan.generation
    start = gen.covered_from
    lower = at - margin
    if start is None or lower - _MS >= start:
        return planning.plan_log(archive, table, lower - _MS, at + margin, table_id=plan.table_id)
    if not gen.from_table_creation:
        raise Refused(
            f"table {table!r}: its log starts at {iso_ms(start)}, less than the margin "
            f"({margin.total_seconds():g} s) before {iso_ms(at)}: keys written just before the "
            "log starts could not be told apart; drill at a later time"
        )
    around = planning.plan_log(archive, table, start, at + margin, table_id=plan.table_id)
    return dataclasses.replace(around, lower_inclusive=True)


def run_drill(
    archive: Archive,
    table: str,
    at: datetime,
    *,
    method: str,
    native_side: NativeSide,
    margin: timedelta | None = None,
    settings: AwsSettings | None = None,
    fold_settings: FoldSettings | None = None,
    examples: int = DEFAULT_EXAMPLES,
    drill_id: str | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> DrillResult:
    """Drill ``table`` at ``at`` against ``native_side(at)`` and record the result.

    ``margin`` defaults to the method's (:data:`MARGINS`); 0 compares every key, which only an
    exact copy survives (the tests' proof that the margin is what keeps the comparison exact).

    Raises:
        UsageError: ``margin`` is negative.
        Refused: the archive cannot rebuild ``at`` exactly, or its log does not reach
            ``at + margin`` (nothing is requested from AWS then).
    """
    at = as_utc(at)
    margin = MARGINS[method] if margin is None else margin
    if margin < timedelta(0):
        raise UsageError(f"a drill margin cannot be negative ({margin.total_seconds():g} s)")
    started = clock()
    drill_id = drill_id or new_drill_id(started)
    plan = planning.plan_restore(archive, table, at, settings=settings)
    around = _margin_log(archive, table, plan, at, margin)
    with Fold(archive, fold_settings) as fold:
        begun = time.monotonic()
        state = fold.state_at(plan)
        written = fold.log_changes(around)
        fold_seconds = time.monotonic() - begun
        con = fold.con
        begun = time.monotonic()
        copy = native_side(at)
        try:
            if copy.table_id is not None and copy.table_id != plan.table_id:
                raise Refused(
                    f"AWS's copy of {table!r} is of table id {copy.table_id}, but the archive's "
                    f"state at {iso_ms(at)} is of {plan.table_id}: the table was recreated, and "
                    "the two cannot be compared"
                )
            load_rows(con, "aws_copy", copy.rows)
        finally:
            copy.cleanup()
        native_seconds = time.monotonic() - begun
        begun = time.monotonic()
        con.execute(f"CREATE TABLE margin_keys AS SELECT DISTINCT keys FROM {written.table}")
        con.execute(
            f"CREATE VIEW archive_side AS SELECT keys, item FROM {state.table} "
            "ANTI JOIN margin_keys USING (keys)"
        )
        con.execute(
            "CREATE VIEW aws_side AS SELECT keys, item FROM aws_copy "
            "ANTI JOIN margin_keys USING (keys)"
        )
        # expected = AWS's copy, actual = the archive: "missing" is what the archive lacks.
        counts = compare(con, "aws_side", "archive_side")
        not_comparable = int(con.execute("SELECT count(*) FROM margin_keys").fetchall()[0][0])
        found = [] if counts.identical else _examples(con, "archive_side", "aws_side", examples)
        compare_seconds = time.monotonic() - begun
    result = DrillResult(
        drill_id=drill_id,
        table=table,
        at=at,
        method=method,
        margin=margin,
        started_at=started,
        finished_at=clock(),
        items_compared=counts.expected + counts.extra,
        not_comparable=not_comparable,
        missing=counts.missing,
        extra=counts.extra,
        different=counts.different,
        fold_seconds=fold_seconds,
        native_seconds=native_seconds,
        watermark=_watermark(archive, table),
        native_source=copy.source,
        examples=found,
        compare_seconds=compare_seconds,
    )
    record.append(archive, table, result.to_json())
    metrics.current().drilled(table, result.differences, result.items_compared)
    return result


def _watermark(archive: Archive, table: str) -> datetime | None:
    gens = planning.generations(archive, table)
    return gens[-1].watermark if gens else None
