"""``--engine athena``: the fold as one Athena query, against ``tests/athena_double.py``.

The archive lives in moto's S3, the Glue tables in moto's Glue (made by ``athena-setup``),
and every query runs on the double, which executes the exact submitted SQL on DuckDB.
"""

from __future__ import annotations

import gzip
import itertools
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.aws.error_table import EXIT_DIFFERENCES, EXIT_FAILURE, EXIT_REFUSED
from archiver.aws.retry import WaitTimedOut
from archiver.format import coverage
from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from replayer.engines import athena_client as athena_module
from replayer.engines.athena_client import Athena, AthenaConfig, AthenaQueryFailed, query_cost_usd
from replayer.planning import plan as planning
from replayer.read.verify import scan_rows
from replayer.strategies import import_table as import_strategy
from tests.athena_double import AthenaDouble, running_double
from tests.conftest import REGION
from tests.export_fixtures import read_dynamodb_json
from tests.helpers import FakeClock
from tests.replay_helpers import (
    TABLE,
    Change,
    at,
    key,
    replayer,
    write_changes,
    write_coverage,
    write_description,
    write_snapshot,
)
from tests.test_replay_property import Record, alive, histories, model, write

DATABASE = "ddb_archive_test"
BUCKET = "archive-bucket"
_example = itertools.count()


@pytest.fixture
def athena(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AthenaDouble]:
    with running_double(aws_env, monkeypatch) as double:
        yield double


def athena_setup(capsys: pytest.CaptureFixture[str], archive: Archive) -> str:
    code, out, err = replayer(
        capsys, "athena-setup", "--archive", archive.url, "--database", DATABASE
    )
    assert code == 0, err
    return out


def export(
    capsys: pytest.CaptureFixture[str], archive: Archive, engine: str, when: str, url: str,
    *extra: str,
) -> tuple[int, str, str]:  # fmt: skip
    return replayer(capsys, "export", "--table-name", TABLE, "--archive", archive.url,
                    "--restore-date-time", when, "--output", url, "--format", "dynamodb-json",
                    "--engine", engine, "--athena-database", DATABASE, *extra)  # fmt: skip


def restore(
    capsys: pytest.CaptureFixture[str], archive: Archive, when: str, *extra: str
) -> tuple[int, str, str]:
    return replayer(capsys, "restore", "--source-table-name", TABLE, "--target-table-name",
                    "restored", "--archive", archive.url, "--restore-date-time", when,
                    "--strategy", "replay", "--engine", "athena", "--athena-database", DATABASE,
                    *extra)  # fmt: skip


def exported_items(output: Archive) -> dict[str, str]:
    items = {}
    for rel in output.find("data"):
        for item in read_dynamodb_json(output.get_bytes(rel)):
            items[canonical_json({"pk": item["pk"]})] = canonical_json(item)
    return items


def table_items(ddb: Any, name: str) -> dict[str, str]:
    return {
        k: v
        for batch in scan_rows(ddb, name)
        for k, v in zip(*batch.to_pydict().values(), strict=True)
    }


def tables(ddb: Any) -> list[str]:
    return list(ddb.list_tables()["TableNames"])


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("ddb-replayer: error:")]
    assert len(lines) == 1, err
    return lines[0]


ITEMS = [
    {"pk": {"S": "a"}, "v": {"N": "1"}},
    {"pk": {"S": "b"}, "bin": {"B": "AAE="}, "m": {"M": {"l": {"L": [{"B": "/w=="}]}}}},
    {"pk": {"S": "c"}, "ss": {"SS": ["x", "y"]}, "quote": {"S": 'it\'s "quoted" \\ \n'}},
]


@pytest.fixture
def history(s3_archive: Archive, capsys: pytest.CaptureFixture[str]) -> Archive:
    """a inserted then deleted, b and c alive at T = +100 s; d only later."""
    write_coverage(s3_archive, watermark=at(1000))
    write_description(s3_archive)
    write_changes(s3_archive, [
        Change(1, key("a"), ITEMS[0], at(10), "INSERT"),
        Change(2, key("b"), ITEMS[1], at(20), "INSERT"),
        Change(3, key("a"), None, at(30)),
        Change(4, key("c"), ITEMS[2], at(40), "INSERT"),
        Change(5, key("d"), {"pk": {"S": "d"}}, at(200), "INSERT"),
    ], per_file=2)  # fmt: skip
    athena_setup(capsys, s3_archive)
    return s3_archive


T = at(100).isoformat()


# -- export ----------------------------------------------------------------------------------


def test_export_athena_writes_what_export_duckdb_writes(
    history: Archive, athena: AthenaDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = {}
    for engine in ("duckdb", "athena"):
        url = f"s3://{BUCKET}/out-{engine}"
        code, _, err = export(capsys, history, engine, T, url)
        assert code == 0, err
        outputs[engine] = exported_items(Archive.open(url))
    assert outputs["athena"] == outputs["duckdb"]
    assert sorted(outputs["athena"].values()) == sorted(canonical_json(i) for i in ITEMS[1:])
    summary = Archive.open(f"s3://{BUCKET}/out-athena").read_json("export.json")
    assert summary["engine"] == "athena"
    assert summary["item_count"] == 2
    assert all(f.startswith("data/") and f.endswith(".gz") for f in summary["files"])
    assert summary["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    # Progress and cost were reported; exactly one query ran.
    assert re.search(r"SUCCEEDED in [\d.]+ s, .* scanned, about \$", err)
    assert athena.calls.count("StartQueryExecution") == 1


def test_export_athena_lines_are_byte_identical_to_the_duckdb_export(
    history: Archive, athena: AthenaDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = {}
    for engine in ("duckdb", "athena"):
        url = f"s3://{BUCKET}/bytes-{engine}"
        assert export(capsys, history, engine, T, url)[0] == 0
        output = Archive.open(url)
        lines[engine] = sorted(
            line for rel in output.find("data") for line in gzip.decompress(
                output.get_bytes(rel)).splitlines()
        )  # fmt: skip
    assert lines["athena"] == lines["duckdb"]


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    records=histories(),
    splits=st.lists(st.integers(1, 7), min_size=1, max_size=2),
    duplicated=st.booleans(),
    use_base=st.booleans(),
    t_offset=st.integers(0, 70_000),
)  # fmt: skip
def test_property_export_athena_equals_export_duckdb(
    s3: Any,
    athena: AthenaDouble,
    capsys: pytest.CaptureFixture[str],
    records: list[Record],
    splits: list[int],
    duplicated: bool,
    use_base: bool,
    t_offset: int,
) -> None:
    if not s3.list_buckets()["Buckets"]:
        s3.create_bucket(Bucket=BUCKET)
    n = next(_example)
    archive = Archive.open(f"s3://{BUCKET}/example-{n}")
    write(archive, records, splits, duplicated)
    t_ms = t_offset
    if use_base:
        base = {k: v for k, v in model(records, 20_000).items() if v is not None}
        write_coverage(archive, covered_from=at(-100), from_table_creation=False,
                       watermark=at(200))  # fmt: skip
        write_snapshot(archive, [orjson.loads(v) for v in base.values()],
                       valid_from=at(25), log_from=at(15))  # fmt: skip
        t_ms = 25_000 + t_offset
    else:
        write_coverage(archive, watermark=at(200))
    athena_setup(capsys, archive)
    when = at(t_ms / 1000).isoformat()
    got = {}
    for engine in ("duckdb", "athena"):
        url = f"s3://{BUCKET}/example-{n}-{engine}"
        code, _, err = export(capsys, archive, engine, when, url)
        assert code == 0, err
        got[engine] = exported_items(Archive.open(url))
    assert got["athena"] == got["duckdb"]
    assert got["athena"] == alive(model(records, t_ms))


# -- restore and verify ----------------------------------------------------------------------


def test_restore_athena_equals_the_table_at_t(
    history: Archive, athena: AthenaDouble, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = restore(capsys, history, T)
    assert code == 0, err
    assert "verify: identical: 2 items" in out
    expected = {canonical_json({"pk": i["pk"]}): canonical_json(i) for i in ITEMS[1:]}
    assert table_items(ddb, "restored") == expected


def test_restore_by_import_folds_on_athena_and_stages_its_result(
    history: Archive,
    athena: AthenaDouble,
    ddb: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--strategy import --engine athena``: the fold is one Athena UNLOAD, its result is
    staged for ImportTable (executed by moto) and the imported table verified against it."""
    monkeypatch.setattr(import_strategy, "POLL_SECONDS", 0.05)  # moto imports in moments
    code, out, _ = restore(capsys, history, T, "--strategy", "import", "--dry-run")
    assert code == 0 and "dry run: nothing was created" in out
    assert athena.queries == {} and tables(ddb) == []  # no query run, no table created
    code, out, err = restore(capsys, history, T, "--strategy", "import")
    assert code == 0, out + err
    assert "ImportTable" in out and "verify: identical: 2 items" in out
    (query,) = athena.queries.values()
    assert query.sql.lstrip().upper().startswith("UNLOAD")
    expected = {canonical_json({"pk": i["pk"]}): canonical_json(i) for i in ITEMS[1:]}
    assert table_items(ddb, "restored") == expected


def test_restore_athena_over_a_base_snapshot(
    s3_archive: Archive, athena: AthenaDouble, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    write_coverage(s3_archive, covered_from=at(-100), from_table_creation=False,
                   watermark=at(1000))  # fmt: skip
    write_description(s3_archive)
    write_snapshot(s3_archive, [ITEMS[0], ITEMS[1]], valid_from=at(20), log_from=at(5))
    write_changes(s3_archive, [Change(1, key("a"), None, at(30)),
                               Change(2, key("c"), ITEMS[2], at(40), "INSERT")])  # fmt: skip
    athena_setup(capsys, s3_archive)
    code, _, err = restore(capsys, s3_archive, T)
    assert code == 0, err
    expected = {canonical_json({"pk": i["pk"]}): canonical_json(i) for i in ITEMS[1:]}
    assert table_items(ddb, "restored") == expected


def test_verify_athena_compares_the_target_with_the_athena_result(
    history: Archive, athena: AthenaDouble, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert restore(capsys, history, T, "--no-verify")[0] == 0
    argv = ["verify", "--target-table-name", "restored", "--source-table-name", TABLE,
            "--archive", history.url, "--restore-date-time", T, "--engine", "athena",
            "--athena-database", DATABASE]  # fmt: skip
    code, out, _ = replayer(capsys, *argv)
    assert code == 0
    assert "identical: 2 items" in out
    ddb.put_item(TableName="restored", Item={"pk": {"S": "zz"}})
    code, out, _ = replayer(capsys, *argv)
    assert code == EXIT_DIFFERENCES
    assert "1 extra in restored" in out


# -- failure modes: one line with Athena's reason and the query id; nothing created -----------


def assert_failed_cleanly(code: int, err: str, ddb: Any, expected_code: int = EXIT_FAILURE) -> str:
    assert code == expected_code, err
    assert "restored" not in tables(ddb)
    return one_error_line(err)


@pytest.mark.parametrize("command", ["restore", "restore --dry-run", "export"])
@pytest.mark.parametrize("engine", ["duckdb", "athena"])
def test_a_base_less_log_that_does_not_start_at_creation_is_refused_by_both_engines(
    s3_archive: Archive,
    athena: AthenaDouble,
    ddb: Any,
    capsys: pytest.CaptureFixture[str],
    engine: str,
    command: str,
) -> None:
    """Coverage claims the log starts at table creation, but key b first appears as a MODIFY:
    a restore without a base would miss b's earlier state, so both engines refuse (exit 4)
    before any query runs, and the claim is recorded as refuted."""
    write_coverage(s3_archive, watermark=at(1000))
    write_description(s3_archive)
    write_changes(s3_archive, [Change(1, key("a"), ITEMS[0], at(10), "INSERT"),
                               Change(2, key("b"), ITEMS[1], at(20), "MODIFY",
                                      event_id="event-b")])  # fmt: skip
    athena_setup(capsys, s3_archive)
    common = ["--archive", s3_archive.url, "--restore-date-time", T, "--engine", engine,
              "--athena-database", DATABASE]  # fmt: skip
    if command == "export":
        argv = ["export", "--table-name", TABLE, "--output", f"s3://{BUCKET}/out",
                "--format", "dynamodb-json", *common]  # fmt: skip
    else:
        argv = ["restore", "--source-table-name", TABLE, "--target-table-name", "restored",
                "--strategy", "replay", *common, *command.split()[1:]]  # fmt: skip
    code, _, err = replayer(capsys, *argv)
    line = assert_failed_cleanly(code, err, ddb, EXIT_REFUSED)
    assert "without a base snapshot needs the log from table creation" in line
    assert "event-b" in line and "ddb-archiver snapshot" in line
    assert "StartQueryExecution" not in athena.calls
    assert not Archive.open(f"s3://{BUCKET}/out").find("data")  # no item exported
    current = coverage.current(s3_archive, TABLE)
    assert current is not None and current["from_table_creation"] is False


def test_a_failed_query_is_one_line_and_creates_nothing(
    history: Archive, athena: AthenaDouble, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    athena.fail_with = "HIVE_CANNOT_OPEN_SPLIT: Error opening Hive split s3://x/y.parquet"
    code, _, err = restore(capsys, history, T)
    line = assert_failed_cleanly(code, err, ddb)
    (query_id,) = athena.queries
    assert f"Athena query {query_id} FAILED: HIVE_CANNOT_OPEN_SPLIT: Error opening" in line


def test_a_cancelled_query_is_one_line_and_creates_nothing(
    history: Archive, athena: AthenaDouble, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    athena.cancel_next = True
    code, _, err = restore(capsys, history, T)
    line = assert_failed_cleanly(code, err, ddb)
    (query_id,) = athena.queries
    assert f"Athena query {query_id} CANCELLED: Query was cancelled by user" in line


def test_permission_denied_is_one_line_and_creates_nothing(
    history: Archive, athena: AthenaDouble, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    athena.deny = {"StartQueryExecution"}
    code, _, err = restore(capsys, history, T)
    line = assert_failed_cleanly(code, err, ddb)
    assert "Athena StartQueryExecution: access denied" in line
    assert "not authorized to perform: athena:StartQueryExecution" in line


def test_a_missing_glue_table_is_refused_before_any_query(
    s3_archive: Archive, athena: AthenaDouble, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    write_coverage(s3_archive, watermark=at(1000))
    write_description(s3_archive)
    write_changes(s3_archive, [Change(1, key("a"), ITEMS[0], at(10), "INSERT")])
    code, _, err = restore(capsys, s3_archive, T)
    line = assert_failed_cleanly(code, err, ddb, EXIT_REFUSED)
    assert (
        f"the Glue table {DATABASE}.changes does not exist: run ddb-replayer athena-setup" in line
    )
    assert "StartQueryExecution" not in athena.calls


def test_a_query_over_a_missing_table_fails_with_athenas_reason(
    s3_archive: Archive, athena: AthenaDouble
) -> None:
    client = boto3.client("athena", region_name=REGION)
    runner = Athena(client, AthenaConfig("primary", "nowhere", f"s3://{BUCKET}/results/"),
                    say=lambda _: None, sleep=lambda _: None)  # fmt: skip
    with pytest.raises(AthenaQueryFailed) as failed:
        runner.run("SELECT count(*) FROM changes")
    assert failed.value.state == "FAILED"
    assert "TABLE_NOT_FOUND" in str(failed.value)
    assert "'awsdatacatalog.nowhere.changes' does not exist" in str(failed.value)
    assert failed.value.query_id in str(failed.value)


def test_a_table_outside_the_projection_is_refused(
    history: Archive, athena: AthenaDouble, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    replayer(capsys, "athena-setup", "--archive", history.url, "--database", DATABASE,
             "--table-name", "other")  # fmt: skip
    code, _, err = restore(capsys, history, T)
    line = assert_failed_cleanly(code, err, ddb, EXIT_REFUSED)
    assert "does not project table 'orders'" in line
    assert "StartQueryExecution" not in athena.calls


def test_a_row_count_mismatch_creates_nothing(
    history: Archive, athena: AthenaDouble, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    athena.misreport_rows = 1
    code, _, err = restore(capsys, history, T)
    line = assert_failed_cleanly(code, err, ddb)
    (query_id,) = athena.queries
    assert f"Athena query {query_id} reported 3 rows but its output files hold 2" in line


def test_a_scan_above_the_limit_is_refused_before_running(
    history: Archive, athena: AthenaDouble, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = restore(capsys, history, T, "--athena-max-scan-gb", "0.000001")
    line = assert_failed_cleanly(code, err, ddb, EXIT_REFUSED)
    assert "would scan up to" in line and "--athena-max-scan-gb 1e-06" in line
    assert "StartQueryExecution" not in athena.calls
    # A limit above the partitions' size lets it run.
    assert restore(capsys, history, T, "--athena-max-scan-gb", "1")[0] == 0


def test_the_scan_bound_is_the_dt_partitions_in_range(
    history: Archive, athena: AthenaDouble
) -> None:
    from replayer.engines.athena_engine import AthenaFolder

    later = [Change(9, key("z"), {"pk": {"S": "z"}}, at(3 * 86_400), "INSERT")]
    write_changes(history, later)  # another dt partition, outside the plan's range
    plan = planning.plan_restore(history, TABLE, at(100))
    runner = Athena(boto3.client("athena", region_name=REGION),
                    AthenaConfig("primary", DATABASE, f"s3://{BUCKET}/r/"))  # fmt: skip
    folder = AthenaFolder(runner, boto3.client("glue", region_name=REGION), history)
    sizes = {rel: size for rel, size in history.walk_files("changes", ".parquet")}
    in_range = sum(size for rel, size in sizes.items() if "dt=2026-03-01" in rel)
    assert folder.scan_bound(plan) == in_range < sum(sizes.values())


def test_ctrl_c_stops_the_query(history: Archive, athena: AthenaDouble) -> None:
    athena.hold.set()
    client = boto3.client("athena", region_name=REGION)
    said: list[str] = []

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    runner = Athena(client, AthenaConfig("primary", DATABASE, f"s3://{BUCKET}/results/"),
                    say=said.append, sleep=interrupt)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        runner.run("SELECT 1")
    (query,) = athena.queries.values()
    assert "StopQueryExecution" in athena.calls
    assert query.state == "CANCELLED"
    assert any("RUNNING" in line or "QUEUED" in line for line in said)
    assert any("stopping the query" in line for line in said)


def test_a_query_past_its_deadline_is_stopped(history: Archive, athena: AthenaDouble) -> None:
    athena.hold.set()
    client = boto3.client("athena", region_name=REGION)
    said: list[str] = []
    clock = FakeClock()
    runner = Athena(client, AthenaConfig("primary", DATABASE, f"s3://{BUCKET}/results/"),
                    say=said.append, sleep=clock.sleep, clock=clock,
                    timeout_seconds=0.5)  # fmt: skip
    with pytest.raises(WaitTimedOut, match=r"Athena query \S+: not ready after"):
        runner.run("SELECT 1")
    (query,) = athena.queries.values()
    assert "StopQueryExecution" in athena.calls
    assert query.state == "CANCELLED"
    assert any("stopping the query" in line for line in said)
    # The pauses grow from POLL_FIRST by 1.5 to POLL_MAX (the fixture's 20 ms here).
    assert clock.slept[0] == pytest.approx(athena_module.POLL_FIRST)
    assert max(clock.slept) <= athena_module.POLL_MAX
    assert clock.now >= 0.5


def test_progress_shows_state_elapsed_and_scanned(history: Archive, athena: AthenaDouble) -> None:
    athena.hold.set()
    client = boto3.client("athena", region_name=REGION)
    said: list[str] = []
    ticks = iter(range(1000))

    def tick(_: float) -> None:
        if next(ticks) == 3:
            athena.released.set()

    runner = Athena(client, AthenaConfig("primary", DATABASE, f"s3://{BUCKET}/results/"),
                    say=said.append, sleep=tick, progress_seconds=0)  # fmt: skip
    outcome = runner.run("SELECT 1 AS one")
    assert outcome.state == "SUCCEEDED"
    assert re.search(r"athena \S+: (QUEUED|RUNNING), \d+ s, [\d.,]+ \w?B scanned", said[0])
    assert list(runner.rows(outcome.query_id)) == [["one"], ["1"]]


def test_cost_uses_the_rate_and_the_ten_megabyte_minimum() -> None:
    assert query_cost_usd(0, "us-east-1") == pytest.approx(10e6 / 2**40 * 5)
    assert query_cost_usd(2**40, "us-east-1") == pytest.approx(5.0)
    assert query_cost_usd(2**40, "nowhere-1") == pytest.approx(5.0)


def test_engine_athena_needs_an_s3_archive(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    write_coverage(archive, watermark=at(1000))
    write_description(archive)
    write_changes(archive, [Change(1, key("a"), ITEMS[0], at(10), "INSERT")])
    code, _, err = replayer(capsys, "export", "--table-name", TABLE, "--archive", archive.url,
                            "--restore-date-time", T, "--output", f"s3://{BUCKET}/x",
                            "--format", "dynamodb-json", "--engine", "athena")  # fmt: skip
    assert code == 2
    assert "--engine athena needs an archive in S3" in one_error_line(err)


def test_planning_refusals_come_before_athena(
    history: Archive, athena: AthenaDouble, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = restore(capsys, history, (at(1000) + timedelta(seconds=1)).isoformat())
    line = assert_failed_cleanly(code, err, ddb, EXIT_REFUSED)
    assert "after the watermark" in line
    assert athena.calls == []


def test_only_the_generation_alive_at_t_counts(
    s3_archive: Archive, athena: AthenaDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    write_coverage(s3_archive, table_id="generation-1", watermark=at(50))
    write_description(s3_archive, table_id="generation-1")
    write_changes(s3_archive, [Change(1, key("a"), ITEMS[0], at(10), "INSERT"),
                               Change(2, key("b"), ITEMS[1], at(20), "INSERT")],
                  table_id="generation-1")  # fmt: skip
    # Recreated under the same name at +60 s, with a new stream.
    write_coverage(s3_archive, table_id="generation-2", created=at(60), watermark=at(1000))
    write_description(s3_archive, table_id="generation-2", captured=at(60))
    write_changes(s3_archive, [Change(1, key("c"), ITEMS[2], at(70), "INSERT")],
                  table_id="generation-2", label="2026-03-01T12:01:00.000")  # fmt: skip
    athena_setup(capsys, s3_archive)
    for when, expected in ((at(30), ITEMS[:2]), (at(100), ITEMS[2:])):
        got = {}
        for engine in ("duckdb", "athena"):
            url = f"s3://{BUCKET}/gen-{when.timestamp():.0f}-{engine}"
            code, _, err = export(capsys, s3_archive, engine, when.isoformat(), url)
            assert code == 0, err
            got[engine] = exported_items(Archive.open(url))
        assert got["athena"] == got["duckdb"]
        assert sorted(got["athena"].values()) == sorted(canonical_json(i) for i in expected)


def test_a_dry_run_shows_the_scan_bound_and_runs_no_query(
    history: Archive, athena: AthenaDouble, ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = restore(capsys, history, T, "--dry-run")
    assert code == 0, err
    assert re.search(r"athena scan ≤\s+\d+", out)
    assert "dry run: nothing was created" in out
    assert athena.calls == []
    assert "restored" not in tables(ddb)
