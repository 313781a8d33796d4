"""Everything downstream of the capture is source-agnostic: an archive captured from Kinesis
(three days of history, two shards, duplicates, a reshard) checks clean, compacts, restores
into a table and verifies, answers history, forgets a key and expires old days — with the
same commands as an archive captured from DynamoDB Streams."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archiver.aws import describe
from archiver.cli import main as archiver_main
from archiver.format import chain, changefiles, footers, layout
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from tests.conftest import create_table
from tests.kinesis_double import DestinationDouble, KinesisDouble
from tests.kinesis_helpers import History, capture, micros_of, restored, shuffled_with_duplicates
from tests.replay_helpers import replayer, write_snapshot
from tests.workload import scan_state

TABLE = "orders"
DAYS_AGO = 3


@pytest.fixture
def captured(
    ddb: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> tuple[History, datetime]:
    """A table created three days ago (as its description says), its history since then
    captured from a Kinesis double: returns the history and the table's creation."""
    create_table(ddb, TABLE, stream=None)
    created = (datetime.now(UTC) - timedelta(days=DAYS_AGO)).replace(microsecond=0)
    real = describe.describe

    async def aged(*args: Any, **kwargs: Any) -> dict[str, Any]:
        doc = await real(*args, **kwargs)
        doc["Table"]["CreationDateTime"] = iso_ms(created)
        return doc

    monkeypatch.setattr(describe, "describe", aged)
    stream = KinesisDouble(shards=2, retention_hours=24 * 7, page_size=4)
    destinations = DestinationDouble()
    destinations.set(TABLE, stream.arn)
    assert capture(archive, TABLE, stream.arn, destinations, kinesis_client=stream) == 0
    generation = json.loads(archive.get_bytes(layout.coverage(TABLE)))
    # The log is complete from the table's creation: as if the capture ran since then.
    generation["covered_from"] = iso_ms(created)
    archive.write_json(layout.coverage(TABLE), generation)
    write_snapshot(archive, [], valid_from=created, log_from=created, table=TABLE,
                   table_id=generation["table_id"])  # fmt: skip

    history = History(TABLE)
    base = micros_of(created) + 1_000_000
    for n in range(30):  # over three days: records in three dt partitions
        micros = base + n * 2 * 3_600_000_000 + (n % 4)
        history.write(f"k{n % 4}", micros, None if n % 9 == 8 else f"v{n}")
    steps = list(shuffled_with_duplicates(history.steps, seed=5))
    for n, step in enumerate(steps[:25]):
        stream.put(step.doc, shard=n % 2, arrival=datetime.fromtimestamp(step.micros / 1e6, UTC))
    children = stream.split(stream.open_shards()[0])
    for n, step in enumerate(steps[25:]):
        stream.put(
            step.doc, shard=children[n % 2], arrival=datetime.fromtimestamp(step.micros / 1e6, UTC)
        )
    assert (
        capture(archive, TABLE, stream.arn, destinations, kinesis_client=stream, flush_records=3)
        == 0
    )
    return history, created


def archiver(*argv: str) -> int:
    return archiver_main(list(argv))


def test_check_compact_history_and_restore_into_a_table(
    ddb: Any,
    archive: Archive,
    captured: tuple[History, datetime],
    capsys: pytest.CaptureFixture[str],
) -> None:
    history, _ = captured
    assert archiver("check", "--table-name", TABLE, "--archive", archive.url, "--deep") == 0
    before = len(archive.find("changes", ".parquet"))
    assert archiver("compact", "--table-name", TABLE, "--archive", archive.url,
                    "--grace-seconds", "0", "--target-size", "64") == 0  # fmt: skip
    files = archive.find("changes", ".parquet")
    assert len(files) < before
    merged = [footers.read_state(archive, f).footer for f in files]
    assert all(f is not None and f.kinesis is not None for f in merged)
    assert chain.verify_files(archive, files, context=files) == []
    assert archiver("check", "--table-name", TABLE, "--archive", archive.url, "--deep") == 0

    last = history.instants()[-1]
    middle = history.instants()[len(history.instants()) // 2]
    assert restored(archive, TABLE, middle) == history.state_at(middle)
    when = datetime.fromtimestamp(last / 1000, UTC).isoformat()
    code, out, err = replayer(capsys, "restore", "--source-table-name", TABLE,
                              "--target-table-name", "orders-restored", "--archive", archive.url,
                              "--restore-date-time", when)  # fmt: skip
    assert code == 0, err
    assert "verify: identical" in out
    assert scan_state(ddb, "orders-restored") == history.state_at(last)

    code, out, err = replayer(capsys, "history", "--table-name", TABLE, "--archive", archive.url,
                              "--key", '{"pk": {"S": "k1"}}', "--format", "json")  # fmt: skip
    assert code == 0, err
    shown = [change["event_id"] for change in json.loads(out)]
    assert shown == [s.event_id for s in history.steps if s.pk == "k1"]


def test_forget_and_expire_work_on_kinesis_rows(
    archive: Archive, captured: tuple[History, datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    history, created = captured
    assert archiver("forget", "--table-name", TABLE, "--archive", archive.url,
                    "--key", '{"pk": {"S": "k2"}}') == 0  # fmt: skip
    rows = [
        r for f in archive.find("changes", ".parquet") for r in archive.read_parquet(f).to_pylist()
    ]
    assert rows and not any(r["keys"] == '{"pk":{"S":"k2"}}' for r in rows)
    assert archiver("check", "--table-name", TABLE, "--archive", archive.url, "--deep") == 0
    last = history.instants()[-1]
    assert restored(archive, TABLE, last) == {
        k: v for k, v in history.state_at(last).items() if k != '{"pk":{"S":"k2"}}'
    }

    assert archiver("expire", "--table-name", TABLE, "--archive", archive.url,
                    "--older-than", "1d") == 0  # fmt: skip
    horizon = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=1
    )
    heads = {
        (doc["shard_id"], layout.pad_seq(doc["sequence_number"]))
        for doc in changefiles.read_checkpoints(archive, TABLE, layout.KINESIS_LABEL).values()
    }
    for rel in archive.find("changes", ".parquet"):
        parsed = layout.parse_change_file(rel)
        assert parsed is not None and parsed.name is not None
        # Older days are gone but for each shard's last file, which its checkpoint names.
        old = parsed.dt < horizon.strftime("%Y-%m-%d")
        assert not old or (parsed.name.shard_id, parsed.name.last_seq) in heads, rel
    assert archiver("check", "--table-name", TABLE, "--archive", archive.url, "--deep") == 0
    assert restored(archive, TABLE, last) == {
        k: v for k, v in history.state_at(last).items() if k != '{"pk":{"S":"k2"}}'
    }
    assert time.time() > created.timestamp()
