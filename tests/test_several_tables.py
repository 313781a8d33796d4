"""``restore`` and ``export`` of several tables to one instant: every table planned and checked
before any is written, one refusal refusing all; the tables written side by side, each in a
process of its own with its share of the budget, or one after the other; a summary line per
table with its counts.

Two or three tables' archives are built directly (the archiver's own format code, times chosen
by the test), each with its own history and watermark; restores go to moto. Stopping several
tables side by side (kill -9, SIGTERM) and resuming them is in ``tests/test_restore_stops.py``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from archiver.cliutil import build_parser
from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from replayer.cli import COMMANDS
from replayer.commands import restore as restore_command
from replayer.write.several_tables import TableRun, restore_tables, share_memory
from replayer.write.table_processes import _Lines
from tests.replay_helpers import (
    Change,
    at,
    canon,
    item,
    key,
    replayer,
    write_changes,
    write_coverage,
    write_description,
    write_gap,
)
from tests.workload import scan_state

TABLES = {"orders": ("orders-id", at(300)), "customers": ("customers-id", at(200))}
THIRD = {"invoices": ("invoices-id", at(250))}


def build(archive: Archive, table: str) -> list[tuple[datetime, str, int | None]]:
    """A history from table creation: puts and deletes of 8 keys, one a second until the
    table's watermark; returns it as (time, key, value or None)."""
    table_id, watermark = {**TABLES, **THIRD}[table]
    write_coverage(archive, table=table, table_id=table_id, watermark=watermark)
    write_description(archive, table=table, table_id=table_id)
    history, changes, alive = [], [], set()
    seconds = int((watermark - at(0)).total_seconds())
    for step in range(1, seconds, 3):
        name = f"{table[0]}{(step * 5) % 8}"
        value = None if step % 7 == 0 and name in alive else step
        if value is None:
            alive.discard(name)
            changes.append(Change(step, key(name), None, at(step), event_name="REMOVE"))
        else:
            event = "MODIFY" if name in alive else "INSERT"
            alive.add(name)
            changes.append(Change(step, key(name), item(name, v=value), at(step), event_name=event))
        history.append((at(step), name, value))
    write_changes(archive, changes, table=table, table_id=table_id, per_file=20)
    return history


def truth(history: list[tuple[datetime, str, int | None]], when: datetime) -> dict[str, str]:
    state: dict[str, Any] = {}
    for moment, name, value in history:
        if moment <= when:
            state[name] = None if value is None else item(name, v=value)
    return canon([v for v in state.values() if v is not None])


def restore(capsys: Any, archive: Archive, *more: str) -> tuple[int, str, str]:
    return replayer(capsys, "restore", "--source-table-name", "orders", "--table-name",
                    "customers", "--archive", archive.url, *more)  # fmt: skip


def tables_now(ddb: Any) -> set[str]:
    return set(ddb.list_tables()["TableNames"])


def test_two_tables_restored_to_one_instant_equal_their_truths(
    ddb: Any, archive: Archive, capsys: Any
) -> None:
    histories = {table: build(archive, table) for table in TABLES}
    when = at(150)
    code, out, err = restore(capsys, archive, "--restore-date-time", when.isoformat(),
                             "--target-table-suffix=-r")  # fmt: skip
    assert code == 0, out + err
    for table, history in histories.items():
        assert scan_state(ddb, f"{table}-r") == truth(history, when)
        items = len(truth(history, when))
        assert re.search(rf"^{table} -> {table}-r: restored, {items} items written in [\d.]+ s$",
                         out, re.M)  # fmt: skip
        assert f"[{table}] verify: identical" in out  # each table's own lines, named
    total = sum(len(truth(history, when)) for history in histories.values())
    assert re.search(rf"restored 2 of 2 table\(s\) as of {when.isoformat()[:19]}.000Z: "
                     rf"{total} items written in [\d.]+ s$", out.strip())  # fmt: skip

    # The latest restorable time of both is the smaller watermark (customers', at 200 s).
    code, out, err = restore(capsys, archive, "--use-latest-restorable-time",
                             "--target-table-suffix=-latest")  # fmt: skip
    assert code == 0, out + err
    assert truth(histories["orders"], at(200)) != truth(histories["orders"], at(299))
    assert scan_state(ddb, "orders-latest") == truth(histories["orders"], at(200))
    assert scan_state(ddb, "customers-latest") == truth(histories["customers"], at(200))


def test_one_table_refused_refuses_all(ddb: Any, archive: Archive, capsys: Any) -> None:
    for table in TABLES:
        build(archive, table)
    before = tables_now(ddb)
    when = at(150).isoformat()
    code, _, err = replayer(capsys, "restore", "--source-table-name", "orders",
                            "--source-table-name", "ghost", "--archive", archive.url,
                            "--restore-date-time", when, "--target-table-suffix=-r")  # fmt: skip
    assert code == 4 and "'ghost'" in err and "nothing was created" in err
    write_gap(archive, at(100), at(110), table="customers", table_id="customers-id")
    code, _, err = restore(capsys, archive, "--restore-date-time", when,
                           "--target-table-suffix=-r")  # fmt: skip
    assert code == 4 and "'customers'" in err and "gap" in err
    assert tables_now(ddb) == before  # orders, planned first, was not created either


def test_an_existing_target_refuses_all_and_resume_continues_the_unfinished(
    ddb: Any, archive: Archive, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    histories = {table: build(archive, table) for table in TABLES}
    when = at(150)
    argv = ["restore", "--source-table-name", "orders", "--source-table-name", "customers",
            "--archive", archive.url, "--restore-date-time", when.isoformat(),
            "--target-table-suffix=-r"]  # fmt: skip

    # The process dies after the first table: the second was never started.
    class Crash(Exception):
        pass

    done: list[str] = []

    def dies_after_one(args: Any) -> TableRun:
        if done:
            raise Crash("killed")
        done.append(args.source_table_name)
        return restore_command.restore_one(args)

    parser = build_parser("ddb-replayer", "", COMMANDS)
    with pytest.raises(Crash):  # one after the other, in this process: the crash is this one
        restore_tables(parser.parse_args([*argv, "--parallel-tables", "1"]), dies_after_one)
    assert tables_now(ddb) == {"orders-r"}

    code, _, err = replayer(capsys, *argv)  # without --resume: the target exists
    assert code == 4 and "'orders-r' already exists" in err and "--resume" in err
    assert tables_now(ddb) == {"orders-r"}

    code, out, err = replayer(capsys, *argv, "--resume")
    assert code == 0, out + err
    assert "orders -> orders-r: restored by this plan already: skipped" in out
    written = len(truth(histories["customers"], when))
    assert f"customers -> customers-r: restored, {written} items written in " in out
    assert f"restored 2 of 2 table(s) as of {iso_ms(when)}: {written} items written in " in out
    for table, history in histories.items():
        assert scan_state(ddb, f"{table}-r") == truth(history, when)

    ddb.put_item(TableName="customers-r", Item=item("c9", v=1))  # not this restore's doing
    ddb.delete_table(TableName="orders-r")
    code, out, err = replayer(capsys, *argv, "--resume")
    assert code == 0, out + err  # orders restored afresh, customers complete: skipped
    assert scan_state(ddb, "orders-r") == truth(histories["orders"], when)
    assert canonical_json(key("c9")) in scan_state(ddb, "customers-r")


def test_several_tables_usage_errors(archive: Archive, capsys: Any) -> None:
    for table in TABLES:
        build(archive, table)
    when = ("--restore-date-time", at(150).isoformat())
    code, _, err = restore(capsys, archive, *when, "--target-table-name", "x-r")
    assert code == 2 and "--target-table-suffix" in err
    code, _, err = restore(capsys, archive, *when)
    assert code == 2 and "--target-table-suffix" in err
    code, _, err = restore(capsys, archive, *when, "--target-table-suffix=-r",
                           "--key", '{"pk": {"S": "o1"}}')  # fmt: skip
    assert code == 2 and "one source table" in err
    code, _, err = restore(capsys, archive, *when, "--target-table-suffix=-r",
                           "--strategy", "pitr")  # fmt: skip
    assert code == 2 and "replay" in err
    code, _, err = replayer(capsys, "restore", "--source-table-name", "orders",
                            "--target-table-name", "a-r", "--target-table-suffix=-r",
                            "--archive", archive.url, *when)  # fmt: skip
    assert code == 2 and "not both" in err


def test_two_tables_exported_to_one_instant(archive: Archive, tmp_path: Path, capsys: Any) -> None:
    histories = {table: build(archive, table) for table in TABLES}
    output = tmp_path / "out"
    argv = ["export", "--table-name", "orders", "--table-name", "customers", "--archive",
            archive.url, "--use-latest-restorable-time", "--output", str(output)]  # fmt: skip
    code, out, err = replayer(capsys, *argv)
    assert code == 0, out + err
    for table, history in histories.items():
        rows = pq.read_table(output / table / "data").to_pylist()
        assert {r["keys"]: r["item"] for r in rows} == truth(history, at(200))
        assert (output / table / "export.json").exists()
        assert f"{table} -> {output}/{table}: exported, {len(rows)} items in " in out
    total = sum(len(truth(history, at(200))) for history in histories.values())
    assert f"exported 2 of 2 table(s) as of {iso_ms(at(200))}: {total} items in " in out
    code, _, err = replayer(capsys, *argv)
    assert code == 4 and "already holds files" in err
    code, out, err = replayer(capsys, *argv, "--resume")
    assert code == 0 and out.count("exported by this plan already: skipped") == 2


# -- side by side, and one after the other ---------------------------------------------------


def restore_noting(args: Any) -> TableRun:
    """The restore command's own single-table run, noting in the file ``args.notes`` when it
    ran, in which process, and with which share of the budget (module-level: it is pickled
    for each table's process)."""
    started = time.time()
    result = restore_command.restore_one(args)
    note = {"table": args.source_table_name, "pid": os.getpid(), "start": started,
            "end": time.time(), "workers": list(args.write_workers or ()),
            "rate": args.max_write_rate, "memory": args.memory_limit}  # fmt: skip
    with open(args.notes, "a") as notes:
        notes.write(json.dumps(note) + "\n")
    return result


def test_three_tables_side_by_side_each_in_its_own_process_with_its_share(
    ddb: Any, archive: Archive, capsys: Any, tmp_path: Path
) -> None:
    histories = {table: build(archive, table) for table in [*TABLES, *THIRD]}
    when = at(150)
    parser = build_parser("ddb-replayer", "", COMMANDS)

    def restore_all(suffix: str, *more: str) -> tuple[int, str, list[dict[str, Any]]]:
        argv = ["restore", "--archive", archive.url, "--restore-date-time", iso_ms(when),
                f"--target-table-suffix={suffix}", "--max-write-rate", "3000",
                "--write-workers", "3x2", "--memory-limit", "3GB", *more]  # fmt: skip
        for table in histories:
            argv += ["--source-table-name", table]
        args = parser.parse_args(argv)
        args.notes = str(tmp_path / f"notes{suffix}.jsonl")
        capsys.readouterr()
        code = restore_tables(args, restore_noting)
        out = capsys.readouterr().out
        notes = [json.loads(line) for line in Path(args.notes).read_text().splitlines()]
        return code, out, sorted(notes, key=lambda note: note["table"])

    code, out, notes = restore_all("-side")
    assert code == 0, out
    for table, history in histories.items():
        assert scan_state(ddb, f"{table}-side") == truth(history, when)
        items = len(truth(history, when))
        assert f"{table} -> {table}-side: restored, {items} items written in " in out
    total = sum(len(truth(history, when)) for history in histories.values())
    assert f"restored 3 of 3 table(s) as of {iso_ms(when)}: {total} items written in " in out
    # Side by side: each in a process of its own, all running at once, each with a third of
    # the rate, the writer processes and the fold's memory.
    assert len({note["pid"] for note in notes}) == 3 and os.getpid() not in {
        n["pid"] for n in notes
    }
    assert max(note["start"] for note in notes) < min(note["end"] for note in notes)
    assert all(note["workers"] == [1, 2] and note["rate"] == 1000.0 for note in notes)
    assert all(note["memory"] == "1000000000B" for note in notes)

    code, out, notes = restore_all("-one", "--parallel-tables", "1")
    assert code == 0, out
    for table, history in histories.items():
        assert scan_state(ddb, f"{table}-one") == truth(history, when)
    assert f"restored 3 of 3 table(s) as of {iso_ms(when)}: {total} items written in " in out
    # One after the other, in the command's own process, each with the whole budget.
    assert {note["pid"] for note in notes} == {os.getpid()}
    spans = sorted((note["start"], note["end"]) for note in notes)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
    assert all(note["workers"] == [3, 2] and note["rate"] == 3000.0 for note in notes)
    assert all(note["memory"] == "3GB" for note in notes)


def test_a_table_that_fails_side_by_side_fails_alone_and_the_worst_code_is_the_exit(
    ddb: Any, archive: Archive, capsys: Any
) -> None:
    """A table whose target appears after planning (someone else created it) fails with the
    single restore's refusal; the other table is restored all the same."""
    histories = {table: build(archive, table) for table in TABLES}
    when = at(150)
    parser = build_parser("ddb-replayer", "", COMMANDS)
    args = parser.parse_args(["restore", "--source-table-name", "orders", "--source-table-name",
                              "customers", "--archive", archive.url, "--restore-date-time",
                              iso_ms(when), "--target-table-suffix=-f"])  # fmt: skip
    capsys.readouterr()
    code = restore_tables(args, restore_after_a_rival)
    out = capsys.readouterr().out
    assert code == 4, out
    assert re.search(r"^orders -> orders-f: FAILED after [\d.]+ s, exit 4: target table "
                     r"'orders-f' already exists", out, re.M)  # fmt: skip
    assert scan_state(ddb, "customers-f") == truth(histories["customers"], when)
    assert f"restored 1 of 2 table(s) as of {iso_ms(when)}: " in out


def restore_after_a_rival(args: Any) -> TableRun:
    """The restore's run, but ``orders``' target is created by someone else first."""
    if args.source_table_name == "orders":
        from archiver.aws.clients import AwsSettings

        AwsSettings().client("dynamodb").create_table(
            TableName=args.target_table_name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    return restore_command.restore_one(args)


def test_the_budget_is_shared_and_a_redrawn_bar_is_one_status_line() -> None:
    assert share_memory("1GB", 4) == "250000000B"
    assert share_memory("512MiB", 2) == "268435456B"
    assert share_memory("50%", 4) == "12.5%"
    assert share_memory("1GB", 1) == "1GB"
    assert share_memory("lots", 2) == "lots"  # DuckDB says what is wrong with it
    stream = _Lines()
    assert stream.feed("\rwriting orders-r:  10%|#") == ([], "writing orders-r:  10%|#")
    assert stream.feed("\rwriting orders-r:  60%|######   ") == (
        [],
        "writing orders-r:  60%|######",
    )
    assert stream.feed("\rwriting orders-r: 100%|##########\nnext") == (
        ["writing orders-r: 100%|##########"],
        "next",
    )


def test_side_by_side_metrics_reach_the_command_and_a_dry_run_counts_nothing(
    ddb: Any, archive: Archive, capsys: Any
) -> None:
    """Each table's process reports its write rate to the command's sink: ``--metrics emf``
    prints one line per table at exit, as for one table. A dry run writes nothing and says so."""
    for table in TABLES:
        build(archive, table)
    when = ("--restore-date-time", iso_ms(at(150)))
    code, out, err = restore(capsys, archive, *when, "--target-table-suffix=-m",
                             "--metrics", "emf")  # fmt: skip
    assert code == 0, out + err
    emf = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    rates = {doc["Table"]: doc["RestoreItemsPerSecond"] for doc in emf if "Table" in doc}
    assert set(TABLES) <= set(rates) and all(rates[table] > 0 for table in TABLES)

    before = tables_now(ddb)
    code, out, err = restore(capsys, archive, *when, "--target-table-suffix=-dry", "--dry-run")
    assert code == 0, out + err
    assert tables_now(ddb) == before
    for table in TABLES:
        assert f"[{table}] dry run: nothing was created" in out
        assert re.search(rf"^{table} -> {table}-dry: planned \(dry run\) in [\d.]+ s$", out, re.M)
    assert re.search(r"^planned \(dry run\) 2 of 2 table\(s\) as of \S+, in [\d.]+ s$", out, re.M)
