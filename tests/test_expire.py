"""``ddb-archiver expire``: history before the horizon goes, restores after it stay exact, restores
before it are refused naming the retention; crash-safe at every write."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.cli import main as archiver_main
from archiver.erasure import expire as expire_module
from archiver.erasure.expire import FOLD_METHOD, expire, horizon_of
from archiver.format import coverage, layout
from archiver.format.manifests import list_snapshots
from archiver.format.storage import Archive
from archiver.integrity.check import run_checks
from replayer.cli import main as replayer_main
from replayer.exceptions import OutsideCoverage
from tests.conftest import Crash
from tests.helpers import state_at
from tests.integrity_helpers import build_archive
from tests.replay_helpers import T0, TABLE, write_coverage, write_description

NOW = T0 + timedelta(days=10)
OLDER_THAN = timedelta(days=7)
HORIZON = horizon_of(NOW, OLDER_THAN)  # 2026-03-04T00:00Z


def seven_days(archive: Archive) -> None:
    """One chained shard, two records a day for a week (so several dt partitions)."""
    build_archive(archive, [2, 3, 2, 3, 2, 2], step_seconds=43200.0)
    write_coverage(archive, watermark=T0 + timedelta(days=30))
    write_description(archive)


INSTANTS = [HORIZON, HORIZON + timedelta(hours=13), T0 + timedelta(days=6, hours=1)]


def test_expire_keeps_every_restore_after_the_horizon_and_refuses_before(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    seven_days(archive)
    before = {at: state_at(archive, TABLE, at) for at in INSTANTS}
    files_before = archive.find(layout.changes_table_dir(TABLE), ".parquet")

    plan = expire(archive, TABLE, OLDER_THAN, now=NOW)

    assert plan.horizon == HORIZON
    for at, state in before.items():
        assert state_at(archive, TABLE, at) == state
    left = archive.find(layout.changes_table_dir(TABLE), ".parquet")
    assert len(left) < len(files_before)
    assert all(rel.split("dt=")[1][:10] >= "2026-03-04" for rel in left)
    (base,) = list_snapshots(archive, TABLE)
    assert base["method"] == FOLD_METHOD and base["valid_from"] == "2026-03-04T00:00:00.000Z"
    gen = coverage.current(archive, TABLE)
    assert gen is not None and gen["covered_from"] == "2026-03-04T00:00:00.000Z"
    assert gen["from_table_creation"] is False
    assert [p.line() for p in run_checks(archive, TABLE, deep=True).problems] == []
    with pytest.raises(OutsideCoverage, match="retention horizon"):
        state_at(archive, TABLE, HORIZON - timedelta(seconds=1))
    assert archive.find(layout.table_staging_dir(TABLE)) == []
    assert not archive.exists(layout.expire_pending(TABLE))


def test_dry_run_lists_and_changes_nothing(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    seven_days(archive)
    snapshot = {rel: archive.get_bytes(rel) for rel in archive.find("")}
    capsys.readouterr()
    argv = ["expire", "--table-name", TABLE, "--archive", archive.url, "--older-than", "100d"]
    assert archiver_main([*argv, "--dry-run"]) == 0
    assert "would delete" in capsys.readouterr().out
    assert {rel: archive.get_bytes(rel) for rel in archive.find("")} == snapshot
    with pytest.raises(SystemExit) as usage:  # less than the stream's 24 h: a usage error
        archiver_main(["expire", "--table-name", TABLE, "--archive", archive.url,
                       "--older-than", "2h"])  # fmt: skip
    assert usage.value.code == 2


def test_a_crash_at_any_write_and_a_rerun_give_the_same_archive(
    tmp_path: Path, crash_after: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base is folded by ``ddb-replayer export`` in a child process (the archiver does not
    import the replayer); here that command runs in this process, its writes not counted as
    crash points (a child that fails is a refused fold: see the next test), so that the dozens of
    crash points cost no process start each."""

    def export_here(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        assert command[1:3] == ["-m", "replayer.cli"]
        err = io.StringIO()
        with crash_after.paused(), contextlib.redirect_stderr(err):
            code = replayer_main(command[3:])
        return subprocess.CompletedProcess(command, code, "", err.getvalue())

    monkeypatch.setattr(expire_module.subprocess, "run", export_here)
    reference = Archive.open(str(tmp_path / "reference"))
    seven_days(reference)
    expected = {at: state_at(reference, TABLE, at) for at in INSTANTS}
    writes = 0
    while True:
        shutil.copytree(tmp_path / "reference", tmp_path / f"crash-{writes}")
        archive = Archive.open(str(tmp_path / f"crash-{writes}"))
        crash_after(writes)
        try:
            expire(archive, TABLE, OLDER_THAN, now=NOW)
        except Crash:
            pass
        else:
            break
        crash_after(-1)
        for at, state in expected.items():  # a restore after the horizon works at any point
            assert state_at(archive, TABLE, at) == state, f"crash after {writes} writes"
        expire(archive, TABLE, OLDER_THAN, now=NOW)
        for at, state in expected.items():
            assert state_at(archive, TABLE, at) == state, f"crash after {writes} writes"
        assert [p.line() for p in run_checks(archive, TABLE).problems] == []
        assert len(list_snapshots(archive, TABLE)) == 1
        assert not archive.exists(layout.expire_pending(TABLE))
        writes += 1
    assert writes >= 5


def test_a_refused_fold_deletes_nothing(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    seven_days(archive)  # archived up to 2026-03-31: a horizon of yesterday is after it
    before = {rel: archive.get_bytes(rel) for rel in archive.find("")}
    capsys.readouterr()
    argv = ["expire", "--table-name", TABLE, "--archive", archive.url, "--older-than", "1d"]
    assert archiver_main(argv) == 4
    err = capsys.readouterr().err
    assert "nothing was deleted" in err and "watermark" in err
    assert {rel: archive.get_bytes(rel) for rel in archive.find("")} == before
