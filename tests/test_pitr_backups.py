"""``ddb-archiver pitr`` and ``ddb-archiver backup``: native PITR settings and on-demand backups."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archiver import cli
from archiver.aws.error_table import UsageError
from archiver.native.backups import (
    Backup,
    create_backup,
    default_backup_name,
    list_backups,
    prune_selection,
)
from tests.conftest import create_table


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# -- pitr --------------------------------------------------------------------------------------


def test_pitr_enable_with_period_then_status_and_disable(
    ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    code, out, _ = run(capsys, "pitr", "--table-name", "orders", "--status")
    assert code == 0
    assert "point-in-time recovery DISABLED" in out

    code, out, _ = run(
        capsys, "pitr", "--table-name", "orders", "--enable", "--recovery-period-in-days", "7"
    )
    assert code == 0, out
    pitr = ddb.describe_continuous_backups(TableName="orders")["ContinuousBackupsDescription"][
        "PointInTimeRecoveryDescription"
    ]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
    assert pitr["RecoveryPeriodInDays"] == 7

    code, out, _ = run(capsys, "pitr", "--table-name", "orders", "--status")
    assert code == 0
    assert "ENABLED" in out
    assert "recovery period:   7 days" in out
    assert "EarliestRestorableDateTime" in out  # the window is shown

    code, out, _ = run(capsys, "pitr", "--table-name", "orders", "--status", "--json")
    status = json.loads(out)
    assert status["enabled"] is True
    assert status["recovery_period_in_days"] == 7
    assert status["earliest_restorable"].endswith("Z")
    assert status["latest_restorable"].endswith("Z")

    code, out, _ = run(capsys, "pitr", "--table-name", "orders", "--disable")
    assert code == 0
    assert (
        ddb.describe_continuous_backups(TableName="orders")["ContinuousBackupsDescription"][
            "PointInTimeRecoveryDescription"
        ]["PointInTimeRecoveryStatus"]
        == "DISABLED"
    )


@pytest.mark.parametrize("days", ["0", "36", "-1", "seven"])
def test_pitr_recovery_period_outside_1_to_35_is_a_usage_error(
    ddb: Any, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    create_table(ddb, "orders")
    code, _, err = run(
        capsys, "pitr", "--table-name", "orders", "--enable", "--recovery-period-in-days", days
    )
    assert code == 2
    assert "recovery-period-in-days" in err
    pitr = ddb.describe_continuous_backups(TableName="orders")["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"


def test_pitr_flags_are_exclusive_and_required(
    ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    assert run(capsys, "pitr", "--table-name", "orders")[0] == 2
    assert run(capsys, "pitr", "--table-name", "orders", "--enable", "--disable")[0] == 2
    code, _, err = run(
        capsys, "pitr", "--table-name", "orders", "--status", "--recovery-period-in-days", "3"
    )
    assert code == 2
    assert "goes with --enable" in err


def test_pitr_missing_table_is_one_line_exit_2(
    ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "pitr", "--table-name", "nope", "--status")
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "nope" in err and "not found" in err


# -- backups -----------------------------------------------------------------------------------


def test_backup_create_list_delete_round_trip(ddb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    create_table(ddb, "orders")
    ddb.put_item(TableName="orders", Item={"pk": {"S": "a"}})
    code, out, _ = run(capsys, "backup", "create", "--table-name", "orders", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["backup_name"].startswith("orders-")
    assert created["status"] == "AVAILABLE"
    # the default name is <table>-<UTC stamp>, parseable and recent
    stamp_text = created["backup_name"].removeprefix("orders-")
    assert len(stamp_text) == len("20260131T120000000Z") and stamp_text.endswith("Z")

    code, out, _ = run(
        capsys, "backup", "create", "--table-name", "orders", "--backup-name", "nightly"
    )
    assert code == 0 and "nightly" in out

    code, out, _ = run(capsys, "backup", "list", "--table-name", "orders", "--json")
    listed = json.loads(out)
    assert [b["backup_name"] for b in listed] == [created["backup_name"], "nightly"]
    code, out, _ = run(capsys, "backup", "list", "--table-name", "orders")
    assert "nightly" in out and "CREATED" in out

    code, out, _ = run(
        capsys, "backup", "delete", "--table-name", "orders", "--backup-name", "nightly"
    )
    assert code == 0 and "deleted backup nightly" in out
    code, out, _ = run(
        capsys, "backup", "delete", "--table-name", "orders", "--backup-arn", created["backup_arn"]
    )
    assert code == 0
    assert list_backups(ddb, "orders") == []


def test_backup_list_is_per_table(ddb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    create_table(ddb, "orders")
    create_table(ddb, "users")
    create_backup(ddb, "orders", "orders-one")
    create_backup(ddb, "users", "users-one")
    assert [b.name for b in list_backups(ddb, "orders")] == ["orders-one"]


@pytest.mark.parametrize("name", ["ab", "has space", "x" * 256, "slash/no"])
def test_backup_bad_names_are_refused_before_any_call(
    ddb: Any, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    create_table(ddb, "orders")
    code, _, err = run(capsys, "backup", "create", "--table-name", "orders", "--backup-name", name)
    assert code == 2
    assert "backup name" in err
    assert list_backups(ddb, "orders") == []


def test_default_name_fits_aws_limit() -> None:
    at = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert default_backup_name("orders", at) == "orders-20260131T120000000Z"
    assert len(default_backup_name("t" * 255, at)) == 255


def test_backup_delete_needs_a_backup_and_refuses_other_tables(
    ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    create_table(ddb, "users")
    other = create_backup(ddb, "users", "users-one")
    assert run(capsys, "backup", "delete", "--table-name", "orders")[0] == 2
    code, _, err = run(
        capsys, "backup", "delete", "--table-name", "orders", "--backup-arn", other.arn
    )
    assert code == 2 and "belongs to table 'users'" in err
    code, _, err = run(capsys, "backup", "delete", "--table-name", "orders", "--backup-name", "zzz")
    assert code == 2 and "no backup named 'zzz'" in err
    assert [b.name for b in list_backups(ddb, "users")] == ["users-one"]


def test_backup_flags_that_do_not_apply_are_usage_errors(
    ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    assert run(capsys, "backup", "list", "--table-name", "orders", "--keep-last", "2")[0] == 2
    assert run(capsys, "backup", "prune", "--table-name", "orders")[0] == 2
    assert run(capsys, "backup", "prune", "--table-name", "orders", "--keep-last", "0")[0] == 2


def _backup(name: str, created: datetime, backup_type: str = "USER") -> Backup:
    return Backup(
        arn=f"arn:aws:dynamodb:us-east-1:1:table/orders/backup/{name}",
        name=name,
        table_name="orders",
        table_arn=None,
        table_id=None,
        created_at=created,
        status="AVAILABLE",
        backup_type=backup_type,
        size_bytes=None,
    )


def test_prune_selection_rules() -> None:
    now = datetime(2026, 1, 31, tzinfo=UTC)
    backups = [_backup(f"b{i}", now - timedelta(days=10 - i)) for i in range(10)]  # b9 newest
    system = _backup("sys", now - timedelta(days=100), backup_type="SYSTEM")

    # keep-last alone: the K newest stay
    doomed = prune_selection([*backups, system], keep_days=None, keep_last=3, now=now)
    assert [b.name for b in doomed] == [f"b{i}" for i in range(7)]
    # keep-days alone: younger than D days stay (b7: 3 days old, b8: 2, b9: 1)
    doomed = prune_selection(backups, keep_days=3.5, keep_last=None, now=now)
    assert [b.name for b in doomed] == [f"b{i}" for i in range(7)]
    # either rule keeps a backup
    doomed = prune_selection(backups, keep_days=1.5, keep_last=4, now=now)
    assert [b.name for b in doomed] == [f"b{i}" for i in range(6)]
    # the newest survives even when every rule would drop it
    doomed = prune_selection(backups, keep_days=0.001, keep_last=None, now=now + timedelta(days=9))
    assert [b.name for b in doomed] == [f"b{i}" for i in range(9)]
    # SYSTEM backups are never touched
    assert system not in prune_selection([system], keep_days=0.001, keep_last=None, now=now)
    with pytest.raises(UsageError):
        prune_selection(backups, keep_days=None, keep_last=None, now=now)


def test_backup_prune_dry_run_then_real(ddb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    create_table(ddb, "orders")
    for name in ("old-one", "old-two", "old-three"):
        create_backup(ddb, "orders", name)
    time.sleep(1.1)
    create_backup(ddb, "orders", "fresh")
    keep_days = str(1.0 / 86400)  # one second

    code, out, _ = run(
        capsys, "backup", "prune", "--table-name", "orders", "--keep-days", keep_days, "--dry-run"
    )
    assert code == 0
    assert out.count("would delete") == 3 and "fresh" not in out
    assert len(list_backups(ddb, "orders")) == 4  # a dry run deletes nothing

    code, out, _ = run(
        capsys,
        "backup",
        "prune",
        "--table-name",
        "orders",
        "--keep-days",
        keep_days,
        "--keep-last",
        "2",
    )
    assert code == 0
    assert "deleted old-one" in out and "deleted old-two" in out
    assert [b.name for b in list_backups(ddb, "orders")] == ["old-three", "fresh"]

    # even a retention rule that keeps nothing leaves the newest backup
    time.sleep(1.1)
    code, out, _ = run(
        capsys, "backup", "prune", "--table-name", "orders", "--keep-days", keep_days, "--json"
    )
    result = json.loads(out)
    assert [b["backup_name"] for b in result["deleted"]] == ["old-three"]
    assert [b.name for b in list_backups(ddb, "orders")] == ["fresh"]
