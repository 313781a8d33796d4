"""``ddb-archiver forget``: every row of a key gone from every object, every derived fact true,
crash-safe at every write, versioned and locked buckets, ``--where``, later stream records."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from archiver.cli import main as archiver_main
from archiver.erasure.forget import forget
from archiver.format import changefiles, footers, layout
from archiver.format import erasure_log as erasures
from archiver.format.changefiles import RunBuilder, write_builder
from archiver.format.exports.full import convert_export, folder_in, read_export
from archiver.format.manifests import list_snapshots
from archiver.format.storage import Archive
from archiver.integrity.check import run_checks
from tests import export_fixtures
from tests.conftest import Crash
from tests.helpers import rows_of, state_at
from tests.integrity_helpers import Built, build_archive
from tests.replay_helpers import (
    T0,
    TABLE,
    TABLE_ID,
    write_coverage,
    write_description,
    write_snapshot,
)

ERASED = '{"pk":{"S":"k1"}}'
NEEDLE = b'{"S":"k1"}'


def decoded(archive: Archive, rel: str) -> bytes:
    """An object's content as text: Parquet rows (and metadata), gunzipped data, or bytes."""
    data = archive.get_bytes(rel)
    if rel.endswith(".parquet"):
        handle = pq.ParquetFile(archive.path(rel), filesystem=archive.arrow_fs)
        rows = handle.read().to_pylist()
        meta = handle.metadata.metadata or {}
        return _text(rows) + b"".join(meta.values())
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    return data


def _text(rows: list[dict[str, Any]]) -> bytes:
    """Every value of every row, as it is (no JSON escaping of the stored text)."""
    return b"\n".join(str(value).encode() for row in rows for value in row.values())


def holding(archive: Archive, needle: bytes = NEEDLE) -> list[str]:
    """Every object under the archive root whose decoded content holds ``needle``."""
    return [rel for rel in archive.find("") if needle in decoded(archive, rel)]


def full_archive(archive: Archive) -> Built:
    """A chained shard over k0..k3, a snapshot, a converted native export and a staging file."""
    built = build_archive(archive, [3, 4, 2, 3])
    write_description(archive)
    items = [{"pk": {"S": f"k{i}"}, "v": {"S": f"snap-{i}"}} for i in range(4)]
    items.append({"pk": {"S": "only-in-snapshot"}, "v": {"S": "x"}})
    write_snapshot(archive, items, valid_from=T0 + timedelta(seconds=30), log_from=T0)
    dest = Archive(archive.fs, archive.path(layout.EXPORTS), archive.uri(layout.EXPORTS))
    export = export_fixtures.write_export(
        dest,
        items,
        table_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
        table_id=TABLE_ID,
        export_time=T0 + timedelta(seconds=5),
    )
    folder = folder_in(archive, f"{layout.exports_dir()}/{export.export_id}")
    convert_export(archive, TABLE, read_export(folder))
    staging = f"{layout.table_staging_dir(TABLE)}/import/part-0.json.gz"
    lines = b"".join(orjson.dumps({"Item": i}) + b"\n" for i in items)
    archive.put_bytes(staging, gzip.compress(lines))
    return built


def test_a_key_is_gone_from_every_object_and_every_derived_fact_holds(archive: Archive) -> None:
    full_archive(archive)
    before = {t: state_at(archive, TABLE, T0 + timedelta(seconds=t)) for t in (35, 60, 400)}
    resume = changefiles.resume_points(archive, TABLE)
    checkpoints = {
        rel: archive.get_bytes(rel) for rel in archive.find(layout.checkpoints_dir(TABLE))
    }
    assert len(holding(archive)) >= 7  # change files, snapshot, export data, staging

    (outcome,) = forget(archive, TABLE, [ERASED], reason="request 7")

    assert holding(archive) == []
    assert outcome.rows_removed > 0
    for t, state in before.items():
        assert state_at(archive, TABLE, T0 + timedelta(seconds=t)) == {
            k: v for k, v in state.items() if k != ERASED
        }
    # Names, links, resume points and checkpoints are unchanged; the chain checks clean.
    assert changefiles.resume_points(archive, TABLE) == resume
    assert {rel: archive.get_bytes(rel) for rel in checkpoints} == checkpoints
    result = run_checks(archive, TABLE, deep=True)
    assert [p.line() for p in result.problems] == []
    changed = [t.path for t in outcome.targets if t.kind == "change"]
    for rel in changed:
        footer = footers.read_state(archive, rel).footer
        assert footer is not None and footer.erasures == (outcome.erasure_id,)
    # The snapshot's manifest counts what is left; the export still converts, MD5s and all.
    (manifest,) = [m for m in list_snapshots(archive, TABLE) if m["method"] == "scan"]
    assert manifest["item_count"] == 4 and manifest["erasures"] == [outcome.erasure_id]
    export_id = next(iter(archive.listdir(layout.exports_dir())))
    folder = read_export(folder_in(archive, f"{layout.exports_dir()}/{export_id}"))
    assert folder.summary is not None and folder.summary["itemCount"] == 4
    fresh = Archive.open(archive.root + "-copy")
    write_description(fresh)
    assert convert_export(fresh, TABLE, folder).manifest["item_count"] == 4
    # The log keeps a keyed hash, never the key.
    (entry,) = erasures.read_log(archive, TABLE)
    assert entry["reason"] == "request 7" and entry["rows_removed"] == outcome.rows_removed
    assert b"k1" not in archive.get_bytes(layout.erasures(TABLE))
    assert erasures.erased(archive, TABLE, ERASED) == [entry]
    assert erasures.erased(archive, TABLE, '{"pk":{"S":"k2"}}') == []
    assert not archive.exists(layout.forget_pending(TABLE))


def test_dry_run_lists_objects_and_rows_and_changes_nothing(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    full_archive(archive)
    snapshot = {rel: archive.get_bytes(rel) for rel in archive.find("")}
    capsys.readouterr()
    argv = ["forget", "--table-name", TABLE, "--archive", archive.url, "--key", ERASED]
    assert archiver_main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would rewrite" in out and "rows to remove" in out
    assert {rel: archive.get_bytes(rel) for rel in archive.find("")} == snapshot
    assert archiver_main(argv) == 0
    assert holding(archive) == []


def _content(archive: Archive) -> dict[str, Any]:
    """What must come out the same whatever the ids in names: rows of every kind of object."""
    snapshots = [
        (r["keys"], r["item"])
        for m in list_snapshots(archive, TABLE)
        for f in m["files"]
        for r in pq.read_table(archive.path(f["path"])).to_pylist()
    ]
    lines = [
        line
        for top in (layout.EXPORTS, layout.STAGING)
        for rel in archive.find(top)
        if "/data/" in rel or rel.startswith(layout.STAGING)
        for line in decoded(archive, rel).splitlines()
    ]
    return {
        "changes": sorted(
            (r["keys"], r["event_name"], str(r["new_image"]))
            for r in rows_of(archive, TABLE, each_event_once=True)
        ),
        "snapshots": sorted(snapshots),
        "items": sorted(lines),
    }


@pytest.mark.parametrize("rerun_with_keys", [True, False])
def test_a_crash_at_any_write_leaves_objects_old_or_new_and_a_rerun_finishes(
    tmp_path: Any, crash_after: Callable[[int], None], rerun_with_keys: bool
) -> None:
    reference = Archive.open(str(tmp_path / "reference"))
    full_archive(reference)
    forget(reference, TABLE, [ERASED])
    expected = _content(reference)
    writes = 0
    while True:
        archive = Archive.open(str(tmp_path / f"crash-{writes}"))
        full_archive(archive)
        untouched = _content(archive)
        crash_after(writes)
        try:
            forget(archive, TABLE, [ERASED])
        except Crash:
            pass
        else:
            break  # past the last write: nothing left to crash
        crash_after(-1)
        # Every change file and snapshot is old or new: the archive checks clean, and a
        # restore sees the key or not, never part of a file.
        assert [p.line() for p in run_checks(archive, TABLE).problems] == []
        state_at(archive, TABLE, T0 + timedelta(seconds=400))
        if not archive.exists(layout.forget_pending(TABLE)):
            # Crashed before the plan was recorded: nothing changed; the same command again.
            assert _content(archive) == untouched
            forget(archive, TABLE, [ERASED])
        else:
            forget(archive, TABLE, [ERASED] if rerun_with_keys else None)
        assert holding(archive) == [], f"crash after {writes} writes"
        assert _content(archive) == expected, f"crash after {writes} writes"
        assert [p.line() for p in run_checks(archive, TABLE, deep=True).problems] == []
        (entry,) = erasures.read_log(archive, TABLE)
        assert entry["rows_removed"] == erasures.read_log(reference, TABLE)[0]["rows_removed"]
        assert not archive.exists(layout.forget_pending(TABLE))
        writes += 1
    assert writes >= 10  # every file, the manifests, the log, the pending list


def test_where_erases_every_key_that_ever_matched(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    built = full_archive(archive)
    # v of record i is i: records 1 and 6 are of k1 and k2 (4 keys, every 5th a REMOVE).
    values = {
        r["dynamodb"]["NewImage"]["v"]["N"] for r in built.records if "NewImage" in r["dynamodb"]
    }
    assert {"1", "6"} <= values
    capsys.readouterr()
    argv = ["forget", "--table-name", TABLE, "--archive", archive.url]
    code = archiver_main([*argv, "--where", "new_image->>'$.v.N' IN ('1', '6')"])
    assert code == 0, capsys.readouterr().err
    assert holding(archive) == [] and holding(archive, b'{"S":"k2"}') == []
    assert holding(archive, b'{"S":"k0"}') != []
    assert erasures.read_log(archive, TABLE)[0]["selector"] == "where"
    assert b"IN (" not in archive.get_bytes(layout.erasures(TABLE))  # the predicate is not kept


@pytest.mark.parametrize(
    "predicate",
    [
        "true) UNION SELECT keys FROM rows WHERE (true",
        "1=1; DROP TABLE rows",
        "keys IN (SELECT keys FROM rows)",
        "read_text('/etc/passwd') IS NOT NULL",
        "nonsense(",
    ],
)
def test_where_refuses_anything_but_one_safe_expression(
    archive: Archive, capsys: pytest.CaptureFixture[str], predicate: str
) -> None:
    full_archive(archive)
    before = {rel: archive.get_bytes(rel) for rel in archive.find("")}
    capsys.readouterr()
    argv = ["forget", "--table-name", TABLE, "--archive", archive.url, "--where", predicate]
    assert archiver_main(argv) == 2
    assert "--where" in capsys.readouterr().err
    assert {rel: archive.get_bytes(rel) for rel in archive.find("")} == before


def test_records_arriving_later_are_archived_and_resume_points_do_not_move(
    archive: Archive,
) -> None:
    built = build_archive(archive, [3, 4])
    forget(archive, TABLE, [ERASED])
    resume = changefiles.resume_points(archive, TABLE)
    # The poller's next file: later records of the erased key (still in the stream, or new).
    later = [
        built.stream.put(
            built.shard,
            {"pk": {"S": "k1"}},
            new={"pk": {"S": "k1"}, "v": {"N": "99"}},
            at=T0 + timedelta(seconds=60),
        ),
    ]
    (last,) = resume.values()
    builder = RunBuilder(
        stream_arn=built.stream.arn,
        shard_id=built.shard.shard_id,
        table_id=TABLE_ID,
        origin="stream",
        prev_last_seq=last,
        prev_chained=True,
    )
    for record in later:
        builder.add(record)
    write_builder(archive, TABLE, builder)
    rows = rows_of(archive, TABLE, each_event_once=True)
    assert [r["keys"] for r in rows].count(ERASED) == 1  # exactly the new record
    assert [p.line() for p in run_checks(archive, TABLE, deep=True).problems] == []


def test_watch_erases_records_archived_while_it_runs(
    archive: Archive, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--watch``: after the first pass, files the poller archives later (the stream still held
    records of the key) are erased too, until the watch ends; on a fake clock."""
    import archiver.commands.forget as forget_command

    built = build_archive(archive, [3, 4])
    clock = {"now": 0.0, "sleeps": 0}

    def later_file() -> None:
        (last,) = changefiles.resume_points(archive, TABLE).values()
        builder = RunBuilder(
            stream_arn=built.stream.arn, shard_id=built.shard.shard_id, table_id=TABLE_ID,
            origin="stream", prev_last_seq=last, prev_chained=True,
        )  # fmt: skip
        builder.add(
            built.stream.put(
                built.shard, {"pk": {"S": "k1"}}, new={"pk": {"S": "k1"}, "v": {"N": "99"}},
                at=T0 + timedelta(seconds=60),
            )
        )  # fmt: skip
        write_builder(archive, TABLE, builder)

    def sleep(seconds: float) -> None:
        clock["sleeps"] += 1
        clock["now"] += seconds
        if clock["sleeps"] == 2:  # the poller archives a later record of the key meanwhile
            later_file()

    monkeypatch.setattr(forget_command.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(forget_command.time, "sleep", sleep)
    argv = ["forget", "--table-name", TABLE, "--archive", archive.url, "--key", ERASED,
            "--watch", "600", "--watch-interval", "60"]  # fmt: skip
    assert archiver_main(argv) == 0
    assert clock["sleeps"] == 10  # every 60 s for 600 s
    out = capsys.readouterr().out
    assert out.count(": erasure ") == 2  # the first pass, then the later file's
    assert holding(archive) == []
    assert [r["keys"] for r in rows_of(archive, TABLE, each_event_once=True)].count(ERASED) == 0
    assert [p.line() for p in run_checks(archive, TABLE, deep=True).problems] == []
    assert len(erasures.read_log(archive, TABLE)) == 2


def test_an_unknown_key_shape_is_refused(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    full_archive(archive)
    capsys.readouterr()
    argv = [
        "forget",
        "--table-name",
        TABLE,
        "--archive",
        archive.url,
        "--key",
        '{"id": {"S": "x"}}',
    ]
    assert archiver_main(argv) == 2
    assert "key attributes pk" in capsys.readouterr().err


# -- S3: versions and Object Lock ------------------------------------------------------------


def _all_versions(s3: Any, bucket: str) -> Iterator[bytes]:
    page = s3.list_object_versions(Bucket=bucket)
    for version in page.get("Versions", []):
        body = s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        data = body["Body"].read()
        yield gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _parquet_text(data: bytes) -> bytes:
    import pyarrow as pa

    if data[:4] != b"PAR1":
        return data
    return _text(pq.read_table(pa.BufferReader(data)).to_pylist())


@pytest.mark.parametrize("purge", [False, True])
def test_versioned_bucket_old_versions_are_counted_or_purged(
    s3: Any, capsys: pytest.CaptureFixture[str], purge: bool
) -> None:
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    archive = Archive.open("s3://versioned/ddb")
    build_archive(archive, [3, 4, 2])
    write_description(archive)
    write_snapshot(archive, [{"pk": {"S": f"k{i}"}} for i in range(4)],
                   valid_from=T0 + timedelta(seconds=30), log_from=T0)  # fmt: skip
    capsys.readouterr()
    argv = ["forget", "--table-name", TABLE, "--archive", archive.url, "--key", ERASED]
    assert archiver_main(argv + (["--purge-versions"] if purge else [])) == 0
    out = capsys.readouterr().out
    assert holding(archive) == []
    old = [v for v in _all_versions(s3, "versioned") if NEEDLE in _parquet_text(v)]
    if purge:
        assert "deleted" in out and "noncurrent object versions" in out
        assert old == []
    else:
        assert "noncurrent object versions still hold the erased rows" in out
        assert old != []
        (entry,) = erasures.read_log(archive, TABLE)
        assert entry["noncurrent_versions_left"] == len(old)


def test_object_lock_is_refused_before_anything_changes(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s3.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket="locked",
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    archive = Archive.open("s3://locked/ddb")
    build_archive(archive, [3, 4])
    before = {rel: archive.get_bytes(rel) for rel in archive.find("")}
    capsys.readouterr()
    argv = ["forget", "--table-name", TABLE, "--archive", archive.url, "--key", ERASED]
    assert archiver_main(argv) == 4
    err = capsys.readouterr().err
    assert "Object Lock" in err and "GOVERNANCE retention until" in err
    assert "s3://locked/ddb/changes/" in err
    assert {rel: archive.get_bytes(rel) for rel in archive.find("")} == before


def test_the_operator_story_restores_verify_history_and_later_records(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    """A live table: restores before and after an erasure, verify, history, status, and the
    erased key's later writes archived by the next run — exactly those, nothing re-archived."""
    import time

    from archiver.format.timefmt import iso_ms, utcnow
    from tests.conftest import create_table
    from tests.replay_helpers import archive_table, replayer

    create_table(ddb, "people")
    for i in range(4):
        ddb.put_item(TableName="people", Item={"pk": {"S": f"k{i}"}, "v": {"S": f"secret-{i}"}})
    time.sleep(1.1)
    archive_table("people", archive.url)
    at = iso_ms(utcnow().replace(microsecond=0))
    time.sleep(2.1)
    archive_table("people", archive.url)
    restore = ["restore", "--source-table-name", "people", "--archive", archive.url,
               "--restore-date-time", at, "--strategy", "replay"]  # fmt: skip
    code, _, err = replayer(capsys, *restore, "--target-table-name", "before")
    assert code == 0, err
    rows_before = len(rows_of(archive, "people", each_event_once=True))

    capsys.readouterr()
    argv = ["forget", "--table-name", "people", "--archive", archive.url]
    assert archiver_main([*argv, "--key", '{"pk": {"S": "k1"}}', "--reason", "request"]) == 0
    assert holding(archive, b"secret-1") == []

    verify = ["verify", "--source-table-name", "people", "--archive", archive.url,
              "--restore-date-time", at]  # fmt: skip
    code, out, _ = replayer(capsys, *verify, "--target-table-name", "before")
    assert code == 3 and "k1" in out  # the table restored before the erasure has the key extra
    code, _, err = replayer(capsys, *restore, "--target-table-name", "after")
    assert code == 0, err
    code, _, _ = replayer(capsys, *verify, "--target-table-name", "after")
    assert code == 0
    assert "k1" not in str(ddb.scan(TableName="after")["Items"])
    code, out, _ = replayer(capsys, "history", "--table-name", "people", "--archive",
                            archive.url, "--key", '{"pk": {"S": "k1"}}')  # fmt: skip
    assert "secret-1" not in out
    code, out, _ = replayer(capsys, "status", "--archive", archive.url, "--json")
    (status,) = orjson.loads(out)["tables"]
    assert status["erasures"]["count"] == 1 and not status["erasures"]["unfinished"]

    # The next run archives exactly the new records: a later write to k1 is kept, nothing
    # erased comes back.
    ddb.put_item(TableName="people", Item={"pk": {"S": "k1"}, "v": {"S": "new-1"}})
    ddb.put_item(TableName="people", Item={"pk": {"S": "k2"}, "v": {"S": "new-2"}})
    archive_table("people", archive.url)
    rows = rows_of(archive, "people", each_event_once=True)
    assert len(rows) == rows_before - 1 + 2
    # The later write's old image is the item as the table held it — erased values included:
    # by rule it is archived like any record (forget again to erase it too).
    (later,) = [r for r in rows if r["keys"] == '{"pk":{"S":"k1"}}']
    assert "new-1" in later["new_image"] and "secret-1" in later["old_image"]
    assert all("secret-1" not in str(r) for r in rows if r is not later)
    assert [p.line() for p in run_checks(archive, "people", deep=True).problems] == []


def test_compaction_after_an_erasure_keeps_the_record_and_the_chain(archive: Archive) -> None:
    from archiver.integrity.compaction import compact

    build_archive(archive, [3, 4, 2, 3])
    (outcome,) = forget(archive, TABLE, [ERASED])
    compact(archive, TABLE, grace_seconds=0, now=T0 + timedelta(days=5))
    (merged,) = archive.find(layout.changes_table_dir(TABLE), ".parquet")
    footer = footers.read_state(archive, merged).footer
    assert footer is not None and footer.erasures == (outcome.erasure_id,)
    assert holding(archive) == []
    assert [p.line() for p in run_checks(archive, TABLE, deep=True).problems] == []


def test_an_ion_export_keeps_its_lines_and_manifests(archive: Archive) -> None:
    write_description(archive)
    write_coverage(archive, watermark=T0 + timedelta(days=1))
    items = [{"pk": {"S": f"k{i}"}, "n": {"N": f"{i}.50"}} for i in range(6)]
    dest = Archive(archive.fs, archive.path(layout.EXPORTS), archive.uri(layout.EXPORTS))
    export = export_fixtures.write_export(
        dest,
        items,
        table_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
        table_id=TABLE_ID,
        export_time=T0,
        output_format="ION",
        files=2,
    )
    (outcome,) = forget(archive, TABLE, [ERASED])
    assert outcome.rows_removed == 1 and holding(archive) == []
    folder = read_export(folder_in(archive, f"{layout.exports_dir()}/{export.export_id}"))
    converted = convert_export(archive, TABLE, folder).manifest  # MD5s and counts check out
    assert converted["item_count"] == 5
