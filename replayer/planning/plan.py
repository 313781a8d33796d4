"""Planning a replay: which base, which log range, which files — or a clear refusal.

DESIGN.md "Replay semantics": the state at ``T`` is, per key, the latest change record in
``[log_from, T]`` of the table generation alive at ``T``, else the base snapshot's item. A
plan picks the newest base valid at ``T`` (its manifest carries ``valid_from`` and
``log_from``: an export at ``E`` is valid from ``E + 60 s`` and needs the log from
``E − 60 s``; a scan from ``S`` to ``F`` is valid from ``F + 5 s`` and needs it from
``S − 5 s``), or none when the log starts at table creation. It refuses (exit 4, nothing
written) when ``T`` is after the watermark, when ``[log_from, T]`` is not inside coverage or
meets a recorded gap (unless gaps are allowed, loudly), or when no base is usable. In Lambda
mode a failed batch not redriven yet, or a stretch where the function fell further behind than
its watermark assumes, counts as a gap too (``replayer.planning.lambda_gaps``).

Planning reads only small state files, listings and the footers of the change files in range
(``archiver.format.chain``, in parallel): it refuses across a broken chain (a file missing,
truncated or replaced) as across a gap, naming the files; it never reads change records. In
Lambda mode it also reads the on-failure objects and the function's CloudWatch metrics. Where
the stream alone cannot serve ``T`` and the archive keeps history from incremental exports,
:mod:`replayer.planning.windows` plans over windows and the stream instead (it reads one window's
``event_time`` column when ``T`` falls inside that window).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import ArchiverError
from archiver.format import coverage
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms
from replayer.exceptions import AfterWatermark, GapInLog, NoUsableBase, OutsideCoverage, Refused
from replayer.planning import kinesis_order, lambda_gaps
from replayer.planning.log_files import check_chain
from replayer.planning.model import (
    Base,
    GenerationCoverage,
    LogPlan,
    Plan,
    bases,
    describe_gap,
    gaps_met,
    iso_or_none_yet,
)

log = logging.getLogger(__name__)


# -- generations --------------------------------------------------------------------------


def generations(archive: Archive, table: str) -> list[GenerationCoverage]:
    """Every archived generation of ``table``, oldest first (the current one last)."""
    return [GenerationCoverage.from_coverage(doc) for doc in coverage.generations(archive, table)]


def _no_archive(archive: Archive, table: str) -> Refused:
    return OutsideCoverage(
        f"the archive {archive.url} holds no coverage of table {table!r} "
        "(has `ddb-archiver run` archived it there?)"
    )


def generation_at(archive: Archive, table: str, at: datetime) -> GenerationCoverage:
    """The generation of ``table`` alive at ``at``: the newest created at or before it.

    Raises:
        Refused: the archive knows nothing of ``table``, or it did not exist yet at ``at``.
    """
    gens = generations(archive, table)
    if not gens:
        raise _no_archive(archive, table)
    alive = None
    for gen in gens:
        created = gen.table_created_at or gen.covered_from
        if created is None or created <= at:
            alive = gen
    if alive is None:
        first = gens[0].table_created_at or gens[0].covered_from
        raise OutsideCoverage(
            f"table {table!r} did not exist at {iso_ms(at)}: its first archived generation "
            f"was created at {iso_or_none_yet(first)}"
        )
    return alive


def latest_restorable_time(archive: Archive, table: str) -> datetime:
    """The watermark of the current generation (``--use-latest-restorable-time``).

    Raises:
        Refused: nothing archived yet.
    """
    gens = generations(archive, table)
    if not gens:
        raise _no_archive(archive, table)
    watermark = gens[-1].watermark
    from replayer.planning import windows as incremental

    windows = incremental.windows_of(archive, table, gens[-1].table_id)
    if windows:
        watermark = incremental.latest_exact(gens[-1], windows)
    if watermark is None:
        raise AfterWatermark(
            f"table {table!r}: the archiver has not caught up yet, so no time is restorable "
            "(run `ddb-archiver run` until it reports a watermark)"
        )
    return watermark


def _check_watermark(gen: GenerationCoverage, at: datetime) -> None:
    if gen.watermark is None:
        raise AfterWatermark(
            f"table {gen.table!r}: the archiver has not caught up yet (no watermark), "
            f"so {iso_ms(at)} is not restorable"
        )
    if at > gen.watermark:
        raise AfterWatermark(
            f"{iso_ms(at)} is after the watermark {iso_ms(gen.watermark)} of table "
            f"{gen.table!r}: changes up to it may not be archived yet "
            "(use --use-latest-restorable-time, or let the archiver catch up)"
        )


def _check_retention(archive: Archive, table: str, at: datetime) -> None:
    horizon = coverage.retention_horizon(archive, table)
    if horizon is not None and at < horizon:
        raise OutsideCoverage(
            f"{iso_ms(at)} is before the retention horizon {iso_ms(horizon)} of table "
            f"{table!r}: its history before then was deleted (ddb-archiver expire)"
        )


# -- gaps ---------------------------------------------------------------------------------


def _check_gaps(
    archive: Archive,
    gen: GenerationCoverage,
    start: datetime,
    end: datetime,
    allow_gaps: bool,
    lambda_checks: lambda_gaps.LambdaChecks | None = None,
) -> tuple[dict[str, Any], ...]:
    met = gaps_met(archive, gen, start, end)
    # Lambda mode's own holes: failed batches not redriven, and a stalled function.
    met += lambda_gaps.gaps_met(archive, gen.table, gen.table_id, start, end, lambda_checks)
    if not met:
        return ()
    if not allow_gaps:
        more = f" (and {len(met) - 1} more)" if len(met) > 1 else ""
        raise GapInLog(
            f"the log of table {gen.table!r} has a gap in [{iso_ms(start)}, {iso_ms(end)}]: "
            f"{describe_gap(met[0])}{more}; --allow-gaps restores anyway, with changes "
            "in the gap missing"
        )
    for gap in met:
        log.warning(
            "WARNING: --allow-gaps: restoring across a gap in the log, changes in it are "
            "MISSING from the result: %s",
            describe_gap(gap),
        )
    return tuple(met)


# -- bases --------------------------------------------------------------------------------


def convert_exports(archive: Archive, table: str, settings: AwsSettings | None) -> None:
    """Turn new native exports into snapshots first, so they can be picked as bases.

    A broken export must not block a restore that another base can serve: it is reported
    and skipped (conversion registers nothing on error).
    """
    from replayer.planning.export_conversion import convert_new_exports

    try:
        created = convert_new_exports(archive, table, settings)
    except ArchiverError as exc:
        log.warning("WARNING: a native export of %s could not be converted: %s", table, exc)
        return
    for snapshot_id in created:
        log.info("converted a native export of %s into snapshot %s", table, snapshot_id)


def choose_base(
    gen: GenerationCoverage, candidates: Sequence[Base], at: datetime
) -> tuple[Base | None, datetime]:
    """The newest base valid at ``at`` whose log range the archive covers, and ``log_from``.

    Raises:
        NoUsableBase / OutsideCoverage: nothing usable, and the log does not start at table
            creation.
    """
    valid = [b for b in candidates if b.valid_from <= at]
    covered = [b for b in valid if gen.covers(b.log_from)]
    if covered:
        base = max(covered, key=lambda b: b.valid_from)
        return base, base.log_from
    if gen.from_table_creation:
        start = gen.table_created_at or gen.covered_from
        if start is None:
            raise OutsideCoverage(f"table {gen.table!r}: coverage.json has no start")
        return None, min(start, at)
    if valid:
        newest = max(valid, key=lambda b: b.valid_from)
        raise OutsideCoverage(
            f"snapshot {newest.snapshot_id} needs the log from {iso_ms(newest.log_from)}, "
            f"but the archive covers table {gen.table!r} only from "
            f"{iso_or_none_yet(gen.covered_from)}: "
            "take a new snapshot (ddb-archiver snapshot) and restore to a time after it"
        )
    later = [b for b in candidates if b.valid_from > at]
    hint = (
        f" (the earliest is valid from {iso_ms(min(b.valid_from for b in later))})"
        if later
        else " (there is none; take one with ddb-archiver snapshot)"
    )
    if gen.refuted:
        evidence = gen.refuted
        raise NoUsableBase(
            f"no snapshot of table {gen.table!r} is valid at {iso_ms(at)}{hint}, and the log "
            f"does not start at table creation: key {evidence.get('key_sha256')} first appears "
            f"as a {evidence.get('event_name')} (event id {evidence.get('event_id')}, "
            f"{evidence.get('event_time')}); take a base snapshot with `ddb-archiver snapshot`"
        )
    raise NoUsableBase(
        f"no snapshot of table {gen.table!r} is valid at {iso_ms(at)}{hint}, and the log "
        f"starts at {iso_or_none_yet(gen.covered_from)}, not at table creation"
    )


# -- plans --------------------------------------------------------------------------------


def plan_restore(
    archive: Archive,
    table: str,
    at: datetime,
    *,
    allow_gaps: bool = False,
    settings: AwsSettings | None = None,
    convert: bool = True,
    lambda_checks: lambda_gaps.LambdaChecks | None = None,
    allow_inexact: bool = False,
) -> Plan:
    """Plan the state of ``table`` at ``at`` (inclusive, compared with ``event_time``).

    Args:
        archive: the archive root.
        table: the source table name.
        at: the restore time.
        allow_gaps: restore across recorded gaps (each is logged as a warning) instead of
            refusing.
        settings: AWS settings for native export conversion (reads the live table only when
            the archive holds no description of it).
        convert: convert new native exports into snapshots first.
        lambda_checks: how to find a Lambda-archived table's failed batches and stalls
            (default: the environment and the stack's layout, with ``settings``).
        allow_inexact: inside an incremental-export window, restore the keys whose state is
            unknown as they were at the window's start instead of refusing.

    Raises:
        Refused: with the subclass and one-line reason (exit 4).
    """
    at = as_utc(at)
    _check_retention(archive, table, at)
    gen = generation_at(archive, table, at)
    from replayer.planning import windows as incremental

    windows = incremental.windows_of(archive, table, gen.table_id)
    if not windows:
        return _plan_from_stream(
            archive, table, at, gen, allow_gaps, settings, convert, lambda_checks, allow_inexact
        )
    if convert:
        convert_exports(archive, table, settings)
    try:
        return _plan_from_stream(
            archive, table, at, gen, allow_gaps, settings, False, lambda_checks, allow_inexact
        )
    except Refused:
        # The stream alone cannot serve T: history from incremental exports may.
        return incremental.plan_with_windows(
            archive, table, at, gen, windows, allow_gaps=allow_gaps, allow_inexact=allow_inexact
        )


def _plan_from_stream(
    archive: Archive,
    table: str,
    at: datetime,
    gen: GenerationCoverage,
    allow_gaps: bool,
    settings: AwsSettings | None,
    convert: bool,
    lambda_checks: lambda_gaps.LambdaChecks | None = None,
    allow_inexact: bool = False,
) -> Plan:
    _check_watermark(gen, at)
    if convert:
        convert_exports(archive, table, settings)
    base, log_from = choose_base(gen, bases(archive, table, gen.table_id), at)
    checks = lambda_checks or lambda_gaps.LambdaChecks(settings=settings)
    gaps = _check_gaps(archive, gen, log_from, at, allow_gaps, checks)
    files = check_chain(archive, table, log_from, at)
    inexact = kinesis_order.check(
        archive, files, table, gen.table_id, log_from, at, allow_inexact=allow_inexact
    )
    return Plan(
        table=table,
        at=at,
        generation=gen,
        base=base,
        log_from=log_from,
        change_files=tuple(files),
        gaps=gaps,
        inexact=inexact,
    )


def plan_log(
    archive: Archive,
    table: str,
    after: datetime,
    until: datetime,
    *,
    table_id: str | None = None,
    allow_gaps: bool = False,
    lambda_checks: lambda_gaps.LambdaChecks | None = None,
) -> LogPlan:
    """Plan the log alone over ``(after, until]``: for rollback and "backup + log tail".

    Args:
        table_id: the generation (default: the one alive at ``until``).
        lambda_checks: as for :func:`plan_restore`.

    Raises:
        Refused: ``until`` after the watermark, ``after`` before coverage, or a gap.
    """
    after, until = as_utc(after), as_utc(until)
    if until < after:
        raise Refused(f"the log range ({iso_ms(after)}, {iso_ms(until)}] is empty")
    _check_retention(archive, table, after)
    if table_id is None:
        gen = generation_at(archive, table, until)
    else:
        found = [g for g in generations(archive, table) if g.table_id == table_id]
        if not found:
            raise _no_archive(archive, table)
        gen = found[0]
    _check_watermark(gen, until)
    if not gen.covers(after):
        raise OutsideCoverage(
            f"the log of table {table!r} starts at {iso_or_none_yet(gen.covered_from)}, after "
            f"{iso_ms(after)}: changes in between were never archived"
        )
    gaps = _check_gaps(archive, gen, after, until, allow_gaps, lambda_checks)
    files = check_chain(archive, table, after, until)
    kinesis_order.check(
        archive, files, table, gen.table_id, after, until, allow_inexact=False,
        lower_inclusive=False,
    )  # fmt: skip
    return LogPlan(
        table=table,
        generation=gen,
        after=after,
        until=until,
        change_files=tuple(files),
        gaps=gaps,
    )
