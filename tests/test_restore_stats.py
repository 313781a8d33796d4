"""``restore-stats.json``, the measured rates every restore strategy reads and the finished ones
rewrite: a broken one stops every strategy before anything is created, naming it (exit 2), and
is never overwritten — not even by a restore that got past the first read."""

from __future__ import annotations

from typing import Any

import pytest

from archiver.format import layout
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from replayer.strategies.choice import WriteRate, record_write_rate
from replayer.strategies.import_model import ImportModel, record_import
from tests.replay_helpers import (
    TABLE,
    Change,
    at,
    item,
    key,
    replayer,
    write_changes,
    write_coverage,
    write_description,
)

BROKEN = b'{"items": 120, "seconds": 1.5, "items_per_sec'  # truncated mid-write
TARGET = "orders-copy"


def restorable(archive: Archive) -> None:
    """120 items from the table's creation: enough for a replay to record its write rate."""
    write_coverage(archive, watermark=at(1000))
    write_description(archive)
    write_changes(
        archive, [Change(n + 1, key(f"k{n}"), item(f"k{n}", n=n), at(10)) for n in range(120)]
    )


@pytest.mark.parametrize("strategy", ["auto", "replay", "pitr", "backup", "import"])
def test_a_broken_stats_file_stops_every_strategy_and_stays_as_it_was(
    archive: Archive, ddb: Any, capsys: pytest.CaptureFixture[str], strategy: str
) -> None:
    restorable(archive)
    rel = layout.restore_stats(TABLE)
    archive.put_bytes(rel, BROKEN)
    staging = ["--staging", "s3://staging-bucket/stage"] if strategy == "import" else []
    code, _, err = replayer(capsys, "restore", "--source-table-name", TABLE,
                            "--target-table-name", TARGET, "--archive", archive.url,
                            "--restore-date-time", iso_ms(at(100)), "--strategy", strategy,
                            *staging)  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and archive.uri(rel) in lines[0], err
    assert "truncated or not JSON" in lines[0]
    assert archive.get_bytes(rel) == BROKEN
    assert TARGET not in ddb.list_tables()["TableNames"]


def test_the_estimates_refuse_a_broken_file_naming_it(archive: Archive) -> None:
    rel = layout.restore_stats(TABLE)
    archive.put_bytes(rel, b'{"items_per_second": "fast"}')
    for load in (WriteRate.load, ImportModel.load):
        with pytest.raises(Exception, match="items_per_second") as failed:
            load(archive, TABLE)
        assert getattr(failed.value, "exit_code", None) == 2
        assert archive.uri(rel) in str(failed.value)


def test_a_file_broken_after_the_restore_began_is_not_rewritten_at_its_end(
    archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    rel = layout.restore_stats(TABLE)
    archive.put_bytes(rel, BROKEN)
    record_write_rate(archive, TABLE, items=500, seconds=2.0, strategy="replay")
    record_import(archive, TABLE, items=500, source_bytes=10_000, seconds=30.0)
    assert archive.get_bytes(rel) == BROKEN
    assert "not recording this restore's figures" in caplog.text


def test_the_records_keep_each_others_figures(archive: Archive) -> None:
    record_import(archive, TABLE, items=500, source_bytes=10_000, seconds=30.0)
    record_write_rate(archive, TABLE, items=500, seconds=2.0, strategy="replay")
    stats = archive.read_json(layout.restore_stats(TABLE))
    assert stats["items_per_second"] == 250.0
    assert [i["items"] for i in stats["imports"]] == [500]
    assert WriteRate.load(archive, TABLE).items_per_second == 250.0
