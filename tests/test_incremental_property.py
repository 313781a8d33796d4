"""Properties of history from incremental exports, over random workloads and window lengths.

Writes are given to the export double with times chosen by the test (so windows of the real
15-minute minimum and days of history cost no waiting); exports go through moto's S3 and the
archiver's own conversion, restores through the real planner and fold. The truth is the writes
applied in order up to T.

* at every window's last instant a restore equals the truth;
* inside a window a restore is exact exactly when no key was written later in that window
  (then it equals the truth), else refused; with --allow-inexact the other keys are exact and
  the uncertain ones are as they were at the window's start;
* backfill (a base at PITR's earliest time + windows) plus a stream archive from some instant
  on gives the truth before the stream's start (at window ends) and after it (anywhere).
"""

from __future__ import annotations

import itertools
import secrets
import tempfile
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.format.exports.incremental import RESOLUTION, list_windows
from archiver.format.storage import Archive
from archiver.format.tables import table_id_of
from archiver.format.timefmt import as_utc
from archiver.snapshots.backfill import plan_backfill, run_backfill
from archiver.snapshots.export_chain import PitrPeriod
from replayer.exceptions import InexactRestore
from tests.incremental_double import LATEST_LAG, Write
from tests.incremental_helpers import Setup, delete, put, restored, setup, truth
from tests.replay_helpers import Change, write_changes, write_coverage

KEYS = ["a", "b", "c", "d"]
FAST = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@st.composite
def workloads(draw: st.DrawFn, span_ms: int) -> list[tuple[int, str, int | None]]:
    """``(time since start in ms, key, value or None for a delete)``, several at one time."""
    n = draw(st.integers(1, 14))
    times = sorted(draw(st.lists(st.integers(0, span_ms), min_size=n, max_size=n)))
    return [
        (t, draw(st.sampled_from(KEYS)), draw(st.one_of(st.none(), st.integers(0, 99))))
        for t in times
    ]


def _writes(start: datetime, workload: list[tuple[int, str, int | None]]) -> list[Write]:
    out = []
    for t, key, value in workload:
        at = start + timedelta(milliseconds=t)
        out.append(delete(at, key) if value is None else put(at, key, value))
    return out


def _env(ddb: Any, s3: Any, folder: str) -> Setup:
    return setup(
        ddb, s3, Archive.open(folder), table=f"t{secrets.token_hex(4)}", files_per_export=1
    )


def _last_writes(writes: list[Write], start: datetime, end: datetime) -> dict[str, datetime]:
    last: dict[str, datetime] = {}
    for write in writes:
        if start <= write.time < end:
            last[write.key_text] = max(last.get(write.key_text, write.time), write.time)
    return last


@FAST
@given(
    workload=workloads(span_ms=3600 * 1000),
    every=st.sampled_from([15, 20, 30]),
    probes=st.lists(st.floats(0, 1), min_size=2, max_size=5),
    view=st.sampled_from(["NEW_AND_OLD_IMAGES", "NEW_IMAGE"]),
)
def test_windows_restore_the_truth_where_the_plan_says_exact(
    ddb: Any,
    s3: Any,
    workload: list[tuple[int, str, int | None]],
    every: int,
    probes: list[float],
    view: str,
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        env = _env(ddb, s3, folder)
        created = as_utc(env.created)
        writes = _writes(created + timedelta(seconds=1), workload)
        env.double.add_writes(env.table, writes)
        env.double.enable_pitr(env.table, created - timedelta(hours=1))
        env.clock.advance(timedelta(hours=1, minutes=20))
        start = created - timedelta(minutes=1)  # before table creation: no base needed
        env.chain(every=timedelta(minutes=every), view=view).run(once=True, start=start)
        windows = list_windows(env.archive, env.table)
        assert windows[0].start == start
        assert all(a.end == b.start for a, b in itertools.pairwise(windows))
        latest = env.clock.now - LATEST_LAG
        assert latest - timedelta(minutes=every) < windows[-1].end <= latest

        for window in windows:
            at = window.last_exact
            assert restored(env.archive, env.table, at) == truth(writes, at)

        span = windows[-1].last_exact - created  # the table did not exist before
        for probe in probes:
            at = created + span * probe
            at = at.replace(microsecond=at.microsecond // 1000 * 1000)
            window = next(w for w in windows if w.start <= at < w.end)
            later = {
                k
                for k, t in _last_writes(writes, window.start, window.end).items()
                if t - timedelta(microseconds=t.microsecond % 1000) > at
            }
            if not later:
                assert restored(env.archive, env.table, at) == truth(writes, at)
                continue
            try:
                restored(env.archive, env.table, at)
            except InexactRestore as exc:
                assert f"{len(later)} key(s)" in str(exc)
            else:
                raise AssertionError(f"{at}: {len(later)} uncertain keys, yet no refusal")
            got = restored(env.archive, env.table, at, allow_inexact=True)
            expected = truth(writes, at)
            at_start = truth(writes, window.start - RESOLUTION)
            for key in later:
                expected.pop(key, None)
                if key in at_start:
                    expected[key] = at_start[key]
            assert got == expected


@FAST
@given(
    workload=workloads(span_ms=3 * 86_400 * 1000),
    stream_from_ms=st.integers(30 * 3600 * 1000, 60 * 3600 * 1000),
    probes=st.lists(st.floats(0, 1), min_size=2, max_size=4),
)
def test_backfill_plus_stream_gives_the_truth_before_and_after_the_streams_start(
    ddb: Any,
    s3: Any,
    workload: list[tuple[int, str, int | None]],
    stream_from_ms: int,
    probes: list[float],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        env = _env(ddb, s3, folder)
        created = as_utc(env.created)
        writes = _writes(created + timedelta(seconds=1), workload)
        env.double.add_writes(env.table, writes)
        env.double.enable_pitr(env.table, created)
        end = created + timedelta(days=3, hours=1)
        env.clock.now = end + timedelta(minutes=10)
        # The stream archive: every write from ``stream_from`` on, complete from there.
        stream_from = created + timedelta(milliseconds=stream_from_ms)
        table_id = table_id_of(env.description)
        changes = [
            Change(
                i + 1,
                dict(w.keys),
                None if w.new is None else dict(w.new),
                w.time,
                event_id=f"e{i}",
            )
            for i, w in enumerate(sorted(writes, key=lambda w: w.time))
            if w.time >= stream_from
        ]
        if changes:
            write_changes(env.archive, changes, table=env.table, table_id=table_id)
        write_coverage(
            env.archive,
            table=env.table,
            table_id=table_id,
            created=created,
            covered_from=stream_from,
            from_table_creation=False,
            watermark=end,
        )

        pitr = PitrPeriod.read(env.double, env.table)
        plan = plan_backfill(env.archive, env.table, env.description, pitr)
        assert plan.end == stream_from and len(plan.windows) >= 2
        assert all((b - a) <= timedelta(hours=24) for a, b in plan.windows)
        assert run_backfill(env.chain(), plan, lambda _: None) == 0

        windows = list_windows(env.archive, env.table)
        assert [(w.start, w.end) for w in windows] == list(plan.windows)
        for window in windows:
            at = window.last_exact
            assert restored(env.archive, env.table, at) == truth(writes, at)
        for probe in probes:
            at = stream_from + (end - stream_from) * probe
            at = at.replace(microsecond=at.microsecond // 1000 * 1000)
            assert restored(env.archive, env.table, at) == truth(writes, at)
        # A rerun finds the plan recorded and everything done: nothing is requested again.
        requests = len(env.double.requests)
        again = plan_backfill(env.archive, env.table, env.description, pitr)
        assert again == plan
        run_backfill(env.chain(), again, lambda _: None)
        assert len(env.double.requests) == requests
