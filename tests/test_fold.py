"""The fold's semantics (DESIGN.md "Replay semantics") over archives built directly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pytest

from archiver.format import layout
from archiver.format.storage import Archive
from replayer.engines.fold import Fold, FoldSettings, may_hold_duplicates, stream_sources
from replayer.planning import plan as planning
from tests.replay_helpers import (
    TABLE,
    Change,
    at,
    canon,
    item,
    key,
    write_changes,
    write_coverage,
    write_snapshot,
)

# Neither the format, the codec nor planning talks to AWS (see tests/conftest.py).
pytestmark = pytest.mark.no_aws


def state(archive: Archive, seconds: float, **kwargs: Any) -> dict[str, str]:
    plan = planning.plan_restore(archive, TABLE, at(seconds))
    with Fold(archive, FoldSettings(**kwargs)) as fold:
        result = fold.state_at(plan)
        rows = [row for batch in result.batches() for row in batch.to_pylist()]
        assert result.count == len(rows)
    out = {row["keys"]: row["item"] for row in rows}
    assert len(out) == len(rows), "a key appeared twice"
    return out


def tail(archive: Archive, after: float, until: float) -> dict[str, str | None]:
    plan = planning.plan_log(archive, TABLE, at(after), at(until))
    with Fold(archive) as fold:
        result = fold.log_changes(plan)
        return {r["keys"]: r["item"] for b in result.batches() for r in b.to_pylist()}


@pytest.fixture
def covered(archive: Archive) -> Archive:
    write_coverage(archive, watermark=at(10_000))
    return archive


def test_latest_record_per_key_wins_in_stream_order_up_to_t_inclusive(covered: Archive) -> None:
    write_changes(covered, [
        Change(1, key("a"), item("a", v=1), at(10), "INSERT"),
        Change(2, key("b"), item("b", v=1), at(10), "INSERT"),
        # same second: sequence order decides, not event time
        Change(3, key("a"), item("a", v=2), at(20)),
        Change(4, key("a"), item("a", v=3), at(20)),
        Change(5, key("b"), item("b", v=2), at(30)),
    ])  # fmt: skip
    assert state(covered, 9) == {}
    assert state(covered, 10) == canon([item("a", v=1), item("b", v=1)])
    assert state(covered, 29.999) == canon([item("a", v=3), item("b", v=1)])
    assert state(covered, 30) == canon([item("a", v=3), item("b", v=2)])


def test_remove_means_absent_and_a_key_can_come_back(covered: Archive) -> None:
    write_changes(covered, [
        Change(1, key("a"), item("a", v=1), at(10), "INSERT"),
        Change(2, key("a"), None, at(20)),
        Change(3, key("a"), item("a", v=3), at(30), "INSERT"),
    ])  # fmt: skip
    assert state(covered, 15) == canon([item("a", v=1)])
    assert state(covered, 25) == {}
    assert state(covered, 35) == canon([item("a", v=3)])


def test_a_record_archived_twice_counts_once(covered: Archive) -> None:
    changes = [
        Change(1, key("b"), item("b"), at(9)),
        Change(2, key("a"), item("a", v=1), at(10)),
        Change(3, key("a"), item("a", v=2), at(11)),
        Change(4, key("b"), None, at(12)),
        Change(5, key("c"), item("c"), at(13)),
    ]
    write_changes(covered, changes[:4])
    write_changes(covered, changes[2:])  # overlapping files: 3 and 4 are in both
    assert may_hold_duplicates(covered.find("changes", ".parquet"))
    assert state(covered, 100) == canon([item("a", v=2), item("c")])


def test_log_outranks_base_and_the_base_fills_the_rest(archive: Archive) -> None:
    write_coverage(archive, covered_from=at(0), from_table_creation=False, watermark=at(10_000))
    write_snapshot(
        archive,
        [item("kept", v=0), item("changed", v=0), item("deleted", v=0), item("late", v=0)],
        valid_from=at(105),
        log_from=at(95),
    )
    write_changes(archive, [
        Change(1, key("changed"), item("changed", v=1), at(96)),  # in the margin: re-applied
        Change(2, key("deleted"), None, at(150)),
        Change(3, key("new"), item("new", v=1), at(160), "INSERT"),
        Change(4, key("late"), item("late", v=9), at(900)),  # after T
        Change(5, key("early"), item("early", v=9), at(50)),  # before log_from: not read
    ])  # fmt: skip
    assert state(archive, 500) == canon(
        [item("kept", v=0), item("changed", v=1), item("new", v=1), item("late", v=0)]
    )


def test_a_base_with_no_log_in_its_range_is_the_state(archive: Archive) -> None:
    write_coverage(archive, covered_from=at(0), from_table_creation=False, watermark=at(10_000))
    write_snapshot(archive, [item("a", v=1), item("b", v=2)], valid_from=at(105), log_from=at(95))
    write_changes(archive, [Change(1, key("a"), None, at(50))])  # before log_from
    assert state(archive, 500) == canon([item("a", v=1), item("b", v=2)])


def test_records_of_another_table_generation_are_ignored(covered: Archive) -> None:
    write_changes(covered, [Change(1, key("a"), item("a"), at(10))])
    write_changes(covered, [Change(2, key("x"), item("x"), at(11))], table_id="someone-else",
                  shard_id="shardId-2")  # fmt: skip
    assert state(covered, 100) == canon([item("a")])


def test_a_later_stream_wins_whatever_its_sequence_numbers(covered: Archive) -> None:
    """A stream disabled and re-enabled: the new stream's numbers may be lower."""
    write_changes(covered, [Change(900, key("a"), item("a", v=1), at(10))],
                  label="2026-03-01T11:00:00.000")  # fmt: skip
    write_changes(covered, [Change(5, key("a"), item("a", v=2), at(20))],
                  label="2026-03-01T12:00:15.000")  # fmt: skip
    files = covered.find("changes", ".parquet")
    assert len(stream_sources(files)) == 2
    assert state(covered, 15) == canon([item("a", v=1)])
    assert state(covered, 25) == canon([item("a", v=2)])


def test_files_with_unknown_names_are_ordered_by_their_records(covered: Archive) -> None:
    paths = write_changes(covered, [Change(1, key("a"), item("a", v=1), at(10))],
                          label="2026-03-01T11:00:00.000")  # fmt: skip
    write_changes(covered, [Change(2, key("a"), item("a", v=2), at(20))],
                  label="2026-03-01T12:00:15.000")  # fmt: skip
    renamed = paths[0].rsplit("/", 1)[0] + "/compacted-by-hand.parquet"
    covered.put_bytes(renamed, covered.get_bytes(paths[0]))
    covered.delete(paths[0])
    assert stream_sources(covered.find("changes", ".parquet"))[0].ord_sql.startswith("stream_arn")
    assert state(covered, 25) == canon([item("a", v=2)])


def test_log_tail_gives_each_changed_key_its_latest_image_or_null(covered: Archive) -> None:
    write_changes(covered, [
        Change(1, key("before"), item("before"), at(10)),
        Change(2, key("a"), item("a", v=1), at(20)),  # exactly at `after`: excluded
        Change(3, key("b"), item("b", v=1), at(21)),
        Change(4, key("b"), None, at(22)),
        Change(5, key("c"), item("c", v=1), at(23)),
        Change(6, key("c"), item("c", v=2), at(30)),
        Change(7, key("d"), item("d"), at(31)),  # after `until`
    ])  # fmt: skip
    got = tail(covered, 20, 30)
    assert got == {'{"pk":{"S":"b"}}': None, **canon([item("c", v=2)])}


def test_a_file_compacted_away_after_planning_is_found_again(covered: Archive) -> None:
    """Compaction replaces files between the listing and the read: the fold lists again."""
    changes = [Change(n, key(f"k{n % 3}"), item(f"k{n % 3}", v=n), at(n)) for n in range(1, 10)]
    small = write_changes(covered, changes, per_file=3)
    plan = planning.plan_restore(covered, TABLE, at(100))
    merged = write_changes(covered, changes)  # the compacted file…
    for rel in small:  # …and its inputs gone after their grace period
        covered.delete(rel)
    assert set(plan.change_files) == set(small)
    with Fold(covered) as fold:
        result = fold.state_at(plan)
        rows = {r["keys"]: r["item"] for b in result.batches() for r in b.to_pylist()}
    assert rows == canon([item("k0", v=9), item("k1", v=7), item("k2", v=8)])
    assert merged


def test_a_result_larger_than_the_memory_limit_spills_to_disk(
    covered: Archive, tmp_path: Any
) -> None:
    n = 30_000  # ~60 MB of items, folded under a 32 MB limit
    changes = [
        Change(i + 1, key(f"key-{i:05d}"), item(f"key-{i:05d}", v=i, pad="x" * 2000), at(i / 1000))
        for i in range(n)
    ]
    write_changes(covered, changes, per_file=10_000)
    plan = planning.plan_restore(covered, TABLE, at(100))
    spill = tmp_path / "spill"
    settings = FoldSettings(memory_limit="32MB", temp_directory=str(spill), threads=1)
    with Fold(covered, settings) as fold:
        result = fold.state_at(plan)
        spilled = fold.con.execute("SELECT sum(size) FROM duckdb_temporary_files()").fetchall()
        streamed = 0
        for batch in result.batches():
            streamed += batch.num_rows
            assert batch.nbytes < 32 * 2**20
    assert result.count == streamed == n
    assert spilled[0][0] and spilled[0][0] > 2**20, "nothing was written to the temp directory"


def test_the_fold_reads_an_archive_on_s3(s3_archive: Archive) -> None:
    write_coverage(s3_archive, covered_from=at(0), from_table_creation=False, watermark=at(1000))
    write_snapshot(s3_archive, [item("base", v=0), item("gone", v=0)], valid_from=at(20),
                   log_from=at(5))  # fmt: skip
    write_changes(s3_archive, [
        Change(1, key("a"), item("a", v=1), at(10)),
        Change(2, key("gone"), None, at(30)),
        Change(3, key("a"), item("a", v=2), at(40)),
    ])  # fmt: skip
    assert state(s3_archive, 35) == canon([item("base", v=0), item("a", v=1)])
    assert state(s3_archive, 45) == canon([item("base", v=0), item("a", v=2)])


def test_results_stream_in_bounded_batches(covered: Archive) -> None:
    write_changes(covered, [Change(i + 1, key(f"k{i}"), item(f"k{i}"), at(1)) for i in range(250)])
    plan = planning.plan_restore(covered, TABLE, at(5))
    with Fold(covered) as fold:
        result = fold.state_at(plan)
        sizes = [b.num_rows for b in result.batches(batch_rows=100)]
        assert result.count == 250
    assert sum(sizes) == 250 and max(sizes) <= 100
    assert all(isinstance(b, pa.RecordBatch) for b in [pa.record_batch([[1]], names=["x"])])


def test_duplicate_detection_follows_file_names() -> None:
    def name(label: str, shard: str, first: int, last: int) -> str:
        return layout.change_file(TABLE, "2026-03-01", label, shard, str(first), str(last))

    label = "2026-03-01T00:00:00.000"
    disjoint: Sequence[str] = [name(label, "s1", 1, 10), name(label, "s1", 11, 20),
                               name(label, "s2", 5, 15)]  # fmt: skip
    assert not may_hold_duplicates(disjoint)
    assert may_hold_duplicates([*disjoint, name(label, "s1", 10, 12)])
    assert may_hold_duplicates([name(label, "s1", 1, 10), name(label, layout.LAMBDA_SHARD, 1, 10)])


def test_rows_from_elsewhere_load_into_a_session_as_a_result(monkeypatch: Any) -> None:
    """A scanned table or an Athena result joins a fold's session as a result like a fold's
    (what verify compares), in inserts of bounded size."""
    from replayer.engines import fold as fold_module

    monkeypatch.setattr(fold_module, "_LOAD_ROWS", 3)  # several inserts for 7 rows
    batches = [
        pa.record_batch(
            [[f'{{"pk":{{"S":"{i}"}}}}' for i in chunk], ["{}"] * len(chunk)],
            schema=fold_module.ROWS,
        )
        for chunk in (range(0, 2), range(2, 6), range(6, 7))
    ]
    with Fold(None) as session:
        loaded = session.load_rows("scanned", iter(batches))
        assert loaded.count == 7 and loaded.table == "scanned"
        keys = [row["keys"] for batch in loaded.batches(ordered=True) for row in batch.to_pylist()]
        assert keys == [f'{{"pk":{{"S":"{i}"}}}}' for i in range(7)]
        assert session.load_rows("empty", iter([])).count == 0
