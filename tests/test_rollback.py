"""``ddb-replayer rollback``: undo every change after T in the live table itself."""

from __future__ import annotations

import io
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archiver.aws.clients import AwsSettings
from archiver.format import layout
from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow
from replayer import cli
from replayer.rollback.decisions import (
    DELETE,
    RECREATE,
    RESTORE,
    KeyHistory,
    RollbackPlan,
    changes_after,
    condition_for,
    plan_writes,
)
from replayer.rollback.in_place import Rollback, drain_past, fold_states, run, stream_drainer
from tests.conftest import create_table
from tests.helpers import FakeClock


def scan(ddb: Any, table: str) -> dict[str, str]:
    """The table's items by canonical key, as canonical JSON."""
    out: dict[str, str] = {}
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        for item in page["Items"]:
            out[canonical_json({"pk": item["pk"], "sk": item["sk"]})] = canonical_json(item)
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def wait_for_next_second(gap: float = 1.1) -> datetime:
    """A whole-second instant T after everything so far; returns once ``gap`` s past T."""
    now = time.time()
    at = int(now) + 1
    time.sleep(max(0.0, at + gap - time.time()))
    return datetime.fromtimestamp(at, tz=UTC)


def key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"user-{i % 7}"}, "sk": {"N": str(i)}}


def random_workload(ddb: Any, table: str, rng: random.Random, keys: range, n: int) -> None:
    for _ in range(n):
        i = rng.choice(keys)
        roll = rng.random()
        if roll < 0.2:
            ddb.delete_item(TableName=table, Key=key(i))
        elif roll < 0.6:
            item = {
                **key(i),
                "n": {"N": str(rng.randint(0, 10**6))},
                "tags": {"SS": sorted({f"t{rng.randint(0, 5)}" for _ in range(3)})},
                "nested": {"M": {"a": {"L": [{"S": "x"}, {"N": "1.5"}]}}},
                "bin": {"B": bytes([rng.randint(0, 255), 0, 1])},
            }
            if rng.random() < 0.5:
                item["optional"] = {"BOOL": True}
            ddb.put_item(TableName=table, Item=item)
        else:
            ddb.update_item(
                TableName=table,
                Key=key(i),
                UpdateExpression="SET n = :n, v = if_not_exists(v, :zero)",
                ExpressionAttributeValues={
                    ":n": {"N": str(rng.randint(0, 99))},
                    ":zero": {"N": "0"},
                },
            )


def make_rollback(archive: Archive, table: str, at: datetime, **kwargs: Any) -> Rollback:
    aws = AwsSettings()
    return Rollback(
        ddb=aws.client("dynamodb"),
        archive=archive,
        table=table,
        at=at,
        drain=stream_drainer(aws, archive, table, poll_seconds=0.05),
        states_at=fold_states(archive, table),
        out=io.StringIO(),
        **kwargs,
    )


@pytest.fixture
def workload_table(ddb: Any) -> str:
    create_table(ddb, "orders", range_key="sk", key_types=("S", "N"))
    return "orders"


def test_rollback_random_workload_restores_the_table_as_at_t(
    ddb: Any, archive: Archive, workload_table: str
) -> None:
    rng = random.Random(4)
    random_workload(ddb, workload_table, rng, range(40), 150)
    at = wait_for_next_second()
    expected = scan(ddb, workload_table)
    # After T: changes to old keys, new keys, deletions.
    random_workload(ddb, workload_table, rng, range(20, 60), 120)
    assert scan(ddb, workload_table) != expected

    rollback = make_rollback(archive, workload_table, at)
    code = run(rollback, dry_run=False)
    output = rollback.out.getvalue()
    assert code == 0, output
    assert scan(ddb, workload_table) == expected
    assert "conflicts 0" in output
    assert "restored" in output and "re-created" in output and "deleted" in output


def test_rollback_with_a_new_image_stream_folds_the_archive(ddb: Any, archive: Archive) -> None:
    """NEW_IMAGE records carry no old image: the state at T comes from the fold."""
    create_table(ddb, "orders", range_key="sk", key_types=("S", "N"), stream="NEW_IMAGE")
    rng = random.Random(7)
    random_workload(ddb, "orders", rng, range(30), 80)
    at = wait_for_next_second()
    expected = scan(ddb, "orders")
    random_workload(ddb, "orders", rng, range(15, 45), 80)

    rollback = make_rollback(archive, "orders", at)
    assert run(rollback, dry_run=False) == 0, rollback.out.getvalue()
    assert scan(ddb, "orders") == expected


def test_rollback_dry_run_lists_writes_and_writes_nothing(
    ddb: Any, archive: Archive, workload_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ddb.put_item(TableName="orders", Item={**key(1), "v": {"N": "1"}})
    ddb.put_item(TableName="orders", Item={**key(2), "v": {"N": "1"}})
    at = wait_for_next_second()
    ddb.put_item(TableName="orders", Item={**key(1), "v": {"N": "2"}})  # restore
    ddb.delete_item(TableName="orders", Key=key(2))  # re-create
    ddb.put_item(TableName="orders", Item={**key(3), "v": {"N": "1"}})  # delete
    before = scan(ddb, "orders")

    code = cli.main(
        [
            "rollback",
            "--table-name",
            "orders",
            "--archive",
            archive.url,
            "--restore-date-time",
            str(int(at.timestamp())),
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"{RESTORE:<9} {canonical_json(key(1))}" in out
    assert f"{RECREATE:<9} {canonical_json(key(2))}" in out
    assert f"{DELETE:<9} {canonical_json(key(3))}" in out
    assert "3 write(s)" in out
    assert scan(ddb, "orders") == before


def test_concurrent_change_is_a_conflict_not_overwritten(
    ddb: Any, archive: Archive, workload_table: str
) -> None:
    for i in range(4):
        ddb.put_item(TableName="orders", Item={**key(i), "v": {"N": "1"}})
    at = wait_for_next_second()
    expected = scan(ddb, "orders")
    for i in range(4):
        ddb.put_item(TableName="orders", Item={**key(i), "v": {"N": "2"}})
    concurrent = {**key(2), "v": {"N": "99"}, "by": {"S": "someone else"}}

    def meanwhile(plan: RollbackPlan) -> None:
        assert len(plan.writes) == 4
        ddb.put_item(TableName="orders", Item=concurrent)  # between the drain and the write

    rollback = make_rollback(archive, "orders", at, before_write=meanwhile)
    code = run(rollback, dry_run=False)
    output = rollback.out.getvalue()
    assert code == 3, output
    assert f"CONFLICT {canonical_json(key(2))}" in output
    assert "conflicts 1" in output and "restored 3" in output
    now = scan(ddb, "orders")
    assert now[canonical_json(key(2))] == canonical_json(concurrent)  # not overwritten
    for i in (0, 1, 3):
        k = canonical_json(key(i))
        assert now[k] == expected[k]


def test_change_right_after_the_write_is_reported(
    ddb: Any, archive: Archive, workload_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change that lands after the rollback's own write shows up on the second drain."""
    ddb.put_item(TableName="orders", Item={**key(1), "v": {"N": "1"}})
    at = wait_for_next_second()
    ddb.put_item(TableName="orders", Item={**key(1), "v": {"N": "2"}})

    from replayer.rollback import in_place as module

    real_apply = module.apply_writes

    def apply_then_interfere(*args: Any, **kwargs: Any) -> Any:
        result = real_apply(*args, **kwargs)
        ddb.put_item(TableName="orders", Item={**key(1), "v": {"N": "3"}})
        return result

    monkeypatch.setattr(module, "apply_writes", apply_then_interfere)
    rollback = make_rollback(archive, "orders", at)
    assert run(rollback, dry_run=False) == 3
    assert "during the rollback" in rollback.out.getvalue()


def test_version_attribute_conditions(ddb: Any, archive: Archive, workload_table: str) -> None:
    ddb.put_item(TableName="orders", Item={**key(1), "ver": {"N": "1"}, "x": {"S": "a"}})
    at = wait_for_next_second()
    ddb.put_item(TableName="orders", Item={**key(1), "ver": {"N": "2"}, "x": {"S": "b"}})

    def bump_other_attribute(plan: RollbackPlan) -> None:
        # Same version, other content: with a version attribute only the version counts.
        ddb.update_item(
            TableName="orders",
            Key=key(1),
            UpdateExpression="SET x = :x",
            ExpressionAttributeValues={":x": {"S": "c"}},
        )

    rollback = make_rollback(
        archive, "orders", at, version_attribute="ver", before_write=bump_other_attribute
    )
    code = run(rollback, dry_run=False)
    # The write went through (version unchanged) but the second drain saw the foreign update.
    assert code == 3
    item = ddb.get_item(TableName="orders", Key=key(1))["Item"]
    assert item["ver"] == {"N": "1"} and item["x"] == {"S": "a"}


def test_rollback_refuses_time_after_watermark_and_before_coverage(
    ddb: Any, archive: Archive, workload_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ddb.put_item(TableName="orders", Item={**key(1)})
    args = ["rollback", "--table-name", "orders", "--archive", archive.url]
    code = cli.main([*args, "--restore-date-time", "2999-01-01T00:00:00Z"])
    assert code == 4
    assert "watermark" in capsys.readouterr().err
    assert cli.main([*args, "--restore-date-time", "yesterday"]) == 2

    # The log covers only the last hour (the archiver started late): earlier is refused.
    state = archive.read_json(layout.coverage("orders"))
    state.update(from_table_creation=False, covered_from=iso_ms(utcnow() - timedelta(hours=1)))
    archive.write_json(layout.coverage("orders"), state)
    code = cli.main([*args, "--restore-date-time", iso_ms(utcnow() - timedelta(hours=2))])
    assert code == 4
    assert "never archived" in capsys.readouterr().err
    assert scan(ddb, "orders")  # nothing was written


def test_rollback_to_before_the_table_existed_empties_it(
    ddb: Any, archive: Archive, workload_table: str
) -> None:
    """The log starts at table creation, so the state before it is known: no items."""
    for i in range(3):
        ddb.put_item(TableName="orders", Item={**key(i)})
    rollback = make_rollback(archive, "orders", datetime(2001, 1, 1, tzinfo=UTC))
    assert run(rollback, dry_run=False) == 0
    assert scan(ddb, "orders") == {}


def _history(
    keys: str,
    first: str,
    old: str | None,
    latest: str | None,
    ttl: bool = False,
) -> KeyHistory:
    return KeyHistory(keys, first, old, latest, ttl, 1, frozenset())


def test_plan_writes_rules() -> None:
    at = datetime(2026, 1, 31, tzinfo=UTC)
    histories = [
        _history("k-insert", "INSERT", None, '{"a":1}'),
        _history("k-modify", "MODIFY", '{"a":0}', '{"a":1}'),
        _history("k-removed", "REMOVE", '{"a":0}', None),
        _history("k-back", "MODIFY", '{"a":0}', '{"a":0}'),
        _history("k-ttl", "REMOVE", '{"a":0}', None, ttl=True),
        _history("k-ttl-then-put", "REMOVE", '{"a":0}', '{"a":5}', ttl=True),
        _history("k-new-image", "MODIFY", None, '{"a":2}'),
    ]
    plan = plan_writes("t", at, histories, {"k-new-image": '{"a":1}'}, include_ttl_deletes=False)
    actions = {w.keys: (w.action, w.item, w.expected) for w in plan.writes}
    assert actions == {
        "k-insert": (DELETE, None, '{"a":1}'),
        "k-modify": (RESTORE, '{"a":0}', '{"a":1}'),
        "k-removed": (RECREATE, '{"a":0}', None),
        "k-ttl-then-put": (DELETE, None, '{"a":5}'),  # expired, so a re-creation is undone
        "k-new-image": (RESTORE, '{"a":1}', '{"a":2}'),
    }
    assert plan.unchanged == ["k-back"]
    assert plan.ttl_kept == ["k-ttl"]

    plan = plan_writes("t", at, histories, {"k-new-image": '{"a":1}'}, include_ttl_deletes=True)
    actions = {w.keys: (w.action, w.item) for w in plan.writes}
    assert actions["k-ttl"] == (RECREATE, '{"a":0}')
    assert actions["k-ttl-then-put"] == (RESTORE, '{"a":0}')


def test_condition_fits_the_4kb_limit() -> None:
    image = {"pk": {"S": "a"}, **{f"attr{i:04d}": {"N": str(i)} for i in range(1000)}}
    condition = condition_for(canonical_json(image), ["pk"])
    assert len(condition.expression) <= 4096
    assert 0 < condition.checked_attributes < condition.total_attributes == 1000
    assert condition.expression.startswith("attribute_exists(#k0)")
    small = condition_for(canonical_json({"pk": {"S": "a"}, "x": {"S": "y"}}), ["pk"])
    assert small.checked_attributes == small.total_attributes == 1
    absent = condition_for(None, ["pk", "sk"])
    assert absent.expression == "attribute_not_exists(#k0)"
    versioned = condition_for(canonical_json({"pk": {"S": "a"}, "v": {"N": "3"}}), ["pk"], "v")
    assert versioned.expression == "attribute_exists(#k0) AND #v = :v"
    assert versioned.values == {":v": {"N": "3"}}


def test_changes_after_reads_first_old_image_latest_image_and_ttl(archive: Archive) -> None:
    from tests.changes_builder import T0, TABLE_ID, n, record, s, write_changes

    a, b, c = {"pk": s("a")}, {"pk": s("b")}, {"pk": s("c")}
    write_changes(
        archive,
        "orders",
        [
            record(1, a, "INSERT", new={**a, "v": n(1)}),  # at T0+1 s, before T
            record(2, c, "INSERT", new={**c, "v": n(1)}),
            record(5, a, "MODIFY", old={**a, "v": n(1)}, new={**a, "v": n(2)}),  # after T
            record(6, a, "REMOVE", old={**a, "v": n(2)}, ttl=True),
            record(7, b, "INSERT", new={**b, "v": n(1)}),
            record(8, b, "MODIFY", old={**b, "v": n(1)}, new={**b, "v": n(3)}),
        ],
    )
    at = T0 + timedelta(seconds=3)
    histories = {h.keys: h for h in changes_after(archive, "orders", TABLE_ID, at)}
    assert set(histories) == {canonical_json(a), canonical_json(b)}  # c did not change after T
    ha, hb = histories[canonical_json(a)], histories[canonical_json(b)]
    assert (ha.first_event, ha.state_at_t, ha.latest_image, ha.ttl_deleted, ha.changes) == (
        "MODIFY",
        canonical_json({**a, "v": n(1)}),
        None,
        True,
        2,
    )
    assert (hb.first_event, hb.state_at_t, hb.latest_image, hb.ttl_deleted) == (
        "INSERT",
        None,
        canonical_json({**b, "v": n(3)}),
        False,
    )
    bounded = changes_after(archive, "orders", TABLE_ID, at, until=T0 + timedelta(seconds=6))
    assert [h.keys for h in bounded] == [canonical_json(a)]


def test_the_drain_waits_for_the_watermark_on_a_clock_tests_replace() -> None:
    clock = FakeClock()
    instant = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    watermarks = iter([None, instant - timedelta(seconds=2), instant, instant])
    assert drain_past(lambda: next(watermarks), instant, sleep=clock.sleep, clock=clock) == instant
    assert clock.slept == [0.5, 0.5]


def test_the_drain_gives_up_at_its_deadline_with_the_last_watermark() -> None:
    clock = FakeClock()
    instant = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    short = instant - timedelta(seconds=2)
    got = drain_past(lambda: short, instant, timeout_seconds=3, sleep=clock.sleep, clock=clock)
    assert got == short
    assert clock.now == 3 and clock.slept == [0.5] * 6
