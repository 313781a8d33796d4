"""Several tables restored (or exported) to one instant, all planned before any is written.

Microservices keep related data in several tables; a consistent picture needs every one of them
as it was at the same second. ``restore`` and ``export`` take ``--source-table-name`` (or
``--table-name``) more than once:

* one instant for all: ``--restore-date-time T``, or ``--use-latest-restorable-time`` = the
  minimum of the tables' watermarks (the latest instant every one of them can be rebuilt at);
* each restore target is ``<source><--target-table-suffix>``; each export goes to
  ``<--output>/<source>/``;
* planning is all-or-nothing: every table is planned (coverage, gaps, watermark, base, the
  archived description) and its destination checked (a target table that exists, an output
  that holds files) before anything is created; one refusal refuses all (exit 4), naming the
  table;
* then each table is restored (by replay: a native or import strategy cannot promise the same
  second for every table, and is refused) or exported by the command's own single-table run,
  one after the other, each saying what it did, then one summary line per table and a final
  line; the exit code is the worst of them;
* ``--resume`` continues every unfinished table: a target tagged by this plan's restore, or an
  output holding this plan's partial export, is continued; one this plan completed (a restore
  verified, an export with its summary) is skipped; the others are restored afresh.

The command passes its single-table run in (``restore_tables(args, main)``), so this module
adds only what several tables need and imports no command.
"""

from __future__ import annotations

import argparse
import copy
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_OK
from archiver.cliutil import open_archive
from archiver.format import layout
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_time
from replayer.exceptions import BadInput, Refused, TargetTableExists
from replayer.planning import lambda_gaps
from replayer.planning import plan as planning
from replayer.planning.key_selection import SELECTORS
from replayer.strategies.replay import archived_table, check_table_name
from replayer.write import restore_state

log = logging.getLogger(__name__)

Run = Callable[[argparse.Namespace], int]
T = TypeVar("T")


class _TableNames(argparse.Action):
    """Each use appends to ``source_tables``; ``dest`` holds the first (the one-table path)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        names = [*getattr(namespace, "source_tables", []), str(values)]
        namespace.source_tables = names
        setattr(namespace, self.dest, names[0])


def add_source_tables_arguments(
    parser: argparse.ArgumentParser, *, flag: str = "--source-table-name", targets: bool = False
) -> None:
    """The source table(s) — ``--source-table-name`` or ``--table-name``, repeatable — and,
    with ``targets``, ``--target-table-name`` or ``--target-table-suffix``."""
    other = "--table-name" if flag == "--source-table-name" else "--source-table-name"
    parser.add_argument(
        flag,
        other,
        dest=flag.removeprefix("--").replace("-", "_"),
        action=_TableNames,
        required=True,
        metavar="TABLE",
        help="the archived table; give it more than once for several tables at one instant "
        "(all planned before any is written)",
    )
    parser.set_defaults(source_tables=[])
    if not targets:
        return
    parser.add_argument(
        "--target-table-name",
        metavar="NEW",
        help="the new table to create (must not exist), for one source table",
    )
    parser.add_argument(
        "--target-table-suffix",
        metavar="S",
        help="create each target as <source>S: for several source tables (a suffix that "
        "starts with '-' goes after '=': --target-table-suffix=-restored)",
    )


def several_tables(args: argparse.Namespace) -> bool:
    """Whether the run is over several tables (or one named by ``--target-table-suffix``).

    Raises:
        BadInput: a table given twice, no target named, or both kinds of target (exit 2).
    """
    names = list(args.source_tables)
    if len(set(names)) != len(names):
        raise BadInput(f"a source table is given twice: {', '.join(names)}")
    if not hasattr(args, "target_table_suffix"):  # export
        return len(names) > 1
    suffix, target = args.target_table_suffix, args.target_table_name
    if suffix and target:
        raise BadInput("give --target-table-name (one table) or --target-table-suffix, not both")
    if not suffix and not target:
        raise BadInput("give --target-table-name, or --target-table-suffix S (targets <source>S)")
    if len(names) > 1 and not suffix:
        raise BadInput(
            "several source tables need --target-table-suffix S (each target is <source>S)"
        )
    return bool(suffix)


def _refuse_selection(args: argparse.Namespace) -> None:
    given = [flag for flag in SELECTORS if getattr(args, flag[2:].replace("-", "_"), None)]
    if given:
        raise BadInput(f"{given[0]} selects items of one table: give one source table with it")


def _instant(archive: Archive, names: Sequence[str], args: argparse.Namespace) -> datetime:
    """``--restore-date-time``, or the minimum watermark over the tables."""
    if args.use_latest_restorable_time:
        return min(
            _naming(name, functools.partial(planning.latest_restorable_time, archive, name))
            for name in names
        )
    return parse_time(args.restore_date_time)


def _naming(table: str, action: Callable[[], T]) -> T:
    """``action()``; a refusal or any other error a user acts on names ``table`` and says that
    nothing was created."""
    try:
        return action()
    except Exception as exc:
        if not isinstance(getattr(exc, "exit_code", None), int):
            raise
        exc.args = (f"table {table!r}: {exc} (nothing was created: every table is planned first)",)
        raise


def _plan(
    archive: Archive, table: str, at: datetime, args: argparse.Namespace, settings: AwsSettings
) -> planning.Plan:
    return planning.plan_restore(
        archive,
        table,
        at,
        allow_gaps=args.allow_gaps,
        settings=settings,
        lambda_checks=lambda_gaps.LambdaChecks.from_args(args),
        allow_inexact=args.allow_inexact,
    )


@dataclass
class _Job:
    source: str
    destination: str  # the target table, or the output URL
    done: bool = False  # this plan completed it already (--resume)


def _one(args: argparse.Namespace, source: str, at: datetime, **changes: Any) -> argparse.Namespace:
    """The single-table run's arguments for ``source`` at ``at``."""
    one = copy.copy(args)
    one.source_tables = [source]
    for name in ("source_table_name", "table_name"):
        if hasattr(one, name):
            setattr(one, name, source)
    one.restore_date_time, one.use_latest_restorable_time = iso_ms(at), False
    for name, value in changes.items():
        setattr(one, name, value)
    return one


def _run_all(jobs: Sequence[_Job], verb: str, at: datetime, run: Callable[[_Job], int]) -> int:
    """Run every job not done, then one line per table and a final line; the worst code."""
    results: list[tuple[_Job, int, str]] = []
    for job in jobs:
        if job.done:
            results.append((job, EXIT_OK, f"{verb} by this plan already: skipped"))
            continue
        print(f"== {job.source} -> {job.destination}")
        try:
            code = run(job)
        except Exception as exc:
            failed = getattr(exc, "exit_code", None)
            if not isinstance(failed, int):
                raise
            results.append((job, failed, f"FAILED: {exc}"))
            continue
        results.append((job, code, verb if code == EXIT_OK else f"{verb}, exit {code}"))
    for job, _, what in results:
        print(f"{job.source} -> {job.destination}: {what}")
    ok = sum(code == EXIT_OK for _, code, _ in results)
    print(f"{verb} {ok} of {len(results)} table(s) as of {iso_ms(at)}")
    return max(code for _, code, _ in results)


def _completed_restore(archive: Archive, source: str, target: str, fingerprint: str) -> bool:
    """Whether this plan's restore into ``target`` finished (verified, tags removed)."""
    folder = layout.restores_dir(source)
    for rel in archive.find(folder, ".json"):
        doc = archive.read_json_or(rel) or {}
        if (doc.get("target"), doc.get("fingerprint"), doc.get("state")) == (
            target,
            fingerprint,
            "complete",
        ):
            return True
    return False


def restore_tables(args: argparse.Namespace, restore_one: Run) -> int:
    """``restore`` of every ``--source-table-name`` to one instant into ``<source><suffix>``."""
    _refuse_selection(args)
    if args.strategy not in ("auto", "replay"):
        raise BadInput(
            f"--strategy {args.strategy}: several tables are restored by replay, which rebuilds "
            "each at the same second (--strategy replay, or auto)"
        )
    if args.backup_arn or args.staging:
        raise BadInput("--backup-arn and --staging go with one table (--strategy backup/import)")
    names = list(args.source_tables)
    jobs = [_Job(name, name + args.target_table_suffix) for name in names]
    for job in jobs:
        check_table_name(job.destination)
    settings = AwsSettings.from_args(args)
    archive = Archive.open(args.archive, endpoint_url=settings.endpoint_url)
    client = settings.client("dynamodb")
    at = _instant(archive, names, args)
    for job in jobs:

        def check(job: _Job = job) -> None:
            plan = _plan(archive, job.source, at, args, settings)
            archived_table(archive, plan, client)
            existing = restore_state.existing_target(client, job.destination)
            if existing is None:
                return
            fingerprint = restore_state.plan_fingerprint(plan)
            if args.resume and existing.tagged and existing.fingerprint == fingerprint:
                return  # continued by its own run
            if args.resume and not existing.tagged:
                job.done = _completed_restore(archive, job.source, job.destination, fingerprint)
                if job.done:
                    return
            raise TargetTableExists(
                f"target table {job.destination!r} already exists"
                + ("" if args.resume else " (--resume continues this plan's unfinished tables)")
            )

        _naming(job.source, check)
    return _run_all(
        jobs,
        "restored",
        at,
        lambda job: restore_one(
            _one(
                args,
                job.source,
                at,
                target_table_name=job.destination,
                target_table_suffix=None,
                strategy="replay",
            )
        ),
    )


def export_tables(args: argparse.Namespace, export_one: Run, finished: str) -> int:
    """``export`` of every ``--table-name`` to one instant, each into ``<output>/<table>/``.

    ``finished`` is the file a complete export holds (its summary): skipped on ``--resume``.
    """
    _refuse_selection(args)
    names = list(args.source_tables)
    root = args.output.rstrip("/")
    jobs = [_Job(name, f"{root}/{name}") for name in names]
    settings = AwsSettings.from_args(args)
    archive = Archive.open(args.archive, endpoint_url=settings.endpoint_url)
    at = _instant(archive, names, args)
    for job in jobs:

        def check(job: _Job = job) -> None:
            _plan(archive, job.source, at, args, settings)
            output = open_archive(args, job.destination, endpoint_url=settings.endpoint_url)
            if not output.find(""):
                return
            if args.resume:
                job.done = output.exists(finished)
                return  # a partial export: its own run checks that it is this plan's
            raise Refused(
                f"output {job.destination} already holds files (--resume continues this "
                "plan's unfinished exports)"
            )

        _naming(job.source, check)
    return _run_all(
        jobs,
        "exported",
        at,
        lambda job: export_one(_one(args, job.source, at, output=job.destination)),
    )
