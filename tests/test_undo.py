"""``ddb-replayer undo``: one window of changes undone in the live table, later ones kept.

The scenario tests run against moto's stream, archived by the real poller (``run --once``) that
undo drains, with whole-second windows. The fault tests build the archive directly (the
archiver's own format code, times chosen by the test) over a moto table without a stream, so
that a crash can be injected at every write and the undo rerun, without waiting for clocks.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.exceptions
import orjson
import pytest

from archiver.aws.error_table import UsageError
from archiver.format import coverage, layout, tables
from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow
from replayer.commands.undo import run
from replayer.exceptions import AfterWatermark, BadInput, GapInLog, OutsideCoverage
from replayer.planning.key_selection import select_keys
from replayer.rollback.undo import CONFLICT, Undo, UndoPlan, pruned_fold_states
from tests.conftest import create_table
from tests.replay_helpers import T0, Change, replayer, write_changes, write_coverage, write_gap
from tests.test_rollback import wait_for_next_second
from tests.workload import scan_state


def key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"user-{i}"}}


def item(i: int, value: str, **extra: Any) -> dict[str, Any]:
    return {**key(i), "v": {"S": value}, **extra}


def k(i: int) -> str:
    return canonical_json(key(i))


def put(ddb: Any, i: int, value: str) -> None:
    ddb.put_item(TableName="orders", Item=item(i, value))


def undo_args(archive: Archive, after: datetime, until: datetime, *more: str) -> list[str]:
    return ["undo", "--table-name", "orders", "--archive", archive.url,
            "--from", str(after.timestamp()), "--to", str(until.timestamp()), *more]  # fmt: skip


# -- the window scenario, on the stream ---------------------------------------------------------


def test_undo_of_a_window_keeps_later_changes_and_can_itself_be_undone(
    ddb: Any, archive: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    for i in range(10):
        put(ddb, i, "good")
    after = wait_for_next_second(0.2)
    at_t1 = scan_state(ddb, "orders")
    # The bad deploy: garbage in 0..5, user-6 changed and changed back, user-8 deleted,
    # user-10 created.
    for i in range(6):
        put(ddb, i, "garbage")
    put(ddb, 6, "garbage")
    put(ddb, 6, "good")
    ddb.delete_item(TableName="orders", Key=key(8))
    put(ddb, 10, "garbage")
    until = wait_for_next_second(0.2)
    # Good writes go on: user-3 and user-4 fixed by hand (conflicts), user-7 never in the
    # window, user-11 new.
    put(ddb, 3, "fixed by hand")
    ddb.delete_item(TableName="orders", Key=key(4))
    put(ddb, 7, "later")
    put(ddb, 11, "later")
    before_undo = scan_state(ddb, "orders")

    conflicts = tmp_path / "conflicts.jsonl"
    code, out, err = replayer(capsys, *undo_args(archive, after, until, "--dry-run",
                                                   "--conflicts", str(conflicts)))  # fmt: skip
    assert code == 0, err
    # 0, 1, 2, 5 restored and 8 re-created; 10 deleted; 6 changed and back; 3, 4 changed later
    assert "restore    5" in out and "delete     1" in out
    assert "unchanged  1" in out and "conflicts  2" in out
    assert scan_state(ddb, "orders") == before_undo  # nothing written
    assert len(conflicts.read_text().splitlines()) == 2

    started = wait_for_next_second(0.2)
    code, out, err = replayer(
        capsys, *undo_args(archive, after, until, "--conflicts", str(conflicts))
    )
    assert code == 3, out + err  # conflicts were left as they are
    now = scan_state(ddb, "orders")
    for i in (0, 1, 2, 5, 8):  # changed only in the window: back as at T1
        assert now[k(i)] == at_t1[k(i)]
    assert k(10) not in now  # inserted in the window: deleted
    for i in (3, 4, 6, 7, 11):  # changed again later, or not in the window: untouched
        assert now.get(k(i)) == before_undo.get(k(i))
    assert "restored 5, deleted 1" in out and "conflicts 2" in out
    lines = [json.loads(line) for line in conflicts.read_text().splitlines()]
    assert [line["key"] for line in lines] == [key(3), key(4)]
    assert lines[0]["before"] == item(3, "good") and lines[0]["bad"] == item(3, "garbage")
    assert lines[0]["now"] == item(3, "fixed by hand")
    assert lines[1]["now"] is None  # deleted after the window

    # The undo's writes are archived like any others: undoing its window undoes it.
    finished = wait_for_next_second(0.2)
    code, out, err = replayer(capsys, *undo_args(archive, started, finished))
    assert code == 0, out + err
    assert scan_state(ddb, "orders") == before_undo


def test_an_empty_window_is_bad_input(ddb: Any, archive: Archive, capsys: Any) -> None:
    create_table(ddb, "orders")
    code, _, err = replayer(capsys, *undo_args(archive, T0 + timedelta(seconds=9), T0))
    assert code == 2 and "empty" in err


# -- faults, on an archive built directly ----------------------------------------------------


class Crash(Exception):
    """The process died: this write and every later one never happen."""


class FaultyDynamoDB:
    """A DynamoDB client whose writes fail as asked: the process dies before the n-th write
    (``crash_at``), or the reply to a write is lost after DynamoDB made it (``lose_reply``: a
    read timeout, which the retry policy repeats), or the first calls are throttled."""

    def __init__(
        self, real: Any, *, crash_at: int | None = None, lose_reply: int | None = None,
        throttle: int = 0,
    ) -> None:  # fmt: skip
        self.real = real
        self.crash_at = crash_at
        self.lose_reply = lose_reply
        self.throttle = throttle
        self.attempts = 0
        self.written = 0
        self.crashed = False

    def _write(self, call: Callable[..., Any], **kwargs: Any) -> Any:
        self.attempts += 1
        if self.crashed or (self.crash_at is not None and self.attempts >= self.crash_at):
            self.crashed = True
            raise Crash("injected")
        if self.throttle:
            self.throttle -= 1
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "PutItem",
            )
        answer = call(**kwargs)
        self.written += 1
        if self.lose_reply == self.attempts:
            raise botocore.exceptions.ReadTimeoutError(endpoint_url="http://lost")
        return answer

    def put_item(self, **kwargs: Any) -> Any:
        return self._write(self.real.put_item, **kwargs)

    def delete_item(self, **kwargs: Any) -> Any:
        return self._write(self.real.delete_item, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


# (time in seconds after T0, key, value or None for a REMOVE)
Event = tuple[float, int, str | None]


class ArchivingDrain:
    """The stream and ``ddb-archiver run --once`` for a table without a stream.

    Each call archives every difference between the live table and what the archive last saw,
    as one change record per key (INSERT, MODIFY or REMOVE, with the old image) a second past
    now, advances the watermark to that second and returns it — as draining a real stream after
    the writes would. What it cannot model: several changes to one key between two calls show
    as their net change, and the records' event times are the drain's, not the writes'.
    """

    def __init__(
        self, ddb: Any, archive: Archive, table: str, table_id: str, seq: int, at: datetime
    ) -> None:
        self.ddb, self.archive, self.table, self.table_id = ddb, archive, table, table_id
        self.state, self.seq, self.at = scan_state(ddb, table), seq, at

    def __call__(self) -> datetime:
        now = utcnow().replace(microsecond=0)
        self.at = max(self.at, now) + timedelta(seconds=1)  # a drain reaches "now"
        live = scan_state(self.ddb, self.table)
        changes = []
        for name in sorted(set(live) | set(self.state)):
            old, new = self.state.get(name), live.get(name)
            if old == new:
                continue
            self.seq += 1
            event = "INSERT" if old is None else ("REMOVE" if new is None else "MODIFY")
            changes.append(
                Change(self.seq, orjson.loads(name), orjson.loads(new) if new else None, self.at,
                       event_name=event, old=orjson.loads(old) if old else None,
                       event_id=f"drained-{self.seq}")
            )  # fmt: skip
        if changes:
            write_changes(self.archive, changes, table=self.table, table_id=self.table_id)
        self.state = live
        coverage.advance_watermark(self.archive, self.table, self.table_id, self.at)
        return self.at


def build(
    ddb: Any, archive: Archive, events: list[Event], *, old_images: bool = True,
    table: str = "orders",
) -> tuple[ArchivingDrain, dict[int, list[tuple[float, str | None]]]]:  # fmt: skip
    """Archive ``events`` as ``table``'s change log (from table creation, with or without old
    images) and make the live table (no stream) hold their final state; returns the drain that
    archives later writes, and each key's timeline."""
    create_table(ddb, table, stream=None)
    table_id = tables.table_id_of(ddb.describe_table(TableName=table)["Table"])
    state: dict[int, str | None] = {}
    timeline: dict[int, list[tuple[float, str | None]]] = {}
    changes = []
    for seq, (seconds, i, value) in enumerate(sorted(events, key=lambda e: e[0]), 1):
        old = state.get(i)
        if old is None and value is None:
            continue  # nothing to delete
        name = "INSERT" if old is None else ("REMOVE" if value is None else "MODIFY")
        changes.append(
            Change(
                seq, key(i), None if value is None else item(i, value),
                T0 + timedelta(seconds=seconds), event_name=name,
                old=item(i, old) if old is not None and old_images else None,
            )
        )  # fmt: skip
        state[i] = value
        timeline.setdefault(i, []).append((seconds, value))
    write_changes(archive, changes, table=table, table_id=table_id, per_file=3)
    watermark = T0 + timedelta(seconds=max(e[0] for e in events) + 10)
    write_coverage(archive, table=table, table_id=table_id, watermark=watermark)
    for i, value in state.items():
        if value is not None:
            ddb.put_item(TableName=table, Item=item(i, value))
    return ArchivingDrain(ddb, archive, table, table_id, len(events) + 1, watermark), timeline


def state_at(
    timeline: Mapping[int, list[tuple[float, str | None]]], seconds: float
) -> dict[str, str]:
    out = {}
    for i, changes in timeline.items():
        value = None
        for when, new in changes:
            if when <= seconds:
                value = new
        if value is not None:
            out[k(i)] = canonical_json(item(i, value))
    return out


def make_undo(
    ddb: Any, archive: Archive, drain: ArchivingDrain, after: float, until: float, **kwargs: Any
) -> Undo:
    return Undo(
        ddb=ddb,
        archive=archive,
        table=drain.table,
        after=T0 + timedelta(seconds=after),
        until=T0 + timedelta(seconds=until),
        drain=drain,
        states_at=pruned_fold_states(archive, drain.table),
        threads=kwargs.pop("threads", 4),
        **kwargs,
    )


# Before the window (10, 20]: 0..7 exist. In it: 0..3 garbage, 4 deleted, 8 inserted, 5 garbage
# then fixed again after the window (a conflict). After it: 6 changed (not in the window).
# The undo writes 6 items: 0..3 and 4 back, 8 deleted.
EVENTS: list[Event] = [
    *[(1.0 + i / 10, i, "good") for i in range(8)],
    *[(12.0 + i / 10, i, "garbage") for i in range(4)],
    (13.0, 4, None),
    (13.5, 8, "garbage"),
    (14.0, 5, "garbage"),
    (25.0, 5, "fixed"),
    (26.0, 6, "later"),
]
WINDOW = (10.0, 20.0)


def expected_after_undo(timeline: Mapping[int, list[tuple[float, str | None]]]) -> dict[str, str]:
    after, until = WINDOW
    before, bad, now = state_at(timeline, after), state_at(timeline, until), state_at(timeline, 99)
    out = dict(now)
    for i, changes in timeline.items():
        if not any(after < when <= until for when, _ in changes):
            continue
        if now.get(k(i)) in (bad.get(k(i)), before.get(k(i))):
            out.pop(k(i), None)
            if k(i) in before:
                out[k(i)] = before[k(i)]
    return out


def test_the_window_scenario_with_old_images_and_without(ddb: Any, archive: Archive) -> None:
    for old_images, table in ((True, "orders"), (False, "orders_new_image")):
        drain, timeline = build(ddb, archive, EVENTS, old_images=old_images, table=table)
        undo = make_undo(ddb, archive, drain, *WINDOW)
        plan = undo.prepare()
        assert plan.counts() == {"restore": 5, "delete": 1, "unchanged": 0, "conflicts": 1,
                                 "kept deleted (TTL)": 0}  # fmt: skip
        report = undo.execute(plan)
        assert (report.restored, report.deleted) == (5, 1)
        assert [c.key.keys for c in report.conflicts] == [k(5)]
        got = scan_state(ddb, table)
        assert got == expected_after_undo(timeline)
        assert got[k(0)] == canonical_json(item(0, "good")) and k(8) not in got
        assert got[k(4)] == canonical_json(item(4, "good"))
        assert got[k(5)] == canonical_json(item(5, "fixed"))


@pytest.mark.parametrize("crash_at", range(1, 7))  # the undo makes 6 writes
def test_a_crash_at_any_write_then_a_rerun_writes_only_what_is_left(
    ddb: Any, archive: Archive, crash_at: int
) -> None:
    drain, timeline = build(ddb, archive, EVENTS)
    faulty = FaultyDynamoDB(ddb, crash_at=crash_at)
    undo = make_undo(faulty, archive, drain, *WINDOW, threads=1)
    with pytest.raises(Crash):
        undo.execute(undo.prepare())
    first = faulty.written
    assert first == crash_at - 1

    counting = FaultyDynamoDB(ddb)
    rerun = make_undo(counting, archive, drain, *WINDOW)
    plan = rerun.prepare()
    assert plan.counts()["unchanged"] == first  # undone already: skipped
    report = rerun.execute(plan)
    assert counting.written == 6 - first  # only what was left
    assert report.written == 6 - first and len(report.conflicts) == 1
    assert scan_state(ddb, "orders") == expected_after_undo(timeline)


def test_a_lost_reply_and_throttling_neither_lose_nor_double_a_write(
    ddb: Any, archive: Archive
) -> None:
    drain, timeline = build(ddb, archive, EVENTS)
    faulty = FaultyDynamoDB(ddb, lose_reply=2, throttle=3)
    undo = make_undo(faulty, archive, drain, *WINDOW, threads=1)
    report = undo.execute(undo.prepare())
    # The lost reply's retry met its own write (condition failed, item as before): done once.
    assert faulty.written == 6
    assert (report.restored, report.deleted) == (5, 1)
    assert [c.key.keys for c in report.conflicts] == [k(5)]
    assert scan_state(ddb, "orders") == expected_after_undo(timeline)


def test_a_change_between_reading_and_writing_is_a_conflict(ddb: Any, archive: Archive) -> None:
    drain, _ = build(ddb, archive, EVENTS)
    meanwhile = item(1, "written meanwhile")

    def interfere(plan: UndoPlan) -> None:
        ddb.put_item(TableName="orders", Item=meanwhile)

    undo = make_undo(ddb, archive, drain, *WINDOW, before_write=interfere)
    report = undo.execute(undo.prepare())
    assert sorted(c.key.keys for c in report.conflicts) == [k(1), k(5)]
    assert scan_state(ddb, "orders")[k(1)] == canonical_json(meanwhile)  # not overwritten
    assert report.restored == 4


def test_force_overwrites_later_changes_and_the_conflicts_file(
    ddb: Any, archive: Archive, tmp_path: Path
) -> None:
    drain, _ = build(ddb, archive, EVENTS)
    undo = make_undo(ddb, archive, drain, *WINDOW, force=True)
    path = tmp_path / "conflicts.jsonl"
    code = run(undo, dry_run=True, conflicts_file=str(path), out=open(tmp_path / "out", "w"))  # noqa: SIM115
    assert code == 0 and path.read_text() == ""
    assert run(undo, dry_run=False, conflicts_file=str(path), out=open(tmp_path / "o", "w")) == 0  # noqa: SIM115
    assert scan_state(ddb, "orders")[k(5)] == canonical_json(item(5, "good"))
    assert path.read_text() == ""


def test_ttl_deletes_in_the_window_stay_deleted_unless_asked(ddb: Any, archive: Archive) -> None:
    create_table(ddb, "orders", stream=None)
    table_id = tables.table_id_of(ddb.describe_table(TableName="orders")["Table"])
    changes = [
        Change(1, key(1), item(1, "good"), T0 + timedelta(seconds=1), event_name="INSERT"),
        Change(2, key(1), None, T0 + timedelta(seconds=12), event_name="REMOVE",
               old=item(1, "good")),
    ]  # fmt: skip
    records = [c.record() for c in changes]
    records[1]["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    from tests import changes_builder

    changes_builder.write_changes(archive, "orders", records, table_id=table_id)
    watermark = T0 + timedelta(seconds=40)
    write_coverage(archive, table_id=table_id, watermark=watermark)
    drain = ArchivingDrain(ddb, archive, "orders", table_id, 3, watermark)
    plan = make_undo(ddb, archive, drain, *WINDOW).prepare()
    assert plan.ttl_kept == [k(1)] and not plan.keys
    undo = make_undo(ddb, archive, drain, *WINDOW, include_ttl_deletes=True)
    report = undo.execute(undo.prepare())
    assert report.restored == 1 and not report.conflicts
    assert scan_state(ddb, "orders") == {k(1): canonical_json(item(1, "good"))}


def test_a_rerun_writes_nothing(ddb: Any, archive: Archive) -> None:
    drain, timeline = build(ddb, archive, EVENTS)
    undo = make_undo(ddb, archive, drain, *WINDOW)
    undo.execute(undo.prepare())
    counting = FaultyDynamoDB(ddb)
    rerun = make_undo(counting, archive, drain, *WINDOW)
    plan = rerun.prepare()
    assert plan.counts()["unchanged"] == 6 and plan.counts()["conflicts"] == 1
    report = rerun.execute(plan)
    assert counting.attempts == 0 and report.written == 0
    assert scan_state(ddb, "orders") == expected_after_undo(timeline)


def test_undo_only_the_selected_keys(ddb: Any, archive: Archive) -> None:
    events: list[Event] = [
        *[(1.0, i, "good") for i in range(4)],
        *[(12.0 + i, i, f"garbage {'v2' if i % 2 else 'v1'}") for i in range(4)],
    ]
    drain, _ = build(ddb, archive, events)

    def selecting(**flags: Any) -> Callable[[], Any]:
        args = argparse.Namespace(**{"key": None, "keys_file": None, "where": None, **flags})
        after, until = (T0 + timedelta(seconds=s) for s in WINDOW)
        return lambda: select_keys(args, archive, "orders", after=after, until=until)

    where = "ends_with(new_image->>'$.v.S', 'v2')"
    undo = make_undo(ddb, archive, drain, *WINDOW, select=selecting(where=where))
    assert undo.execute(undo.prepare()).restored == 2
    values = [orjson.loads(v)["v"]["S"] for _, v in sorted(scan_state(ddb, "orders").items())]
    assert values == ["garbage v1", "good", "garbage v1", "good"]
    undo = make_undo(ddb, archive, drain, *WINDOW, select=selecting(key=[k(2)]))
    assert undo.execute(undo.prepare()).restored == 1
    assert orjson.loads(scan_state(ddb, "orders")[k(2)])["v"]["S"] == "good"
    undo = make_undo(ddb, archive, drain, *WINDOW, select=selecting(where="v = 1"))
    with pytest.raises(UsageError):  # a column no change row has
        undo.prepare()
    undo = make_undo(ddb, archive, drain, *WINDOW, select=selecting(where="event_name = 'X'"))
    with pytest.raises(BadInput, match="selects no key"):
        undo.prepare()


def test_a_window_the_archive_cannot_answer_is_refused_and_nothing_written(
    ddb: Any, archive: Archive
) -> None:
    drain, _ = build(ddb, archive, EVENTS)
    before = scan_state(ddb, "orders")
    with pytest.raises(AfterWatermark):
        make_undo(ddb, archive, drain, 10.0, 10.0 + 10**9).prepare()
    write_gap(
        archive, T0 + timedelta(seconds=30), T0 + timedelta(seconds=31), table_id=drain.table_id
    )
    with pytest.raises(GapInLog):  # a gap after the window still hides later changes
        make_undo(ddb, archive, drain, *WINDOW).prepare()
    state = archive.read_json(layout.coverage("orders"))
    state.update(from_table_creation=False, covered_from=iso_ms(T0 + timedelta(seconds=11)))
    archive.write_json(layout.coverage("orders"), state)
    with pytest.raises(OutsideCoverage):
        make_undo(ddb, archive, drain, *WINDOW).prepare()
    assert scan_state(ddb, "orders") == before


def test_plan_actions() -> None:
    from replayer.rollback.undo import UNCHANGED, KeyUndo

    assert KeyUndo("k", "a", "b", "b").action == "restore"
    assert KeyUndo("k", None, "b", "b").action == "delete"
    assert KeyUndo("k", "a", None, None).action == "re-create"
    assert KeyUndo("k", "a", "b", "a").action == UNCHANGED
    assert KeyUndo("k", "a", "b", "c").action == CONFLICT
    assert KeyUndo("k", "a", "b", None).action == CONFLICT
    forced = KeyUndo("k", "a", "b", "c").write(forced=True)
    assert (forced.item, forced.expected) == ("a", "c")
