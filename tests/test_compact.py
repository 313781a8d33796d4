"""``ddb-archiver compact``: fewer, larger files; every record exactly once; crash-safe."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archiver.cli import main as archiver_main
from archiver.format import layout
from archiver.format.codec import canonical_json, key_of
from archiver.format.schema import CHANGE_SCHEMA
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow
from archiver.integrity import compaction as compact_mod
from archiver.integrity.compaction import compact, list_change_files, pending_path
from replayer.planning.plan import latest_restorable_time
from tests.changes_builder import T0, n, record, s, write_changes
from tests.conftest import create_table
from tests.helpers import state_at

TABLE = "orders"
DAY0 = T0.replace(hour=0)


def workload(count: int, *, start: int = 1, days: int = 1) -> list[dict[str, Any]]:
    """``count`` changes over 10 keys, spread over ``days`` days, in stream order."""
    out = []
    for i in range(count):
        seq = start + i
        key = {"pk": s(f"k{seq % 10}")}
        at = DAY0 + timedelta(seconds=i * (days * 86400 // max(count, 1)))
        event = "INSERT" if i < 10 else "MODIFY"
        out.append(record(seq, key, event, new={**key, "v": n(seq)}, at=at))
    return out


def records_in(archive: Archive, table: str = TABLE) -> list[tuple[str, str, str]]:
    """Every (event_id, sequence_number, new_image) in the table's files, duplicates included."""
    rows = []
    for f in list_change_files(archive, table):
        t = archive.read_parquet(f.rel)
        rows += list(
            zip(
                t["event_id"].to_pylist(),
                t["sequence_number"].to_pylist(),
                t["new_image"].to_pylist(),
                strict=True,
            )
        )
    return sorted(rows)


def max_last_seq(archive: Archive, table: str = TABLE) -> dict[tuple[str, str], str]:
    """What the archiver resumes from: the highest last_seq per (label, shard) in file names."""
    out: dict[tuple[str, str], str] = {}
    for f in list_change_files(archive, table):
        k = (f.name.label, f.name.shard_id)
        out[k] = max(out.get(k, ""), f.name.last_seq)
    return out


def test_small_files_merge_per_day_and_shard_keeping_every_record_once(archive: Archive) -> None:
    records = workload(60, days=2)
    write_changes(archive, TABLE, records, per_file=5)
    write_changes(archive, TABLE, workload(12, start=1000), shard_id="shardId-00000002", per_file=3)
    # A batch archived twice with other boundaries (Lambda retry): overlapping files.
    write_changes(archive, TABLE, records[3:9], per_file=6)
    expected = sorted({r for r in records_in(archive)})
    resume_before = max_last_seq(archive)
    assert len(list_change_files(archive, TABLE)) == 6 + 6 + 4 + 1  # day 1, day 2, shard 2, dup

    report = compact(archive, TABLE, grace_seconds=0, now=T0 + timedelta(days=5))

    files = list_change_files(archive, TABLE)
    assert len(files) == 3  # day 1 shard 1, day 2 shard 1, day 1 shard 2
    assert records_in(archive) == expected  # each record exactly once: duplicates dropped
    assert report.duplicates == 6
    assert max_last_seq(archive) == resume_before
    for f in files:
        table = archive.read_parquet(f.rel)
        seqs = table["sequence_number"].to_pylist()
        assert (min(seqs), max(seqs)) == (f.name.first_seq, f.name.last_seq)
        assert layout.dt_of(min(table["event_time"].to_pylist())) == f.dt
        sort_key = list(zip(table["keys"].to_pylist(), seqs, strict=True))
        assert sort_key == sorted(sort_key)  # sorted by keys, then stream order
        assert table.schema.equals(CHANGE_SCHEMA)
    assert archive.read_json(pending_path(TABLE))["pending"] == []


def test_target_size_splits_a_group_into_contiguous_ranges(archive: Archive) -> None:
    write_changes(archive, TABLE, workload(40), per_file=2)
    sizes = [size for _, size in archive.walk_files(layout.CHANGES)]
    target = int(max(sizes) * 5.5)
    compact(archive, TABLE, target_bytes=target, grace_seconds=0, now=T0 + timedelta(days=5))
    files = sorted(list_change_files(archive, TABLE), key=lambda f: f.name.first_seq)
    assert 3 <= len(files) <= 5  # 20 files of about target/5.5 each
    ranges = [(int(f.name.first_seq), int(f.name.last_seq)) for f in files]
    # Contiguous, non-overlapping ranges that cover every record.
    assert ranges[0][0] == 1 and ranges[-1][1] == 40
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    assert len(records_in(archive)) == 40


def test_inputs_wait_for_their_grace_period(archive: Archive) -> None:
    write_changes(archive, TABLE, workload(20), per_file=4)
    before = set(f.rel for f in list_change_files(archive, TABLE))
    now = T0 + timedelta(days=3)
    report = compact(archive, TABLE, grace_seconds=600, now=now)
    assert report.pending == 5 and report.deleted == 0
    # Readers listing now see old and merged files: duplicates, but nothing missing.
    assert {r[0] for r in records_in(archive)} == {f"event-{i}" for i in range(1, 21)}
    pending = archive.read_json(pending_path(TABLE))["pending"]
    assert {e["path"] for e in pending} == before
    assert {e["deletable_after"] for e in pending} == {iso_ms(now + timedelta(seconds=600))}
    # Before the grace ends nothing is deleted, and the inputs are not merged again.
    report = compact(archive, TABLE, grace_seconds=600, now=now + timedelta(seconds=599))
    assert (report.files_in, report.deleted, report.pending) == (0, 0, 5)
    report = compact(archive, TABLE, grace_seconds=600, now=now + timedelta(seconds=600))
    assert (report.deleted, report.pending) == (5, 0)
    assert len(list_change_files(archive, TABLE)) == 1
    assert len(records_in(archive)) == 20


def test_crash_after_writing_the_merged_file_loses_nothing(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_changes(archive, TABLE, workload(20), per_file=4)
    expected = records_in(archive)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(compact_mod, "write_pending", crash)
    with pytest.raises(RuntimeError):
        compact(archive, TABLE, grace_seconds=0, now=T0 + timedelta(days=3))
    # The merged file is there beside all its inputs: every record present (twice).
    assert len(list_change_files(archive, TABLE)) == 6
    assert sorted(set(records_in(archive))) == expected
    monkeypatch.undo()
    report = compact(archive, TABLE, grace_seconds=0, now=T0 + timedelta(days=3))
    assert report.files_in == 6 and report.deleted == 5
    assert records_in(archive) == expected
    assert len(list_change_files(archive, TABLE)) == 1


def test_crash_in_the_middle_of_deleting_loses_nothing(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_changes(archive, TABLE, workload(20), per_file=4)
    expected = records_in(archive)
    real_delete = Archive.delete
    calls = []

    def delete_twice_then_crash(self: Archive, rel: str) -> None:
        calls.append(rel)
        if len(calls) > 2:
            raise RuntimeError("killed")
        real_delete(self, rel)

    monkeypatch.setattr(Archive, "delete", delete_twice_then_crash)
    with pytest.raises(RuntimeError):
        compact(archive, TABLE, grace_seconds=0, now=T0 + timedelta(days=3))
    assert sorted(set(records_in(archive))) == expected
    assert len(archive.read_json(pending_path(TABLE))["pending"]) == 5  # still all recorded
    monkeypatch.undo()
    report = compact(archive, TABLE, grace_seconds=0, now=T0 + timedelta(days=3))
    assert report.deleted == 5  # two were gone already: deleting them again is harmless
    assert records_in(archive) == expected
    assert archive.read_json(pending_path(TABLE))["pending"] == []


def test_today_is_skipped_unless_named(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    today = utcnow().replace(microsecond=0)
    records = [
        record(
            i,
            {"pk": s("a")},
            "MODIFY",
            new={"pk": s("a"), "v": n(i)},
            at=today - timedelta(seconds=10 - i),
        )
        for i in range(1, 5)
        if layout.dt_of(today - timedelta(seconds=10 - i)) == layout.dt_of(today)
    ]
    write_changes(archive, TABLE, records, per_file=1)
    code = archiver_main(["compact", "--table-name", TABLE, "--archive", archive.url])
    out = capsys.readouterr().out
    assert code == 0
    assert "nothing to merge" in out
    assert f"skipped dt={layout.dt_of(today)}" in out
    code = archiver_main(
        [
            "compact",
            "--table-name",
            TABLE,
            "--archive",
            archive.url,
            "--dt",
            layout.dt_of(today),
            "--grace-seconds",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"merged {len(records)} files into 1" in out
    assert len(list_change_files(archive, TABLE)) == 1


def test_cli_reports_and_validates(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    write_changes(archive, TABLE, workload(10), per_file=2)
    argv = ["compact", "--table-name", TABLE, "--archive", archive.url, "--dt", "2026-01-31"]
    assert archiver_main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would merge 5 files into 1" in out
    assert len(list_change_files(archive, TABLE)) == 5
    assert archiver_main(argv) == 0
    out = capsys.readouterr().out
    assert "merged 5 files into 1" in out and "5 merged inputs pending deletion" in out
    assert len(list_change_files(archive, TABLE)) == 6
    assert archiver_main(["compact", "--table-name", "nope", "--archive", archive.url]) == 2
    assert "'nope' is not in the archive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        archiver_main([*argv[:-1], "31-01-2026"])
    assert exit_info.value.code == 2


def test_compaction_on_s3(s3_archive: Archive) -> None:
    write_changes(s3_archive, TABLE, workload(12), per_file=3)
    expected = records_in(s3_archive)
    compact(s3_archive, TABLE, grace_seconds=0, now=T0 + timedelta(days=2))
    assert records_in(s3_archive) == expected
    assert len(list_change_files(s3_archive, TABLE)) == 1
    meta = pq.read_metadata(
        s3_archive.path(list_change_files(s3_archive, TABLE)[0].rel), filesystem=s3_archive.arrow_fs
    )
    assert meta.num_rows == 12


def test_merge_rows_keeps_first_copy_of_each_event() -> None:
    rows = pa.table(
        {name: pa.array([], CHANGE_SCHEMA.field(name).type) for name in CHANGE_SCHEMA.names},
        schema=CHANGE_SCHEMA,
    )
    assert compact_mod.merge_rows([rows, rows]).num_rows == 0


def test_the_poller_resumes_correctly_after_compaction(ddb: Any, archive: Archive) -> None:
    """Through the real ``run --once``: compacting today's files changes nothing the poller
    resumes from — the next run archives exactly the new records, none twice."""
    create_table(ddb, TABLE)
    run = [
        "run",
        "--table-name",
        TABLE,
        "--archive",
        archive.url,
        "--once",
        "--poll-seconds",
        "0.05",
    ]
    for i in range(24):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i % 6}"}, "v": {"N": str(i)}})
        if i % 6 == 5:  # four runs, four files
            assert archiver_main(run) == 0
    assert len(list_change_files(archive, TABLE)) == 4
    today = layout.dt_of(utcnow())
    argv = ["compact", "--table-name", TABLE, "--archive", archive.url, "--dt", today]
    assert archiver_main([*argv, "--grace-seconds", "0"]) == 0
    assert len(list_change_files(archive, TABLE)) == 1
    for i in range(24, 34):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i % 6}"}, "v": {"N": str(i)}})
    assert archiver_main(run) == 0
    rows = records_in(archive)
    event_ids = [r[0] for r in rows]
    assert len(event_ids) == len(set(event_ids)) == 34
    assert sorted(int(r[1]) for r in rows) == sorted({int(r[1]) for r in rows})


def _scan(ddb: Any) -> dict[str, str]:
    items = ddb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return {canonical_json(key_of(i, ["pk", "sk"])): canonical_json(i) for i in items}


def test_restores_from_a_compacted_archive_are_exact(ddb: Any, archive: Archive) -> None:
    """The fold over a compacted archive — during the grace period (inputs and merged files
    side by side) and after the inputs are gone — equals the table as it was."""
    create_table(ddb, TABLE, range_key="sk", key_types=("S", "N"))
    run = [
        "run",
        "--table-name",
        TABLE,
        "--archive",
        archive.url,
        "--once",
        "--poll-seconds",
        "0.05",
    ]
    states: list[tuple[datetime, dict[str, str]]] = []
    for round_ in range(3):
        for i in range(12):
            key = {"pk": {"S": f"k{i % 5}"}, "sk": {"N": str(i % 2)}}
            if (i + round_) % 4 == 3:
                ddb.delete_item(TableName=TABLE, Key=key)
            else:
                value = {"N": f"{round_}.{i}0"}  # not in normal form: canonicalised on the way
                ddb.put_item(TableName=TABLE, Item={**key, "v": value, "b": {"B": bytes([i])}})
        time.sleep(0.05)
        states.append((utcnow(), _scan(ddb)))
        if round_ == 2:
            time.sleep(2.1)  # the last writes fall inside the watermark's margin otherwise
        assert archiver_main(run) == 0
    assert len(list_change_files(archive, TABLE)) == 3
    assert latest_restorable_time(archive, TABLE) >= states[-1][0]
    for at, expected in states:
        assert state_at(archive, TABLE, at) == expected

    today = layout.dt_of(utcnow())
    report = compact(archive, TABLE, dts=[today], grace_seconds=600)
    assert (report.files_in, report.files_out, report.pending) == (3, 1, 3)
    assert len(list_change_files(archive, TABLE)) == 4  # merged file beside its inputs
    for at, expected in states:
        assert state_at(archive, TABLE, at) == expected

    compact(archive, TABLE, now=utcnow() + timedelta(seconds=601))
    assert len(list_change_files(archive, TABLE)) == 1
    for at, expected in states:
        assert state_at(archive, TABLE, at) == expected
