"""``archiver.aws.metrics``: EMF lines that CloudWatch accepts, a Prometheus endpoint that scrapes,
and a ``/healthz`` that turns 503 when a shard stalls — each carrying what a run just did."""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from archiver.aws import metrics
from archiver.format.storage import Archive
from archiver.format.timefmt import utcnow
from archiver.lambda_mode import handler as lh
from tests.conftest import create_table
from tests.helpers import stream_records
from tests.streams_double import StreamsDouble
from tests.test_lambda_handler import TABLE as LAMBDA_TABLE
from tests.test_lambda_handler import lambda_event, write_workload
from tests.test_stream_lineage import TABLE, archived_rows, put, run, stream_of

# The required structure of an EMF document, from AWS's published specification and its JSON
# schema ("Embedded metric format specification", CloudWatch User Guide:
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
# — "The _aws object", "MetricDirective", "MetricDefinition", "Target members"):
# - the root has an ``_aws`` object with ``Timestamp`` (integer, epoch milliseconds) and
#   ``CloudWatchMetrics``: an array of MetricDirective;
# - a MetricDirective has ``Namespace`` (string, 1..255 chars), ``Dimensions`` (an array of
#   DimensionSets — arrays of at most 30 strings, each naming a root member whose value is a
#   string) and ``Metrics`` (an array of at most 100 MetricDefinitions);
# - a MetricDefinition has ``Name`` (string, 1..255 chars, a root member holding a number or an
#   array of at most 100 numbers) and optionally ``Unit`` (one of the CloudWatch units).
EMF_UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


def assert_emf(doc: Any) -> None:
    """``doc`` has the structure the EMF schema requires (see above)."""
    assert isinstance(doc, dict)
    aws = doc["_aws"]
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 0
    directives = aws["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert set(directive) >= {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str) and 1 <= len(directive["Namespace"]) <= 255
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list) and len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(doc[name], str)
        assert 1 <= len(directive["Metrics"]) <= 100
        for definition in directive["Metrics"]:
            name = definition["Name"]
            assert isinstance(name, str) and 1 <= len(name) <= 255
            assert definition.get("Unit", "None") in EMF_UNITS
            value = doc[name]
            assert isinstance(value, int | float) and not isinstance(value, bool)


def emf_lines(text: str) -> list[dict[str, Any]]:
    docs = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            doc = orjson.loads(line)
            assert_emf(doc)
            docs.append(doc)
    return docs


def test_the_lambda_handler_writes_emf_lines_with_what_it_archived(
    ddb: Any, s3_archive: Archive, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    lh.reset()
    monkeypatch.setenv("MAX_ITERATOR_AGE_SECONDS", "600")
    create_table(ddb, LAMBDA_TABLE)
    write_workload(ddb)
    stream_arn, _, records = stream_records(LAMBDA_TABLE)
    monkeypatch.setenv("ARCHIVE_URL", s3_archive.url)
    capsys.readouterr()
    assert lh.handler(lambda_event(stream_arn, records), None) == {"batchItemFailures": []}
    [doc] = emf_lines(capsys.readouterr().out)
    assert doc["Table"] == LAMBDA_TABLE
    assert doc["RecordsArchived"] == len(records)
    files = s3_archive.find(f"changes/table_name={LAMBDA_TABLE}", ".parquet")
    assert doc["FilesWritten"] == len(files)
    assert doc["BytesArchived"] == sum(r["dynamodb"]["SizeBytes"] for r in records)
    assert 0 <= doc["ArchiveLagSeconds"] < 600
    # A poison record: the batch fails and both are counted.
    bad = [dict(records[0], dynamodb={k: v for k, v in records[0]["dynamodb"].items()
                                      if k != "Keys"})]  # fmt: skip
    response = lh.handler(lambda_event(stream_arn, bad), None)
    assert response["batchItemFailures"]
    [doc] = emf_lines(capsys.readouterr().out)
    assert doc["PoisonRecords"] == 1


def test_emf_counters_add_up_and_gauges_keep_the_last_value() -> None:
    out = io.StringIO()
    sink = metrics.EmfMetrics(out, flush_seconds=None)
    sink.file_written("a", 10, 1000)
    sink.file_written("a", 5, 500, files=2)
    sink.lag("a", utcnow() - timedelta(seconds=30))
    sink.lag("a", utcnow() - timedelta(seconds=3))
    sink.retried(throttled=True)
    sink.flush()
    docs = emf_lines(out.getvalue())
    by_table = {d["Table"]: d for d in docs}
    assert (by_table["a"]["RecordsArchived"], by_table["a"]["FilesWritten"]) == (15, 3)
    assert by_table["a"]["BytesArchived"] == 1500 and 2.5 < by_table["a"]["ArchiveLagSeconds"] < 5
    assert (by_table["-"]["Retries"], by_table["-"]["Throttles"]) == (1, 1)
    out.truncate(0)
    sink.flush()
    assert not emf_lines(out.getvalue())  # nothing new, nothing written


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_prometheus_scrapes_and_healthz_turns_503_when_a_shard_stalls(
    ddb: Any, archive: Archive
) -> None:
    table = create_table(ddb, TABLE)
    double = StreamsDouble()
    stream = stream_of(double, table)
    busy, stuck = stream.add_shard(), stream.add_shard()
    start = utcnow() - timedelta(minutes=5)
    put(stream, busy, 8, start)
    put(stream, stuck, 3, start)
    sink = metrics.PrometheusMetrics(stale_seconds=0.6)
    server = sink.serve(0, "127.0.0.1")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    seen: list[tuple[float, int, str]] = []
    began = time.monotonic()

    def watch() -> bool:
        if not seen:
            double.stall(stuck.shard_id)  # inside the loop, before the first page of it
        code, body = _get(f"{base}/healthz")
        seen.append((time.monotonic() - began, code, body))
        if code == 503 or time.monotonic() - began > 10:
            double.release(stuck.shard_id)
            return True
        return False

    try:
        with metrics.using(sink):
            run(double, archive, once=False, stop_when=watch)
        codes = [code for _, code, _ in seen]
        assert 200 in codes and codes[-1] == 503, seen
        assert f"{TABLE}/{stuck.shard_id}" in seen[-1][2] and busy.shard_id not in seen[-1][2]
        # 503 came only once the stuck shard had gone unread for longer than allowed.
        assert seen[-1][0] >= 0.6
        code, text = _get(f"{base}/metrics")
        assert code == 200
        samples = {
            (s.name, s.labels.get("table")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        rows = archived_rows(archive)
        assert samples[("ddb_archive_records_archived_total", TABLE)] == len(rows) >= 8
        assert samples[("ddb_archive_files_written_total", TABLE)] >= 1
        assert samples[("ddb_archive_archive_lag_seconds", TABLE)] >= 0
    finally:
        server.shutdown()
        server.server_close()


def test_the_run_command_offers_the_metrics_choices(capsys: pytest.CaptureFixture[str]) -> None:
    from archiver.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--metrics {none,emf,prometheus}" in text and "--metrics-port N" in text
    assert "--healthz-stale-seconds S" in text


def test_run_with_emf_and_a_restore_report_what_they_did(
    ddb: Any, archive_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --once --metrics emf`` prints EMF lines with the records and files it wrote; a
    restore in the same process reports its items per second."""
    from archiver.cli import main as archiver_main
    from replayer.cli import main as replayer_main

    create_table(ddb, "emf")
    for i in range(7):
        ddb.put_item(TableName="emf", Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
    time.sleep(2.2)  # the watermark is 2 s behind the newest caught-up read
    capsys.readouterr()
    previous = metrics.current()
    try:
        code = archiver_main(["run", "--table-name", "emf", "--archive", str(archive_path),
                              "--once", "--poll-seconds", "0.05", "--metrics", "emf"])  # fmt: skip
        assert code == 0
        [doc] = [d for d in emf_lines(capsys.readouterr().out) if d["Table"] == "emf"]
        archive = Archive.open(str(archive_path))
        files = archive.find("changes/table_name=emf", ".parquet")
        assert doc["RecordsArchived"] == 7 and doc["FilesWritten"] == len(files) >= 1
        assert doc["BytesArchived"] > 0 and doc["ArchiveLagSeconds"] >= 0
        code = replayer_main(["restore", "--source-table-name", "emf", "--target-table-name",
                              "emf-copy", "--archive", str(archive_path),
                              "--use-latest-restorable-time", "--strategy", "replay",
                              "--no-verify", "--metrics", "emf"])  # fmt: skip
        assert code == 0
        [doc] = [d for d in emf_lines(capsys.readouterr().out) if d["Table"] == "emf"]
        assert doc["RestoreItemsPerSecond"] > 0
    finally:
        metrics.use(previous)


def test_one_shot_commands_print_their_emf_lines_when_they_end(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--metrics emf`` on compact (and restore, drill, redrive): the lines come at the end,
    and the process's sink is what it was before."""
    from archiver.cli import main as archiver_main
    from tests.changes_builder import write_changes
    from tests.test_compact import workload

    write_changes(archive, "orders", workload(20), per_file=5)
    before = metrics.current()
    capsys.readouterr()
    argv = ["compact", "--table-name", "orders", "--archive", archive.url, "--grace-seconds", "0"]
    assert archiver_main([*argv, "--metrics", "emf"]) == 0
    [doc] = emf_lines(capsys.readouterr().out)
    assert doc["Table"] == "orders" and doc["FilesWritten"] >= 1
    assert metrics.current() is before
    assert archiver_main(argv) == 0  # without it: no line
    assert emf_lines(capsys.readouterr().out) == []


def test_retries_throttles_and_compaction_are_counted(archive: Archive) -> None:
    from botocore.exceptions import ClientError

    from archiver.aws import retry
    from archiver.integrity.compaction import compact
    from tests.changes_builder import T0, write_changes
    from tests.test_compact import workload

    out = io.StringIO()
    answers = iter(["ProvisionedThroughputExceededException", "InternalServerError", None])

    def flaky() -> str:
        code = next(answers)
        if code:
            raise ClientError({"Error": {"Code": code, "Message": "x"}}, "PutItem")
        return "ok"

    write_changes(archive, "orders", workload(20), per_file=5)
    with metrics.using(metrics.EmfMetrics(out, flush_seconds=None)) as sink:
        assert retry.call(flaky, "PutItem", sleep=lambda _: None) == "ok"
        compact(archive, "orders", grace_seconds=0, now=T0 + timedelta(days=5))
        sink.flush()
    docs = {d["Table"]: d for d in emf_lines(out.getvalue())}
    assert (docs["-"]["Retries"], docs["-"]["Throttles"]) == (2, 1)
    assert docs["orders"]["FilesWritten"] == 1
