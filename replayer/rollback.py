"""Undo, in the live table itself, every change made after a time.

Only keys changed after TIME are touched, each set back to its state at TIME:

1. the table's stream is drained into the archive first (the archiver's ``run --once`` path,
   in-process), so the archive knows every change up to now;
2. per key changed in (TIME, now]: the ``old_image`` of its first change after TIME *is* its
   state at TIME (absent for an INSERT); with a ``NEW_IMAGE`` stream the archive's fold at TIME
   gives it;
3. each key is written back (put, or delete) with a condition that it still is what the
   archive last saw — with ``--version-attribute A`` that ``A`` still has the archived value,
   else that the item exists and its attributes still equal the archived ones, as many as fit
   DynamoDB's 4 KB condition-expression limit. A failed condition is a **conflict**: reported,
   never overwritten;
4. the stream is drained again, and any change to a touched key that the rollback did not make
   is reported as a conflict too.

Items that DynamoDB's TTL deleted after TIME (``userIdentity`` Service/dynamodb.amazonaws.com)
stay deleted — they had expired — unless ``--include-ttl-deletes``.

Deciding steps 2 and 3 — what to write per key, under which condition — is
:mod:`replayer.rollback_plan`; this module drains, writes, reports conflicts, and runs the CLI.

Exit codes: 0 clean; 3 conflicts were reported; 4 refused (TIME before the archive's
coverage or after its watermark, a gap in the log after TIME); 2 bad input.

Example::

    ddb-replayer rollback --table-name orders --archive s3://bucket/prefix \\
        --restore-date-time 2026-01-31T11:59:59Z --dry-run
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from botocore.exceptions import ClientError
from tqdm import tqdm

from archiver.aws import AwsSettings
from archiver.cliutil import add_archive_argument, add_table_argument
from archiver.describe import describe_or_none
from archiver.errors import EXIT_DIFFERENCES, EXIT_OK, ConditionFailed, is_error
from archiver.format import tables
from archiver.format.codec import to_wire
from archiver.format.records import TTL_IDENTITY
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms, parse_time, utcnow
from replayer import lambda_gaps
from replayer import plan as planning
from replayer.errors import BadInput, Refused
from replayer.fold import Fold
from replayer.planning.key_selection import KeySelection, add_key_selection_arguments, select_keys
from replayer.query import run_query
from replayer.rollback_plan import (
    DELETE,
    RESTORE,
    RollbackPlan,
    Write,
    changes_after,
    condition_for,
    plan_writes,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

WRITE_THREADS = 16

_RECORDS_AFTER = """
SELECT keys, event_id, event_name, event_time, new_image, user_identity
FROM changes
WHERE table_name = $table AND table_id = $table_id AND event_time > $after
QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY sequence_number) = 1
ORDER BY keys, stream_arn, sequence_number
"""


# -- writing, and the conflicts met ----------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    keys: str
    reason: str


@dataclass
class RollbackReport:
    restored: int = 0
    deleted: int = 0
    recreated: int = 0
    unchanged: int = 0
    ttl_kept: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, action: str) -> None:
        if action == RESTORE:
            self.restored += 1
        elif action == DELETE:
            self.deleted += 1
        else:
            self.recreated += 1

    def summary(self) -> str:
        return (
            f"restored {self.restored}, deleted {self.deleted}, re-created {self.recreated}, "
            f"already as at T {self.unchanged}, kept deleted (TTL) {self.ttl_kept}, "
            f"conflicts {len(self.conflicts)}"
        )


def apply_writes(
    ddb: DynamoDBClient,
    table: str,
    writes: Sequence[Write],
    key_names: Sequence[str],
    *,
    version_attribute: str | None = None,
    threads: int = WRITE_THREADS,
) -> tuple[list[Write], list[Conflict]]:
    """Make the conditional writes; returns (the writes made, the conflicts met)."""
    done: list[Write] = []
    conflicts: list[Conflict] = []

    def one(write: Write) -> Conflict | None:
        condition = condition_for(write.expected, key_names, version_attribute)
        try:
            if write.item is None:
                ddb.delete_item(TableName=table, Key=to_wire(write.keys), **condition.kwargs())
            else:
                ddb.put_item(TableName=table, Item=to_wire(write.item), **condition.kwargs())
        except ClientError as exc:
            if is_error(exc, ConditionFailed):
                return Conflict(
                    write.keys,
                    "changed since the archive last saw it (condition failed): left as is",
                )
            raise
        return None

    with (
        ThreadPoolExecutor(max_workers=threads) as pool,
        tqdm(
            total=len(writes), desc="rolling back", unit="item", file=sys.stderr, disable=None
        ) as bar,
    ):
        futures = {pool.submit(one, write): write for write in writes}
        for future in as_completed(futures):
            conflict = future.result()
            if conflict is None:
                done.append(futures[future])
            else:
                conflicts.append(conflict)
            bar.update(1)
    return done, conflicts


def foreign_changes(
    archive: Archive,
    table: str,
    table_id: str,
    after: datetime,
    done: Iterable[Write],
    seen: Mapping[str, frozenset[str]],
    by: str = "rollback",
) -> list[Conflict]:
    """Changes to keys the rollback (or ``by``: an undo) wrote that it did not make.

    ``seen`` maps each key to the event ids archived before the writes; a new record of a
    written key is the rollback's own when it is the first new one with the image it wrote.
    """
    written = {w.keys: w for w in done}
    if not written:
        return []
    result = run_query(
        archive,
        _RECORDS_AFTER,
        {"table": table, "table_id": table_id, "after": as_utc(after)},
        table=table,
        dt_from=as_utc(after).date(),
    )
    pending = dict(written)
    conflicts: dict[str, Conflict] = {}
    for keys, event_id, event_name, event_time, new_image, user_identity in result.rows():
        write = written.get(keys)
        if write is None or event_id in seen.get(keys, frozenset()):
            continue
        image = None if event_name == "REMOVE" else new_image
        if keys in pending and image == write.item:
            del pending[keys]  # the rollback's own write
            continue
        who = "TTL" if user_identity == TTL_IDENTITY else (user_identity or "a writer")
        conflicts.setdefault(
            keys,
            Conflict(
                keys,
                f"{event_name} at {iso_ms(event_time)} by {who} during the {by}: "
                "not undone, check this item",
            ),
        )
    for keys in pending:
        conflicts.setdefault(
            keys, Conflict(keys, f"the {by}'s write is not in the stream: check this item")
        )
    return list(conflicts.values())


# -- draining --------------------------------------------------------------------------------

Drain = Callable[[], datetime | None]
StatesAt = Callable[[str, datetime, list[str]], Mapping[str, str | None]]


def stream_drainer(
    aws: AwsSettings, archive: Archive, table: str, *, poll_seconds: float = 0.25
) -> Drain:
    """Run the archiver's ``--once`` path in-process; returns the new watermark."""

    def drain() -> datetime | None:
        from archiver.runner import RunConfig, execute

        config = RunConfig(
            table_name=table, archive_url=archive.url, once=True, poll_seconds=poll_seconds
        )
        asyncio.run(execute(config, aws, archive))
        gens = planning.generations(archive, table)
        return gens[-1].watermark if gens else None

    return drain


def drain_past(drain: Drain, instant: datetime, *, attempts: int = 10) -> datetime | None:
    """Drain until the watermark reaches ``instant`` (the stream shows writes a moment late)."""
    watermark = drain()
    for _ in range(attempts):
        if watermark is not None and watermark >= instant:
            break
        time.sleep(0.5)
        watermark = drain()
    return watermark


def fold_states(
    archive: Archive, table: str, lambda_checks: lambda_gaps.LambdaChecks | None = None
) -> StatesAt:
    """States at T from the archive's fold (base + log): for ``NEW_IMAGE`` streams, whose
    records carry no old image."""

    def states(table_id: str, at: datetime, keys: list[str]) -> dict[str, str | None]:
        plan = planning.plan_restore(archive, table, at, lambda_checks=lambda_checks)
        if plan.table_id != table_id:
            raise Refused(
                f"{iso_ms(at)} is before the live table {table!r} was created (the archive "
                "holds an earlier table of that name then): restore that one with "
                "ddb-replayer restore instead"
            )
        log.info(
            "folding the archive at %s for %d key(s) without old images", iso_ms(at), len(keys)
        )
        with Fold(archive) as fold:
            result = fold.state_at(plan)
            fold.con.register("_wanted", pa.table({"keys": pa.array(keys, pa.string())}))
            rows = fold.con.execute(
                f"SELECT w.keys, f.item FROM _wanted AS w LEFT JOIN {result.table} AS f "
                "ON w.keys = f.keys"
            ).fetchall()
        return {str(k): item for k, item in rows}

    return states


# -- the whole rollback ----------------------------------------------------------------------


@dataclass
class Rollback:
    """One rollback of ``table`` to ``at``. Clients and the drain are passed in."""

    ddb: DynamoDBClient
    archive: Archive
    table: str
    at: datetime
    drain: Drain
    version_attribute: str | None = None
    include_ttl_deletes: bool = False
    states_at: StatesAt | None = None
    lambda_checks: lambda_gaps.LambdaChecks | None = None
    keys: KeySelection | None = None  # roll back only these keys (None: every key)
    # Called after planning, before writing: tests inject a concurrent change here.
    before_write: Callable[[RollbackPlan], None] | None = None
    out: Any = None  # where the plan and summary go (default: stdout at run time)
    # Learnt from the live table by prepare().
    key_names: list[str] = field(default_factory=list)
    table_id: str = ""

    def _describe_live(self) -> dict[str, Any]:
        live = describe_or_none(self.ddb, self.table)
        if live is None:
            raise BadInput(
                f"table {self.table!r} does not exist: rollback works on a live table "
                "(restore a deleted one with ddb-replayer restore)"
            )
        return live

    def prepare(self) -> RollbackPlan:
        """Drain, check the archive covers (T, now], and plan the writes."""
        live = self._describe_live()
        table_id = tables.table_id_of(live)
        self.key_names = [k["AttributeName"] for k in live["KeySchema"]]
        log.info("draining the stream of %s into %s", self.table, self.archive.url)
        # Everything written before the rollback began must be known, or it would not be
        # undone: drain until the watermark (which trails the stream a little) passes that.
        watermark = drain_past(self.drain, utcnow())
        if watermark is None:
            raise Refused(f"table {self.table!r}: the archiver has no watermark after draining")
        if self.at >= watermark:
            raise Refused(
                f"{iso_ms(self.at)} is not before the watermark {iso_ms(watermark)}: "
                "there is nothing archived after it to undo"
            )
        # Checks coverage from T and gaps in (T, watermark] for the live generation.
        planning.plan_log(
            self.archive,
            self.table,
            self.at,
            watermark,
            table_id=table_id,
            lambda_checks=self.lambda_checks,
        )
        self.table_id = table_id
        histories = changes_after(self.archive, self.table, table_id, self.at)
        if self.keys is not None:
            histories = [h for h in histories if h.keys in self.keys]
        unknown = [
            h.keys
            for h in histories
            if not h.state_at_t_known and not (h.ttl_deleted and not self.include_ttl_deletes)
        ]
        states: Mapping[str, str | None] = {}
        if unknown:
            if self.states_at is None:
                raise Refused(
                    "the stream has no old images (NEW_IMAGE) and no fold is available to find "
                    "the items' state at T"
                )
            states = self.states_at(table_id, self.at, unknown)
        return plan_writes(
            self.table,
            self.at,
            histories,
            states,
            include_ttl_deletes=self.include_ttl_deletes,
        )

    def execute(self, plan: RollbackPlan) -> RollbackReport:
        """Write, drain again, and report conflicts."""
        started = time.monotonic()
        report = RollbackReport(unchanged=len(plan.unchanged), ttl_kept=len(plan.ttl_kept))
        if self.before_write is not None:
            self.before_write(plan)
        done, conflicts = apply_writes(
            self.ddb,
            self.table,
            plan.writes,
            self.key_names,
            version_attribute=self.version_attribute,
        )
        finished = utcnow()
        for write in done:
            report.count(write.action)
        if done:
            log.info("draining the stream again to check for concurrent changes")
            drain_past(self.drain, finished)
        seen = {k: h.event_ids for k, h in plan.histories.items()}
        conflicts.extend(
            foreign_changes(self.archive, self.table, self.table_id, self.at, done, seen)
        )
        report.conflicts = sorted(conflicts, key=lambda c: c.keys)
        report.seconds = time.monotonic() - started
        return report


def _print_plan(plan: RollbackPlan, out: Any) -> None:
    for write in sorted(plan.writes, key=lambda w: (w.action, w.keys)):
        print(write.describe(), file=out)
    for keys in plan.ttl_kept:
        print(f"{'keep':<9} {keys}  (deleted by TTL after T)", file=out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the live table to roll back")
    add_archive_argument(parser)
    parser.add_argument(
        "--restore-date-time",
        required=True,
        metavar="TIME",
        help="undo every change after TIME (ISO 8601 with a zone, or epoch seconds); changes "
        "at TIME itself stay",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the writes it would make; write nothing"
    )
    parser.add_argument(
        "--version-attribute",
        metavar="A",
        help="a version attribute every write sets (optimistic locking): condition each "
        "rollback write on it, instead of on the item's attributes",
    )
    parser.add_argument(
        "--include-ttl-deletes",
        action="store_true",
        help="also bring back items that DynamoDB's TTL deleted after TIME (default: they "
        "stay deleted, they had expired)",
    )
    lambda_gaps.add_arguments(parser)
    add_key_selection_arguments(parser)


def main(args: argparse.Namespace) -> int:
    at = parse_time(args.restore_date_time)
    aws = AwsSettings.from_args(args)
    archive = Archive.open(args.archive, endpoint_url=aws.endpoint_url)
    checks = lambda_gaps.LambdaChecks.from_args(args)
    rollback = Rollback(
        ddb=aws.client("dynamodb"),
        archive=archive,
        table=args.table_name,
        at=at,
        drain=stream_drainer(aws, archive, args.table_name),
        version_attribute=args.version_attribute,
        include_ttl_deletes=args.include_ttl_deletes,
        states_at=fold_states(archive, args.table_name, checks),
        lambda_checks=checks,
        keys=select_keys(args, archive, args.table_name),  # --key …: only those items
    )
    return run(rollback, dry_run=args.dry_run)


def run(rollback: Rollback, *, dry_run: bool) -> int:
    """Plan, print, and (unless ``dry_run``) execute; returns the exit code."""
    out = rollback.out or sys.stdout
    plan = rollback.prepare()
    changed = len(plan.histories)
    print(
        f"{rollback.table}: {changed} key(s) changed after {iso_ms(rollback.at)}; "
        f"{len(plan.writes)} write(s) to undo them",
        file=out,
    )
    if dry_run:
        _print_plan(plan, out)
        print("dry run: nothing written", file=out)
        return EXIT_OK
    report = rollback.execute(plan)
    for conflict in report.conflicts:
        print(f"CONFLICT {conflict.keys}: {conflict.reason}", file=out)
    print(f"{report.summary()} ({report.seconds:.1f} s)", file=out)
    return EXIT_DIFFERENCES if report.conflicts else EXIT_OK
