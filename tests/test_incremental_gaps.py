"""Holes in history from incremental exports, crash safety, a table archived both ways, and
the commands as users run them (over moto and the export double)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from archiver.aws.error_table import EXIT_REFUSED
from archiver.cli import COMMANDS
from archiver.cliutil import build_parser
from archiver.commands import backfill as backfill_cli
from archiver.commands import incremental as incremental_cli
from archiver.format import gap_log, layout
from archiver.format.exports.incremental import list_windows
from archiver.format.storage import Archive
from archiver.format.tables import table_id_of
from archiver.format.timefmt import as_utc, iso_ms
from archiver.snapshots import export_chain as incremental_command
from archiver.snapshots.export_chain import PitrUnavailable
from replayer.engines.fold import Fold
from replayer.exceptions import GapInLog
from replayer.planning import plan as planning
from replayer.planning import windows as windows_planner
from tests.incremental_double import Write
from tests.incremental_helpers import EXPORT_BUCKET, Setup, put, restored, setup, truth
from tests.replay_helpers import Change, replayer, write_changes, write_coverage


def _spread(env: Setup, minutes: list[int], keys: str = "abc") -> list[Write]:
    start = as_utc(env.created) + timedelta(seconds=1)
    writes = [
        put(start + timedelta(minutes=m, milliseconds=i), keys[i % len(keys)], m)
        for i, m in enumerate(minutes)
    ]
    env.double.add_writes(env.table, writes)
    return writes


def _ready(env: Setup, hours: float, **pitr: Any) -> datetime:
    env.double.enable_pitr(env.table, env.created - timedelta(hours=1), **pitr)
    env.clock.advance(timedelta(hours=hours))
    return as_utc(env.created) - timedelta(minutes=1)


def test_pitr_turned_off_and_on_is_a_gap_and_history_resumes_after_a_base(
    ddb: Any, s3: Any, archive: Archive
) -> None:
    env = setup(ddb, s3, archive)
    writes = _spread(env, [0, 10, 40, 130, 150, 170, 200])
    start = _ready(env, 1)
    chain = env.chain()
    chain.run(once=True, start=start)
    reached = chain.position()
    assert reached is not None
    env.double.disable_pitr(env.table, env.clock.now)
    with pytest.raises(PitrUnavailable) as refused:
        chain.run(once=True)
    assert refused.value.exit_code == EXIT_REFUSED
    env.clock.advance(timedelta(hours=1))
    env.double.enable_pitr(env.table, env.clock.now)
    env.clock.advance(timedelta(hours=2))
    chain.run(once=True)

    (gap,) = gap_log.read_gaps(archive, env.table)
    assert gap["reason"] == gap_log.GAP_PITR_REENABLED and gap["from"] == iso_ms(reached)
    windows = list_windows(archive, env.table)
    resumed = [w for w in windows if w.start > reached]
    assert resumed and resumed[0].start == as_utc(datetime.fromisoformat(gap["to"]))
    for window in windows:
        if window.end <= reached or window.start >= resumed[0].start + timedelta(minutes=2):
            assert restored(archive, env.table, window.last_exact) == truth(
                writes, window.last_exact
            )
    with pytest.raises(GapInLog, match="turned off and on"):
        restored(archive, env.table, reached + timedelta(minutes=30))


def test_a_window_past_the_recovery_period_is_a_gap(ddb: Any, s3: Any, archive: Archive) -> None:
    env = setup(ddb, s3, archive)
    _spread(env, [0, 20])
    start = _ready(env, 1, recovery_days=1)
    chain = env.chain()
    chain.run(once=True, start=start)
    env.clock.advance(timedelta(days=3))
    chain.step()
    (gap,) = gap_log.read_gaps(archive, env.table)
    assert gap["reason"] == gap_log.GAP_WINDOW_EXPIRED


def test_a_crash_before_the_commit_or_during_the_wait_loses_and_duplicates_nothing(
    ddb: Any, s3: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = setup(ddb, s3, archive)
    writes = _spread(env, [0, 1, 2, 20, 21, 35])
    start = _ready(env, 1)
    real_write_json = Archive.write_json
    crashes = {"commit": 1}

    def crash_at_commit(self: Archive, rel: str, obj: Any) -> None:
        if rel.startswith(layout.incremental_dir(env.table)) and crashes["commit"]:
            crashes["commit"] -= 1
            raise KeyboardInterrupt  # the process dies with the parts written
        real_write_json(self, rel, obj)

    monkeypatch.setattr(Archive, "write_json", crash_at_commit)
    with pytest.raises(KeyboardInterrupt):
        env.chain(prefix="p").run(once=True, start=start)
    assert list_windows(archive, env.table) == []
    assert archive.find(layout.changes_table_dir(env.table))  # parts, not committed

    real_wait = incremental_command.wait_for_export
    waits = {"left": 1}

    def crash_in_wait(*args: Any, **kwargs: Any) -> Any:
        if waits["left"]:
            waits["left"] -= 1
            raise KeyboardInterrupt
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(incremental_command, "wait_for_export", crash_in_wait)
    with pytest.raises(KeyboardInterrupt):
        env.chain(prefix="p").run(once=True, start=start)
    env.chain(prefix="p").run(once=True, start=start)

    windows = list_windows(archive, env.table)
    exported = {(w.start, w.end) for w in windows}
    assert len(exported) == len(windows) >= 2
    # One export per window however often it was requested (the client token).
    assert len(env.double._exports) == len(windows)
    event_ids: list[str] = []
    for rel in archive.find(layout.changes_table_dir(env.table), ".parquet"):
        event_ids += pq.read_table(archive.path(rel), columns=["event_id"])["event_id"].to_pylist()
    assert len(event_ids) == len(set(event_ids)) == sum(w.item_count for w in windows)
    for window in windows:
        assert restored(archive, env.table, window.last_exact) == truth(writes, window.last_exact)


def test_a_table_archived_both_ways_has_one_state_per_instant(
    ddb: Any, s3: Any, archive: Archive
) -> None:
    env = setup(ddb, s3, archive)
    writes = _spread(env, [0, 3, 17, 18, 31, 44, 46, 59])
    start = _ready(env, 1.5)
    env.chain().run(once=True, start=start)
    table_id = table_id_of(env.description)
    changes = [
        Change(i + 1, dict(w.keys), dict(w.new) if w.new else None, w.time, event_id=f"e{i}")
        for i, w in enumerate(writes)
    ]
    write_changes(archive, changes, table=env.table, table_id=table_id)
    end = env.clock.now
    write_coverage(
        archive,
        table=env.table,
        table_id=table_id,
        created=as_utc(env.created),
        from_table_creation=True,
        watermark=end,
    )
    windows = list_windows(archive, env.table)
    instants = [w.last_exact for w in windows] + [w.start + (w.end - w.start) / 3 for w in windows]
    for at in instants:
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        plan = planning.plan_restore(archive, env.table, at, convert=False)
        assert not any(layout.is_incremental_file(f) for f in plan.change_files)
        assert restored(archive, env.table, at) == truth(writes, at)
    gen = planning.generation_at(archive, env.table, windows[-1].last_exact)
    for window in windows:
        by_windows = windows_planner.plan_with_windows(
            archive, env.table, window.last_exact, _without_stream(gen), windows
        )
        with Fold(archive) as fold:
            state = fold.state_at(by_windows)
            got = {r["keys"]: r["item"] for b in state.batches() for r in b.to_pylist()}
        assert got == restored(archive, env.table, window.last_exact)


def _without_stream(gen: planning.Generation) -> planning.Generation:
    return replace(gen, covered_from=None, from_table_creation=False, watermark=None)


# -- the commands -----------------------------------------------------------------------------


def _args(*argv: str) -> Any:
    return build_parser("ddb-archiver", "", COMMANDS).parse_args(list(argv))


def test_the_commands_incremental_export_from_and_backfill_dry_run(
    ddb: Any, s3: Any, archive: Archive, archive_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    env = setup(ddb, s3, archive)
    writes = _spread(env, [0, 5, 25])
    start = _ready(env, 1)
    prefix = f"s3://{EXPORT_BUCKET}/cli"
    argv = [
        "incremental",
        "--table-name",
        env.table,
        "--archive",
        str(archive_path),
        "--s3-prefix",
        prefix,
        "--once",
        "--every",
        "15m",
        "--from",
        iso_ms(start),
        "--poll-seconds",
        "0.01",
    ]
    assert incremental_cli.main(_args(*argv), ddb=env.double) == 0
    out = capsys.readouterr().out
    windows = list_windows(archive, env.table)
    assert f"reaches {iso_ms(windows[-1].end)}" in out and len(windows) == 3
    assert layout.table_description(env.table, env.created).rsplit("/", 1)[0] in "".join(
        archive.find(layout.state_dir(env.table))
    )

    # An export made by someone else, converted with --export-from (once).
    other = Archive.open(str(archive_path) + "-other")
    end = windows[-1].end
    arn = env.double.export_table_to_point_in_time(
        TableArn=env.description["TableArn"],
        S3Bucket=EXPORT_BUCKET,
        S3Prefix="theirs",
        ExportType="INCREMENTAL_EXPORT",
        IncrementalExportSpecification={"ExportFromTime": start, "ExportToTime": end},
    )["ExportDescription"]["ExportArn"]
    while env.double.describe_export(ExportArn=arn)["ExportDescription"]["ExportStatus"] != (
        "COMPLETED"
    ):
        pass
    folder = f"s3://{EXPORT_BUCKET}/theirs/AWSDynamoDB/{arn.rsplit('/', 1)[-1]}/"
    argv = [
        "incremental",
        "--table-name",
        env.table,
        "--archive",
        other.url,
        "--export-from",
        folder,
    ]
    assert incremental_cli.main(_args(*argv), ddb=env.double) == 0
    assert "3 changed items" in capsys.readouterr().out
    assert incremental_cli.main(_args(*argv), ddb=env.double) == 0
    assert "converted before" in capsys.readouterr().out
    (window,) = list_windows(other, env.table)
    assert (window.start, window.end) == (start, end)

    # backfill --dry-run: what, how much, what it costs (list prices, cited), nothing exported.
    requests = len(env.double.requests)
    fresh = Archive.open(str(archive_path) + "-backfill")
    argv = ["backfill", "--table-name", env.table, "--archive", fresh.url, "--dry-run"]
    assert backfill_cli.main(_args(*argv), ddb=env.double) == 0
    out = capsys.readouterr().out
    assert "full export at" in out and "incremental export(s) of up to 24 h" in out
    assert "list prices" in out and "aws.amazon.com/dynamodb/pricing" in out
    assert len(env.double.requests) == requests and not fresh.exists(
        layout.backfill_plan(env.table)
    )
    assert truth(writes, windows[-1].last_exact)


def test_replayer_refuses_inside_a_window_unless_allowed_and_says_so(
    ddb: Any,
    s3: Any,
    archive: Archive,
    archive_path: Any,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = setup(ddb, s3, archive)
    writes = _spread(env, [0, 20, 21])  # "b" at +20 min and "c" at +21 min: inside window 2
    start = _ready(env, 1)
    env.chain().run(once=True, start=start)
    at = as_utc(env.created) + timedelta(minutes=20, seconds=30)
    argv = [
        "export",
        "--table-name",
        env.table,
        "--archive",
        str(archive_path),
        "--restore-date-time",
        iso_ms(at),
        "--output",
        str(tmp_path / "out"),
    ]
    code, _, err = replayer(capsys, *argv)
    assert code == EXIT_REFUSED and "1 key(s)" in err and "--allow-inexact" in err
    code, out, _ = replayer(capsys, *argv, "--allow-inexact")
    assert code == 0 and "INEXACT: 1 key(s)" in out
    summary = orjson.loads((tmp_path / "out" / "export.json").read_bytes())
    assert summary["inexact"]["uncertain_keys"] == 1 and summary["item_count"] == len(
        truth(writes, at)
    )
    code, out, _ = replayer(capsys, "status", "--archive", str(archive_path))
    assert code == 0 and "incremental-export, 3 window(s) of up to 15 min" in out
    assert "stream         none" not in out and "no stream" in out
