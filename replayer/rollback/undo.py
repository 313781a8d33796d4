"""Undo the changes of one window (T1, T2] in the live table, leaving later changes alone.

DESIGN.md "Item-level recovery". The incident is rarely "the table is gone": it is "a bad
deploy wrote garbage into some items between 14:02 and 14:20, and good writes kept coming".
``rollback`` undoes every change after T, good ones too; an undo touches only the keys changed
in the window, and of those only the ones nobody changed since. Per key with a change record in
(T1, T2] — narrowed by ``--key``/``--keys-file``/``--where`` (:mod:`replayer.planning.
key_selection`; ``--where`` is evaluated over the window's change rows):

- ``before``: its state at T1 — the old image of its first change in the window (absent for an
  INSERT); a ``NEW_IMAGE`` stream's records carry none, so the archive's fold at T1 gives it,
  reading only those keys' row groups;
- ``bad``: its state at T2 — the new image of its last change in the window (absent: a REMOVE);
- ``now``: the live item (strongly consistent ``BatchGetItem``).

``now`` = ``before``: nothing to do (the window changed it and back, or it is undone already —
which is what makes a rerun after a crash write only what is left). ``now`` = ``bad``: write
``before`` (a put, or a delete when it is absent), on the condition that the item still is
``bad`` — rollback's conditions (:func:`replayer.rollback.decisions.condition_for`): the version
attribute with ``--version-attribute``, else its existence and as many attributes as fit
DynamoDB's 4 KB expression limit. Anything else changed again after the window: a
**conflict**, left as it is (``--force-overwrite-later-changes`` writes ``before`` over it, on
the condition that it still is what was read), listed in the summary and in ``--conflicts
FILE`` as JSON lines ``{"key", "before", "bad", "now"}`` (DynamoDB JSON, null when absent).
A key whose window deleted it by TTL stays deleted (it had expired) unless
``--include-ttl-deletes``, as for rollback — :func:`replayer.rollback.decisions.plan_writes` decides
both.

Before anything, the table's stream is drained into the archive (as rollback does) and the
window is planned as a restore is (:func:`replayer.planning.plan.plan_log` over [T1, now] of the
live generation: coverage from T1, no recorded gap, an unbroken chain, the watermark past T2);
any refusal writes nothing (exit 4). A condition that fails is a conflict — unless the item now
is ``before`` (a write whose reply was lost, repeated). After the writes the stream is drained
again, and a change to a written key that the undo did not make is reported as a conflict
(:func:`replayer.rollback.in_place.foreign_changes`).

The undo's own writes reach the archive like any others, so an undo is itself undone by
undoing the window around it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

import orjson
from tqdm import tqdm

from archiver.aws.describe import describe_or_none
from archiver.aws.error_table import ConditionFailed, is_error
from archiver.aws.retry import call
from archiver.format import tables
from archiver.format.codec import to_wire
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow
from replayer.engines.fold import Fold, FoldSettings
from replayer.exceptions import AfterWatermark, BadInput, Refused
from replayer.planning import lambda_gaps
from replayer.planning import plan as planning
from replayer.planning.key_selection import KeySelection
from replayer.read.live_items import get_items
from replayer.rollback.decisions import (
    DELETE,
    RECREATE,
    RESTORE,
    Write,
    changes_after,
    condition_for,
    plan_writes,
)
from replayer.rollback.in_place import Drain, StatesAt, drain_past, foreign_changes

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

WRITE_THREADS = 16
UNCHANGED = "unchanged"
CONFLICT = "conflict"
KEPT = "kept deleted (TTL)"


@dataclass(frozen=True)
class KeyUndo:
    """One key of the window: its states, and what the undo does with it."""

    keys: str  # canonical DynamoDB JSON of the key
    before: str | None  # its state at T1 (None: absent)
    bad: str | None  # its state at T2
    now: str | None  # the live item when read

    @property
    def action(self) -> str:
        """RESTORE, RECREATE or DELETE (``now`` is ``bad``), UNCHANGED or CONFLICT."""
        if self.now == self.before:
            return UNCHANGED
        if self.now != self.bad:
            return CONFLICT
        if self.before is None:
            return DELETE
        return RECREATE if self.bad is None else RESTORE

    def write(self, *, forced: bool = False) -> Write:
        """The conditional write that puts ``before`` back: on the condition that the item is
        still ``bad`` — or, ``forced`` over a conflict, still ``now``."""
        expected = self.now if forced else self.bad
        action = DELETE if self.before is None else (RECREATE if expected is None else RESTORE)
        return Write(self.keys, action, self.before, expected)

    def as_json(self) -> dict[str, Any]:
        """The conflicts file's line: key and items as DynamoDB JSON (null when absent)."""
        wire = lambda text: None if text is None else to_wire(text)  # noqa: E731
        return {"key": to_wire(self.keys), "before": wire(self.before),
                "bad": wire(self.bad), "now": wire(self.now)}  # fmt: skip


@dataclass
class UndoPlan:
    """What an undo of (``after``, ``until``] will do."""

    table: str
    after: datetime
    until: datetime
    keys: list[KeyUndo]
    ttl_kept: list[str] = field(default_factory=list)
    window_keys: int = 0  # keys changed in the window, before any selection
    window_records: int = 0  # change records of the window read

    def of(self, action: str) -> list[KeyUndo]:
        return [k for k in self.keys if k.action == action]

    def counts(self) -> dict[str, int]:
        """Restores (puts, re-creations included), deletes, unchanged keys and conflicts."""
        actions = [k.action for k in self.keys]
        return {
            "restore": sum(a in (RESTORE, RECREATE) for a in actions),
            "delete": actions.count(DELETE),
            "unchanged": actions.count(UNCHANGED),
            "conflicts": actions.count(CONFLICT),
            KEPT: len(self.ttl_kept),
        }

    def describe(self) -> str:
        window = f"({iso_ms(self.after)}, {iso_ms(self.until)}]"
        lines = [
            f"undo {self.table} {window}: {self.window_records:,} change records of "
            f"{self.window_keys:,} keys in the window, {len(self.keys) + len(self.ttl_kept):,} "
            "selected"
        ]
        lines += [
            f"{name:<10} {count:,}"
            for name, count in self.counts().items()
            if count or name != KEPT
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class Conflict:
    key: KeyUndo
    reason: str


@dataclass
class UndoReport:
    """What an undo did."""

    restored: int = 0
    deleted: int = 0
    unchanged: int = 0
    ttl_kept: int = 0
    forced: int = 0  # conflicts overwritten by --force-overwrite-later-changes
    conflicts: list[Conflict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return self.restored + self.deleted

    def summary(self) -> str:
        rate = self.written / self.seconds if self.seconds > 0 else 0.0
        forced = f", {self.forced} conflict(s) overwritten (forced)" if self.forced else ""
        return (
            f"restored {self.restored}, deleted {self.deleted}{forced}, already as before "
            f"{self.unchanged}, kept deleted (TTL) {self.ttl_kept}, conflicts "
            f"{len(self.conflicts)} ({self.seconds:.1f} s, {rate:,.0f} items/s)"
        )


def pruned_fold_states(
    archive: Archive,
    table: str,
    lambda_checks: lambda_gaps.LambdaChecks | None = None,
    settings: FoldSettings | None = None,
    say: Callable[[str], None] = log.info,
) -> StatesAt:
    """States at T from the archive's fold, reading only the row groups that can hold the
    keys asked for: ``before`` for a ``NEW_IMAGE`` stream, whose records carry no old image.
    ``say`` gets the rows the fold read."""

    def states(table_id: str, at: datetime, keys: list[str]) -> dict[str, str | None]:
        plan = planning.plan_restore(archive, table, at, lambda_checks=lambda_checks)
        if plan.table_id != table_id:
            raise Refused(
                f"{iso_ms(at)} is before the live table {table!r} was created (the archive "
                "holds an earlier table of that name then): nothing to undo in it"
            )
        selection = KeySelection.of(keys, "the window (no old images)", say=say)
        base = settings or FoldSettings()
        fold_settings = FoldSettings(
            base.memory_limit, base.temp_directory, base.threads, selection
        )
        with Fold(archive, fold_settings) as fold:
            result = fold.state_at(plan)
            found = dict(fold.con.execute(f"SELECT keys, item FROM {result.table}").fetchall())
        return {k: found.get(k) for k in keys}

    return states


@dataclass
class Undo:
    """One undo of (``after``, ``until``] in ``table``. Clients and the drain are passed in."""

    ddb: DynamoDBClient
    archive: Archive
    table: str
    after: datetime
    until: datetime
    drain: Drain
    states_at: StatesAt | None = None
    select: Callable[[], KeySelection | None] | None = None  # resolved after the drain
    version_attribute: str | None = None
    include_ttl_deletes: bool = False
    force: bool = False
    lambda_checks: lambda_gaps.LambdaChecks | None = None
    threads: int = WRITE_THREADS
    # Called after planning, before writing: tests inject a concurrent change here.
    before_write: Callable[[UndoPlan], None] | None = None
    # Learnt from the live table by prepare().
    key_names: list[str] = field(default_factory=list)
    table_id: str = ""

    def prepare(self) -> UndoPlan:
        """Drain, check the archive covers [T1, now], and decide per key of the window."""
        if self.until <= self.after:
            raise BadInput(
                f"the window ({iso_ms(self.after)}, {iso_ms(self.until)}] is empty: "
                "--to must be after --from"
            )
        live = describe_or_none(self.ddb, self.table)
        if live is None:
            raise BadInput(
                f"table {self.table!r} does not exist: undo works on a live table "
                "(restore a deleted one with ddb-replayer restore)"
            )
        self.table_id = tables.table_id_of(live)
        self.key_names = tables.key_names(live["KeySchema"])
        log.info("draining the stream of %s into %s", self.table, self.archive.url)
        # Every write before the undo began must be archived, or a later change would look
        # like no change: drain until the watermark (which trails the stream) passes now.
        watermark = drain_past(self.drain, utcnow())
        if watermark is None:
            raise Refused(f"table {self.table!r}: the archiver has no watermark after draining")
        if self.until > watermark:
            raise AfterWatermark(
                f"{iso_ms(self.until)} is after the watermark {iso_ms(watermark)} of table "
                f"{self.table!r}: changes up to it may not be archived yet"
            )
        # Coverage from T1, gaps and the chain over [T1, now], in the live generation.
        planning.plan_log(
            self.archive,
            self.table,
            self.after,
            watermark,
            table_id=self.table_id,
            lambda_checks=self.lambda_checks,
        )
        window = changes_after(self.archive, self.table, self.table_id, self.after, self.until)
        selection = self.select() if self.select is not None else None
        chosen = [h for h in window if selection is None or h.keys in selection]
        unknown = [
            h.keys
            for h in chosen
            if not h.state_at_t_known and not (h.ttl_deleted and not self.include_ttl_deletes)
        ]
        states: dict[str, str | None] = {}
        if unknown:
            if self.states_at is None:
                raise Refused(
                    "the stream has no old images (NEW_IMAGE) and no fold is available to find "
                    "the items' state at --from"
                )
            states = dict(self.states_at(self.table_id, self.after, unknown))
        decided = plan_writes(
            self.table, self.after, chosen, states, include_ttl_deletes=self.include_ttl_deletes
        )
        live_items = get_items(self.ddb, self.table, [w.keys for w in decided.writes])
        keys = [KeyUndo(w.keys, w.item, w.expected, live_items.get(w.keys)) for w in decided.writes]
        # before = bad: the window left it as it was; nothing to undo, whatever it is now.
        for k in decided.unchanged:
            image = decided.histories[k].latest_image
            keys.append(KeyUndo(k, image, image, image))
        return UndoPlan(
            table=self.table,
            after=self.after,
            until=self.until,
            keys=sorted(keys, key=lambda k: k.keys),
            ttl_kept=decided.ttl_kept,
            window_keys=len(window),
            window_records=sum(h.changes for h in window),
        )

    def _write(self, write: Write) -> None:
        condition = condition_for(write.expected, self.key_names, self.version_attribute)
        item = write.item
        if item is None:
            call(
                lambda: self.ddb.delete_item(
                    TableName=self.table, Key=to_wire(write.keys), **condition.kwargs()
                ),
                f"DeleteItem {self.table}",
            )
        else:
            call(
                lambda: self.ddb.put_item(
                    TableName=self.table, Item=to_wire(item), **condition.kwargs()
                ),
                f"PutItem {self.table}",
            )

    def _apply(self, todo: Sequence[tuple[KeyUndo, Write]]) -> tuple[list[Write], list[Conflict]]:
        """Make the conditional writes; (the writes made, the conflicts met)."""
        done: list[Write] = []
        conflicts: list[Conflict] = []

        def one(key: KeyUndo, write: Write) -> Conflict | None:
            try:
                self._write(write)
            except Exception as exc:
                if not is_error(exc, ConditionFailed):
                    raise
                now = get_items(self.ddb, self.table, [key.keys]).get(key.keys)
                if now == key.before:
                    return None  # our own write, repeated after a lost reply
                return Conflict(
                    KeyUndo(key.keys, key.before, key.bad, now),
                    "changed while the undo ran (condition failed): left as it is",
                )
            return None

        with (
            ThreadPoolExecutor(max_workers=max(1, self.threads)) as pool,
            tqdm(
                total=len(todo), desc="undoing", unit="item", file=sys.stderr, disable=None
            ) as bar,
        ):
            futures = {pool.submit(one, key, write): write for key, write in todo}
            for future in as_completed(futures):
                conflict = future.result()
                if conflict is None:
                    done.append(futures[future])
                else:
                    conflicts.append(conflict)
                bar.update(1)
        return done, conflicts

    def execute(self, plan: UndoPlan) -> UndoReport:
        """Write, drain again, and report conflicts."""
        started = time.monotonic()
        report = UndoReport(unchanged=len(plan.of(UNCHANGED)), ttl_kept=len(plan.ttl_kept))
        todo = [(k, k.write()) for k in plan.keys if k.action in (RESTORE, RECREATE, DELETE)]
        left = [Conflict(k, "changed after the window: left as it is") for k in plan.of(CONFLICT)]
        forced: set[str] = set()
        if self.force:
            todo += [(c.key, c.key.write(forced=True)) for c in left]
            forced = {c.key.keys for c in left}
            left = []
        # What the archive holds of these keys before the writes: anything newer that the
        # undo did not write is someone else's change, made while it ran.
        written = {k.keys for k, _ in todo}
        seen = {
            h.keys: h.event_ids
            for h in changes_after(self.archive, self.table, self.table_id, self.after)
            if h.keys in written
        }
        if self.before_write is not None:
            self.before_write(plan)
        done, met = self._apply(todo)
        report.seconds = time.monotonic() - started
        for write in done:
            if write.keys in forced:
                report.forced += 1
            elif write.item is None:
                report.deleted += 1
            else:
                report.restored += 1
        conflicts = left + met
        if done:
            log.info("draining the stream again to check for concurrent changes")
            drain_past(self.drain, utcnow())
            by_key = {k.keys: k for k in plan.keys}
            for found in foreign_changes(
                self.archive, self.table, self.table_id, self.after, done, seen, by="undo"
            ):
                conflicts.append(Conflict(by_key[found.keys], found.reason))
        if conflicts:
            # What each conflicting item is now, for the report and the conflicts file.
            now = get_items(self.ddb, self.table, [c.key.keys for c in conflicts])
            conflicts = [
                Conflict(
                    KeyUndo(c.key.keys, c.key.before, c.key.bad, now.get(c.key.keys)), c.reason
                )
                for c in conflicts
            ]
        report.conflicts = sorted(conflicts, key=lambda c: c.key.keys)
        return report


def write_conflicts(path: str, keys: Sequence[KeyUndo]) -> None:
    """The conflicts file: one JSON line per key, written whole or not at all."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".conflicts-", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            for key in keys:
                out.write(orjson.dumps(key.as_json()) + b"\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def print_plan(plan: UndoPlan, out: TextIO, *, force: bool) -> None:
    """The plan per key, as ``--dry-run`` shows it."""
    for key in plan.keys:
        action = key.action
        if action == UNCHANGED:
            continue
        if action == CONFLICT:
            what = "overwrite (forced)" if force else "CONFLICT"
            print(f"{what:<9} {key.keys}  (changed after the window)", file=out)
        else:
            print(f"{action:<9} {key.keys}", file=out)
    for keys in plan.ttl_kept:
        print(f"{'keep':<9} {keys}  (deleted by TTL in the window)", file=out)
