"""The restore write path: warm throughput, partitioned writers in processes, the adaptive
rate, restore tags, resume, and refusing bad data before anything exists.

Fault injection: clients that perform a call and then lose its reply, writers that raise
after N batches, and worker processes killed outright (``os._exit``), each followed by a
``--resume`` that must end in a verified, exact table.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from botocore.exceptions import ConnectionClosedError

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_REFUSED, EXIT_USAGE
from archiver.aws.retry import AdaptiveRate
from archiver.format import layout
from archiver.format.codec import canonical_json
from archiver.format.manifests import SnapshotWriter
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from bench.null_dynamodb import NullDynamoDB
from replayer.exceptions import BadInput
from replayer.strategies.replay import ReplayOptions, restore_by_replay
from replayer.write import restore_state, warm
from replayer.write.batch_writers import ClientFactory, PartitionJob, WriteFailed, write_partitions
from replayer.write.target_table import create_table_request, create_target, set_source_capacity
from tests.replay_helpers import (
    TABLE,
    Change,
    at,
    canon,
    item,
    key,
    replayer,
    write_changes,
    write_coverage,
    write_description,
)
from tests.workload import scan_state

AT = at(500)


def archive_items(archive: Archive, n: int, *, seed: int = 1, extra: Any = None) -> list[Any]:
    """An archive of ``n`` items (random sizes) written by the log from table creation."""
    rng = random.Random(seed)
    write_coverage(archive, watermark=at(1000))
    write_description(archive, extra=extra)
    items = [item(f"k{i:05d}", v=i, pad="x" * rng.randrange(0, 1500)) for i in range(n)]
    write_changes(
        archive,
        [Change(i + 1, key(f"k{i:05d}"), it, at(10), "INSERT") for i, it in enumerate(items)],
    )
    return items


def run_restore(archive: Archive, target: str, **options: Any) -> Any:
    return restore_by_replay(
        AwsSettings(), archive, TABLE, target, AT, ReplayOptions(**options), say=lambda _: None
    )


def tags_of(ddb: Any, name: str) -> dict[str, str]:
    arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
    return {t["Key"]: t["Value"] for t in ddb.list_tags_of_resource(ResourceArn=arn)["Tags"]}


# -- warm throughput -------------------------------------------------------------------------


GSI = {
    "GlobalSecondaryIndexes": [
        {
            "IndexName": "by-v",
            "KeySchema": [{"AttributeName": "v", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
}


def test_an_on_demand_target_is_created_warm_table_and_gsis(ddb: Any) -> None:
    """moto keeps WarmThroughput: DescribeTable shows what the restore asked for."""
    description = {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "v", "AttributeType": "N"},
        ],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        **GSI,
    }
    # 3,000,000 one-KB items in 10 minutes: 5,000 write units per second.
    plan = warm.plan_warm(description, items=3_000_000, write_units=3_000_000, quota=40_000)
    assert plan.units_per_second == 5_000 and plan.raises_warm
    request = warm.apply_to_request(create_table_request(description, "warm"), plan)
    create_target(ddb, description, "warm", request=request, poll_seconds=0.05)
    table = ddb.describe_table(TableName="warm")["Table"]
    assert table["WarmThroughput"]["WriteUnitsPerSecond"] == 5_000
    assert table["GlobalSecondaryIndexes"][0]["WarmThroughput"]["WriteUnitsPerSecond"] == 5_000
    # Capped at the account's table quota; under the default warm value nothing is asked.
    assert (
        warm.plan_warm(description, items=1, write_units=10**9, quota=40_000).units_per_second
        == 40_000
    )
    small = warm.plan_warm(description, items=1000, write_units=1000)
    assert not small.raises_warm
    assert "WarmThroughput" not in warm.apply_to_request(
        create_table_request(description, "x"), small
    )
    assert warm.table_write_quota(ddb) > 0


def test_a_provisioned_target_gets_the_restores_wcu_then_the_sources(ddb: Any) -> None:
    description = {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "v", "AttributeType": "N"},
        ],
        "BillingModeSummary": {"BillingMode": "PROVISIONED"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
        "GlobalSecondaryIndexes": [
            {**GSI["GlobalSecondaryIndexes"][0],
             "ProvisionedThroughput": {"ReadCapacityUnits": 3, "WriteCapacityUnits": 2}}
        ],
    }  # fmt: skip
    plan = warm.plan_warm(description, items=60_000, write_units=120_000, target_minutes=10)
    assert plan.units_per_second == 200
    request = warm.apply_to_request(create_table_request(description, "prov"), plan)
    create_target(ddb, description, "prov", request=request, poll_seconds=0.05)
    table = ddb.describe_table(TableName="prov")["Table"]
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 200
    assert table["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"]["WriteCapacityUnits"] == 200
    set_source_capacity(ddb, description, "prov")
    table = ddb.describe_table(TableName="prov")["Table"]
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 5
    assert table["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"]["WriteCapacityUnits"] == 2
    assert "provisioned capacity $" in plan.describe()


def test_dry_run_prints_the_warm_throughput_and_its_cost(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    archive_items(archive, 40)
    code, out, err = replayer(
        capsys, "restore", "--source-table-name", TABLE, "--target-table-name", "dry",
        "--archive", archive.url, "--restore-date-time", iso_ms(AT), "--strategy", "replay",
        "--dry-run", "--target-minutes", "0.0001",
    )  # fmt: skip
    assert code == 0, err
    assert "items          40" in out
    assert "warm throughput:" in out and "cost at list price: writes $" in out
    assert "dry" not in ddb.list_tables()["TableNames"]


# -- the adaptive rate -----------------------------------------------------------------------


def test_aimd_halves_on_throttling_and_grows_while_calls_succeed() -> None:
    now = [0.0]
    rate = AdaptiveRate(1000, cap=1200, increase=50, clock=lambda: now[0])
    rate.throttled()
    assert rate.per_second == 500
    rate.throttled()  # the same burst of throttles: one signal
    assert rate.per_second == 500 and rate.throttles == 2
    for _ in range(20):
        now[0] += 1.0
        rate.succeeded()
    assert rate.per_second == 1200  # the cap (--max-write-rate)
    now[0] += 1.0
    rate.throttled()
    assert rate.per_second == 600


def test_writers_back_off_under_throttling_and_lose_nothing(tmp_path: Path) -> None:
    """A null endpoint at its capacity (throttling above 400 items/s) and returning some
    requests unprocessed: every item arrives exactly once, the rate came down."""
    rows = [(canonical_json(key(f"k{i}")), canonical_json(item(f"k{i}", v=i))) for i in range(600)]
    path = str(tmp_path / "p.parquet")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"keys": [k for k, _ in rows], "item": [v for _, v in rows]}), path)
    with NullDynamoDB(capacity=400, unprocessed=0.05, record=True, seed=3) as endpoint:
        factory = ClientFactory(AwsSettings(endpoint_url=endpoint.url))
        job = PartitionJob(0, path, "t", concurrency=4, initial_rate=4000, client_factory=factory)
        stats = write_partitions([job], total=600)
    assert stats.items == 600 and stats.throttles > 0
    assert stats.final_rates[0] < 4000
    assert sorted(endpoint.accepted.values()) == [1] * 600
    assert set(endpoint.accepted) == {json.dumps(json.loads(v), sort_keys=True) for _, v in rows}


@pytest.mark.parametrize("seed", [1, 2])
def test_partitions_write_every_item_exactly_once(tmp_path: Path, seed: int) -> None:
    """Random sizes, random partition counts, threads or processes: each item once."""
    import duckdb

    rng = random.Random(seed)
    n = rng.randrange(200, 900)
    pads = ["y" * rng.randrange(0, 3000) for _ in range(n)]
    rows = [(canonical_json(key(f"k{i}")), canonical_json(item(f"k{i}", pad=pads[i])))
            for i in range(n)]  # fmt: skip
    con = duckdb.connect()
    con.register("rows", pa.table({"keys": [k for k, _ in rows], "item": [v for _, v in rows]}))
    from replayer.engines.fold import FoldResult

    con.execute("CREATE TABLE fold_1 AS SELECT * FROM rows")
    partitions = rng.randrange(1, 5) if seed == 1 else 2
    parts = FoldResult(con, "fold_1", n).partition_files(partitions, str(tmp_path))
    assert sum(count for _, count in parts) == n
    with NullDynamoDB(record=True, unprocessed=0.1, seed=seed) as endpoint:
        factory = ClientFactory(AwsSettings(endpoint_url=endpoint.url))
        jobs = [PartitionJob(p, path, "t", concurrency=3, client_factory=factory)
                for p, (path, _) in enumerate(parts)]  # fmt: skip
        stats = write_partitions(jobs, total=n, processes=seed == 2)
    assert stats.items == n
    assert sorted(endpoint.accepted.values()) == [1] * n
    assert set(endpoint.accepted) == {json.dumps(json.loads(v), sort_keys=True) for _, v in rows}


# -- tags, lost replies, resume --------------------------------------------------------------


class LosesCreateTableReply:
    """A client whose first CreateTable takes effect but whose reply is lost (the connection
    drops after the request went through), as when a network blip eats DynamoDB's answer."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.lost = 0

    def create_table(self, **kwargs: Any) -> Any:
        response = self.client.create_table(**kwargs)
        if not self.lost:
            self.lost += 1
            raise ConnectionClosedError(endpoint_url="http://dynamodb")
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_lost_create_table_reply_is_recognised_by_the_restores_tag(
    ddb: Any, archive: Archive
) -> None:
    items = archive_items(archive, 30)
    client = LosesCreateTableReply(ddb)
    lines: list[str] = []
    outcome = restore_by_replay(
        AwsSettings(), archive, TABLE, "lost-reply", AT, ReplayOptions(), client=client,
        say=lines.append,
    )  # fmt: skip
    assert client.lost == 1
    assert outcome.comparison is not None and outcome.comparison.identical
    assert scan_state(ddb, "lost-reply") == canon(items)
    assert restore_state.TAG_RESTORE_ID not in tags_of(ddb, "lost-reply")  # cleared when verified


class FailsAfter:
    """A client factory whose clients raise after ``calls`` BatchWriteItem calls (a writer
    that crashes between two writes); ``kill`` makes the worker process die outright."""

    def __init__(self, calls: int, *, kill: bool = False) -> None:
        self.calls = calls
        self.kill = kill

    def __call__(self) -> Any:
        return _Failing(ClientFactory()(), self.calls, self.kill)


class _Failing:
    def __init__(self, client: Any, calls: int, kill: bool) -> None:
        self.client = client
        self.meta = client.meta
        self.left = calls
        self.kill = kill

    def batch_write_item(self, **kwargs: Any) -> Any:
        if self.left <= 0:
            if self.kill:
                os._exit(9)
            raise RuntimeError("writer crashed")
        self.left -= 1
        return self.client.batch_write_item(**kwargs)


class CountingFactory:
    """Clients that count their BatchWriteItem calls in a file (visible across processes)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> Any:
        return _Counting(ClientFactory()(), self.path)


class _Counting:
    def __init__(self, client: Any, path: str) -> None:
        self.client = client
        self.meta = client.meta
        self.path = path

    def batch_write_item(self, **kwargs: Any) -> Any:
        with open(self.path, "a") as out:
            out.write("x")
        return self.client.batch_write_item(**kwargs)


@pytest.mark.parametrize("kill", [False, True], ids=["worker-raises", "process-killed"])
def test_a_stopped_restore_is_resumed_and_verified_exactly(
    ddb: Any, archive: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str], kill: bool
) -> None:
    items = archive_items(archive, 400)
    processes = 2 if kill else 1
    options = {"processes": processes, "items_per_process": 100, "workers": 2}
    with pytest.raises(WriteFailed, match=r"continue with: .*--resume") as failed:
        run_restore(archive, "resumed", client_factory=FailsAfter(3, kill=kill), **options)
    if kill:
        assert "exited with code 9" in str(failed.value)
    tags = tags_of(ddb, "resumed")
    restore_id = tags[restore_state.TAG_RESTORE_ID]
    progress = archive.read_json(layout.restore_progress(TABLE, restore_id))
    assert progress["partitions"] == processes and progress["state"] == "writing"
    acknowledged = sum(progress["done"]) * restore_state.CHUNK_ITEMS
    assert 0 < acknowledged <= 3 * processes * restore_state.CHUNK_ITEMS
    assert len(scan_state(ddb, "resumed")) >= acknowledged

    # A rerun without --resume meets its own partial target: it says so, and how to go on.
    code, _, err = replayer(
        capsys, "restore", "--source-table-name", TABLE, "--target-table-name", "resumed",
        "--archive", archive.url, "--restore-date-time", iso_ms(AT),
    )  # fmt: skip
    assert code == EXIT_REFUSED
    assert f"restore {restore_id} of this same plan" in err and "--resume" in err

    counted = str(tmp_path / "calls")
    outcome = run_restore(
        archive, "resumed", resume=True, client_factory=CountingFactory(counted), **options
    )
    assert outcome.comparison is not None and outcome.comparison.identical
    assert scan_state(ddb, "resumed") == canon(items)
    assert outcome.written.skipped == acknowledged
    calls = len(Path(counted).read_text())
    assert calls <= 16 - acknowledged // restore_state.CHUNK_ITEMS + processes  # 400 items: 16
    assert restore_state.TAG_RESTORE_ID not in tags_of(ddb, "resumed")
    done = archive.read_json(layout.restore_progress(TABLE, restore_id))
    assert done["state"] == "complete"


def test_resume_never_writes_a_table_it_did_not_create(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    archive_items(archive, 20)
    base = ["restore", "--source-table-name", TABLE, "--archive", archive.url,
            "--restore-date-time", iso_ms(AT), "--resume", "--target-table-name"]  # fmt: skip
    ddb.create_table(
        TableName="untagged", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )  # fmt: skip
    ddb.create_table(
        TableName="foreign", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        Tags=restore_state.restore_tags("20260101T000000Z-other", "another-plan"),
    )  # fmt: skip
    code, _, err = replayer(capsys, *base, "untagged")
    assert code == EXIT_REFUSED and "carries no restore tag" in err
    code, _, err = replayer(capsys, *base, "foreign")
    assert code == EXIT_REFUSED and "restore 20260101T000000Z-other of another plan" in err
    for name in ("untagged", "foreign"):
        assert ddb.scan(TableName=name)["Count"] == 0


# -- bad data --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [('{"pk":{"S":"b"', "not valid JSON"), ('{"pk":{"N":"2"}}', r"key attributes pk \(S\)")],
)
def test_an_invalid_item_refuses_before_the_target_exists(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str], text: str, why: str
) -> None:
    write_coverage(archive, covered_from=at(0), from_table_creation=False, watermark=at(1000))
    write_description(archive)
    writer = SnapshotWriter(archive, TABLE, layout.new_snapshot_id(at(20)))
    writer.add(canonical_json(key("a")), canonical_json(item("a", v=1)))
    writer.add(canonical_json(key("b")), text)
    writer.commit(table_id="table-id-1", method="scan", valid_from=at(20), log_from=at(5),
                  started_at=at(5), finished_at=at(20),
                  key_schema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                  source="test")  # fmt: skip
    with pytest.raises(BadInput, match=why):
        run_restore(archive, "bad-data")
    code, _, err = replayer(
        capsys, "restore", "--source-table-name", TABLE, "--target-table-name", "bad-data",
        "--archive", archive.url, "--restore-date-time", iso_ms(AT),
    )  # fmt: skip
    assert code == EXIT_USAGE and "nothing was created" in err
    assert "bad-data" not in ddb.list_tables()["TableNames"]


# -- export ----------------------------------------------------------------------------------


def test_an_export_of_the_same_plan_is_resumed_another_refused(
    archive: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive_items(archive, 50)
    out_dir = tmp_path / "out"
    args = ["export", "--table-name", TABLE, "--archive", archive.url, "--output", str(out_dir)]
    code, _, err = replayer(capsys, *args, "--restore-date-time", iso_ms(AT))
    assert code == 0, err
    summary = (out_dir / "export.json").read_text()
    (out_dir / "export.json").unlink()  # as if it stopped before its last write
    part = next((out_dir / "data").iterdir())
    before = part.stat().st_mtime_ns
    time.sleep(0.01)
    code, _, err = replayer(capsys, *args, "--restore-date-time", iso_ms(AT))
    assert code == EXIT_REFUSED and "partial export of this same plan" in err and "--resume" in err
    code, _, err = replayer(capsys, *args, "--restore-date-time", iso_ms(AT), "--resume")
    assert code == 0, err
    assert part.stat().st_mtime_ns == before  # kept, not rewritten
    assert json.loads((out_dir / "export.json").read_text())["item_count"] == 50
    assert (
        json.loads(summary)["files"] == json.loads((out_dir / "export.json").read_text())["files"]
    )
    code, _, err = replayer(capsys, *args, "--restore-date-time", iso_ms(at(400)), "--resume")
    assert code == EXIT_REFUSED and "another plan" in err
