"""Property: undo of any window, over any history with any later writes, puts back exactly the
keys nobody changed since, and touches nothing else.

Histories are random puts and deletes over a few keys (several in one millisecond, deletes of
absent keys dropped), archived directly with or without old images (``NEW_AND_OLD_IMAGES`` or
``NEW_IMAGE``, whose ``before`` comes from the fold at T1); the live moto table holds the
history's final state, and a random window (T1, T2] is undone. The model: a key the window
changed (its state at T2 is not its state at T1) ends as at T1 when its live item is its state
at T2 (or at T1 already), and is otherwise a reported conflict, untouched; every other key —
changed only outside the window, or changed in it and back — is as it was.
"""

from __future__ import annotations

import itertools
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.format.storage import Archive
from tests.test_undo import Event, build, k, make_undo, state_at
from tests.workload import scan_state

_tables = itertools.count()


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Event], float, float]:
    n = draw(st.integers(1, 18))
    events: list[Event] = []
    seconds = 0.0
    for _ in range(n):
        seconds += draw(st.sampled_from([0.0, 0.3, 1.0, 2.5]))
        value = draw(st.one_of(st.none(), st.sampled_from(["x", "y", "z"])))
        events.append((round(seconds, 3), draw(st.integers(0, 3)), value))
    end = seconds + 1
    after = draw(st.integers(0, int(end * 10))) / 10
    until = draw(st.integers(int(after * 10) + 1, int(end * 10) + 1)) / 10
    return events, after, until


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(history=histories(), old_images=st.booleans())
def test_undo_puts_back_only_what_nobody_changed_since(
    ddb: Any, history: tuple[list[Event], float, float], old_images: bool
) -> None:
    events, after, until = history
    table = f"orders{next(_tables)}"
    with tempfile.TemporaryDirectory() as folder:
        archive = Archive.open(folder)
        # Events at 1 s + their time, so that T1 = 0 is the table's empty start.
        shifted = [(1 + seconds, i, value) for seconds, i, value in events]
        drain, timeline = build(ddb, archive, shifted, old_images=old_images, table=table)
        t1, t2 = 1 + after, 1 + until
        before, bad, now = state_at(timeline, t1), state_at(timeline, t2), state_at(timeline, 1e9)
        in_window = {
            k(i) for i, changes in timeline.items() if any(t1 < when <= t2 for when, _ in changes)
        }
        # A window that changed a key and back leaves nothing to undo, whatever came after.
        changed = {key for key in in_window if before.get(key) != bad.get(key)}
        conflicts = {key for key in changed if now.get(key) not in (bad.get(key), before.get(key))}
        expected = dict(now)
        for key in changed - conflicts:
            expected.pop(key, None)
            if key in before:
                expected[key] = before[key]

        undo = make_undo(ddb, archive, drain, t1, t2)
        report = undo.execute(undo.prepare())
        assert scan_state(ddb, table) == expected
        assert {c.key.keys for c in report.conflicts} == conflicts
        ddb.delete_table(TableName=table)
