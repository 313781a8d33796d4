"""``ddb-replayer query``: SQL over the archive's ``changes`` and ``snapshots`` views."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import botocore.exceptions
import pyarrow as pa
import pytest
import s3fs.errors
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem

from archiver.format import layout
from archiver.format.schema import SNAPSHOT_SCHEMA
from archiver.format.storage import Archive
from replayer.cli import main as replayer_main
from replayer.read import query
from tests.changes_builder import T0, n, record, s, write_changes

SNAPSHOT_ID = "20260131T000000000Z-abc123"


def build_archive(archive: Archive) -> list[str]:
    """Two tables (one named ``007``), two ``dt`` partitions, a TTL delete and a snapshot."""
    a, b = {"pk": s("a")}, {"pk": s("b")}
    records = [
        record(1, a, "INSERT", new={"pk": s("a"), "v": n(1)}),
        record(2, b, "INSERT", new={"pk": s("b"), "v": n(2)}),
        record(3, a, "MODIFY", old={"pk": s("a"), "v": n(1)}, new={"pk": s("a"), "v": n(3)}),
        record(4, b, "REMOVE", old={"pk": s("b"), "v": n(2)}, ttl=True, at=T0 + timedelta(days=1)),
        record(5, a, "REMOVE", old={"pk": s("a"), "v": n(3)}, at=T0 + timedelta(days=1, seconds=1)),
    ]
    paths = write_changes(archive, "orders", records, per_file=2)
    other = [record(9, {"pk": s("x")}, "INSERT", new={"pk": s("x")})]
    paths += write_changes(archive, "007", other)
    snapshot = pa.table(
        {"keys": ['{"pk":{"S":"z"}}'], "item": ['{"pk":{"S":"z"},"v":{"N":"9"}}']},
        schema=SNAPSHOT_SCHEMA,
    )
    archive.write_parquet(layout.snapshot_part("orders", SNAPSHOT_ID, 0), snapshot)
    manifest = {"snapshot_id": SNAPSHOT_ID}
    archive.write_json(layout.snapshot_manifest("orders", SNAPSHOT_ID), manifest)
    # An unfinished snapshot (no manifest) must stay invisible.
    archive.write_parquet(layout.snapshot_part("orders", "20260201T000000000Z-unfini", 0), snapshot)
    return paths


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = replayer_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_table_format_shows_partition_columns_as_strings(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    build_archive(archive)
    code, out, err = run_cli(
        capsys,
        "query",
        "--archive",
        archive.url,
        "SELECT table_name, dt, count(*) AS n FROM changes GROUP BY ALL ORDER BY ALL",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["table_name", "dt", "n"]
    assert [line.split() for line in lines[2:5]] == [
        ["007", "2026-01-31", "1"],
        ["orders", "2026-01-31", "3"],
        ["orders", "2026-02-01", "2"],
    ]
    assert lines[-1] == "(3 rows)"


def test_csv_and_json_formats_carry_full_values_and_utc_times(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    build_archive(archive)
    sql = (
        "SELECT event_time, event_name, user_identity, new_image FROM changes "
        "WHERE table_name = 'orders' ORDER BY sequence_number"
    )
    code, out, _ = run_cli(capsys, "query", "--archive", archive.url, "--format", "csv", sql)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["event_time"] for r in rows] == [
        "2026-01-31T12:00:01.000Z",
        "2026-01-31T12:00:02.000Z",
        "2026-01-31T12:00:03.000Z",
        "2026-02-01T12:00:00.000Z",
        "2026-02-01T12:00:01.000Z",
    ]
    assert rows[3]["user_identity"] == "Service/dynamodb.amazonaws.com"
    assert rows[3]["new_image"] == ""  # NULL
    code, out, _ = run_cli(capsys, "query", "--archive", archive.url, "--format", "json", sql)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 5
    assert lines[2]["new_image"] == '{"pk":{"S":"a"},"v":{"N":"3"}}'
    assert lines[4]["new_image"] is None
    assert lines[0]["event_time"] == "2026-01-31T12:00:01.000Z"


def test_snapshots_view_lists_committed_snapshots_only(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    build_archive(archive)
    code, out, _ = run_cli(
        capsys, "query", "--archive", archive.url, "--format", "json", "SELECT * FROM snapshots"
    )
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {
            "keys": '{"pk":{"S":"z"}}',
            "item": '{"pk":{"S":"z"},"v":{"N":"9"}}',
            "table_name": "orders",
            "snapshot_id": SNAPSHOT_ID,
        }
    ]


def test_partition_filters_skip_other_partitions_files(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = build_archive(archive)
    # Make every file outside orders/dt=2026-02-01 unreadable: a query pruned to that
    # partition must never open them.
    for rel in paths:
        if "table_name=orders/dt=2026-02-01" not in rel:
            archive.put_bytes(rel, b"not parquet")
    sql = (
        "SELECT count(*) AS n FROM changes "
        "WHERE table_name = 'orders' AND dt = '2026-02-01' AND event_name = 'REMOVE'"
    )
    code, out, err = run_cli(capsys, "query", "--archive", archive.url, "--format", "csv", sql)
    assert code == 0, err
    assert out.splitlines() == ["n", "2"]
    # …and without the filter the damaged files are read, and reported on one line that
    # names one of them and points to `ddb-archiver check` (exit 2: the archive is damaged).
    code, _, err = run_cli(
        capsys, "query", "--archive", archive.url, "SELECT count(*) FROM changes"
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert any(rel in lines[0] for rel in paths if "dt=2026-02-01" not in rel)
    assert "ddb-archiver check --table-name" in lines[0]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELEC 1", "Parser Error"),
        ("SELECT nope FROM changes", 'Referenced column "nope" not found'),
        ("SELECT * FROM no_such_view", "no_such_view"),
        ("SELECT CAST('x' AS INTEGER)", "Conversion Error"),
        ("SELECT * FROM changes WHERE dt = ?", "parameters"),
    ],
)
def test_bad_sql_exits_2_with_duckdbs_message_on_one_line(
    archive: Archive, capsys: pytest.CaptureFixture[str], sql: str, expected: str
) -> None:
    build_archive(archive)
    code, out, err = run_cli(capsys, "query", "--archive", archive.url, sql)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("ddb-replayer: error: ")
    assert expected in err


def test_wrong_archive_and_empty_sql_are_usage_errors(
    tmp_path: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "query", "--archive", str(tmp_path / "typo"), "SELECT 1")
    assert code == 2
    assert "holds no archive" in err
    build_archive(archive)
    code, _, err = run_cli(capsys, "query", "--archive", archive.url, "  ")
    assert code == 2
    assert "empty" in err


def test_sql_from_stdin(
    archive: Archive, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    build_archive(archive)
    monkeypatch.setattr("sys.stdin", io.StringIO("SELECT count(*) AS n FROM changes;\n"))
    code, out, _ = run_cli(capsys, "query", "--archive", archive.url, "--format", "csv", "-")
    assert (code, out.splitlines()) == (0, ["n", "6"])


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("COPY (SELECT * FROM changes) TO '{out}'", "COPY statements are refused"),
        ("COPY changes TO '{out}' (FORMAT parquet)", "COPY statements are refused"),
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
        ("SELECT * FROM read_text('/etc/passwd')", "disabled by configuration"),
        ("SELECT * FROM read_blob('/etc/passwd')", "disabled by configuration"),
        ("SELECT * FROM '/etc/passwd'", "/etc/passwd does not exist"),
        ("SELECT * FROM glob('/etc/*')", "disabled by configuration"),
        ("SELECT * FROM read_parquet('{parquet}')", "disabled by configuration"),
        ("SELECT * FROM read_parquet('http://127.0.0.1:9/x.parquet')", "disabled"),
        ("ATTACH '{out}' AS stolen", "ATTACH statements are refused"),
        (
            "ATTACH '{out}' AS stolen; CREATE TABLE stolen.t AS SELECT * FROM changes",
            "holds 2 statements",
        ),
        ("CREATE TABLE t AS SELECT * FROM changes", "CREATE statements are refused"),
        ("SELECT 1; SELECT 2", "holds 2 statements"),
        (
            "CREATE VIEW removes AS SELECT * FROM changes WHERE event_name = 'REMOVE'; "
            "SELECT count(*) FROM removes",
            "holds 2 statements",
        ),
        ("SET enable_external_access = true", "SET statements are refused"),
        ("INSTALL httpfs", "refused"),
        ("LOAD httpfs", "refused"),
        ("EXPORT DATABASE '{out}'", "refused"),
    ],
)
def test_query_is_read_only_with_no_file_or_network_access(
    archive: Archive, capsys: pytest.CaptureFixture[str], tmp_path: Any, sql: str, expected: str
) -> None:
    """Every way out of the views is refused with one line and exit 2, and nothing is written."""
    paths = build_archive(archive)
    target = tmp_path / "stolen"
    sql = sql.format(out=target, parquet=archive.path(paths[0]))
    code, out, err = run_cli(capsys, "query", "--archive", archive.url, sql)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ddb-replayer: error: ")
    assert expected in err
    assert not target.exists()


def test_internal_queries_are_locked_down_too(archive: Archive) -> None:
    """``history`` and ``rollback`` read through the same function: it refuses the same SQL."""
    build_archive(archive)
    with pytest.raises(query.BadInput, match="disabled by configuration"):
        list(query.run_query(archive, "SELECT * FROM read_text('/etc/passwd')").rows())
    with pytest.raises(query.BadInput, match="holds 2 statements"):
        query.run_query(archive, "SELECT 1; SELECT 2")
    # Reading the views still works after the lock, through both views.
    rows = query.run_query(
        archive, "SELECT (SELECT count(*) FROM changes), (SELECT count(*) FROM snapshots)"
    )
    assert list(rows.rows()) == [(6, 1)]


def test_history_takes_a_hostile_key_as_data(
    archive: Archive, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    build_archive(archive)
    target = tmp_path / "stolen.csv"
    hostile = f"a'); COPY (SELECT * FROM changes) TO '{target}'; --"
    key = json.dumps({"pk": {"S": hostile}})
    code, out, err = run_cli(
        capsys, "history", "--archive", archive.url, "--table-name", "orders", "--key", key
    )
    assert code == 0, err
    assert out.startswith("No history for")
    assert not target.exists()


def test_query_over_an_s3_archive(s3_archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    build_archive(s3_archive)
    code, out, err = run_cli(
        capsys,
        "query",
        "--archive",
        s3_archive.url,
        "--format",
        "csv",
        "SELECT table_name, count(*) AS n FROM changes WHERE dt = '2026-01-31' "
        "GROUP BY ALL ORDER BY ALL",
    )
    assert code == 0, err
    assert out.splitlines() == ["table_name,n", "007,1", "orders,3"]


def test_a_file_vanishing_between_listing_and_reading_is_relisted(
    archive: Archive, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compaction deleted an input after the listing: the query lists again and succeeds."""
    build_archive(archive)
    real = query.change_files
    calls = []

    def stale_then_fresh(*args: Any, **kwargs: Any) -> list[str]:
        files = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            gone = layout.change_file("orders", "2026-01-31", "2026-01-31T00:00:00", "s", "7", "8")
            return [*files, gone]
        return files

    monkeypatch.setattr(query, "change_files", stale_then_fresh)
    sql = "SELECT count(*) AS n FROM changes"
    code, out, err = run_cli(capsys, "query", "--archive", archive.url, "--format", "csv", sql)
    assert code == 0, err
    assert out.splitlines() == ["n", "6"]
    assert len(calls) == 2


class _GlacierFiles(MemoryFileSystem):
    """An in-memory S3 stand-in whose objects under ``dt=2026-02-01`` are in Deep Archive:
    reading them fails exactly as s3fs fails on S3's ``InvalidObjectState``."""

    protocol = "glacier-test"

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        handle = super()._open(path, mode, **kwargs)
        if "r" in mode and "dt=2026-02-01" in path:
            return _RefusingFile(self, path, handle.getvalue())
        return handle


class _RefusingFile(MemoryFile):
    def read(self, *args: Any) -> bytes:
        error = botocore.exceptions.ClientError(
            {
                "Error": {
                    "Code": "InvalidObjectState",
                    "Message": "The operation is not valid for the object's storage class",
                }
            },
            "GetObject",
        )
        raise s3fs.errors.translate_boto_error(error)


def test_objects_in_deep_archive_are_named_in_one_clear_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = _GlacierFiles(skip_instance_cache=True)
    fs.store.clear()
    fs.pseudo_dirs.clear()
    archive = Archive(fs, "/archive-bucket/ddb", "s3://archive-bucket/ddb")
    paths = build_archive(archive)
    frozen = next(p for p in paths if "dt=2026-02-01" in p)
    monkeypatch.setattr(query.Archive, "open", classmethod(lambda cls, url, **kw: archive))
    code, out, err = run_cli(capsys, "query", "--archive", archive.url, "SELECT * FROM changes")
    assert code == 1
    assert out == ""
    assert len(err.splitlines()) == 1
    assert f"s3://archive-bucket/ddb/{frozen} is in S3 Glacier" in err
    assert "restore it from S3 first" in err
    # Partitions still in a readable storage class stay queryable.
    code, out, err = run_cli(
        capsys,
        "query",
        "--archive",
        archive.url,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM changes WHERE dt = '2026-01-31'",
    )
    assert (code, out.splitlines()) == (0, ["n", "4"]), err


def test_table_format_stops_at_its_row_limit(archive: Archive) -> None:
    build_archive(archive)
    out = io.StringIO()
    result = query.run_query(archive, "SELECT * FROM range(25) t(n)")
    assert query.write_table(result, out, max_rows=10) == 10
    lines = out.getvalue().splitlines()
    assert lines[-1] == "(first 10 rows shown; add a LIMIT, or use --format csv or json for all)"
    assert len(lines) == 2 + 10 + 1
    out = io.StringIO()
    assert query.write_csv(query.run_query(archive, "SELECT * FROM range(25) t(n)"), out) == 25
