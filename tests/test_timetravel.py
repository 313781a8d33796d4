"""``state_at`` and ``history_of`` in ``ddb-replayer query``, and the Athena fold's named query.

``state_at`` must be the table ``restore`` would build (the same plan, the same refusals);
the named query deploy/athena/fold_state_at.sql is generated from the same SQL source and,
run as its DuckDB twin with the plan's values, gives the same state.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from replayer.engines.athena_sql import (
    NAMED_HISTORY_OF,
    NAMED_STATE_AT,
    named_history_of,
    named_state_at,
    to_duckdb,
)
from replayer.engines.fold import Fold
from replayer.planning import plan as planning
from replayer.read.query import run_query
from tests.replay_helpers import (
    TABLE,
    Change,
    at,
    key,
    replayer,
    write_changes,
    write_coverage,
    write_gap,
    write_snapshot,
)
from tests.test_replay_property import Record, alive, histories, model, write

ATHENA = Path(__file__).resolve().parents[1] / "deploy" / "athena"


def query(capsys: pytest.CaptureFixture[str], archive: Archive, sql: str) -> tuple[int, str, str]:
    return replayer(capsys, "query", "--archive", archive.url, "--format", "json", sql)


def rows(out: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.splitlines()]


def stamp(seconds: float) -> str:
    return at(seconds).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@pytest.fixture
def history(archive: Archive) -> Archive:
    write_coverage(archive, watermark=at(1000))
    write_changes(archive, [
        Change(1, key("a"), {"pk": {"S": "a"}, "v": {"N": "1"}}, at(10), "INSERT"),
        Change(2, key("b"), {"pk": {"S": "b"}}, at(20), "INSERT"),
        Change(3, key("a"), {"pk": {"S": "a"}, "v": {"N": "2"}}, at(30), "MODIFY"),
        Change(4, key("b"), None, at(40)),
    ])  # fmt: skip
    return archive


def test_state_at_is_the_table_at_that_instant(
    history: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    sql = f"SELECT keys, item FROM state_at('{TABLE}', TIMESTAMP '{stamp(25)}') ORDER BY keys"
    code, out, err = query(capsys, history, sql)
    assert code == 0, err
    assert rows(out) == [
        {"keys": '{"pk":{"S":"a"}}', "item": '{"pk":{"S":"a"},"v":{"N":"1"}}'},
        {"keys": '{"pk":{"S":"b"}}', "item": '{"pk":{"S":"b"}}'},
    ]
    # A zone is honoured; state_at joins like any table.
    later = at(35).strftime("%Y-%m-%dT%H:%M:%S") + "+00:00"
    sql = (
        f"SELECT s.item->>'$.v.N' AS v FROM state_at('{TABLE}', '{later}') AS s "
        f"JOIN state_at('{TABLE}', TIMESTAMP '{stamp(25)}') AS e ON s.keys = e.keys ORDER BY s.keys"
    )
    code, out, err = query(capsys, history, sql)
    assert code == 0, err
    assert rows(out) == [{"v": "2"}, {"v": None}]  # b has no v (and is deleted only at 40 s)


def test_state_at_refuses_what_restore_refuses(
    history: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = query(capsys, history, f"SELECT * FROM state_at('{TABLE}', '{stamp(1001)}')")
    assert code == 4
    assert "after the watermark" in err and len(err.strip().splitlines()) == 1
    write_gap(history, at(15), at(16))
    code, _, err = query(capsys, history, f"SELECT * FROM state_at('{TABLE}', '{stamp(25)}')")
    assert code == 4
    assert "has a gap" in err and len(err.strip().splitlines()) == 1
    code, _, err = query(
        capsys, history, "SELECT * FROM state_at('nothing', '2026-03-01 12:00:00')"
    )
    assert code == 4
    assert "holds no coverage of table 'nothing'" in err


def test_state_at_takes_literals_only(history: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = query(capsys, history, f"SELECT * FROM state_at('{TABLE}', now())")
    assert code == 2
    assert "state_at takes literal arguments" in err
    code, _, err = query(capsys, history, f"SELECT * FROM state_at('{TABLE}', 'yesterday')")
    assert code == 2
    assert "is not a timestamp" in err


def test_history_of_is_every_change_of_one_item(
    history: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    write_changes(history, [Change(3, key("a"), {"pk": {"S": "a"}, "v": {"N": "2"}}, at(30),
                                   "MODIFY")], shard_id="shardId-00000002")  # fmt: skip
    sql = f"""SELECT event_name, new_image FROM history_of('{TABLE}', '{{ "pk" : {{"S":"a"}} }}')"""
    code, out, err = query(capsys, history, sql)
    assert code == 0, err
    assert rows(out) == [  # the record archived twice is shown once
        {"event_name": "INSERT", "new_image": '{"pk":{"S":"a"},"v":{"N":"1"}}'},
        {"event_name": "MODIFY", "new_image": '{"pk":{"S":"a"},"v":{"N":"2"}}'},
    ]
    code, _, err = query(capsys, history, f"SELECT * FROM history_of('{TABLE}', 'not json')")
    assert code == 2
    assert "history_of: the key is not DynamoDB JSON" in err


def test_the_named_queries_are_generated_from_the_fold_source() -> None:
    for name, render in ((NAMED_STATE_AT, named_state_at), (NAMED_HISTORY_OF, named_history_of)):
        assert (ATHENA / name).read_text() == render(), (
            f"deploy/athena/{name} is generated: write "
            f"replayer.engines.athena_sql.{render.__name__}()"
        )


def test_the_named_history_query_equals_history_of(
    history: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = '{"pk":{"S":"a"}}'
    code, out, err = query(capsys, history, f"SELECT * FROM history_of('{TABLE}', '{keys}')")
    assert code == 0, err
    local = rows(out)
    assert [r["event_name"] for r in local] == ["INSERT", "MODIFY"]
    named = run_query(history, to_duckdb(named_history_of()), [TABLE, keys, "", ""])
    assert [r[1] for r in named.rows()] == ["INSERT", "MODIFY"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=histories(),
    splits=st.lists(st.integers(1, 7), min_size=1, max_size=2),
    duplicated=st.booleans(),
    use_base=st.booleans(),
    t_offset=st.integers(0, 70_000),
)
def test_state_at_and_the_named_query_equal_the_fold(
    records: list[Record], splits: list[int], duplicated: bool, use_base: bool, t_offset: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        archive = Archive.open(folder)
        write(archive, records, splits, duplicated)
        t_ms = t_offset
        if use_base:
            base = {k: v for k, v in model(records, 20_000).items() if v is not None}
            write_coverage(archive, covered_from=at(-100), from_table_creation=False,
                           watermark=at(200))  # fmt: skip
            write_snapshot(archive, [orjson.loads(v) for v in base.values()],
                           valid_from=at(25), log_from=at(15))  # fmt: skip
            t_ms = 25_000 + t_offset
        else:
            write_coverage(archive, watermark=at(200))
        when = at(t_ms / 1000)
        plan = planning.plan_restore(archive, TABLE, when)
        with Fold(archive) as fold:
            state = fold.state_at(plan)
            folded = {r["keys"]: r["item"] for b in state.batches() for r in b.to_pylist()}
        assert folded == alive(model(records, t_ms))
        sql = f"SELECT keys, item FROM state_at('{TABLE}', TIMESTAMP '{stamp(t_ms / 1000)}')"
        from replayer.read.timetravel import expand

        local = dict(run_query(archive, expand(archive, sql)).rows())
        assert local == folded
        params = [TABLE, plan.table_id, iso_ms(plan.log_from), iso_ms(plan.at),
                  plan.base.snapshot_id if plan.base else ""]  # fmt: skip
        named = run_query(archive, to_duckdb(named_state_at()), params)
        assert dict(named.rows()) == folded
