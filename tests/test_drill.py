"""``ddb-replayer drill``: the archive against AWS's own copy at T, through the export double.

The archive is written directly (``tests.replay_helpers``) with event times the test chooses;
AWS's side is :class:`tests.incremental_double.ExportDouble` over a moto table, serving full
exports at ``ExportTime`` from a write history the test gives it — the same writes as the
archive's, or with some the archive never received (a tampered value, an item it misses, one
it should not have, a hole). moto's own exports ignore ``ExportTime`` (AWS-FORMATS.md).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_DIFFERENCES, EXIT_REFUSED, EXIT_USAGE
from archiver.format import gap_log
from archiver.format.storage import Archive
from archiver.format.tables import table_id_of
from archiver.format.timefmt import iso_ms, utcnow
from archiver.native.pitr import describe_pitr
from replayer.drill import record
from replayer.drill.native import pitr_copy
from replayer.drill.run import run_drill
from replayer.drill.window import drill_window, random_time
from tests.conftest import create_table
from tests.incremental_double import Clock, ExportDouble, Write
from tests.replay_helpers import (
    Change,
    archive_table,
    item,
    key,
    replayer,
    write_changes,
    write_coverage,
    write_snapshot,
)

TABLE = "orders"
BUCKET = "drill-staging"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
AT = T0 + timedelta(seconds=180)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _history() -> list[Change]:
    """20 inserts, 10 modifies, a delete, and two writes within a minute of ``AT``."""
    changes: list[Change] = []
    seq = 0

    def add(when: float, name: str, new: dict[str, Any] | None) -> None:
        nonlocal seq
        seq += 1
        changes.append(Change(seq, key(name), new, _at(when)))

    for i in range(20):
        add(i, f"k{i:02d}", item(f"k{i:02d}", v=i))
    for i in range(0, 20, 2):
        add(100 + i, f"k{i:02d}", item(f"k{i:02d}", v=100 + i, tag="modified"))
    add(150, "k19", None)
    add(200, "k03", item("k03", v=3000))
    return changes


def _writes(changes: Sequence[Change]) -> list[Write]:
    return [Write(c.time, dict(c.key), None if c.new is None else dict(c.new)) for c in changes]


class Drill:
    """A moto table with PITR on (in the double), its archive, and the double's history."""

    def __init__(self, ddb: Any, s3: Any, archive_path: Path, *, fuzz: float = 0.0) -> None:
        described = create_table(ddb, TABLE)
        self.table_id = table_id_of(described)
        s3.create_bucket(Bucket=BUCKET)
        self.clock = Clock(T0 + timedelta(hours=1))
        self.double = ExportDouble(
            ddb, s3, clock=self.clock, full_export_fuzz=timedelta(seconds=fuzz)
        )
        self.double.enable_pitr(TABLE, T0 - timedelta(hours=1))
        self.archive_path = archive_path
        self.archive = Archive.open(str(archive_path))

    def build(self, archived: Sequence[Change], truth: Sequence[Change] | None = None) -> None:
        write_changes(self.archive, archived, table=TABLE, table_id=self.table_id, per_file=7)
        write_coverage(
            self.archive, table=TABLE, table_id=self.table_id, created=T0, watermark=_at(600)
        )
        self.double.add_writes(TABLE, _writes(archived if truth is None else truth))

    def cli(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
            *extra: str) -> tuple[int, str, str]:  # fmt: skip
        real = AwsSettings.client
        double = self.double

        def client(settings: AwsSettings, service: str, **kwargs: Any) -> Any:
            made = real(settings, service, **kwargs)  # type: ignore[call-overload]
            return double if service == "dynamodb" else made

        monkeypatch.setattr(AwsSettings, "client", client)
        return replayer(capsys, "drill", "--table-name", TABLE, "--archive",
                        str(self.archive_path), "--staging", f"s3://{BUCKET}/drills",
                        "--poll-seconds", "0", *extra)  # fmt: skip


def test_an_untouched_archive_drills_clean_and_is_recorded(
    ddb: Any, s3: Any, archive_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    drill = Drill(ddb, s3, archive_path, fuzz=60.0)
    drill.build(_history())
    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(AT))
    assert code == 0, err + out
    assert "identical: drill of orders at 2026-03-01T12:03:00.000Z (export)" in out
    # k03 (written at +200 s) and k19 (deleted at +150 s) are within 60 s of T.
    assert "18 items compared, 2 not comparable" in out
    assert "price: " in out
    [line] = record.read(drill.archive, TABLE)
    assert (line["differences"], line["items_compared"], line["not_comparable"]) == (0, 18, 2)
    assert line["method"] == "export" and line["at"] == "2026-03-01T12:03:00.000Z"
    assert line["rpo_seconds"] > 0 and line["fold_seconds"] >= 0
    # The export was staged and removed again.
    assert not s3.list_objects_v2(Bucket=BUCKET).get("Contents")

    code, out, err = replayer(capsys, "status", "--archive", str(archive_path))
    assert code == 0, err
    assert "last drill   2026-03-01T12:03:00.000Z export: identical" in out


def test_the_margin_is_what_makes_a_fuzzy_export_exact(
    ddb: Any, s3: Any, archive_path: Path
) -> None:
    """With every key written near T seen by the export at its own instant, comparing those
    keys would report false differences; the drill leaves them out and stays exact."""
    drill = Drill(ddb, s3, archive_path, fuzz=60.0)
    changes = _history()
    drill.build(changes)
    late = [c for c in changes if abs((c.time - AT).total_seconds()) <= 60]
    assert late  # the workload does write within the margin
    result = _run(drill, margin=timedelta(0))
    seen = {e["keys"] for e in result.examples}
    assert seen <= {orjson.dumps(c.key).decode() for c in late}
    result = _run(drill)
    assert result.identical and result.not_comparable == 2


def _run(drill: Drill, margin: timedelta | None = None, at: datetime = AT) -> Any:
    from replayer.drill import native

    store = Archive.open(f"s3://{BUCKET}/drills/x")
    arn = drill.double.describe_table(TableName=TABLE)["Table"]["TableArn"]
    return run_drill(
        drill.archive,
        TABLE,
        at,
        method="export",
        margin=margin,
        native_side=lambda when: native.export_copy(
            drill.double, arn, TABLE, when, store, poll_seconds=0, sleep=lambda _: None
        ),
    )


def _tampered(changes: list[Change], kind: str) -> tuple[list[Change], list[Change]]:
    """(what the archive holds, what AWS holds)."""
    truth = list(changes)
    archived = list(changes)
    if kind == "value":  # AWS changed k05 at +50 s; the archive never heard of it
        truth.append(Change(900, key("k05"), item("k05", v=999), _at(50)))
    elif kind == "missing":  # an item the archive does not have
        truth.append(Change(901, key("k-new"), item("k-new", v=1), _at(60)))
    elif kind == "extra":  # AWS deleted k07; the archive still has it
        truth.append(Change(902, key("k07"), None, _at(70)))
    else:  # a hole: records +10..+12 s lost by the archive, silently
        archived = [c for c in changes if not _at(10) <= c.time <= _at(12)]
    return archived, truth


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("value", ("different", '{"pk":{"S":"k05"}}')),
        ("missing", ("missing", '{"pk":{"S":"k-new"}}')),
        ("extra", ("extra", '{"pk":{"S":"k07"}}')),
        ("hole", ("missing", '{"pk":{"S":"k11"}}')),
    ],
)
def test_each_kind_of_damage_drills_as_a_difference_naming_the_key(
    ddb: Any, s3: Any, archive_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, kind: str, expected: tuple[str, str],
) -> None:  # fmt: skip
    drill = Drill(ddb, s3, archive_path, fuzz=60.0)
    archived, truth = _tampered(_history(), kind)
    drill.build(archived, truth)
    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(AT))
    assert code == EXIT_DIFFERENCES, err + out
    assert "DIFFERENT" in out
    what, keys = expected
    assert f"  {what:<9} {keys}" in out
    [line] = record.read(drill.archive, TABLE)
    assert line["differences"] >= 1
    examples = [orjson.loads(e) for e in line["examples"]]
    assert {"kind": what, "keys": keys} in [{"kind": e["kind"], "keys": e["keys"]}
                                           for e in examples]  # fmt: skip
    if kind == "value":  # both sides in full
        assert examples[0]["aws"] == '{"pk":{"S":"k05"},"v":{"N":"999"}}'
        assert examples[0]["archive"] == '{"pk":{"S":"k05"},"v":{"N":"5"}}'
    if kind == "hole":  # k10..k12 were inserted in the hole; k10 and k12 were modified
        # again later (full images), so only k11 is wrong at T
        assert (line["missing"], line["extra"], line["different"]) == (1, 0, 0)


def test_random_times_fall_inside_both_windows(
    ddb: Any, s3: Any, archive_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    drill = Drill(ddb, s3, archive_path)
    drill.build(_history())
    margin = timedelta(seconds=60)
    # PITR starts after the archive does, and the archive's watermark ends first.
    drill.double.disable_pitr(TABLE, T0)
    drill.double.enable_pitr(TABLE, _at(30))
    drill.clock.now = _at(900)
    window = drill_window(drill.archive, TABLE, describe_pitr(drill.double, TABLE), margin)
    assert (window.lo, window.hi) == (_at(30), _at(540))
    rng = random.Random(7)
    for _ in range(500):
        assert _at(30) <= random_time(window, rng) <= _at(540)
    code, out, err = drill.cli(capsys, monkeypatch, "--random", "--dry-run")
    assert code == 0, err
    printed = out.split("drill orders at ", 1)[1].split(" ", 1)[0]
    assert window.contains(datetime.fromisoformat(printed.replace("Z", "+00:00")))
    assert "dry run: nothing requested" in out and not drill.double.requests
    # --at outside the window is refused before anything is requested.
    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(_at(580)))
    assert code == EXIT_REFUSED and "too recent to drill" in err
    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(_at(10)))
    assert code == EXIT_REFUSED and "outside the drillable window" in err
    assert not drill.double.requests
    # A local archive without --staging: the export has nowhere to go.
    monkeypatch.setattr(AwsSettings, "client", lambda s, svc, **kw: drill.double)
    code, out, err = replayer(capsys, "drill", "--table-name", TABLE, "--archive",
                              str(archive_path), "--at", iso_ms(AT))  # fmt: skip
    assert code == EXIT_USAGE and "--staging" in err


def test_a_recorded_gap_refuses_the_drill(
    ddb: Any, s3: Any, archive_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    drill = Drill(ddb, s3, archive_path)
    drill.build(_history())
    gap_log.append_gap(drill.archive, TABLE, table_id=drill.table_id, stream_arn="s",
                        shard_id=None, start=_at(10), end=_at(12),
                        reason=gap_log.GAP_TRIMMED)  # fmt: skip
    code, _out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(AT))
    assert code == EXIT_REFUSED and "gap" in err
    assert not drill.double.requests and not record.read(drill.archive, TABLE)


def test_the_pitr_method_against_moto_at_the_present(
    ddb: Any, archive_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """moto's PITR restore ignores the time (it copies the table as it is now): so T is the
    present, after the last write, and the archive is the real poller's."""
    create_table(ddb, TABLE)
    for i in range(12):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
    ddb.delete_item(TableName=TABLE, Key={"pk": {"S": "k0"}})
    ddb.update_continuous_backups(
        TableName=TABLE, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    at = utcnow() + timedelta(seconds=0.6)  # after the last write by more than the margin
    time.sleep(max(0.0, at.timestamp() + 2.8 - time.time()))  # the watermark is now − 2 s
    archive_table(TABLE, str(archive_path))
    archive = Archive.open(str(archive_path))
    result = run_drill(
        archive, TABLE, at, method="pitr", margin=timedelta(milliseconds=500),
        native_side=lambda when: pitr_copy(ddb, TABLE, when, "orders-scratch", poll_seconds=0),
    )  # fmt: skip
    assert result.identical, result.report()
    assert result.items_compared == 11 and result.method == "pitr"
    assert result.native_source == "orders-scratch"
    assert "orders-scratch" not in ddb.list_tables()["TableNames"]  # deleted afterwards
    assert record.last(archive, TABLE)["method"] == "pitr"  # type: ignore[index]


def test_a_time_within_the_margin_of_creation_counts_the_first_writes_as_not_comparable(
    ddb: Any, s3: Any, archive_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """T less than the margin after the table's creation: the margin's log starts where the
    log does, with the writes made at that very instant (k00, written at creation) — an export
    that saw the table just before them is no difference."""
    drill = Drill(ddb, s3, archive_path, fuzz=60.0)
    drill.build(_history())
    # AWS's copy sees every key a whole margin before T: before k00 was written.
    monkeypatch.setattr(drill.double, "_fuzz", lambda arn, key: -timedelta(seconds=60))
    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(T0 + timedelta(seconds=37)))
    assert code == 0, err + out
    assert "0 items compared, 20 not comparable" in out


def test_the_scheduled_drill_function_records_and_emits_its_result(
    ddb: Any, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from replayer.drill import handler

    s3.create_bucket(Bucket="archive-bucket")
    drill = Drill(ddb, s3, tmp_path / "unused", fuzz=60.0)
    drill.archive = Archive.open("s3://archive-bucket/ddb")
    drill.build(_history())
    monkeypatch.setenv("ARCHIVE_URL", drill.archive.url)
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("DRILL_STAGING", f"s3://{BUCKET}/drill-exports")
    monkeypatch.setenv("DRILL_POLL_SECONDS", "0")
    capsys.readouterr()
    line = handler.handler({}, None, ddb=drill.double)
    # T is random: early on every key may be within the margin (not comparable)
    assert line["differences"] == 0 and line["items_compared"] + line["not_comparable"] > 0
    assert record.last(drill.archive, TABLE) == line
    [emf] = [orjson.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert emf["DrillDifferences"] == 0 and emf["Table"] == TABLE


def test_a_drill_that_fails_midway_records_nothing_and_cleans_up(
    ddb: Any, s3: Any, archive_path: Path
) -> None:
    """A crash while AWS's copy is read: no drill line (a drill is recorded whole or not at
    all), the staged export removed; running it again records exactly one line."""
    from replayer.drill import native

    drill = Drill(ddb, s3, archive_path)
    drill.build(_history())
    arn = drill.double.describe_table(TableName=TABLE)["Table"]["TableArn"]
    store = Archive.open(f"s3://{BUCKET}/drills/crash")

    def crashing(when: datetime) -> native.NativeCopy:
        copy = native.export_copy(drill.double, arn, TABLE, when, store, poll_seconds=0,
                                  sleep=lambda _: None)  # fmt: skip

        def rows() -> Any:
            yield next(copy.rows)
            raise ConnectionResetError("lost reply")

        return native.NativeCopy(rows(), copy.source, copy.cleanup, copy.table_id)

    with pytest.raises(ConnectionResetError):
        run_drill(drill.archive, TABLE, AT, method="export", native_side=crashing,
                  drill_id="d1")  # fmt: skip
    assert not record.read(drill.archive, TABLE)
    assert not s3.list_objects_v2(Bucket=BUCKET).get("Contents")
    result = _run(drill)
    assert result.identical
    record.append(drill.archive, TABLE, result.to_json())  # a retried append is not doubled
    assert [d["drill_id"] for d in record.read(drill.archive, TABLE)] == [result.drill_id]


def test_an_export_of_a_recreated_table_is_refused(ddb: Any, s3: Any, archive_path: Path) -> None:
    drill = Drill(ddb, s3, archive_path)
    drill.table_id = "an-earlier-generation"
    drill.build(_history())
    with pytest.raises(Exception, match="the table was recreated") as exc:
        _run(drill)
    assert getattr(exc.value, "exit_code", None) == EXIT_REFUSED
    assert not record.read(drill.archive, TABLE)


def test_the_pitr_method_through_the_command_with_a_scratch_table(
    ddb: Any, s3: Any, archive_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """moto's PITR restore copies the table as it is now, whatever the time: the live table is
    loaded with the state at T, and the double answers PITR's window (moto's is a point)."""
    drill = Drill(ddb, s3, archive_path)
    changes = _history()
    drill.build(changes)
    state: dict[str, Any] = {}
    for change in changes:
        if change.time <= AT:
            state[orjson.dumps(change.key).decode()] = change.new
    for image in state.values():
        if image is not None:
            ddb.put_item(TableName=TABLE, Item=image)
    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(AT), "--method", "pitr")
    assert code == 0, err + out
    assert "identical: drill of orders at 2026-03-01T12:03:00.000Z (pitr)" in out
    assert "within 5 s of T" in out and "a PITR restore of" in out
    assert ddb.list_tables()["TableNames"] == [TABLE]  # the scratch table is gone
    # An item AWS has and the archive does not; --keep leaves the scratch table for a look.
    ddb.put_item(TableName=TABLE, Item=item("zz-intruder", v=1))
    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(AT), "--method", "pitr",
                               "--keep")  # fmt: skip
    assert code == EXIT_DIFFERENCES, err + out
    assert '  missing   {"pk":{"S":"zz-intruder"}}' in out
    [scratch] = [t for t in ddb.list_tables()["TableNames"] if t != TABLE]
    assert scratch.startswith("orders-drill-")
    assert [d["method"] for d in record.read(drill.archive, TABLE)] == ["pitr", "pitr"]


# -- the margin as an option --------------------------------------------------------------


def _edge_fuzz(drill: Drill, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS's copy at the edges of its minute: k19 as it was 60 s before T (before its delete at
    T − 30 s), every other key as it is 60 s after T (after k03's write at T + 20 s)."""
    deleted = orjson.dumps(key("k19"), option=orjson.OPT_SORT_KEYS).decode()

    def edge(arn: str, key_text: str) -> timedelta:
        return timedelta(seconds=-60 if key_text == deleted else 60)

    monkeypatch.setattr(drill.double, "_fuzz", edge)


def test_a_margin_below_the_exports_fuzz_shows_false_differences_the_default_does_not(
    ddb: Any, s3: Any, archive_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The archive is untouched: only the margin stands between a fuzzy export and a false
    alarm. 5 s leaves k03 and k19 in the comparison (with a warning saying what it risks);
    the default 60 s and a larger 120 s drill clean."""
    drill = Drill(ddb, s3, archive_path, fuzz=60.0)
    drill.build(_history())
    _edge_fuzz(drill, monkeypatch)

    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(AT), "--margin", "5")
    assert code == EXIT_DIFFERENCES, err + out
    [warning] = [line for line in err.splitlines() if "warning" in line]
    assert "margin of 5 s is below an export's accuracy" in warning
    assert "false difference" in warning
    assert "within 5 s of T" in out and "margin 5 s" in out
    assert '  different {"pk":{"S":"k03"}}' in out  # AWS's copy is after k03's write
    assert '  missing   {"pk":{"S":"k19"}}' in out  # AWS's copy is before k19's delete
    first = record.read(drill.archive, TABLE)[-1]
    assert (first["margin_seconds"], first["different"], first["missing"]) == (5.0, 1, 1)

    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(AT))
    assert code == 0, err + out
    assert "warning" not in err
    assert "18 items compared, 2 not comparable (written within 60 s of T)" in out

    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(AT), "--margin", "120")
    assert code == 0, err + out
    assert "warning" not in err
    # [T − 120 s, T + 120 s] also holds the ten modifies at +100..+118 s.
    assert "8 items compared, 12 not comparable (written within 120 s of T)" in out
    assert [d["margin_seconds"] for d in record.read(drill.archive, TABLE)] == [5.0, 60.0, 120.0]


@pytest.mark.parametrize("margin", ["0", "-5", "nan", "inf", "a minute"])
def test_a_margin_not_above_zero_is_a_usage_error(
    ddb: Any, s3: Any, archive_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, margin: str,
) -> None:  # fmt: skip
    drill = Drill(ddb, s3, archive_path)
    drill.build(_history())
    with pytest.raises(SystemExit) as exc:
        drill.cli(capsys, monkeypatch, "--at", iso_ms(AT), "--margin", margin)
    assert exc.value.code == EXIT_USAGE
    assert "--margin" in capsys.readouterr().err
    assert not drill.double.requests and not record.read(drill.archive, TABLE)


def test_the_drill_window_honours_the_margin_at_both_ends(
    ddb: Any, s3: Any, archive_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A log that does not start at table creation (a base at +5 s, its log from +0 s): T
    is at least the margin after the log's start and at most the watermark (+600 s) minus
    it — and ``--at``, ``--random`` and ``--dry-run`` all use the margin given."""
    drill = Drill(ddb, s3, archive_path)
    write_changes(drill.archive, _history(), table=TABLE, table_id=drill.table_id, per_file=7)
    write_coverage(drill.archive, table=TABLE, table_id=drill.table_id, created=T0,
                   covered_from=_at(0), from_table_creation=False,
                   watermark=_at(600))  # fmt: skip
    write_snapshot(drill.archive, [], valid_from=_at(5), log_from=_at(0), table=TABLE,
                   table_id=drill.table_id)  # fmt: skip
    pitr = describe_pitr(drill.double, TABLE)
    for seconds, lo, hi in ((5, 5, 595), (60, 60, 540), (120, 120, 480)):
        window = drill_window(drill.archive, TABLE, pitr, timedelta(seconds=seconds))
        assert (window.lo, window.hi) == (_at(lo), _at(hi)), seconds

    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(_at(500)), "--dry-run")
    assert code == 0, err
    assert "by export, margin 60 s;" in out
    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(_at(500)), "--margin",
                               "120", "--dry-run")  # fmt: skip
    assert code == EXIT_REFUSED and "too recent to drill" in err
    code, out, err = drill.cli(capsys, monkeypatch, "--at", iso_ms(_at(90)), "--margin",
                               "120", "--dry-run")  # fmt: skip
    assert code == EXIT_REFUSED and "outside the drillable window" in err
    for _ in range(20):
        code, out, err = drill.cli(capsys, monkeypatch, "--random", "--margin", "120",
                                   "--dry-run")  # fmt: skip
        assert code == 0, err
        assert "margin 120 s;" in out and "dry run: nothing requested" in out
        printed = out.split("drill orders at ", 1)[1].split(" ", 1)[0]
        assert _at(120) <= datetime.fromisoformat(printed.replace("Z", "+00:00")) <= _at(480)
    assert not drill.double.requests


def test_the_scheduled_drill_takes_its_margin_from_the_environment(
    ddb: Any, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from archiver.format.errors import UsageError
    from replayer.drill import handler

    drill = Drill(ddb, s3, tmp_path / "archive", fuzz=60.0)
    drill.build(_history())
    monkeypatch.setenv("ARCHIVE_URL", str(tmp_path / "archive"))
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("DRILL_STAGING", f"s3://{BUCKET}/drill-exports")
    monkeypatch.setenv("DRILL_POLL_SECONDS", "0")
    monkeypatch.setenv("DRILL_MARGIN_SECONDS", "120")
    line = handler.handler({}, None, ddb=drill.double)
    assert line["margin_seconds"] == 120.0 and line["differences"] == 0
    at = datetime.fromisoformat(line["at"].replace("Z", "+00:00"))
    assert at <= _at(480)  # the watermark minus the margin given
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv("DRILL_MARGIN_SECONDS", bad)
        with pytest.raises(UsageError, match="DRILL_MARGIN_SECONDS"):
            handler.handler({}, None, ddb=drill.double)
    monkeypatch.setenv("DRILL_MARGIN_SECONDS", "30")
    with caplog.at_level("WARNING"):
        line = handler.handler({}, None, ddb=drill.double)
    assert line["margin_seconds"] == 30.0
    assert any("false difference" in r.getMessage() for r in caplog.records)
    assert len(record.read(drill.archive, TABLE)) == 2
