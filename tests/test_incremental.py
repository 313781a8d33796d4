"""History from incremental exports, end to end over moto and the export double.

The table's writes are real (moto) and the double reads them back from moto's stream, so
each export holds what AWS would have exported; the double's clock is moved so windows of
the real minimum length (15 minutes) are due.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from archiver.format import coverage, gap_log, layout
from archiver.format.exports.incremental import list_windows
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc
from replayer.exceptions import GapInLog, InexactRestore
from tests.incremental_double import history_from_stream
from tests.incremental_helpers import pk, restored, setup, truth


def _writes(ddb: Any, table: str) -> None:
    for i in range(6):
        ddb.put_item(
            TableName=table, Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}, "b": {"B": bytes([i])}}
        )


def test_incremental_windows_restore_exactly_at_window_ends(
    ddb: Any, s3: Any, archive: Archive, aws_env: str
) -> None:
    streams = __import__("boto3").client("dynamodbstreams", endpoint_url=aws_env)
    env = setup(ddb, s3, archive)
    stream_arn = env.description["LatestStreamArn"]
    env.double._history_source = lambda table: history_from_stream(streams, stream_arn)
    _writes(ddb, env.table)
    time.sleep(0.05)
    history = history_from_stream(streams, stream_arn)
    middle = max(w.time for w in history) + timedelta(milliseconds=20)
    time.sleep(0.05)
    ddb.put_item(TableName=env.table, Item={"pk": {"S": "k1"}, "v": {"N": "100"}})
    ddb.delete_item(TableName=env.table, Key=pk("k2"))
    ddb.put_item(TableName=env.table, Item={"pk": {"S": "k9"}, "v": {"N": "9"}})
    history = history_from_stream(streams, stream_arn)
    env.double.enable_pitr(env.table, env.created - timedelta(hours=1))
    env.clock.advance(timedelta(hours=1))

    chain = env.chain()
    done = chain.run(once=True, start=middle - timedelta(minutes=15))
    windows = list_windows(archive, env.table)
    assert done == len(windows) >= 2
    assert windows[0].end == middle
    for window in windows:
        assert restored(archive, env.table, window.last_exact) == truth(history, window.last_exact)
    scan = ddb.scan(TableName=env.table)["Items"]
    assert len(restored(archive, env.table, windows[-1].last_exact)) == len(scan) == 6

    # Every window again: nothing new is exported, converted or written.
    files = sorted(archive.find(layout.changes_table_dir(env.table)))
    requests = len(env.double.requests)
    assert env.chain().run(once=True) == 0
    assert sorted(archive.find(layout.changes_table_dir(env.table))) == files
    assert len(env.double.requests) == requests

    # Coverage shows the windows as one incremental segment of 15-minute granularity.
    current = coverage.current(archive, env.table)
    assert current is not None and current["mode"] == "incremental"
    (segment,) = current["segments"]
    assert segment["granularity_seconds"] == 900 and segment["windows"] == len(windows)


def test_inside_a_window_exact_only_when_no_key_was_written_later(
    ddb: Any, s3: Any, archive: Archive
) -> None:
    from tests.incremental_helpers import delete, put

    env = setup(ddb, s3, archive)
    t0 = as_utc(env.created) + timedelta(minutes=1)
    writes = [
        put(t0, "a", 1),
        put(t0, "b", 1),
        put(t0 + timedelta(minutes=20), "a", 2),
        put(t0 + timedelta(minutes=25), "b", 2),
        delete(t0 + timedelta(minutes=26), "a"),
    ]
    env.double.add_writes(env.table, writes)
    env.double.enable_pitr(env.table, env.created - timedelta(hours=1))
    env.clock.advance(timedelta(hours=2))
    env.chain().run(once=True, start=as_utc(env.created) - timedelta(minutes=5))
    # Windows: [c−5m, c+10m) holds the first writes, [c+10m, c+25m) "a"→2, [c+25m, c+40m) "b"→2
    # and the delete of "a".
    inside = t0 + timedelta(minutes=22)  # after "a"→2, nothing else later in that window
    assert restored(archive, env.table, inside) == truth(writes, inside)
    early = t0 + timedelta(minutes=12)  # "a" is written later in the window: uncertain
    with pytest.raises(InexactRestore, match=r"1 key\(s\).*nearest exact instants"):
        restored(archive, env.table, early)
    got = restored(archive, env.table, early, allow_inexact=True)
    assert got == truth(writes, early)  # "a" had no earlier write in the window: same here
    plan = __import__("replayer.planning.plan", fromlist=["x"]).plan_restore(
        archive, env.table, early, allow_inexact=True, convert=False
    )
    assert plan.inexact is not None and plan.inexact.uncertain_keys == 1


def test_a_failed_export_is_a_gap_and_the_chain_resumes_with_a_base(
    ddb: Any, s3: Any, archive: Archive
) -> None:
    from tests.incremental_helpers import put

    env = setup(ddb, s3, archive)
    start = as_utc(env.created) - timedelta(minutes=5)
    t0 = as_utc(env.created) + timedelta(minutes=1)
    writes = [
        put(t0 + timedelta(minutes=m), k, m) for m, k in [(0, "a"), (17, "b"), (33, "a"), (50, "c")]
    ]
    env.double.add_writes(env.table, writes)
    env.double.enable_pitr(env.table, env.created - timedelta(hours=1))
    second = start + timedelta(minutes=15)
    env.double.fail_exports(
        lambda r: r.get("IncrementalExportSpecification", {}).get("ExportFromTime") == second,
        code="S3_ERROR",
    )
    env.clock.advance(timedelta(hours=2))
    env.chain().run(once=True, start=start)
    (gap,) = gap_log.read_gaps(archive, env.table)
    assert gap["reason"] == gap_log.GAP_EXPORT_FAILED and "S3_ERROR" in gap["detail"]
    assert gap["source"] == "incremental-export"
    windows = list_windows(archive, env.table)
    assert windows[0].end == second and windows[1].start == second + timedelta(minutes=15)
    before = windows[0].last_exact
    assert restored(archive, env.table, before) == truth(writes, before)
    later = windows[-1].last_exact
    with pytest.raises(GapInLog, match="export of this window failed"):
        # The newest base (taken after the hole) serves times after it; this one needs the
        # history from the start, across the hole.
        restored(archive, env.table, windows[1].start + timedelta(seconds=30))
    assert restored(archive, env.table, later) == truth(writes, later)
