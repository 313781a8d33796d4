"""Property: any random history, replayed to any instant, equals a model of the table then.

Histories are written directly as change files (the archiver's own format code, with event
times chosen by the test, so no clock is waited for): random puts and deletes over a few keys,
several records in the same second, a stream disabled and re-enabled (the new stream's
sequence numbers start lower), records archived twice in overlapping files, random file
boundaries — and optionally a *fuzzy* base snapshot, where each key's item is its state at
some moment while the scan ran, as a real parallel scan of a changing table gives. The model
applies the records in stream order up to T; the fold must agree exactly, and its log tail
over any (after, until] must give each changed key its latest image (or deletion).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from replayer.engines.fold import Fold
from replayer.planning import plan as planning
from tests.replay_helpers import (
    TABLE,
    Change,
    at,
    write_changes,
    write_coverage,
    write_snapshot,
)

LABELS = ("2026-03-01T11:00:00.000", "2026-03-01T12:00:30.000")


@dataclass(frozen=True)
class Record:
    label: int  # index into LABELS
    seq: int
    time_ms: int  # since T0
    key: str
    value: int | None  # None: a REMOVE


def _item(key: str, value: int) -> dict[str, Any]:
    return {"pk": {"S": key}, "v": {"N": str(value)}, "b": {"B": bytes([value % 256])},
            "m": {"M": {"l": {"L": [{"N": f"{value}.50"}]}}}}  # fmt: skip


@st.composite
def histories(draw: st.DrawFn) -> list[Record]:
    n = draw(st.integers(1, 40))
    switch = draw(st.integers(0, n))  # records from here on are in the second stream
    records = []
    seen: set[str] = set()
    time_ms = 0
    seq = {0: draw(st.integers(1000, 5000)), 1: draw(st.integers(1, 900))}
    for i in range(n):
        time_ms += draw(st.sampled_from([0, 0, 250, 1000, 1700, 3000]))
        if i == switch:
            time_ms = max(time_ms, 30_000)  # the second stream was created at +30 s
        label = 1 if i >= switch else 0
        seq[label] += draw(st.integers(1, 3))  # increasing, not contiguous
        key = draw(st.sampled_from(["a", "b", "c", "d"]))
        value = draw(st.one_of(st.none(), st.integers(0, 999)))
        if value is None and key not in seen:
            # A stream has no record of deleting an item that never existed: in a log from
            # table creation every key starts with an INSERT.
            value = draw(st.integers(0, 999))
        seen.add(key)
        records.append(Record(label, seq[label], time_ms, key, value))
    return records


def model(records: list[Record], until_ms: float, since_ms: float = float("-inf"),
          start: dict[str, str] | None = None) -> dict[str, str | None]:  # fmt: skip
    """Apply records in stream order with since < time ≤ until; deletions kept as None."""
    state: dict[str, str | None] = dict(start or {})
    for r in sorted(records, key=lambda r: (r.label, r.seq)):
        if since_ms < r.time_ms <= until_ms:
            state[r.key] = None if r.value is None else canonical_json(_item(r.key, r.value))
    return state


def alive(state: dict[str, str | None]) -> dict[str, str]:
    return {canonical_json({"pk": {"S": k}}): v for k, v in state.items() if v is not None}


def write(archive: Archive, records: list[Record], splits: list[int], duplicated: bool) -> None:
    for label_index, label in enumerate(LABELS):
        mine = [r for r in records if r.label == label_index]
        if not mine:
            continue
        changes = [
            Change(
                r.seq,
                {"pk": {"S": r.key}},
                None if r.value is None else _item(r.key, r.value),
                at(r.time_ms / 1000),
                event_id=f"{label_index}-{r.seq}",
            )
            for r in mine
        ]
        per_file = splits[label_index % len(splits)]
        write_changes(archive, changes, label=label, per_file=per_file)
        if duplicated and len(changes) > 1:  # re-archived with other file boundaries
            write_changes(archive, changes[1:], label=label, per_file=per_file + 1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=histories(),
    splits=st.lists(st.integers(1, 7), min_size=1, max_size=2),
    duplicated=st.booleans(),
    use_base=st.booleans(),
    base_window=st.tuples(st.integers(0, 60_000), st.integers(0, 4_000)),
    fuzz=st.randoms(use_true_random=False),
    t_offset=st.integers(0, 70_000),
    tail_window=st.tuples(st.integers(0, 70_000), st.integers(0, 20_000)),
)
def test_the_fold_equals_the_model_at_any_instant(
    records: list[Record],
    splits: list[int],
    duplicated: bool,
    use_base: bool,
    base_window: tuple[int, int],
    fuzz: Any,
    t_offset: int,
    tail_window: tuple[int, int],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        archive = Archive.open(folder)
        end_ms = 200_000
        write(archive, records, splits, duplicated)
        t_ms = t_offset
        if use_base:
            # A fuzzy scan from S to F: each key's item is its state at some moment in between.
            scan_start, scan_length = base_window
            scan_end = scan_start + scan_length
            base = {}
            for key in "abcd":
                moment = fuzz.randint(scan_start, scan_end)
                value = model(records, moment).get(key)
                if value is not None:
                    base[key] = value
            write_coverage(archive, covered_from=at(-100), from_table_creation=False,
                           watermark=at(end_ms / 1000))  # fmt: skip
            write_snapshot(
                archive,
                [orjson.loads(v) for v in base.values()],
                valid_from=at(scan_end / 1000) + timedelta(seconds=5),
                log_from=at(scan_start / 1000) - timedelta(seconds=5),
            )
            t_ms = scan_end + 5_000 + t_offset
            # The fold's view: the base's items, then every record from log_from on — which is
            # the table at T whatever moment of the scan each item came from.
            expected = alive(model(records, t_ms, since_ms=scan_start - 5_000 - 0.5, start=base))
            assert expected == alive(model(records, t_ms))
        else:
            write_coverage(archive, watermark=at(end_ms / 1000))
            expected = alive(model(records, t_ms))

        plan = planning.plan_restore(archive, TABLE, at(t_ms / 1000))
        assert (plan.base is not None) == use_base
        with Fold(archive) as fold:
            result = fold.state_at(plan)
            got = {r["keys"]: r["item"] for b in result.batches() for r in b.to_pylist()}
            assert result.count == len(got)
            assert got == expected

            after_ms, length = tail_window
            if not use_base:
                tail = planning.plan_log(archive, TABLE, at(after_ms / 1000),
                                         at((after_ms + length) / 1000))  # fmt: skip
                changed = fold.log_changes(tail)
                got_tail = {r["keys"]: r["item"] for b in changed.batches() for r in b.to_pylist()}
                changes = model(records, after_ms + length, since_ms=after_ms)
                want_tail = {canonical_json({"pk": {"S": k}}): v for k, v in changes.items()}
                assert got_tail == want_tail
