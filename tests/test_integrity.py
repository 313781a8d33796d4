"""No silent holes: a missing, truncated or replaced file is found, refused, or repaired.

Archives are chained the way the poller writes them (``tests.integrity_helpers``); the
stream behind them is the Streams test double, whose trim horizon models records no longer
retained. ``check`` runs through the CLI; repairs through ``archiver.integrity.repair`` with the
double as the Streams client.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest

from archiver.aws.clients import AwsSettings
from archiver.cli import main as archiver_main
from archiver.format import chain, footers, gap_log, layout
from archiver.format.statefiles import StateFileError
from archiver.format.storage import Archive
from archiver.format.timefmt import utcnow
from archiver.integrity.check import run_checks, verify_resume
from archiver.integrity.compaction import compact
from archiver.integrity.repair import repair
from replayer.engines.fold import Fold
from replayer.exceptions import BrokenChain, DamagedFile, GapInLog
from replayer.planning.plan import plan_restore
from tests.helpers import rows_of, state_at
from tests.integrity_helpers import (
    Built,
    build_archive,
    delete,
    replace_rows,
    truncate,
)
from tests.replay_helpers import T0, TABLE, write_description, write_snapshot

LATER = T0 + timedelta(days=1)


def check(capsys: pytest.CaptureFixture[str], archive: Archive, *flags: str) -> tuple[int, Any]:
    """``ddb-archiver check --json``: (exit code, parsed output)."""
    capsys.readouterr()
    code = archiver_main(
        ["check", "--table-name", TABLE, "--archive", archive.url, "--json", *flags]
    )
    out = capsys.readouterr().out
    return code, json.loads(out)


def kinds_by_path(result: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for problem in result["problems"]:
        out.setdefault(problem["path"], set()).add(problem["kind"])
    return out


def do_repair(archive: Archive, built: Built) -> Any:
    result = run_checks(archive, TABLE)
    return asyncio.run(repair(archive, TABLE, result, AwsSettings(), streams_client=built.double))


# -- the chain as written -------------------------------------------------------------------


def test_files_carry_a_chain_and_a_clean_archive_checks_clean(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_archive(archive, [3, 4, 2])
    written = [
        footers.footer_of(pq.read_metadata(archive.path(rel)).metadata) for rel in built.files
    ]
    assert all(f is not None for f in written)
    assert written[0] is not None and written[0].prev_last_seq is None
    for before, after in itertools.pairwise(written):
        assert before is not None and after is not None
        assert after.prev_last_seq == before.last_seq
    assert [f.row_count for f in written if f] == [3, 4, 2]
    code, result = check(capsys, archive, "--deep")
    assert (code, result["problems"], result["change_files"]) == (0, [], 3)


def test_files_without_footers_are_unchained_not_problems(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.replay_helpers import Change, write_changes, write_coverage

    write_coverage(archive, watermark=LATER)
    write_changes(
        archive,
        # As a real stream: the key's first record is an INSERT; the last removes it.
        [
            Change(i + 1, {"pk": {"S": "a"}}, {"pk": {"S": "a"}} if i == 0 else None, T0)
            for i in range(4)
        ],
        per_file=2,
    )
    code, result = check(capsys, archive)
    assert code == 0
    assert result["unchained_files"] == 2
    assert state_at(archive, TABLE, LATER) == {}


# -- each damage: found by check, refused by run and the replayer ----------------------------


@pytest.mark.parametrize("damage", ["delete-middle", "delete-last", "truncate", "replace"])
def test_damage_is_found_and_refused(
    archive: Archive, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    built = build_archive(archive, [3, 4, 2, 3])
    victim = built.files[-1] if damage == "delete-last" else built.files[1]
    expected_path, expected_kind = {
        "delete-middle": (built.files[2], chain.MISSING_FILE),
        "delete-last": (built.checkpoint, chain.MISSING_TAIL),
        "truncate": (victim, chain.UNREADABLE),
        "replace": (victim, chain.UNCHAINED_AFTER_CHAINED),
    }[damage]
    if damage.startswith("delete"):
        delete(archive, victim)
    elif damage == "truncate":
        truncate(archive, victim)
    else:
        replace_rows(archive, victim)

    code, result = check(capsys, archive)
    assert code == 3
    assert expected_kind in kinds_by_path(result).get(expected_path, set()), result

    with pytest.raises(chain.ChainBroken) as refused:
        verify_resume(archive, TABLE)
    assert refused.value.exit_code == 4
    assert "ddb-archiver check --table-name orders" in str(refused.value)
    assert "--repair" in str(refused.value)

    with pytest.raises(BrokenChain) as replay_refused:
        plan_restore(archive, TABLE, LATER, convert=False)
    assert replay_refused.value.exit_code == 4
    assert expected_path.rsplit("/", 1)[-1] in str(replay_refused.value)


def test_replaced_rows_under_a_copied_footer_are_found_by_deep(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_archive(archive, [3, 4, 2])
    replace_rows(archive, built.files[1], keep_footer=True)
    assert check(capsys, archive)[0] == 0  # footers alone cannot tell
    code, result = check(capsys, archive, "--deep")
    assert code == 3
    assert chain.CONTENT_MISMATCH in kinds_by_path(result)[built.files[1]]


# -- repair ---------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["delete-middle", "delete-last", "truncate", "replace"])
def test_repair_within_retention_restores_the_exact_archive(
    archive: Archive, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    built = build_archive(archive, [3, 4, 2, 3])
    before_rows = rows_of(archive, TABLE, each_event_once=True)
    before_state = state_at(archive, TABLE, LATER)
    victim = built.files[-1] if damage == "delete-last" else built.files[1]
    {"delete-middle": delete, "delete-last": delete, "truncate": truncate,
     "replace": replace_rows}[damage](archive, victim)  # fmt: skip

    report = do_repair(archive, built)
    assert not report.gaps and len(report.recovered) == 1

    assert rows_of(archive, TABLE, each_event_once=True) == before_rows
    assert sorted(archive.find(layout.changes_table_dir(TABLE), ".parquet")) == sorted(built.files)
    code, result = check(capsys, archive, "--deep")
    assert (code, result["problems"]) == (0, [])
    assert state_at(archive, TABLE, LATER) == before_state
    verify_resume(archive, TABLE)


def test_repair_outside_retention_records_a_gap_that_restores_refuse(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_archive(archive, [3, 4, 2, 3])
    built.shard.trim(9)  # the stream no longer holds the second file's records
    truncate(archive, built.files[1])

    report = do_repair(archive, built)
    assert len(report.gaps) == 1 and not report.recovered
    gaps = gap_log.read_gaps(archive, TABLE)
    assert [g["reason"] for g in gaps] == ["archive-file-lost"]
    assert gaps[0]["shard_id"] == built.shard.shard_id
    # The damaged file is set aside, not left to break reads.
    assert not archive.exists(built.files[1])
    assert archive.exists(f"{layout.state_dir(TABLE)}/quarantine/{built.files[1]}")

    # On record: check is clean (the hole is known), run resumes, restores refuse as at a gap.
    code, result = check(capsys, archive)
    assert code == 0 and result["known_holes"]
    verify_resume(archive, TABLE)
    with pytest.raises(GapInLog):
        plan_restore(archive, TABLE, LATER, convert=False)
    # Before the hole (whose edges are included: records share whole seconds on AWS), the log
    # is intact and restorable.
    before_hole = built.records[1]["dynamodb"]["ApproximateCreationDateTime"]
    plan_restore(archive, TABLE, before_hole, convert=False)


def test_repair_exit_code_and_json_through_the_cli(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_archive(archive, [2, 2])
    built.shard.trim(4)
    delete(archive, built.files[-1])
    # The CLI's Streams client is the moto server, which knows no such stream: not retained.
    code, result = check(capsys, archive, "--repair")
    assert code == 5
    assert result["problems"] == [] and len(result["repair"]["gaps"]) == 1


# -- compaction -----------------------------------------------------------------------------


def test_compaction_keeps_the_chain_valid(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_archive(archive, [2, 3, 2, 3])
    dt = layout.dt_of(T0)
    before = rows_of(archive, TABLE, each_event_once=True)
    report = compact(archive, TABLE, dts=[dt], target_bytes=1 << 40, grace_seconds=3600)
    assert report.files_out == 1
    # During the grace period (inputs still there) and after their deletion.
    assert check(capsys, archive, "--deep")[0] == 0
    compact(archive, TABLE, dts=[dt], grace_seconds=0, now=utcnow() + timedelta(hours=2))
    files = archive.find(layout.changes_table_dir(TABLE), ".parquet")
    assert len(files) == 1
    footer = footers.footer_of(pq.read_metadata(archive.path(files[0])).metadata)
    assert footer is not None and footer.prev_last_seq is None
    assert check(capsys, archive, "--deep")[0] == 0
    assert rows_of(archive, TABLE, each_event_once=True) == before
    verify_resume(archive, TABLE)
    assert built.files


def test_compaction_never_merges_across_a_hole(archive: Archive) -> None:
    built = build_archive(archive, [2, 3, 2])
    delete(archive, built.files[1])
    with pytest.raises(chain.ChainBroken):
        compact(archive, TABLE, dts=[layout.dt_of(T0)], grace_seconds=0)
    assert archive.exists(built.files[0]) and archive.exists(built.files[2])


# -- state files ----------------------------------------------------------------------------

STATE_DAMAGE = {
    "coverage-empty-list": ("coverage", b"[]"),
    "coverage-truncated": ("coverage", b'{"table": "orders", "table_id'),
    "checkpoint-garbage": ("checkpoint", b"\x00\x01garbage"),
    "checkpoint-wrong-shape": ("checkpoint", b'{"shard_id": 7}'),
    "gaps-garbage-line": ("gaps", b'{"from": "2026-03-01T00:00:00.000Z"\n'),
    "description-wrong-shape": ("description", b'{"captured_at": "yesterday"}'),
    "manifest-truncated": ("manifest", b'{"snapshot_id": "x", "files": ['),
    "restore-stats-garbage": ("restore-stats", b"not json"),
    "retention-wrong-shape": ("retention", b'{"horizon": 7}'),
    "lambda-json-truncated": ("lambda", b'{"function_name": "f", "max_iter'),
    "redrives-garbage-line": ("redrives", b'{"object": "s3://b/k", "status": "redriven"}\nxx\n'),
    "backfill-wrong-shape": ("backfill", b'{"table": "orders", "windows": "all"}'),
    "window-commit-truncated": ("window", b'{"table_id": "t", "window_from'),
    "restore-progress-garbage": ("progress", b"\x00"),
    "drills-wrong-shape": ("drills", b'{"drill_id": "d", "differences": "none"}\n'),
}


def _state_path(archive: Archive, built: Built, which: str) -> str:
    if which == "coverage":
        return layout.coverage(TABLE)
    if which == "checkpoint":
        return built.checkpoint
    if which == "gaps":
        return layout.gaps(TABLE)
    if which == "description":
        write_description(archive)
        return layout.table_description(TABLE, T0)
    if which == "manifest":
        manifest = write_snapshot(archive, [{"pk": {"S": "a"}}], valid_from=T0, log_from=T0)
        return layout.snapshot_manifest(TABLE, manifest["snapshot_id"])
    if which == "retention":
        return layout.retention(TABLE)
    if which == "lambda":
        return layout.lambda_deployment(TABLE)
    if which == "redrives":
        return layout.lambda_redrives(TABLE)
    if which == "backfill":
        return layout.backfill_plan(TABLE)
    if which == "window":
        return layout.incremental_window(TABLE, T0, T0 + timedelta(hours=1))
    if which == "drills":
        return layout.drills(TABLE)
    if which == "progress":
        return layout.restore_progress(TABLE, "20260301T120000Z-0a1b2c3d")
    return layout.restore_stats(TABLE)


@pytest.mark.parametrize("case", sorted(STATE_DAMAGE))
def test_broken_state_files_are_named_and_never_overwritten(
    archive: Archive, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    built = build_archive(archive, [2, 2])
    which, content = STATE_DAMAGE[case]
    rel = _state_path(archive, built, which)
    archive.put_bytes(rel, content)

    code, result = check(capsys, archive)
    assert code == 3
    assert "state-file" in kinds_by_path(result).get(rel, set()), result

    if which in ("coverage", "checkpoint", "gaps"):
        with pytest.raises(StateFileError) as failed:
            verify_resume(archive, TABLE)
        assert failed.value.exit_code == 2
        assert rel in str(failed.value)
    if which in ("coverage", "gaps", "manifest"):
        with pytest.raises(StateFileError) as failed:
            plan_restore(archive, TABLE, LATER, convert=False)
        assert rel in str(failed.value) and "\n" not in str(failed.value)
    assert archive.get_bytes(rel) == content


def test_run_does_not_rewrite_coverage_before_failing_on_a_bad_checkpoint(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import create_table

    create_table(ddb, TABLE)
    archive.write_json(layout.coverage(TABLE), [])
    code = archiver_main(["run", "--table-name", TABLE, "--archive", archive.url, "--once"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "coverage.json" in err[0]
    assert archive.read_json(layout.coverage(TABLE)) == []


def test_broken_snapshot_files_are_found(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    build_archive(archive, [2])
    manifest = write_snapshot(
        archive, [{"pk": {"S": str(i)}, "v": {"S": "x" * 50}} for i in range(20)],
        valid_from=T0, log_from=T0,
    )  # fmt: skip
    parts = [f["path"] for f in manifest["files"]]
    assert len(parts) >= 2
    truncate(archive, parts[0])
    delete(archive, parts[1])
    code, result = check(capsys, archive)
    assert code == 3
    found = kinds_by_path(result)
    assert "snapshot-mismatch" in found[parts[0]] and "snapshot-mismatch" in found[parts[1]]


# -- corrupt Parquet at read time -----------------------------------------------------------


def test_a_file_damaged_after_planning_is_one_line_exit_2(archive: Archive) -> None:
    built = build_archive(archive, [3, 3])
    plan = plan_restore(archive, TABLE, LATER, convert=False)
    truncate(archive, built.files[0])
    with Fold(archive) as fold, pytest.raises(DamagedFile) as failed:
        fold.state_at(plan)
    message = str(failed.value)
    assert failed.value.exit_code == 2 and "\n" not in message
    assert built.files[0] in message and "ddb-archiver check --table-name orders" in message


def test_query_names_a_damaged_file(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.replay_helpers import replayer

    built = build_archive(archive, [3, 3])
    truncate(archive, built.files[1])
    code, _, err = replayer(
        capsys, "query", "--archive", archive.url, "SELECT count(*) FROM changes"
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and built.files[1] in lines[0] and "ddb-archiver check" in lines[0]


# -- end to end, over moto ------------------------------------------------------------------


def test_the_operator_story_run_and_restore_refuse_then_repair_restores_everything(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file lost from a live archive: run and restore refuse, check --repair re-reads it."""
    from tests.conftest import create_table
    from tests.replay_helpers import archive_table, replayer

    create_table(ddb, "people")
    created = time.monotonic()
    for batch in range(3):
        for i in range(4):
            ddb.put_item(
                TableName="people", Item={"pk": {"S": f"k{i}"}, "v": {"N": str(batch * 10 + i)}}
            )
        if batch == 2:
            # The watermark trails the last caught-up read by 2 s: read more than 2 s after
            # the table's creation, or the latest restorable time is before the table existed
            # (a refusal for another reason than the damage this test is about).
            time.sleep(max(0.0, created + 2.5 - time.monotonic()))
        archive_table("people", archive.url)
    files = archive.find(layout.changes_table_dir("people"), ".parquet")
    assert len(files) == 3
    before = rows_of(archive, "people", each_event_once=True)
    delete(archive, files[1])

    capsys.readouterr()
    run = ["run", "--table-name", "people", "--archive", archive.url, "--once"]
    assert archiver_main(run) == 4
    err = capsys.readouterr().err
    assert files[2].rsplit("/", 1)[-1] in err
    assert f"ddb-archiver check --table-name people --archive {archive.url} --repair" in err
    restore = [
        *("restore", "--source-table-name", "people", "--target-table-name", "people2"),
        *("--archive", archive.url, "--use-latest-restorable-time", "--strategy", "replay"),
    ]
    code, _, err = replayer(capsys, *restore)
    assert code == 4 and "damaged" in err
    assert "people2" not in ddb.list_tables()["TableNames"]

    capsys.readouterr()
    code = archiver_main(["check", "--table-name", "people", "--archive", archive.url, "--repair"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "repaired" in out
    assert rows_of(archive, "people", each_event_once=True) == before
    assert archiver_main(run) == 0
    code, _, err = replayer(capsys, *restore)
    assert code == 0, err
    items = ddb.scan(TableName="people2")["Items"]
    assert sorted(int(i["v"]["N"]) for i in items) == [20, 21, 22, 23]


def test_overlapping_ranges_are_found(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    from archiver.format.changefiles import RunBuilder, write_builder

    built = build_archive(archive, [3, 4, 2])
    builder = RunBuilder(
        stream_arn=built.stream.arn,
        shard_id=built.shard.shard_id,
        table_id="table-id-1",
        origin="stream",
        prev_last_seq=layout.pad_seq(built.records[3]["dynamodb"]["SequenceNumber"]),
        prev_chained=True,
    )
    for record in built.records[4:6]:  # inside the second file's range
        builder.add(record)
    (extra,) = write_builder(archive, TABLE, builder)
    code, result = check(capsys, archive)
    assert code == 3
    assert chain.OVERLAP in kinds_by_path(result)[extra]


def test_deep_finds_rows_inconsistent_with_their_event_names(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa

    built = build_archive(archive, [3, 2])
    rel = built.files[0]
    rows = pq.read_table(archive.path(rel))
    names = rows.column("event_name").to_pylist()
    names[0] = "REMOVE"  # but it has a new image
    rows = rows.set_column(
        rows.schema.get_field_index("event_name"), "event_name", pa.array(names, pa.string())
    )
    old = footers.footer_of(rows.schema.metadata)
    assert old is not None
    footer = footers.make_footer(
        rows,
        table=TABLE,
        dt=old.dt,
        shard_id=old.shard_id,
        first_seq=old.first_seq,
        last_seq=old.last_seq,
        prev_last_seq=old.prev_last_seq,
    )
    archive.write_parquet(rel, footers.with_footer(rows, footer))
    assert check(capsys, archive)[0] == 0
    code, result = check(capsys, archive, "--deep")
    assert code == 3
    assert "bad-rows" in kinds_by_path(result)[rel]


def test_compaction_names_a_damaged_input_in_one_line(archive: Archive) -> None:
    from archiver.aws.error_table import CorruptArchive

    built = build_archive(archive, [2, 2, 2])
    truncate(archive, built.files[1])
    with pytest.raises(CorruptArchive) as failed:
        compact(archive, TABLE, dts=[layout.dt_of(T0)], grace_seconds=0)
    message = str(failed.value)
    assert failed.value.exit_code == 2 and "\n" not in message
    assert built.files[1] in message and "ddb-archiver check" in message
    assert archive.exists(built.files[0]) and archive.exists(built.files[2])
