"""End to end over moto: the real archiver and snapshots, then ``ddb-replayer restore``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import create_table
from tests.replay_helpers import archive_table, replayer
from tests.workload import Workload, scan_state


def test_restore_without_base_gives_the_table_at_each_instant(
    ddb: Any, archive_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    work = Workload(ddb, "orders", seed=1)
    work.phase(25)
    first = work.instant()
    work.phase(25)
    second = work.instant()
    work.phase(10)
    archive_table("orders", str(archive_path))
    for n, instant in enumerate((first, second)):
        code, out, err = replayer(
            capsys, "restore", "--source-table-name", "orders", "--target-table-name",
            f"orders-{n}", "--archive", str(archive_path), "--restore-date-time", instant.iso,
        )  # fmt: skip
        assert code == 0, err
        assert "identical" in out
        assert scan_state(ddb, f"orders-{n}") == instant.state
