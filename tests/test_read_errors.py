"""How read failures are told apart, pinned against the installed DuckDB and pyarrow.

DuckDB gives no error type or code for a failed read of a registered Arrow dataset, only its
message: these tests fail when an upgrade changes the messages that
:func:`replayer.engines.dataset.duckdb_message_match` reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from archiver.format import arrow_scan
from archiver.format.storage import Archive
from replayer.engines import dataset
from replayer.exceptions import BadInput
from replayer.read import query


def _parquet(path: Path) -> str:
    pq.write_table(pa.table({"a": [1, 2]}), path)
    return str(path)


def _fails_once(run: Any, then: Any) -> Any:
    calls: list[int] = []

    def action() -> Any:
        calls.append(1)
        return run() if len(calls) == 1 else then()

    return action, calls


def test_a_local_file_gone_before_duckdb_reads_it_is_relisted(tmp_path: Path) -> None:
    missing = tmp_path / "gone.parquet"
    action, calls = _fails_once(
        lambda: duckdb.sql(f"SELECT * FROM read_parquet(['{missing}'])").fetchall(), lambda: "ok"
    )
    assert dataset.with_relisting(action, what="test") == "ok"
    assert len(calls) == 2


@pytest.mark.parametrize("through_fsspec", [False, True])
def test_a_file_gone_under_a_registered_dataset_is_relisted(
    tmp_path: Path, through_fsspec: bool
) -> None:
    path = _parquet(tmp_path / "f.parquet")
    # The readers' datasets (arrow_scan's): over a Python filesystem, pyarrow's own could
    # deadlock DuckDB's scan on this very failure (tests/test_arrow_scan.py).
    fs = pafs.PyFileSystem(pafs.FSSpecHandler(LocalFileSystem())) if through_fsspec else None
    gone = arrow_scan.dataset([path], format="parquet", filesystem=fs)
    os.remove(path)
    later = _parquet(tmp_path / "g.parquet")
    listings: list[str] = []

    def attempt() -> Any:
        # As the readers do: list, then read with a new connection.
        listings.append("listed")
        source = gone if len(listings) == 1 else arrow_scan.dataset([later], filesystem=fs)
        with duckdb.connect() as con:
            con.register("v", source)
            return con.sql("SELECT count(*) FROM v").fetchall()

    assert dataset.with_relisting(attempt, what="test") == [(2,)]
    assert listings == ["listed", "listed"]


def test_duckdbs_message_for_a_vanished_file_is_recognised(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "f.parquet")
    with duckdb.connect() as con:
        con.register("v", ds.dataset([path], format="parquet"))
        os.remove(path)
        with pytest.raises(duckdb.InvalidInputException) as raised:
            con.sql("SELECT * FROM v").fetchall()
    assert dataset.duckdb_message_match(raised.value, dataset._VANISHED) is not None
    assert not query._bad_sql(raised.value)


def test_other_failures_are_not_relisted() -> None:
    calls: list[int] = []

    def action() -> Any:
        calls.append(1)
        with duckdb.connect() as con:
            return con.sql("SELECT 1 / 'x'").fetchall()

    with pytest.raises(duckdb.Error):
        dataset.with_relisting(action, what="test")
    assert len(calls) == 1


class _NeedsRestore(pafs.FSSpecHandler):
    def open_input_file(self, path: str) -> Any:
        raise dataset.ObjectNeedsRestore(path)


def test_an_object_that_must_be_restored_is_named_through_duckdb(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "frozen.parquet")
    # Listed, then refused when read: S3 lists an object in Deep Archive but will not read it.
    frozen = arrow_scan.dataset(
        [path],
        schema=pq.read_schema(path),
        format="parquet",
        filesystem=pafs.PyFileSystem(_NeedsRestore(LocalFileSystem())),
    )

    def attempt() -> Any:
        with duckdb.connect() as con:
            con.register("v", frozen)
            return con.sql("SELECT * FROM v").fetchall()

    with pytest.raises(dataset.ArchivedObjectUnavailable) as raised:
        dataset.with_relisting(attempt, what="query")
    assert f"s3://{path.lstrip('/')} is in" in str(raised.value)


def test_an_object_that_must_be_restored_is_named_through_pyarrow(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "frozen.parquet")

    def action() -> Any:
        raise dataset.ObjectNeedsRestore(path)

    with pytest.raises(dataset.ArchivedObjectUnavailable, match=f"s3://{path.lstrip('/')} is in"):
        dataset.with_relisting(action, what="restore")


def test_a_missing_parameter_is_bad_sql(tmp_path: Path) -> None:
    archive = Archive.open(str(tmp_path))
    with pytest.raises(BadInput, match="Values were not provided"):
        query.run_query(archive, "SELECT ? AS x")
