"""``ddb-replayer verify`` and ``diff``: item-by-item comparison, counts, examples, exit codes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from archiver.aws.error_table import EXIT_DIFFERENCES, EXIT_USAGE
from replayer.read.verify import Comparison, compare
from tests.conftest import create_table
from tests.replay_helpers import archive_table, replayer
from tests.workload import Workload


def _tamper(ddb: Any, table: str) -> None:
    """One item deleted, one added, one changed (a number written in another notation
    is *not* a change: canonical JSON compares values)."""
    items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
    items.sort(key=lambda i: i["pk"]["S"])
    ddb.delete_item(TableName=table, Key={"pk": items[0]["pk"]})
    ddb.put_item(TableName=table, Item={"pk": {"S": "zz-intruder"}, "n": {"N": "1"}})
    changed = dict(items[1], extra={"S": "edited"})
    ddb.put_item(TableName=table, Item=changed)


def test_verify_and_diff_find_missing_extra_and_different_items(
    ddb: Any, archive_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "source")
    work = Workload(ddb, "source", keys=15, seed=11)
    work.phase(40)
    instant = work.instant()
    time.sleep(max(0.0, instant.at.timestamp() + 2.2 - time.time()))
    archive_table("source", str(archive_path))
    code, out, err = replayer(capsys, "restore", "--source-table-name", "source",
                              "--target-table-name", "copy", "--archive", str(archive_path),
                              "--restore-date-time", instant.iso, "--no-verify")  # fmt: skip
    assert code == 0, err
    verify = ("verify", "--target-table-name", "copy", "--source-table-name", "source",
              "--archive", str(archive_path), "--restore-date-time", instant.iso)  # fmt: skip

    code, out, err = replayer(capsys, *verify)
    assert code == 0, err
    assert f"identical: {len(instant.state):,} items in the archive" in out

    code, out, err = replayer(capsys, "diff", "--table-name", "source", "--other-table-name",
                              "copy")  # fmt: skip
    assert code == 0 and "identical" in out, err

    _tamper(ddb, "copy")
    code, out, err = replayer(capsys, *verify)
    assert code == EXIT_DIFFERENCES, err
    assert "1 missing from copy, 1 extra in copy, 1 different" in out
    assert '  extra     {"pk":{"S":"zz-intruder"}}' in out
    assert 'extra: expected -, found {"S":"edited"}' in out  # the attribute that differs

    code, out, err = replayer(capsys, "diff", "--table-name", "source", "--other-table-name",
                              "copy")  # fmt: skip
    assert code == EXIT_DIFFERENCES
    assert "1 missing from copy, 1 extra in copy, 1 different" in out


def test_diff_refuses_tables_with_different_keys(
    ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "one")
    create_table(ddb, "two", range_key="sk")
    code, _, err = replayer(capsys, "diff", "--table-name", "one", "--other-table-name", "two")
    assert code == EXIT_USAGE
    assert "different keys (pk vs pk, sk)" in err
    code, _, err = replayer(capsys, "diff", "--table-name", "one", "--other-table-name", "nope")
    assert code == EXIT_USAGE and "not found" in err


def test_numbers_in_other_notations_and_reordered_sets_are_equal(ddb: Any) -> None:
    create_table(ddb, "left")
    create_table(ddb, "right")
    binary = {"B": b"\x00\xff"}
    ddb.put_item(
        TableName="left",
        Item={"pk": {"S": "a"}, "n": {"N": "1.50"}, "s": {"SS": ["b", "a"]}, "b": binary},
    )
    ddb.put_item(
        TableName="right",
        Item={"pk": {"S": "a"}, "n": {"N": "1.5"}, "s": {"SS": ["a", "b"]}, "b": binary},
    )
    from replayer.read.verify import diff_tables

    assert diff_tables(ddb, "left", "right").identical
    ddb.put_item(TableName="right", Item={"pk": {"S": "a"}, "n": {"N": "1.51"}})
    result = diff_tables(ddb, "left", "right")
    assert (result.missing, result.extra, result.different) == (0, 0, 1)


def test_comparison_report_lists_examples_per_kind() -> None:
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE TABLE e AS SELECT * FROM (VALUES ('k1', 'i1'), ('k2', 'i2'), ('k3', 'i3')) "
                "t(keys, item)")  # fmt: skip
    con.execute("CREATE TABLE a AS SELECT * FROM (VALUES ('k2', 'i2'), ('k3', 'x3'), ('k4', 'i4')) "
                "t(keys, item)")  # fmt: skip
    result = compare(con, "e", "a")
    assert (result.expected, result.actual) == (3, 3)
    assert (result.missing, result.extra, result.different) == (1, 1, 1)
    text = result.report("archive", "target")
    assert "missing   k1" in text and "extra     k4" in text
    assert "different k3: expected x3, found" not in text  # not JSON: shown whole
    assert "different k3: expected i3, found x3" in text
    assert Comparison(2, 2).report("a", "b") == "identical: 2 items in a, 2 in b"
