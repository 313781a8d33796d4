"""DuckDB scans of the archive's datasets over a Python filesystem (an S3 archive) never hang.

pyarrow's ``Scanner.to_reader()``, which DuckDB calls for a registered dataset, starts the scan
holding the GIL while Arrow's I/O threads call the Python filesystem holding the scan's locks:
a few scans in a thousand deadlocked (see :mod:`archiver.format.arrow_scan`). The archive here
is in memory behind fsspec, so pyarrow reads it through a ``PyFileSystem`` exactly as it reads
S3 through s3fs, only faster: enough scans run in seconds to have hung before the fix.
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import timedelta
from typing import Any

import duckdb
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from archiver.format import layout
from archiver.format.storage import Archive
from replayer.read import query
from tests.changes_builder import T0, n, record, s, write_changes

FILES = 8
# On the pre-fix read path (plain pyarrow datasets) this child hung in 14 of 15 runs; with the
# fix it takes about 10 s of one busy core (2000 scans).
SCANS = 1500
DEADLINE_S = 45


class _NetworkLikeFiles(MemoryFileSystem):
    """An in-memory S3 stand-in whose every request waits a moment without the GIL, as s3fs
    waits for S3's answer (on its event loop's thread) without it."""

    protocol = "scan-test"

    def info(self, path: str, **kwargs: Any) -> Any:
        time.sleep(0.0002)
        return super().info(path, **kwargs)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        time.sleep(0.0002)
        return super()._open(path, mode, **kwargs)


def _memory_archive() -> Archive:
    """A fresh in-memory archive read through pyarrow's ``PyFileSystem``, as S3 is."""
    fs = _NetworkLikeFiles(skip_instance_cache=True)
    fs.store.clear()
    fs.pseudo_dirs.clear()
    return Archive(fs, "/scan-bucket/ddb", "s3://scan-bucket/ddb")


def _records(count: int) -> list[dict[str, Any]]:
    return [
        record(i, {"pk": s(f"k{i}")}, "INSERT", new={"pk": s(f"k{i}"), "v": n(i)})
        for i in range(1, count + 1)
    ]


def _scan_many(scans: int) -> None:
    """In a fresh process: scan the archive's views through DuckDB ``scans`` times, reading
    every file, then as many times with one file gone (each scan fails, none may hang)."""
    archive = _memory_archive()
    paths = write_changes(archive, "orders", _records(FILES), per_file=1)
    assert len(paths) == FILES
    with query.connect(archive) as con:
        for _ in range(scans):
            assert con.sql("SELECT count(*) FROM changes").fetchall() == [(FILES,)]
        archive.fs.rm(archive.path(paths[-1]))
        for _ in range(scans // 3):
            with pytest.raises(duckdb.Error, match="FileNotFoundError"):
                con.sql("SELECT count(*) FROM changes").fetchall()


@pytest.mark.timeout(60)
def test_duckdb_scans_over_a_python_filesystem_never_hang() -> None:
    # A child process, killed at the deadline: a deadlock fails this test instead of hanging
    # the whole run until pytest-timeout.
    child = multiprocessing.get_context("spawn").Process(target=_scan_many, args=(SCANS,))
    child.start()
    child.join(DEADLINE_S)
    hung = child.is_alive()
    if hung:
        child.kill()
        child.join()
    assert not hung, f"a DuckDB scan over a Python filesystem hung ({DEADLINE_S} s)"
    assert child.exitcode == 0


def test_duckdb_reads_only_the_partitions_a_query_needs() -> None:
    # DuckDB's filters still reach the scan: the file of another dt is never opened.
    archive = _memory_archive()
    next_day = T0 + timedelta(days=1)
    late = record(9, {"pk": s("late")}, "INSERT", new={"pk": s("late")}, at=next_day)
    paths = write_changes(archive, "orders", [*_records(2), late], per_file=1)
    later = [p for p in paths if f"dt={layout.dt_of(next_day)}" in p]
    assert len(later) == 1 and len(paths) == 3
    with query.connect(archive) as con:
        archive.fs.pipe(archive.path(later[0]), b"not parquet")
        rows = con.sql(
            f"SELECT keys FROM changes WHERE dt = '{layout.dt_of(T0)}' ORDER BY keys"
        ).fetchall()
        assert rows == [('{"pk":{"S":"k1"}}',), ('{"pk":{"S":"k2"}}',)]
        with pytest.raises(duckdb.Error):
            con.sql("SELECT count(*) FROM changes").fetchall()
