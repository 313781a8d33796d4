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
:mod:`replayer.rollback.decisions`; this module drains, writes, reports conflicts, and runs the CLI.

Exit codes: 0 clean; 3 conflicts were reported; 4 refused (TIME before the archive's
coverage or after its watermark, a gap in the log after TIME); 2 bad input.

Example::

    ddb-replayer rollback --table-name orders --archive s3://bucket/prefix \\
        --restore-date-time 2026-01-31T11:59:59Z --dry-run
"""

from __future__ import annotations

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

from archiver.aws import retry
from archiver.aws.clients import AwsSettings
from archiver.aws.describe import describe_or_none
from archiver.aws.error_table import EXIT_DIFFERENCES, EXIT_OK, ConditionFailed, is_error
from archiver.format import tables
from archiver.format.codec import to_wire
from archiver.format.records import TTL_IDENTITY
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms, utcnow
from replayer.engines.fold import Fold
from replayer.exceptions import BadInput, Refused
from replayer.planning import lambda_gaps
from replayer.planning import plan as planning
from replayer.planning.key_selection import KeySelection
from replayer.read.query import run_query
from replayer.rollback.decisions import (
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
# The watermark trails the stream by a few seconds: drain again every half second for up to
# this long before going on with what the archive has.
DRAIN_POLL_SECONDS = 0.5
DRAIN_TIMEOUT_SECONDS = 10.0
StatesAt = Callable[[str, datetime, list[str]], Mapping[str, str | None]]


def stream_drainer(
    aws: AwsSettings, archive: Archive, table: str, *, poll_seconds: float = 0.25
) -> Drain:
    """Run the archiver's ``--once`` path in-process; returns the new watermark."""

    def drain() -> datetime | None:
        from archiver.capture.runner import RunConfig, execute

        config = RunConfig(
            table_name=table, archive_url=archive.url, once=True, poll_seconds=poll_seconds
        )
        asyncio.run(execute(config, aws, archive))
        gens = planning.generations(archive, table)
        return gens[-1].watermark if gens else None

    return drain


def drain_past(
    drain: Drain,
    instant: datetime,
    *,
    poll_seconds: float = DRAIN_POLL_SECONDS,
    timeout_seconds: float = DRAIN_TIMEOUT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> datetime | None:
    """Drain until the watermark reaches ``instant`` (the stream shows writes a moment late),
    for at most ``timeout_seconds``; returns the last watermark, reached or not (the caller
    decides what a short one means)."""
    seen: list[datetime | None] = []
    try:
        return retry.wait_until(
            drain,
            what=f"draining the stream past {iso_ms(instant)}",
            ready=lambda watermark: watermark is not None and watermark >= instant,
            poll_seconds=poll_seconds,
            timeout_seconds=timeout_seconds,
            sleep=sleep,
            clock=clock,
            on_poll=lambda watermark, _elapsed: seen.append(watermark),
        )
    except retry.WaitTimedOut:
        return seen[-1]


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
    # How the drains pause and tell time (tests replace them).
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
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
        self.key_names = tables.key_names(live["KeySchema"])
        log.info("draining the stream of %s into %s", self.table, self.archive.url)
        # Everything written before the rollback began must be known, or it would not be
        # undone: drain until the watermark (which trails the stream a little) passes that.
        watermark = drain_past(self.drain, utcnow(), sleep=self.sleep, clock=self.clock)
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
            drain_past(self.drain, finished, sleep=self.sleep, clock=self.clock)
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
