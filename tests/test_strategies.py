"""Restore strategies: estimates, the auto choice, native PITR and backup restores."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archiver import cli as archiver_cli
from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from archiver.native.backups import Backup, create_backup
from archiver.native.pitr import PitrStatus
from replayer import cli as replayer_cli
from replayer.exceptions import Refused, TargetTableExists
from replayer.strategies import choice as strategies
from replayer.strategies.choice import (
    DEFAULT_WRITE_RATE,
    Estimate,
    Estimator,
    WriteRate,
    choose,
    estimate_backup,
    estimate_pitr,
    estimate_replay,
    format_duration,
    native_restore_seconds,
    record_write_rate,
    usable_backups,
)
from replayer.strategies.native_restore import (
    restore_native,
    start_backup_restore,
    wait_until_active,
)
from tests.conftest import create_table

T = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
GIB = 1024**3


def pitr(
    enabled: bool = True, earliest: datetime | None = None, latest: datetime | None = None
) -> PitrStatus:
    return PitrStatus(
        table_name="orders",
        enabled=enabled,
        status="ENABLED" if enabled else "DISABLED",
        continuous_backups_status="ENABLED",
        recovery_period_in_days=35 if enabled else None,
        earliest_restorable=earliest,
        latest_restorable=latest,
    )


def backup(created: datetime, size: int | None = None, name: str = "nightly") -> Backup:
    return Backup(
        arn=f"arn:aws:dynamodb:us-east-1:1:table/orders/backup/{name}",
        name=name,
        table_name="orders",
        table_arn=None,
        table_id=None,
        created_at=created,
        status="AVAILABLE",
        backup_type="USER",
        size_bytes=size,
    )


# -- estimates -------------------------------------------------------------------------------


def test_pitr_estimate_needs_t_inside_the_window_and_grows_with_size() -> None:
    window = pitr(earliest=T - timedelta(days=3), latest=T + timedelta(minutes=1))
    small = estimate_pitr(window, T, 0)
    big = estimate_pitr(window, T, 100 * GIB)
    assert small.usable and small.seconds == 20 * 60
    assert big.seconds is not None and big.seconds > small.seconds
    assert not estimate_pitr(window, T + timedelta(minutes=2), 0).usable
    assert "outside the PITR window" in estimate_pitr(window, T - timedelta(days=4), 0).reason
    assert "not enabled" in estimate_pitr(pitr(enabled=False), T, 0).reason
    assert "does not exist" in estimate_pitr(None, T, 0).reason


def test_replay_and_backup_estimates_use_the_write_rate() -> None:
    rate = WriteRate(500.0, "measured")
    assert estimate_replay(10_000, rate).seconds == 20.0
    assert not estimate_replay(None, rate, "no usable base").usable
    b = backup(T - timedelta(hours=1), size=2 * GIB)
    est = estimate_backup(b, 1000, rate)
    assert est.seconds == native_restore_seconds(2 * GIB) + 2.0
    assert est.backup is b
    assert not estimate_backup(None, None, rate).usable
    refused = estimate_backup(b, None, rate, "a gap in the log")
    assert not refused.usable and "a gap in the log" in refused.reason


def test_auto_picks_the_fastest_and_says_why() -> None:
    estimates = [
        Estimate("replay", 12.0, "6,000 items"),
        Estimate("backup", 1300.0, "backup"),
        Estimate("pitr", 1200.0, "window"),
    ]
    chosen, reason = choose(estimates, "auto")
    assert chosen.strategy == "replay"
    assert "fastest" in reason and "pitr ~20 min" in reason and "backup ~22 min" in reason
    # a big table: PITR beats hours of writes
    estimates[0] = Estimate("replay", 5 * 3600.0, "18,000,000 items")
    assert choose(estimates, "auto")[0].strategy == "pitr"
    # ties go to replay (the archive can verify it)
    assert choose([Estimate("pitr", 60.0, ""), Estimate("replay", 60.0, "")], "auto")[
        0
    ].strategy == ("replay")


def test_requested_strategy_must_be_possible() -> None:
    estimates = [Estimate("replay", 1.0, "ok"), Estimate("pitr", None, "PITR is off")]
    assert choose(estimates, "replay")[0].strategy == "replay"
    with pytest.raises(Refused, match="--strategy pitr is not possible: PITR is off"):
        choose(estimates, "pitr")
    with pytest.raises(Refused, match="no strategy can restore T"):
        choose([Estimate("replay", None, "gap"), Estimate("pitr", None, "off")], "auto")


def test_format_duration() -> None:
    assert format_duration(12) == "~12 s"
    assert format_duration(1200) == "~20 min"
    assert format_duration(4 * 3600) == "~4.0 h"


def test_write_rate_is_remembered_in_the_archive(archive: Archive) -> None:
    assert WriteRate.load(archive, "orders").items_per_second == DEFAULT_WRITE_RATE
    record_write_rate(archive, "orders", items=5000, seconds=2.5, strategy="replay")
    rate = WriteRate.load(archive, "orders")
    assert rate.items_per_second == 2000.0
    assert "measured by the replay restore" in rate.source
    capped = WriteRate.load(archive, "orders", max_write_rate=300.0)
    assert capped.items_per_second == 300.0 and "--max-write-rate" in capped.source
    record_write_rate(archive, "orders", items=10, seconds=1.0, strategy="replay")  # too small
    assert WriteRate.load(archive, "orders").items_per_second == 2000.0


# -- backups ---------------------------------------------------------------------------------


def test_usable_backups_are_at_or_before_t_and_of_this_generation(ddb: Any) -> None:
    create_table(ddb, "orders")
    first = create_backup(ddb, "orders", "first")
    time.sleep(1.1)
    second = create_backup(ddb, "orders", "second")
    at = second.created_at
    assert [b.name for b in usable_backups(ddb, "orders", at, generation_created_at=None)] == [
        "first",
        "second",
    ]
    before_second = second.created_at - timedelta(milliseconds=500)
    assert [
        b.name for b in usable_backups(ddb, "orders", before_second, generation_created_at=None)
    ] == ["first"]
    # a backup older than the table generation alive at T belongs to its predecessor
    newer_generation = first.created_at + timedelta(milliseconds=500)
    assert [
        b.name for b in usable_backups(ddb, "orders", at, generation_created_at=newer_generation)
    ] == ["second"]


def test_backup_restore_into_an_existing_table_is_refused(ddb: Any) -> None:
    create_table(ddb, "orders")
    create_table(ddb, "taken")
    made = create_backup(ddb, "orders", "nightly")
    with pytest.raises(TargetTableExists):
        start_backup_restore(ddb, backup_arn=made.arn, target_table="taken")


class _Creating:
    """A DescribeTable that reports CREATING a few times, as AWS does during a restore."""

    def __init__(self, polls: int) -> None:
        self.polls = polls
        self.calls = 0

    def describe_table(self, TableName: str) -> dict[str, Any]:
        self.calls += 1
        status = "ACTIVE" if self.calls > self.polls else "CREATING"
        return {"Table": {"TableName": TableName, "TableStatus": status}}


def test_wait_until_active_polls_with_progress() -> None:
    fake = _Creating(polls=3)
    slept: list[float] = []
    description = wait_until_active(fake, "orders-restored", poll_seconds=7, sleep=slept.append)
    assert description["TableStatus"] == "ACTIVE"
    assert slept == [7, 7, 7]


# -- end to end over moto --------------------------------------------------------------------


def scan(ddb: Any, table: str) -> dict[str, str]:
    items: dict[str, str] = {}
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        for item in page["Items"]:
            items[canonical_json({"pk": item["pk"]})] = canonical_json(item)
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def next_whole_second(gap: float = 1.1) -> datetime:
    at = int(time.time()) + 1
    time.sleep(max(0.0, at + gap - time.time()))
    return datetime.fromtimestamp(at, tz=UTC)


def workload(ddb: Any, rng: random.Random, keys: range, n: int) -> None:
    for _ in range(n):
        pk = {"S": f"k{rng.choice(keys)}"}
        if rng.random() < 0.25:
            ddb.delete_item(TableName="orders", Key={"pk": pk})
        else:
            ddb.put_item(
                TableName="orders",
                Item={
                    "pk": pk,
                    "n": {"N": str(rng.randint(0, 999))},
                    "s": {"S": "x" * rng.randint(0, 20)},
                },
            )


def archive_once(archive: Archive) -> None:
    time.sleep(1.0)  # so the watermark (caught up − 2 s) passes the last phase
    code = archiver_cli.main(
        [
            "run",
            "--table-name",
            "orders",
            "--archive",
            archive.url,
            "--once",
            "--poll-seconds",
            "0.05",
        ]
    )
    assert code == 0


class RecordingDdb:
    """The moto client, with a PITR window that moves as AWS's does (moto's stays at the
    instant PITR was enabled) and a record of restore calls (moto ignores the restore time)."""

    def __init__(self, client: Any, earliest: datetime) -> None:
        self._client = client
        self.earliest = earliest
        self.pitr_restores: list[dict[str, Any]] = []

    def describe_continuous_backups(self, **kwargs: Any) -> dict[str, Any]:
        response = self._client.describe_continuous_backups(**kwargs)
        pitr = response["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        if pitr.get("PointInTimeRecoveryStatus") == "ENABLED":
            pitr["EarliestRestorableDateTime"] = self.earliest
            pitr["LatestRestorableDateTime"] = datetime.now(UTC)
        return response

    def restore_table_to_point_in_time(self, **kwargs: Any) -> dict[str, Any]:
        self.pitr_restores.append(kwargs)
        return dict(self._client.restore_table_to_point_in_time(**kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_backup_plus_log_tail_matches_the_table_at_t(
    ddb: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The log tail starts 60 s before the backup; a test cannot wait that long for items that
    # only the backup holds, so the margin shrinks to 1 s here.
    monkeypatch.setattr(strategies, "BACKUP_MARGIN", timedelta(seconds=1))
    create_table(ddb, "orders")
    for i in range(100, 120):  # older than the tail: only the backup has these
        ddb.put_item(TableName="orders", Item={"pk": {"S": f"k{i}"}, "old": {"BOOL": True}})
    time.sleep(1.5)
    rng = random.Random(11)
    workload(ddb, rng, range(30), 60)
    made = create_backup(ddb, "orders", "orders-nightly")
    at_backup = next_whole_second()
    at_backup_state = scan(ddb, "orders")
    workload(ddb, rng, range(15, 45), 60)
    at = next_whole_second()
    expected = scan(ddb, "orders")
    workload(ddb, rng, range(45), 60)
    archive_once(archive)

    for when, wanted, target in (
        (at_backup, at_backup_state, "restored-1"),
        (at, expected, "restored-2"),
    ):
        estimator = Estimator(ddb, archive, "orders", when, WriteRate(1000.0, "test"))
        choice = estimator.choose("backup")
        assert choice.chosen.backup is not None and choice.chosen.backup.arn == made.arn
        outcome = restore_native(
            ddb, archive, choice, source="orders", target=target, poll_seconds=0
        )
        assert outcome.tail is not None and outcome.tail.items + outcome.tail.deletes > 0
        restored = scan(ddb, target)
        assert restored == wanted
        assert sum('"old"' in item for item in restored.values()) == 20  # from the backup


def test_backup_strategy_refuses_t_after_the_watermark(ddb: Any, archive: Archive) -> None:
    create_table(ddb, "orders")
    ddb.put_item(TableName="orders", Item={"pk": {"S": "a"}})
    create_backup(ddb, "orders", "orders-nightly")
    archive_once(archive)
    estimator = Estimator(
        ddb, archive, "orders", datetime.now(UTC) + timedelta(hours=1), WriteRate(1000.0, "t")
    )
    with pytest.raises(Refused, match="watermark"):
        estimator.choose("backup")


def test_auto_prefers_pitr_inside_the_window_when_replay_is_slow(
    ddb: Any, archive: Archive
) -> None:
    create_table(ddb, "orders")
    ddb.update_continuous_backups(
        TableName="orders", PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    workload(ddb, random.Random(3), range(20), 40)
    at = next_whole_second()
    archive_once(archive)
    double = RecordingDdb(ddb, earliest=at - timedelta(hours=1))

    fast = Estimator(double, archive, "orders", at, WriteRate(1000.0, "test")).choose("auto")
    assert fast.chosen.strategy == "replay"  # a few items: seconds beat PITR's 20 minutes
    assert {e.strategy: e.usable for e in fast.estimates} == {
        "replay": True,
        "import": False,  # a local archive and no --staging
        "backup": False,
        "pitr": True,
    }
    slow = Estimator(double, archive, "orders", at, WriteRate(0.001, "test")).choose("auto")
    assert slow.chosen.strategy == "pitr"
    assert "fastest" in slow.reason
    outcome = restore_native(
        double, archive, slow, source="orders", target="orders-pitr", poll_seconds=0
    )
    assert double.pitr_restores == [
        {"SourceTableName": "orders", "TargetTableName": "orders-pitr", "RestoreDateTime": at}
    ]
    assert outcome.description["TableStatus"] == "ACTIVE"
    # outside the window PITR is not possible, and says why
    early = Estimator(double, archive, "orders", at - timedelta(hours=2), WriteRate(0.001, "t"))
    assert "outside the PITR window" in early.pitr().reason


# -- through the CLI -------------------------------------------------------------------------


def restore_cli(
    capsys: pytest.CaptureFixture[str], archive: Archive, target: str, *extra: str
) -> tuple[int, str, str]:
    code = replayer_cli.main(
        [
            "restore",
            "--source-table-name",
            "orders",
            "--target-table-name",
            target,
            "--archive",
            archive.url,
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_backup_strategy_with_copy_settings(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    arn = ddb.describe_table(TableName="orders")["Table"]["TableArn"]
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "team", "Value": "payments"}])
    ddb.update_time_to_live(
        TableName="orders", TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"}
    )
    rng = random.Random(5)
    workload(ddb, rng, range(20), 40)
    create_backup(ddb, "orders", "orders-nightly")
    workload(ddb, rng, range(10, 30), 40)
    at = next_whole_second()
    expected = scan(ddb, "orders")
    workload(ddb, rng, range(30), 40)
    archive_once(archive)
    when = str(int(at.timestamp()))

    code, out, _ = restore_cli(
        capsys,
        archive,
        "orders-restored",
        "--restore-date-time",
        when,
        "--strategy",
        "backup",
        "--copy-settings",
    )
    assert code == 0, out
    assert "strategy: backup" in out
    assert scan(ddb, "orders-restored") == expected
    assert out.index("verify: identical") < out.index("time to live")  # TTL only after verify
    tags = ddb.list_tags_of_resource(
        ResourceArn=ddb.describe_table(TableName="orders-restored")["Table"]["TableArn"]
    )["Tags"]
    assert tags == [{"Key": "team", "Value": "payments"}]
    ttl = ddb.describe_time_to_live(TableName="orders-restored")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "exp"}

    # the same again: the target exists now
    code, _, err = restore_cli(
        capsys, archive, "orders-restored", "--restore-date-time", when, "--strategy", "backup"
    )
    assert code == 4 and "already exists" in err


def test_cli_auto_dry_run_prints_estimates_and_creates_nothing(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    workload(ddb, random.Random(1), range(10), 20)
    at = next_whole_second()
    archive_once(archive)
    code, out, _ = restore_cli(
        capsys,
        archive,
        "orders-restored",
        "--restore-date-time",
        str(int(at.timestamp())),
        "--dry-run",
    )
    assert code == 0, out
    assert "estimates:" in out
    assert "replay" in out and "pitr" in out and "backup" in out
    assert "not enabled" in out  # why PITR is out
    assert "strategy: replay" in out
    assert "orders-restored" not in ddb.list_tables()["TableNames"]


def test_cli_pitr_strategy_inside_and_outside_the_window(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    ddb.put_item(TableName="orders", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    ddb.update_continuous_backups(
        TableName="orders", PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    window = ddb.describe_continuous_backups(TableName="orders")["ContinuousBackupsDescription"]
    # moto's window is one instant (when PITR was enabled) and never moves: restore to it.
    instant = window["PointInTimeRecoveryDescription"]["EarliestRestorableDateTime"]
    latest = window["PointInTimeRecoveryDescription"]["LatestRestorableDateTime"]
    time.sleep(1.5)  # the archive's watermark (caught up − 2 s) must pass the instant to verify
    archive_once(archive)

    code, out, err = restore_cli(
        capsys,
        archive,
        "orders-pitr",
        "--restore-date-time",
        f"{instant.timestamp():.6f}",
        "--strategy",
        "pitr",
    )
    assert code == 0, out + err
    assert "strategy: pitr" in out
    restored = ddb.describe_table(TableName="orders-pitr")["Table"]
    assert restored["TableStatus"] == "ACTIVE"
    assert scan(ddb, "orders-pitr") == scan(ddb, "orders")  # and verify agreed
    assert "verify: identical" in out

    # PITR's own latest restorable time (the archive's watermark is later than AWS's window)
    code, out, err = restore_cli(
        capsys, archive, "orders-latest", "--use-latest-restorable-time", "--strategy", "pitr"
    )
    assert code == 0, out + err
    assert f"as of {iso_ms(latest)}" in out

    code, _, err = restore_cli(
        capsys,
        archive,
        "orders-pitr-2",
        "--restore-date-time",
        "2020-01-01T00:00:00Z",
        "--strategy",
        "pitr",
    )
    assert code == 4
    assert "outside the PITR window" in err
    assert "orders-pitr-2" not in ddb.list_tables()["TableNames"]


def test_cli_backup_arn_newer_than_t_is_refused(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    ddb.put_item(TableName="orders", Item={"pk": {"S": "a"}})
    at = next_whole_second(gap=0.2)
    made = create_backup(ddb, "orders", "orders-later")
    archive_once(archive)
    code, _, err = restore_cli(
        capsys,
        archive,
        "orders-restored",
        "--restore-date-time",
        str(int(at.timestamp())),
        "--strategy",
        "backup",
        "--backup-arn",
        made.arn,
    )
    assert code == 4
    assert "after the restore time" in err


def test_cli_auto_replay_with_copy_settings(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    arn = ddb.describe_table(TableName="orders")["Table"]["TableArn"]
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "prod"}])
    ddb.update_time_to_live(
        TableName="orders", TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"}
    )
    workload(ddb, random.Random(2), range(15), 30)
    at = next_whole_second()
    expected = scan(ddb, "orders")
    workload(ddb, random.Random(3), range(15), 30)
    archive_once(archive)
    code, out, _ = restore_cli(
        capsys,
        archive,
        "orders-restored",
        "--restore-date-time",
        str(int(at.timestamp())),
        "--copy-settings",
    )
    assert code == 0, out
    assert "strategy: replay" in out
    assert scan(ddb, "orders-restored") == expected
    assert out.index("verify: identical") < out.index("time to live")
    restored = ddb.describe_table(TableName="orders-restored")["Table"]
    assert restored["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert ddb.list_tags_of_resource(ResourceArn=restored["TableArn"])["Tags"] == [
        {"Key": "env", "Value": "prod"}
    ]
    ttl = ddb.describe_time_to_live(TableName="orders-restored")["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
