"""``ddb-archiver run`` end to end over HTTP against the moto server."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.aws.clients import AwsSettings
from archiver.capture import change_writer as writer
from archiver.capture.change_writer import FlushPolicy
from archiver.capture.runner import RunConfig, execute
from archiver.cli import main
from archiver.format import changefiles, coverage, layout
from archiver.format.codec import canonical_json
from archiver.format.layout import pad_seq
from archiver.format.storage import Archive
from archiver.format.tables import table_id_of
from archiver.format.timefmt import as_utc, iso_ms, parse_iso, utcnow
from tests.conftest import create_table
from tests.helpers import rows_of, stream_records

TABLE = "people"
BIG = "12345678901234567890123456789012345678"  # 38 significant digits


def run_once(archive_url: str, *extra: str) -> int:
    return main(
        [
            "run",
            "--table-name",
            TABLE,
            "--archive",
            archive_url,
            "--once",
            "--poll-seconds",
            "0.05",
            *extra,
        ]
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mixed_workload(ddb: Any) -> None:
    """Every write API and every attribute type."""
    first = {
        "pk": {"S": "a"},
        "sk": {"N": "1"},
        "empty": {"S": ""},
        "unicode": {"S": "日本語 ✓ 🎉 Ωmega"},
        "big": {"N": BIG},
        "neg": {"N": "-12.50"},
        "bin": {"B": b"\x00\xffbin"},
        "empty_bin": {"B": b""},
        "ss": {"SS": ["z", "a", "é"]},
        "ns": {"NS": ["10", "9", "1.5"]},
        "bs": {"BS": [b"\x02", b"\x01"]},
        "map": {
            "M": {
                "bin": {"B": b"\x00\x01"},
                "nested": {"M": {"deep": {"B": b"\xfe"}}},
                "list": {"L": [{"B": b"\x03"}, {"S": "x"}]},
            }
        },
        "list": {
            "L": [{"B": b"\x04"}, {"M": {"b": {"B": b"\x05"}}}, {"NULL": True}, {"BOOL": False}]
        },
        "null": {"NULL": True},
        "flag": {"BOOL": True},
    }
    ddb.put_item(TableName=TABLE, Item=first)
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "b"}, "sk": {"N": "2"}, "v": {"N": "1"}})
    ddb.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "b"}, "sk": {"N": "2"}},
        UpdateExpression="SET w = :w, tags = list_append(if_not_exists(tags, :e), :t) ADD v :one",
        ExpressionAttributeValues={
            ":w": {"S": "ü"},
            ":t": {"L": [{"B": b"\x09"}]},
            ":e": {"L": []},
            ":one": {"N": "1"},
        },
    )
    ddb.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "a"}, "sk": {"N": "1"}},
        UpdateExpression="REMOVE #e",
        ExpressionAttributeNames={"#e": "empty"},
    )
    ddb.delete_item(TableName=TABLE, Key={"pk": {"S": "b"}, "sk": {"N": "2"}})
    ddb.batch_write_item(
        RequestItems={
            TABLE: [
                {
                    "PutRequest": {
                        "Item": {
                            "pk": {"S": f"batch{i}"},
                            "sk": {"N": str(i)},
                            "x": {"N": f"{i}.0"},
                        }
                    }
                }
                for i in range(3)
            ]
            + [{"DeleteRequest": {"Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}}}]
        }
    )
    ddb.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": TABLE,
                    "Item": {
                        "pk": {"S": "tx"},
                        "sk": {"N": "-1"},
                        "m": {"M": {"b": {"B": b"\x07"}}},
                    },
                }
            },
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": {"pk": {"S": "batch0"}, "sk": {"N": "0"}},
                    "UpdateExpression": "SET y = :y",
                    "ExpressionAttributeValues": {":y": {"SS": ["q"]}},
                }
            },
            {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "batch1"}, "sk": {"N": "1"}}}},
        ]
    )


@pytest.fixture
def table(ddb: Any) -> dict[str, Any]:
    return create_table(ddb, TABLE, range_key="sk", key_types=("S", "N"))


def test_every_record_of_a_mixed_workload_is_archived_once_with_every_column_right(
    ddb: Any, table: dict[str, Any], archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    mixed_workload(ddb)
    arn, shard, expected = stream_records(TABLE)
    assert len(expected) == 12

    with caplog.at_level(logging.INFO):
        assert run_once(archive.url) == 0

    rows = rows_of(archive, TABLE)
    assert len(rows) == len(expected)
    table_id = table_id_of(ddb.describe_table(TableName=TABLE)["Table"])
    for row, record in zip(rows, expected, strict=True):
        ddb_part = record["dynamodb"]
        assert row["event_id"] == record["eventID"]
        assert row["event_name"] == record["eventName"]
        assert row["event_time"] == as_utc(ddb_part["ApproximateCreationDateTime"]).replace(
            microsecond=ddb_part["ApproximateCreationDateTime"].microsecond // 1000 * 1000
        )
        assert row["sequence_number"] == pad_seq(ddb_part["SequenceNumber"])
        assert row["shard_id"] == shard
        assert row["stream_arn"] == arn
        assert row["table_id"] == table_id
        assert row["keys"] == canonical_json(ddb_part["Keys"])
        assert row["new_image"] == (
            canonical_json(ddb_part["NewImage"]) if "NewImage" in ddb_part else None
        )
        assert row["old_image"] == (
            canonical_json(ddb_part["OldImage"]) if "OldImage" in ddb_part else None
        )
        assert row["size_bytes"] == ddb_part["SizeBytes"]
        assert row["user_identity"] is None
        assert row["origin"] == "stream"
    assert [r["event_name"] for r in rows] == [
        "INSERT",
        "INSERT",
        "MODIFY",
        "MODIFY",
        "REMOVE",
        "INSERT",
        "INSERT",
        "INSERT",
        "REMOVE",
        "INSERT",
        "MODIFY",
        "REMOVE",
    ]

    # The first item, as written, spelled out in canonical DynamoDB JSON by hand.
    first = json.loads(rows[0]["new_image"])
    assert first["big"] == {"N": BIG}
    assert first["neg"] == {"N": "-12.5"}
    assert first["empty"] == {"S": ""}
    assert first["unicode"] == {"S": "日本語 ✓ 🎉 Ωmega"}
    assert first["bin"] == {"B": b64(b"\x00\xffbin")}
    assert first["empty_bin"] == {"B": ""}
    assert first["ss"] == {"SS": ["a", "z", "é"]}
    assert first["ns"] == {"NS": ["1.5", "9", "10"]}
    assert first["bs"] == {"BS": [b64(b"\x01"), b64(b"\x02")]}
    assert first["map"]["M"]["bin"] == {"B": b64(b"\x00\x01")}
    assert first["map"]["M"]["nested"]["M"]["deep"] == {"B": b64(b"\xfe")}
    assert first["map"]["M"]["list"]["L"][0] == {"B": b64(b"\x03")}
    assert first["list"]["L"] == [
        {"B": b64(b"\x04")},
        {"M": {"b": {"B": b64(b"\x05")}}},
        {"NULL": True},
        {"BOOL": False},
    ]
    assert list(first) == sorted(first)
    # Per key, the last archived image is the item as the table holds it now.
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest[row["keys"]] = row
    live = {
        canonical_json({k: i[k] for k in ("pk", "sk")}): canonical_json(i)
        for i in ddb.scan(TableName=TABLE)["Items"]
    }
    assert {k: r["new_image"] for k, r in latest.items() if r["event_name"] != "REMOVE"} == live
    assert {k for k, r in latest.items() if r["event_name"] == "REMOVE"}.isdisjoint(live)
    assert "people: done: 12 records in 1 files from 1 stream(s), 1 shard(s)" in caplog.text


@pytest.mark.parametrize("where", ["local", "s3"])
def test_second_run_adds_nothing_later_run_adds_exactly_the_new_records(
    ddb: Any, table: dict[str, Any], request: pytest.FixtureRequest, where: str
) -> None:
    archive: Archive = request.getfixturevalue("archive" if where == "local" else "s3_archive")
    for i in range(20):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}})
    assert run_once(archive.url) == 0
    files = archive.find(layout.CHANGES, ".parquet")
    assert len(rows_of(archive, TABLE)) == 20

    assert run_once(archive.url) == 0
    assert archive.find(layout.CHANGES, ".parquet") == files

    for i in range(3):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"new{i}"}, "sk": {"N": "0"}})
    assert run_once(archive.url) == 0
    rows = rows_of(archive, TABLE)
    assert len(rows) == 23
    assert len({r["event_id"] for r in rows}) == 23
    new_files = sorted(set(archive.find(layout.CHANGES, ".parquet")) - set(files))
    assert len(new_files) == 1
    assert sorted(
        json.loads(r["keys"])["pk"]["S"] for r in archive.read_parquet(new_files[0]).to_pylist()
    ) == ["new0", "new1", "new2"]


def test_crash_between_parquet_write_and_checkpoint_loses_and_duplicates_nothing(
    ddb: Any, table: dict[str, Any], archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(10):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}})
    assert run_once(archive.url) == 0
    checkpoint_dir = f"{layout.checkpoints_dir(TABLE)}"
    (checkpoint_path,) = archive.find(checkpoint_dir, ".json")
    before = archive.read_json(checkpoint_path)
    for i in range(10, 25):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}})

    real = changefiles.write_checkpoint
    crashes = []

    def crash_once(*args: Any, **kwargs: Any) -> None:
        if not crashes:
            crashes.append(1)
            raise RuntimeError("injected crash after the Parquet write")
        real(*args, **kwargs)

    # Patched where ChangeWriter looks it up: the name archiver.capture.change_writer imported.
    monkeypatch.setattr(writer, "write_checkpoint", crash_once)
    assert run_once(archive.url) == 1
    # The new file is durable, the checkpoint still points before it.
    assert len(archive.find(layout.CHANGES, ".parquet")) == 2
    assert archive.read_json(checkpoint_path) == before

    assert run_once(archive.url) == 0
    rows = rows_of(archive, TABLE)
    assert len(rows) == 25 and len({r["event_id"] for r in rows}) == 25
    assert len(archive.find(layout.CHANGES, ".parquet")) == 2
    after = archive.read_json(checkpoint_path)
    assert pad_seq(after["sequence_number"]) == rows[-1]["sequence_number"]

    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "last"}, "sk": {"N": "0"}})
    assert run_once(archive.url) == 0
    rows = rows_of(archive, TABLE)
    assert len(rows) == 26 and len({r["event_id"] for r in rows}) == 26


def test_first_crash_before_any_checkpoint_resumes_from_the_files(
    ddb: Any, table: dict[str, Any], archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}})

    real = changefiles.write_checkpoint

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected crash")

    monkeypatch.setattr(writer, "write_checkpoint", crash)
    assert run_once(archive.url) == 1
    assert archive.find(layout.checkpoints_dir(TABLE), ".json") == []
    assert len(archive.find(layout.CHANGES, ".parquet")) == 1
    monkeypatch.setattr(writer, "write_checkpoint", real)
    assert run_once(archive.url) == 0
    rows = rows_of(archive, TABLE)
    assert len(rows) == 5 and len({r["event_id"] for r in rows}) == 5


def test_coverage_of_a_table_created_with_its_stream_starts_at_creation(
    ddb: Any, table: dict[str, Any], archive: Archive
) -> None:
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    before = utcnow()
    assert run_once(archive.url) == 0
    doc = coverage.current(archive, TABLE)
    assert doc is not None
    created = iso_ms(table["CreationDateTime"])
    assert doc["from_table_creation"] is True
    assert doc["covered_from"] == created == doc["table_created_at"]
    assert doc["mode"] == "poller"
    assert doc["table_arn"] == table["TableArn"]
    assert doc["table_id"] == table_id_of(table)
    assert coverage.generations(archive, TABLE) == [doc]
    watermark = parse_iso(doc["watermark"])
    # Caught up during the run, minus the 2 s margin.
    assert before - timedelta(seconds=2) <= watermark <= utcnow() - timedelta(seconds=2)


def test_coverage_of_a_stream_enabled_on_an_existing_table_does_not_start_at_creation(
    ddb: Any, archive: Archive
) -> None:
    create_table(ddb, TABLE, range_key="sk", key_types=("S", "N"), stream=None)
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "before"}, "sk": {"N": "1"}})
    time.sleep(1.2)
    ddb.update_table(
        TableName=TABLE, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    )
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "after"}, "sk": {"N": "1"}})
    label = ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamLabel"]
    assert run_once(archive.url) == 0
    doc = coverage.current(archive, TABLE)
    assert doc is not None
    assert doc["from_table_creation"] is False
    assert doc["covered_from"] == iso_ms(parse_iso(label + "Z"))
    assert [json.loads(r["keys"])["pk"]["S"] for r in rows_of(archive, TABLE)] == ["after"]
    assert rows_of(archive, TABLE)[0]["old_image"] is None  # NEW_IMAGE stream


def test_recreated_table_starts_a_new_generation(
    ddb: Any, table: dict[str, Any], archive: Archive
) -> None:
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "old"}, "sk": {"N": "1"}})
    assert run_once(archive.url) == 0
    old_id = coverage.current(archive, TABLE)["table_id"]  # type: ignore[index]
    ddb.delete_table(TableName=TABLE)
    time.sleep(0.01)
    new_table = create_table(ddb, TABLE, range_key="sk", key_types=("S", "N"))
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "new"}, "sk": {"N": "1"}})
    assert run_once(archive.url) == 0
    generations = coverage.generations(archive, TABLE)
    assert [g["table_id"] for g in generations] == [old_id, table_id_of(new_table)]
    assert generations[0]["watermark"] is not None
    by_key = {json.loads(r["keys"])["pk"]["S"]: r["table_id"] for r in rows_of(archive, TABLE)}
    assert by_key == {"old": old_id, "new": table_id_of(new_table)}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "table 'people' does not exist"),
        ("no-stream", "table 'people' has no stream"),
        ("KEYS_ONLY", "has a KEYS_ONLY stream: replay needs new images"),
        ("OLD_IMAGE", "has a OLD_IMAGE stream: replay needs new images"),
        ("other-account", "already holds table 'people' of account 999999999999 in us-east-1"),
        ("other-region", "already holds table 'people' of account 123456789012 in eu-west-1"),
    ],
)
def test_refusals_are_one_line_and_exit_2(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    if setup == "no-stream":
        create_table(ddb, TABLE, stream=None)
    elif setup in ("KEYS_ONLY", "OLD_IMAGE"):
        create_table(ddb, TABLE, stream=setup)
    elif setup.startswith("other"):
        create_table(ddb, TABLE)
        arn = {
            "other-account": f"arn:aws:dynamodb:us-east-1:999999999999:table/{TABLE}",
            "other-region": f"arn:aws:dynamodb:eu-west-1:123456789012:table/{TABLE}",
        }[setup]
        archive.write_json(
            layout.coverage(TABLE), {"table": TABLE, "table_arn": arn, "table_id": "x"}
        )
    assert run_once(archive.url) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert message in err[0]
    assert "Traceback" not in err[0]
    if not setup.startswith("other"):
        assert archive.find("", "") == []  # nothing written


def test_flush_by_record_count_writes_several_files_per_run(
    ddb: Any, table: dict[str, Any], archive: Archive
) -> None:
    for i in range(12):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}})
    assert run_once(archive.url, "--flush-records", "5") == 0
    # One page of 12 records reaches the limit: flushed as one file at once.
    assert len(archive.find(layout.CHANGES, ".parquet")) == 1
    for i in range(3):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"m{i}"}, "sk": {"N": str(i)}})
    assert run_once(archive.url, "--flush-bytes", "1KiB") == 0
    assert len(rows_of(archive, TABLE)) == 15


def test_bad_flags_exit_2(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run_once(archive.url, "--flush-records", "0")
    assert exc.value.code == 2
    assert "must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_once(archive.url, "--flush-bytes", "lots")
    assert "is not a size" in capsys.readouterr().err
    assert main(["run", "--table-name", TABLE, "--archive", "ftp://x", "--once"]) == 2


def test_sigterm_flushes_and_checkpoints_before_exiting(
    ddb: Any, table: dict[str, Any], archive_path: Path
) -> None:
    for i in range(20):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}})
    command = [
        sys.executable,
        "-m",
        "archiver.cli",
        "run",
        "--table-name",
        TABLE,
        "--archive",
        str(archive_path),
        "--poll-seconds",
        "0.05",
        "--flush-seconds",
        "3600",
        "--progress-seconds",
        "0.2",
    ]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        command, cwd=root, env=dict(os.environ), stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any("20 records read" in line for line in lines):
        assert proc.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "".join(lines)
        time.sleep(0.05)
    archive = Archive.open(str(archive_path))
    assert archive.find(layout.CHANGES, ".parquet") == []  # still buffered
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    reader.join(timeout=5)
    text = "".join(lines)
    assert "stopping, flushing buffers" in text
    assert "stopped: 20 records in 1 files" in text
    assert len(rows_of(archive, TABLE)) == 20
    (checkpoint,) = archive.find(layout.checkpoints_dir(TABLE), ".json")
    assert (
        pad_seq(archive.read_json(checkpoint)["sequence_number"])
        == rows_of(archive, TABLE)[-1]["sequence_number"]
    )


# -- coverage.json and gaps.jsonl -----------------------------------------------------------


def test_watermark_never_moves_back_and_generations_keep_history(archive: Archive) -> None:
    now = utcnow()
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t1"
    coverage.open_generation(
        archive,
        "t1",
        table_arn=arn,
        table_id="g1",
        table_created_at=now - timedelta(days=3),
        covered_from=now - timedelta(days=3),
        from_table_creation=True,
        mode="poller",
    )
    coverage.advance_watermark(archive, "t1", "g1", now - timedelta(hours=1))
    coverage.advance_watermark(archive, "t1", "g1", now - timedelta(hours=2))
    assert coverage.current(archive, "t1")["watermark"] == iso_ms(now - timedelta(hours=1))  # type: ignore[index]
    # Reopening the same generation keeps covered_from and the watermark.
    coverage.open_generation(
        archive,
        "t1",
        table_arn=arn,
        table_id="g1",
        table_created_at=now - timedelta(days=3),
        covered_from=now,
        from_table_creation=False,
        mode="lambda",
    )
    current = coverage.current(archive, "t1")
    assert current is not None
    assert current["covered_from"] == iso_ms(now - timedelta(days=3))
    assert current["from_table_creation"] is True and current["mode"] == "lambda"
    # A new table_id moves the old generation into previous.
    coverage.open_generation(
        archive,
        "t1",
        table_arn=arn,
        table_id="g2",
        table_created_at=now,
        covered_from=now,
        from_table_creation=True,
        mode="poller",
    )
    generations = coverage.generations(archive, "t1")
    assert [g["table_id"] for g in generations] == ["g1", "g2"]
    assert generations[0]["watermark"] == iso_ms(now - timedelta(hours=1))
    assert generations[1]["watermark"] is None
    coverage.check_owner(archive, "t1", arn)  # same account and region: fine


def test_initial_window_follows_the_design() -> None:
    now = utcnow()
    created = now - timedelta(hours=1)
    assert coverage.initial_window(
        table_created_at=created, stream_created_at=created, now=now
    ) == (created, True)
    later = created + timedelta(minutes=5)
    assert coverage.initial_window(table_created_at=created, stream_created_at=later, now=now) == (
        later,
        False,
    )
    old = now - timedelta(days=3)
    assert coverage.initial_window(table_created_at=old, stream_created_at=old, now=now) == (
        now - timedelta(hours=24),
        False,
    )


def test_streams_are_attributed_to_the_generation_alive_when_they_were_created() -> None:
    old_created = parse_iso("2026-01-31T12:00:00.100Z")
    new_created = parse_iso("2026-01-31T12:00:00.900Z")
    gen = writer.LiveGeneration("new", new_created, new_created, previous=((old_created, "old"),))
    # The old table's stream, 0.8 s before the new table: the old table existed then.
    assert gen.table_id_at(old_created) == "old"
    assert gen.table_id_at(new_created) == "new"
    assert gen.table_id_at(old_created - timedelta(seconds=1)) is None
    # With no older generation, a stream up to 1 s before the table was created with it.
    alone = writer.LiveGeneration("only", new_created, new_created)
    assert alone.owns(new_created - timedelta(milliseconds=500))
    assert not alone.owns(new_created - timedelta(seconds=2))


def test_a_table_recreated_while_running_is_followed(
    ddb: Any, table: dict[str, Any], archive: Archive
) -> None:
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "old"}, "sk": {"N": "1"}})
    config = RunConfig(
        table_name=TABLE,
        archive_url=archive.url,
        poll_seconds=0.05,
        describe_seconds=0.2,
        persist_seconds=0.1,
        flush=FlushPolicy(seconds=0.2),
    )

    def keys() -> list[str]:
        return sorted(json.loads(r["keys"])["pk"]["S"] for r in rows_of(archive, TABLE))

    async def go() -> int:
        stop = asyncio.Event()

        async def recreate_then_stop() -> None:
            while keys() != ["old"]:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(ddb.delete_table, TableName=TABLE)
            await asyncio.to_thread(create_table, ddb, TABLE, range_key="sk", key_types=("S", "N"))
            await asyncio.to_thread(
                ddb.put_item, TableName=TABLE, Item={"pk": {"S": "new"}, "sk": {"N": "1"}}
            )
            for _ in range(300):
                if keys() == ["new", "old"]:
                    break
                await asyncio.sleep(0.05)
            stop.set()

        helper = asyncio.create_task(recreate_then_stop())
        code = await execute(config, AwsSettings(), archive, stop=stop)
        await helper
        return code

    assert asyncio.run(go()) == 0
    assert keys() == ["new", "old"]
    generations = coverage.generations(archive, TABLE)
    assert len(generations) == 2
    assert {r["table_id"] for r in rows_of(archive, TABLE)} == {g["table_id"] for g in generations}
