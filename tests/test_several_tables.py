"""``restore`` and ``export`` of several tables to one instant: every table planned and checked
before any is written, one refusal refusing all.

Two tables' archives are built directly (the archiver's own format code, times chosen by the
test), each with its own history and watermark; restores go to moto.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from archiver.cliutil import build_parser
from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from replayer.cli import COMMANDS
from replayer.commands import restore as restore_command
from replayer.write.several_tables import restore_tables
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


def build(archive: Archive, table: str) -> list[tuple[datetime, str, int | None]]:
    """A history from table creation: puts and deletes of 8 keys, one a second until the
    table's watermark; returns it as (time, key, value or None)."""
    table_id, watermark = TABLES[table]
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
        assert f"{table} -> {table}-r: restored" in out
    assert out.strip().endswith(f"restored 2 of 2 table(s) as of {when.isoformat()[:19]}.000Z")

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

    def dies_after_one(args: Any) -> int:
        if done:
            raise Crash("killed")
        done.append(args.source_table_name)
        return restore_command.main(args)

    parser = build_parser("ddb-replayer", "", COMMANDS)
    with pytest.raises(Crash):
        restore_tables(parser.parse_args(argv), dies_after_one)
    assert tables_now(ddb) == {"orders-r"}

    code, _, err = replayer(capsys, *argv)  # without --resume: the target exists
    assert code == 4 and "'orders-r' already exists" in err and "--resume" in err
    assert tables_now(ddb) == {"orders-r"}

    code, out, err = replayer(capsys, *argv, "--resume")
    assert code == 0, out + err
    assert "orders -> orders-r: restored by this plan already: skipped" in out
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
    code, _, err = replayer(capsys, *argv)
    assert code == 4 and "already holds files" in err
    code, out, err = replayer(capsys, *argv, "--resume")
    assert code == 0 and out.count("exported by this plan already: skipped") == 2
