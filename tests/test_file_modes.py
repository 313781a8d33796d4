"""Local archives are private: files 0600 and folders 0700, whatever the umask, unless
``--file-mode`` says otherwise."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from archiver.cli import main as archiver_main
from archiver.format import layout
from archiver.format.storage import Archive, folder_mode
from tests.conftest import create_table

TABLE = "orders"


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual umask (022), under which files would otherwise be world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> tuple[set[int], set[int]]:
    """(modes of every file, modes of every folder) under ``root``, the root included."""
    files, folders = set(), {stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        (folders if path.is_dir() else files).add(stat.S_IMODE(path.stat().st_mode))
    return files, folders


def test_archive_files_are_0600_and_folders_0700_by_default(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    archive = Archive.open(str(root))
    archive.write_json(layout.coverage(TABLE), {"table": TABLE})
    archive.write_parquet("changes/table_name=t/dt=2026-01-01/x.parquet", pa.table({"a": [1]}))
    archive.append_jsonl(layout.gaps(TABLE), {"from": "x"})
    archive.write_json(layout.coverage(TABLE), {"table": TABLE, "again": True})  # rewritten
    assert modes(root) == ({0o600}, {0o700})


@pytest.mark.parametrize(("file_mode", "folder"), [(0o640, 0o750), (0o644, 0o755), (0o600, 0o700)])
def test_a_file_mode_sets_files_and_folders(tmp_path: Path, file_mode: int, folder: int) -> None:
    assert folder_mode(file_mode) == folder
    root = tmp_path / "archive"
    Archive.open(str(root), file_mode=file_mode).put_bytes("a/b/c.bin", b"x")
    assert modes(root) == ({file_mode}, {folder})


def test_existing_folders_keep_their_mode(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    Archive.open(str(root)).put_bytes("a/c.bin", b"x")
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "a" / "c.bin").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("flags", "file_mode", "folder"), [([], 0o600, 0o700), (["--file-mode", "0640"], 0o640, 0o750)]
)
def test_run_and_snapshot_write_with_the_file_mode(
    ddb: Any, archive_path: Path, flags: list[str], file_mode: int, folder: int
) -> None:
    create_table(ddb, TABLE)
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "b": {"B": b"\x01"}})
    common = ["--table-name", TABLE, "--archive", str(archive_path), *flags]
    assert archiver_main(["run", *common, "--once", "--poll-seconds", "0.05"]) == 0
    assert archiver_main(["snapshot", *common, "--method", "scan"]) == 0
    assert list(archive_path.rglob("*.parquet"))
    assert modes(archive_path) == ({file_mode}, {folder})


def test_a_bad_file_mode_is_a_usage_error(archive_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        archiver_main(
            ["run", "--table-name", TABLE, "--archive", str(archive_path), "--file-mode", "999"]
        )
    assert exited.value.code == 2
