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
  up to ``--parallel-tables N`` side by side (default: as many as there are tables, at most
  4), each in a process of its own (:mod:`replayer.write.table_processes` says why, and how its
  output is shown and an interrupt stops them all); ``--parallel-tables 1`` runs them one after
  the other in the command's own process;
* the command's budget is shared: each of the N tables written at once gets 1/N of
  ``--max-write-rate``, of ``--memory-limit`` and of the writer processes of ``--write-workers``
  (default one per core; at least one each), so that N tables side by side ask for no more
  writes per second, fold memory or writer processes than one table alone — what they gain is
  every table's own throughput (a new on-demand table takes 4,000 writes/s at first, whatever
  the writers could send);
* a table that fails fails alone: the others are written all the same (but for an error of
  no known kind in ``--parallel-tables 1``'s one-after-the-other, which ends the command as
  it ends one table's);
* then one summary line per table — what it did (items written or exported, and before a
  resume's), its seconds, its outcome — and a final line with the totals and the instant; the
  exit code is the worst of them (an interrupt: the summary, then exit 130);
* ``--resume`` continues every unfinished table: a target tagged by this plan's restore, or an
  output holding this plan's partial export, is continued; one this plan completed (a restore
  verified, an export with its summary) is skipped; the others are restored afresh.

The command passes its single-table run in (``restore_tables(args, restore_one)``): a
module-level function (it is pickled for its process) returning a :class:`TableRun`, so that
this module adds only what several tables need and imports no command.
"""

from __future__ import annotations

import argparse
import copy
import functools
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_FAILURE, EXIT_OK
from archiver.cliutil import open_archive, positive_int, redact
from archiver.format import layout
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_time
from replayer.exceptions import BadInput, Refused, TargetTableExists
from replayer.planning import lambda_gaps
from replayer.planning import plan as planning
from replayer.planning.key_selection import SELECTORS
from replayer.strategies.replay import archived_table, check_table_name
from replayer.write import restore_state
from replayer.write.batch_writers import DEFAULT_CONCURRENCY
from replayer.write.table_processes import Ended, Launch, run_side_by_side

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_PARALLEL_TABLES = 4
EXIT_INTERRUPTED = 130  # what the command exits with after an interrupt (archiver.cliutil)


@dataclass(frozen=True)
class TableRun:
    """What one table's run did, for the summary of several (its exit code is the one the
    single-table command exits with)."""

    exit_code: int = EXIT_OK
    items: int | None = None  # items written (restore) or exported; None: none (a dry run)
    before: int = 0  # items a resumed restore found acknowledged by the run it continued


Run = Callable[[argparse.Namespace], TableRun]


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
    parser.add_argument(
        "--parallel-tables",
        type=positive_int,
        metavar="N",
        help="with several tables: write up to N side by side, each in a process of its own "
        f"(default: one per table, at most {DEFAULT_PARALLEL_TABLES}; 1: one after the other), "
        "sharing the command's "
        + (
            "--max-write-rate, --memory-limit and writer processes" if targets else "--memory-limit"
        ),
    )
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


def _parallel(args: argparse.Namespace, jobs: Sequence[_Job]) -> int:
    """How many tables are written at once: ``--parallel-tables``, else one per table to write,
    at most :data:`DEFAULT_PARALLEL_TABLES`."""
    left = sum(not job.done for job in jobs)
    wanted = getattr(args, "parallel_tables", None) or DEFAULT_PARALLEL_TABLES
    return max(1, min(wanted, left))


_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|b|bytes|[kmgt]i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def share_memory(limit: str, parallel: int) -> str:
    """A DuckDB ``memory_limit`` (``1GB``, ``512MiB``, ``50%``) divided among ``parallel``
    folds at once; one DuckDB does not parse is left as it is (DuckDB says what is wrong)."""
    found = _MEMORY.match(limit)
    if found is None or parallel <= 1:
        return limit
    number, unit = float(found.group(1)), (found.group(2) or "").lower()
    if unit == "%":
        return f"{number / parallel:g}%"
    return f"{int(number * _UNITS[unit] / parallel)}B"


def _share(args: argparse.Namespace, parallel: int) -> dict[str, Any]:
    """Each table's part of the command's budget when ``parallel`` are written at once."""
    if parallel <= 1:
        return {}
    changes: dict[str, Any] = {}
    if hasattr(args, "write_workers"):
        processes, calls = args.write_workers or (os.cpu_count() or 1, DEFAULT_CONCURRENCY)
        changes["write_workers"] = (max(1, processes // parallel), calls)
    if getattr(args, "max_write_rate", None):
        changes["max_write_rate"] = args.max_write_rate / parallel
    if getattr(args, "memory_limit", None):
        changes["memory_limit"] = share_memory(args.memory_limit, parallel)
    return changes


def _one_after_another(
    jobs: Sequence[_Job], run: Run, arguments: Callable[[_Job], argparse.Namespace]
) -> list[Ended[TableRun]]:
    """Every job in this process, one after the other (``--parallel-tables 1``)."""
    ended: list[Ended[TableRun]] = [Ended(stopped=True, started=False) for _ in jobs]
    for index, job in enumerate(jobs):
        print(f"== {job.source} -> {job.destination}")
        started = time.monotonic()
        outcome = ended[index] = Ended()
        try:
            outcome.result = run(arguments(job))
        except KeyboardInterrupt:
            outcome.stopped = True
            outcome.seconds = time.monotonic() - started
            break
        except Exception as exc:
            failed = getattr(exc, "exit_code", None)
            if not isinstance(failed, int):
                raise
            outcome.failed = (failed, str(exc))
        outcome.seconds = time.monotonic() - started
    return ended


def _summary(job: _Job, ended: Ended[TableRun] | None, verb: str, noun: str) -> tuple[int, str]:
    """A table's exit code and its summary line."""
    name = f"{job.source} -> {job.destination}"
    if ended is None:
        return EXIT_OK, f"{name}: {verb} by this plan already: skipped"
    took = f"{ended.seconds:.1f} s"
    if not ended.started:
        return EXIT_INTERRUPTED, f"{name}: not started (--resume continues it)"
    if ended.stopped and ended.failed is None:
        return EXIT_INTERRUPTED, f"{name}: interrupted after {took} (--resume continues it)"
    if ended.failed is not None or ended.result is None:
        code, message = ended.failed or (EXIT_FAILURE, "no result")
        return code, f"{name}: FAILED after {took}, exit {code}: {redact(message)}"
    result = ended.result
    counts = ""
    if result.items is not None:
        counts = f", {result.items:,} {noun}"
        counts += f" ({result.before:,} written before)" if result.before else ""
    exit_code = "" if result.exit_code == EXIT_OK else f", exit {result.exit_code}"
    return result.exit_code, f"{name}: {verb}{counts} in {took}{exit_code}"


def _run_all(
    args: argparse.Namespace,
    jobs: Sequence[_Job],
    at: datetime,
    run: Run,
    arguments: Callable[[_Job, dict[str, Any]], argparse.Namespace],
    *,
    verb: str,
    noun: str,
) -> int:
    """Run every job not done, up to ``--parallel-tables`` side by side, then one line per
    table and a final line; the worst exit code (an interrupt: raised again after the lines).

    ``arguments(job, share)`` is the single-table run's arguments for ``job``, with ``share``
    (its part of the budget: :func:`_share`) applied."""
    todo = [job for job in jobs if not job.done]
    parallel = _parallel(args, jobs)
    started = time.monotonic()
    if parallel <= 1:
        ended = _one_after_another(todo, run, lambda job: arguments(job, {}))
    else:
        share = _share(args, parallel)
        launches = []
        for job in todo:
            one = arguments(job, share)
            vars(one).pop("_module", None)  # a module is not pickled; the run needs none
            launches.append(Launch(job.source, f"== {job.source} -> {job.destination}", one))
        ended = run_side_by_side(launches, run, parallel)
    by_job = dict(zip((id(job) for job in todo), ended, strict=True))
    codes, counts = [], []
    for job in jobs:
        outcome = by_job.get(id(job))
        code, line = _summary(job, outcome, verb, noun)
        codes.append(code)
        print(line)
        if outcome is not None and outcome.result is not None:
            counts.append(outcome.result.items)
    ok = sum(code == EXIT_OK for code in codes)
    total = sum(n for n in counts if n is not None)
    took = f"in {time.monotonic() - started:.1f} s"
    if any(n is not None for n in counts) or not counts:  # a dry run counts nothing
        took = f": {total:,} {noun} {took}"
    else:
        took = f", {took}"
    print(f"{verb} {ok} of {len(jobs)} table(s) as of {iso_ms(at)}{took}")
    if any(outcome.stopped for outcome in ended):
        raise KeyboardInterrupt  # the command says it was interrupted (exit 130)
    return max(codes)


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
        args,
        jobs,
        at,
        restore_one,
        lambda job, share: _one(
            args,
            job.source,
            at,
            target_table_name=job.destination,
            target_table_suffix=None,
            strategy="replay",
            **share,
        ),
        verb="planned (dry run)" if args.dry_run else "restored",
        noun="items" if args.dry_run else "items written",
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
        args,
        jobs,
        at,
        export_one,
        lambda job, share: _one(args, job.source, at, output=job.destination, **share),
        verb="exported",
        noun="items",
    )
