"""``ddb-replayer status`` over an archive built with the archiver's own state functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.format import changefiles, coverage, gap_log, layout
from archiver.format.manifests import SnapshotWriter
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow
from replayer import cli as replayer_cli
from tests.changes_builder import record, stream_arn
from tests.export_fixtures import write_export

TABLE = "orders"
OLD_ID = "00000000-old0-gen0-0000-000000000000"
TABLE_ID = "11111111-2222-3333-4444-555555555555"
ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"
LABEL = "2026-01-31T00:00:00.000"
CREATED = datetime(2026, 1, 31, 0, 0, tzinfo=UTC)


def build_archive(archive: Archive) -> dict[str, Any]:
    """Two generations of ``orders`` with a gap, change files, a checkpoint per shard, a
    snapshot and an export not converted yet; plus a second table with only a snapshot."""
    coverage.open_generation(
        archive,
        TABLE,
        table_arn=ARN,
        table_id=OLD_ID,
        table_created_at=CREATED - timedelta(days=9),
        covered_from=CREATED - timedelta(days=9),
        from_table_creation=True,
        mode="poller",
    )
    coverage.advance_watermark(archive, TABLE, OLD_ID, CREATED - timedelta(days=1))
    coverage.open_generation(
        archive,
        TABLE,
        table_arn=ARN,
        table_id=TABLE_ID,
        table_created_at=CREATED,
        covered_from=CREATED,
        from_table_creation=False,
        mode="poller",
    )
    watermark = utcnow() - timedelta(seconds=30)
    coverage.advance_watermark(archive, TABLE, TABLE_ID, watermark)
    arn = stream_arn(TABLE, LABEL)
    gap_log.append_gap(
        archive,
        TABLE,
        table_id=TABLE_ID,
        stream_arn=arn,
        shard_id="shardId-0001",
        start=CREATED + timedelta(hours=1),
        end=CREATED + timedelta(hours=2),
        reason=gap_log.GAP_TRIMMED,
    )
    key = {"pk": {"S": "a"}}
    for shard, seqs in (("shardId-0001", range(1, 4)), ("shardId-0002", range(10, 12))):
        records = [record(seq, key, "MODIFY", new={**key, "n": {"N": str(seq)}}) for seq in seqs]
        changefiles.write_records(
            archive,
            TABLE,
            records,
            stream_arn=arn,
            shard_id=shard,
            table_id=TABLE_ID,
            origin="stream",
        )
        last = records[-1]["dynamodb"]
        changefiles.write_checkpoint(
            archive,
            TABLE,
            {
                "stream_arn": arn,
                "shard_id": shard,
                "parent_shard_id": None if shard.endswith("1") else "shardId-0001",
                "sequence_number": layout.pad_seq(last["SequenceNumber"]),
                "event_time": iso_ms(last["ApproximateCreationDateTime"]),
                "caught_up_at": iso_ms(watermark) if shard.endswith("2") else None,
                "closed": shard.endswith("1"),
                "updated_at": iso_ms(watermark),
            },
        )
    snap = SnapshotWriter(archive, TABLE, "20260131T010000000Z-aaaaaa")
    for n in range(3):
        snap.add(f'{{"pk":{{"S":"{n}"}}}}', f'{{"pk":{{"S":"{n}"}}}}')
    manifest = snap.commit(
        table_id=TABLE_ID,
        method="scan",
        valid_from=CREATED + timedelta(hours=1, seconds=5),
        log_from=CREATED + timedelta(minutes=59, seconds=55),
        started_at=CREATED,
        finished_at=CREATED + timedelta(hours=1),
        key_schema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        source=ARN,
    )
    export = write_export(
        Archive(archive.fs, archive.path(layout.EXPORTS), archive.uri(layout.EXPORTS)),
        [{"pk": {"S": "x"}}],
        table_arn=ARN,
        table_id=TABLE_ID,
        export_time=CREATED + timedelta(hours=3),
    )
    other = SnapshotWriter(archive, "customers", "20260131T020000000Z-bbbbbb")
    other.commit(
        table_id="c",
        method="scan",
        valid_from=CREATED,
        log_from=CREATED,
        started_at=CREATED,
        finished_at=CREATED,
        key_schema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        source="c",
    )
    return {"watermark": watermark, "manifest": manifest, "export_id": export.export_id}


def status(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = replayer_cli.main(["status", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_json_reports_every_part_of_a_table(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_archive(archive)
    code, out, _ = status(capsys, "--archive", str(archive.root), "--table-name", TABLE, "--json")
    assert code == 0
    report = json.loads(out)
    (orders,) = report["tables"]
    assert orders["table"] == TABLE and orders["table_id"] == TABLE_ID
    assert orders["coverage"] == {
        "covered_from": iso_ms(CREATED),
        "from_table_creation": False,
        "mode": "poller",
        "table_created_at": iso_ms(CREATED),
    }
    assert orders["watermark"] == iso_ms(built["watermark"])
    assert 29 <= orders["lag_seconds"] < 90
    assert [g["table_id"] for g in orders["previous_generations"]] == [OLD_ID]
    assert orders["gaps"]["count"] == 1
    assert orders["gaps"]["list"][0]["reason"] == "trimmed"
    assert orders["snapshots"] == [
        {
            "snapshot_id": "20260131T010000000Z-aaaaaa",
            "method": "scan",
            "valid_from": built["manifest"]["valid_from"],
            "log_from": built["manifest"]["log_from"],
            "item_count": 3,
            "table_id": TABLE_ID,
        }
    ]
    assert orders["exports_pending_conversion"] == [built["export_id"]]
    (stream,) = orders["streams"]
    assert stream["label"] == LABEL
    shards = {s["shard_id"]: s for s in stream["shards"]}
    assert shards["shardId-0001"]["closed"] is True
    assert shards["shardId-0001"]["sequence_number"] == layout.pad_seq(3)
    assert shards["shardId-0002"]["caught_up_at"] == iso_ms(built["watermark"])
    assert shards["shardId-0002"]["event_time"] is not None
    assert orders["files"]["changes"]["count"] == 2
    assert orders["files"]["changes"]["bytes"] > 0
    assert orders["files"]["snapshots"]["count"] == 1
    assert orders["last_run"] is not None


def test_status_human_output_lists_all_tables(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_archive(archive)
    code, out, _ = status(capsys, "--archive", str(archive.root))
    assert code == 0
    assert out.index("customers") < out.index("orders")
    assert f"watermark    {iso_ms(built['watermark'])} (lag " in out
    assert "gaps         1" in out and "trimmed (shardId-0001)" in out
    assert "20260131T010000000Z-aaaaaa  scan" in out and "3 items" in out
    assert f"not converted yet (done on first use): {built['export_id']}" in out
    assert "streams      1, shards 2 (1 closed)" in out
    assert "files        changes 2 (" in out
    assert f"earlier      table id {OLD_ID}" in out


def test_unknown_table_is_exit_2_with_the_archived_tables(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    build_archive(archive)
    code, out, err = status(capsys, "--archive", str(archive.root), "--table-name", "nope")
    assert code == 2
    assert out == ""
    assert "table nope is not in archive" in err
    assert "archived tables: customers, orders" in err


def test_empty_archive_says_so(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    (Path(str(archive.root)) / layout.STATE).mkdir(parents=True)
    code, out, _ = status(capsys, "--archive", str(archive.root))
    assert code == 0 and "holds no tables" in out
    code, out, _ = status(capsys, "--archive", str(archive.root), "--json")
    assert json.loads(out)["tables"] == []


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_root_that_holds_no_archive_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], json_flag: list[str]
) -> None:
    """A mistyped --archive is refused in one line, as ``query`` refuses it."""
    code, out, err = status(capsys, "--archive", str(tmp_path / "typo"), *json_flag)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert "holds no archive" in err and "typo" in err


def test_status_reads_an_s3_archive(
    s3_archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    build_archive(s3_archive)
    code, out, _ = status(capsys, "--archive", s3_archive.url, "--json")
    assert code == 0
    tables = {t["table"]: t for t in json.loads(out)["tables"]}
    assert set(tables) == {"customers", "orders"}
    assert tables["orders"]["files"]["changes"]["count"] == 2
    assert tables["customers"]["coverage"] is None
