"""Planning: base choice, margins, generations, and every refusal (archives built directly)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from archiver.aws.error_table import EXIT_REFUSED
from archiver.format.storage import Archive
from archiver.format.timefmt import parse_iso
from replayer.exceptions import AfterWatermark, GapInLog, NoUsableBase, OutsideCoverage, Refused
from replayer.planning import plan as planning
from tests.replay_helpers import (
    T0,
    TABLE,
    TABLE_ID,
    Change,
    at,
    item,
    key,
    write_changes,
    write_coverage,
    write_gap,
    write_snapshot,
)

# Neither the format, the codec nor planning talks to AWS (see tests/conftest.py).
pytestmark = pytest.mark.no_aws


def _log(archive: Archive, *, table_id: str = TABLE_ID, label: str = "2026-03-01T00:00:00.000",
         seconds: tuple[int, ...] = (10, 20, 30)) -> list[str]:  # fmt: skip
    changes = [
        Change(n + 1, key(f"k{n}"), item(f"k{n}", v=n), at(s)) for n, s in enumerate(seconds)
    ]
    return write_changes(archive, changes, table_id=table_id, label=label)


def test_no_base_when_the_log_starts_at_table_creation(archive: Archive) -> None:
    write_coverage(archive, watermark=at(100))
    files = _log(archive)
    plan = planning.plan_restore(archive, TABLE, at(50))
    assert plan.base is None
    assert plan.log_from == T0
    assert plan.table_id == TABLE_ID
    assert list(plan.change_files) == files


def test_the_newest_base_valid_at_t_is_chosen_with_its_own_margins(archive: Archive) -> None:
    write_coverage(archive, covered_from=at(0), from_table_creation=False, watermark=at(1000))
    old = write_snapshot(archive, [item("a")], valid_from=at(105), log_from=at(95))
    new = write_snapshot(
        archive, [item("a")], valid_from=at(300), log_from=at(140), method="export"
    )
    write_snapshot(archive, [item("a")], table_id="another-generation", valid_from=at(400),
                   log_from=at(390))  # fmt: skip
    cases = [(at(200), old), (at(299), old), (at(300), new), (at(900), new)]
    for when, expected in cases:
        plan = planning.plan_restore(archive, TABLE, when)
        assert plan.base is not None and plan.base.snapshot_id == expected["snapshot_id"], when
        assert plan.log_from == parse_iso(expected["log_from"])


def test_no_usable_base_is_refused_with_exit_4(archive: Archive) -> None:
    write_coverage(archive, covered_from=at(0), from_table_creation=False, watermark=at(1000))
    write_snapshot(archive, [item("a")], valid_from=at(500), log_from=at(480))
    with pytest.raises(NoUsableBase, match=r"earliest is valid from 2026-03-01T12:08:20\.000") as e:
        planning.plan_restore(archive, TABLE, at(499))
    assert e.value.exit_code == EXIT_REFUSED


def test_a_base_needing_log_before_coverage_is_refused(archive: Archive) -> None:
    write_coverage(archive, covered_from=at(100), from_table_creation=False, watermark=at(1000))
    write_snapshot(archive, [item("a")], valid_from=at(110), log_from=at(90))
    with pytest.raises(OutsideCoverage, match="needs the log from"):
        planning.plan_restore(archive, TABLE, at(500))


def test_after_the_watermark_is_refused(archive: Archive) -> None:
    write_coverage(archive, watermark=at(100))
    assert planning.plan_restore(archive, TABLE, at(100)).at == at(100)  # inclusive
    with pytest.raises(AfterWatermark, match="after the watermark"):
        planning.plan_restore(archive, TABLE, at(100.001))


def test_nothing_is_restorable_before_the_archiver_caught_up(archive: Archive) -> None:
    write_coverage(archive)  # no watermark yet
    with pytest.raises(AfterWatermark, match="not caught up"):
        planning.plan_restore(archive, TABLE, at(1))
    with pytest.raises(AfterWatermark):
        planning.latest_restorable_time(archive, TABLE)


def test_an_unarchived_table_is_refused(archive: Archive) -> None:
    with pytest.raises(Refused, match="holds no coverage of table 'orders'"):
        planning.plan_restore(archive, TABLE, at(1))


def test_a_time_before_the_table_existed_is_refused(archive: Archive) -> None:
    write_coverage(archive, watermark=at(100))
    with pytest.raises(OutsideCoverage, match="did not exist"):
        planning.plan_restore(archive, TABLE, at(-1))


def test_a_gap_in_the_range_is_refused_unless_allowed(
    archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    write_coverage(archive, watermark=at(1000))
    write_gap(archive, at(40), at(60))
    write_gap(archive, at(10), at(20), table_id="an-older-generation")  # not this table's
    assert planning.plan_restore(archive, TABLE, at(40)).gaps == ()  # the gap is (40, 60)
    with pytest.raises(GapInLog, match=r"gap in \[.*records were trimmed") as exc:
        planning.plan_restore(archive, TABLE, at(41))
    assert exc.value.exit_code == EXIT_REFUSED
    with caplog.at_level(logging.WARNING):
        plan = planning.plan_restore(archive, TABLE, at(41), allow_gaps=True)
    assert len(plan.gaps) == 1
    assert "MISSING" in caplog.text
    assert "GAP (allowed)" in plan.describe()


def test_a_gap_before_the_base_does_not_matter(archive: Archive) -> None:
    write_coverage(archive, covered_from=at(0), from_table_creation=False, watermark=at(1000))
    write_gap(archive, at(10), at(20))
    write_snapshot(archive, [item("a")], valid_from=at(105), log_from=at(95))
    assert planning.plan_restore(archive, TABLE, at(500)).gaps == ()


def test_the_generation_alive_at_t_is_restored(archive: Archive) -> None:
    """A table deleted and recreated under the same name: each T gets its own generation's
    records, and the newer stream's files are not even read for the older one."""
    write_coverage(archive, table_id="gen-1", created=at(0), watermark=at(100))
    old = _log(archive, table_id="gen-1", label="2026-03-01T12:00:00.000")
    write_coverage(archive, table_id="gen-2", created=at(200), watermark=at(400))
    new = _log(archive, table_id="gen-2", label="2026-03-01T12:03:20.000", seconds=(210, 220))
    first = planning.plan_restore(archive, TABLE, at(50))
    assert first.table_id == "gen-1"
    assert list(first.change_files) == old
    second = planning.plan_restore(archive, TABLE, at(300))
    assert second.table_id == "gen-2"
    assert second.log_from == at(200)
    assert set(new) <= set(second.change_files)
    with pytest.raises(AfterWatermark):  # gen-1 was archived up to 100, then deleted
        planning.plan_restore(archive, TABLE, at(150))
    assert planning.latest_restorable_time(archive, TABLE) == at(400)


def test_partitions_outside_the_log_range_are_not_listed(archive: Archive) -> None:
    write_coverage(archive, created=T0 - timedelta(days=3), covered_from=T0 - timedelta(days=3),
                   from_table_creation=False, watermark=at(1000))  # fmt: skip
    early = write_changes(archive, [Change(1, key("a"), item("a"), T0 - timedelta(days=2))])
    late = write_changes(archive, [Change(2, key("a"), item("a", v=2), at(10))])
    write_snapshot(archive, [item("a")], valid_from=T0 - timedelta(hours=1),
                   log_from=T0 - timedelta(hours=2))  # fmt: skip
    plan = planning.plan_restore(archive, TABLE, at(500))
    assert plan.dt_range == (T0.date(), T0.date())
    assert list(plan.change_files) == late
    assert early[0] not in plan.change_files


def test_log_plans_check_coverage_and_gaps(archive: Archive) -> None:
    write_coverage(archive, covered_from=at(100), from_table_creation=False, watermark=at(1000))
    tail = planning.plan_log(archive, TABLE, at(200), at(300))
    assert (tail.after, tail.until, tail.table_id) == (at(200), at(300), TABLE_ID)
    with pytest.raises(OutsideCoverage):
        planning.plan_log(archive, TABLE, at(50), at(300))
    with pytest.raises(AfterWatermark):
        planning.plan_log(archive, TABLE, at(200), at(2000))
    write_gap(archive, at(250), at(260))
    with pytest.raises(GapInLog):
        planning.plan_log(archive, TABLE, at(200), at(300))


def test_the_plan_describes_itself(archive: Archive) -> None:
    write_coverage(archive, covered_from=at(0), from_table_creation=False, watermark=at(1000))
    manifest = write_snapshot(archive, [item("a"), item("b")], valid_from=at(105), log_from=at(95))
    _log(archive, seconds=(100, 200))
    text = planning.plan_restore(archive, TABLE, at(500)).describe({"log records": 2})
    assert manifest["snapshot_id"] in text
    assert "2 items" in text
    assert "[2026-03-01T12:01:35.000Z, 2026-03-01T12:08:20.000Z]" in text
    assert "log records    2" in text
