"""``deploy/athena/``: the Athena (Trino) queries, run as their DuckDB twins on a test archive.

Each ``.sql`` file is the single source: the template embeds it verbatim as a named query,
and sqlglot transpiles it from Athena's Trino dialect to DuckDB for these tests, which bind
the same ``?`` parameters the Athena console asks for.

Times given with an offset are where the two engines differ unless the SQL is careful: Trino's
``from_iso8601_timestamp`` keeps the input's zone and formats (``date_format``) in it, while a
DuckDB ``TIMESTAMPTZ`` has no zone of its own and formats in the session's. So the twins run in
a session whose zone is the inputs' offset: a query that formats the value's own wall-clock
date, rather than its UTC date, picks the wrong ``dt`` partitions in both.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import sqlglot
from cfnlint.decode import decode

from archiver.format import layout
from archiver.format.codec import canonical_json
from archiver.format.schema import CHANGE_SCHEMA, SNAPSHOT_SCHEMA
from archiver.format.storage import Archive
from replayer.engines.athena_sql import named_history_of, to_duckdb
from replayer.engines.dataset import change_files, changes_dataset
from replayer.exceptions import DamagedFile
from replayer.read.query import lock_down, run_query, snapshot_files, snapshots_dataset
from replayer.read.timetravel import expand
from tests.changes_builder import T0, n, record, s, write_changes

ATHENA = Path(__file__).resolve().parents[1] / "deploy" / "athena"
TEMPLATE = ATHENA.parent / "template.yaml"
NAMED = {
    "ItemHistoryQuery": "item_history.sql",
    "ChangesInRangeQuery": "changes_in_range.sql",
    "TtlVsUserDeletesQuery": "ttl_vs_user_deletes.sql",
    "TableStateAtQuery": "table_state_at.sql",
}
HIVE_TYPES = {"string": "string", "timestamp[ms, tz=UTC]": "timestamp", "int64": "bigint"}


def twin(name: str) -> str:
    """The DuckDB twin of an Athena query file."""
    return sqlglot.transpile((ATHENA / name).read_text(), read="trino", write="duckdb")[0]


# Session time zones and the offsets inputs are written in there (Etc/GMT-1 is UTC+01:00).
ZONES = {
    "UTC": timedelta(0),
    "Etc/GMT-1": timedelta(hours=1),
    "Etc/GMT+2": timedelta(hours=-2),
    "Asia/Kolkata": timedelta(hours=5, minutes=30),
}


def twin_session(archive: Archive, time_zone: str = "UTC") -> duckdb.DuckDBPyConnection:
    """The archive's views in a locked DuckDB session whose time zone is ``time_zone``."""
    con = duckdb.connect(":memory:")
    con.execute(f"SET TimeZone = '{time_zone}'")
    con.register("changes", changes_dataset(archive, change_files(archive)))
    con.register("snapshots", snapshots_dataset(archive, snapshot_files(archive)))
    lock_down(con)
    return con


def run_twin(
    archive: Archive, name: str, *params: str, time_zone: str = "UTC"
) -> list[tuple[Any, ...]]:
    con = twin_session(archive, time_zone)
    try:
        return con.execute(twin(name), list(params)).fetchall()
    finally:
        con.close()


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def at_offset(at: datetime, time_zone: str) -> str:
    """``at`` in ISO 8601 with the offset of ``time_zone`` (``Z`` for UTC)."""
    offset = ZONES[time_zone]
    if not offset:
        return iso(at)
    return at.astimezone(timezone(offset)).isoformat(timespec="milliseconds")


# -- one source ----------------------------------------------------------------------------


def test_template_embeds_each_query_file_verbatim() -> None:
    template, problems = decode(str(TEMPLATE))
    assert not problems
    for resource, file in NAMED.items():
        props = template["Resources"][resource]["Properties"]
        assert str(props["QueryString"]) == (ATHENA / file).read_text(), (
            f"{resource} differs from deploy/athena/{file}: copy the file into the template"
        )
        assert props["Database"] == {"Ref": "GlueDatabase"}


@pytest.mark.parametrize("name", sorted(NAMED.values()))
def test_queries_parse_as_trino(name: str) -> None:
    parsed = sqlglot.parse_one((ATHENA / name).read_text(), read="trino")
    assert parsed.find(sqlglot.exp.Select) is not None


def test_ddl_matches_the_change_schema() -> None:
    ddl = sqlglot.parse_one((ATHENA / "changes_table.sql").read_text(), read="hive")
    columns = [
        (c.name, c.args["kind"].sql("hive").lower()) for c in ddl.find_all(sqlglot.exp.ColumnDef)
    ]
    expected = [(f.name, HIVE_TYPES[str(f.type)]) for f in CHANGE_SCHEMA]
    assert columns == [*expected, ("table_name", "string"), ("dt", "string")]
    text = (ATHENA / "changes_table.sql").read_text()
    template, _ = decode(str(TEMPLATE))
    glue = template["Resources"]["ChangesTable"]["Properties"]["TableInput"]["Parameters"]
    for key in ("projection.table_name.type", "projection.dt.type", "projection.dt.format"):
        assert re.search(rf"'{re.escape(key)}' = '{re.escape(str(glue[key]))}'", text), key


# -- the twins on an archive ---------------------------------------------------------------

A, B = {"pk": s("a")}, {"pk": s("b")}


@pytest.fixture
def history_archive(archive: Archive) -> Archive:
    records = [
        record(1, A, "INSERT", new={**A, "v": n(1)}),
        record(2, B, "INSERT", new={**B, "v": n(2)}),
        record(3, A, "MODIFY", old={**A, "v": n(1)}, new={**A, "v": n(3)}),
        record(4, B, "REMOVE", old={**B, "v": n(2)}, ttl=True, at=T0 + timedelta(days=1)),
        record(5, A, "REMOVE", old={**A, "v": n(3)}, at=T0 + timedelta(days=1, seconds=1)),
        record(6, B, "INSERT", new={**B, "v": n(6)}, at=T0 + timedelta(days=2)),
        record(
            7, B, "REMOVE", old={**B, "v": n(6)}, ttl=True, at=T0 + timedelta(days=2, seconds=1)
        ),
    ]
    write_changes(archive, "orders", records, per_file=2)
    write_changes(archive, "orders", records[2:5], shard_id="shardId-00000001")  # duplicates
    write_changes(archive, "other", [record(1, A, "REMOVE", old=A, ttl=True)])
    return archive


def test_item_history_twin(history_archive: Archive) -> None:
    rows = run_twin(
        history_archive,
        "item_history.sql",
        "orders",
        canonical_json(A),
        "2026-01-31T00:00:00Z",
        "2026-02-01T12:00:00Z",
    )
    assert [(iso(r[0]), r[1], r[2], r[3], r[4]) for r in rows] == [
        ("2026-01-31T12:00:01.000Z", "INSERT", "user", None, '{"pk":{"S":"a"},"v":{"N":"1"}}'),
        (
            "2026-01-31T12:00:03.000Z",
            "MODIFY",
            "user",
            '{"pk":{"S":"a"},"v":{"N":"1"}}',
            '{"pk":{"S":"a"},"v":{"N":"3"}}',
        ),
    ]  # the REMOVE at 12:00:01 the next day is after the window


def test_changes_in_range_twin(history_archive: Archive) -> None:
    rows = run_twin(
        history_archive,
        "changes_in_range.sql",
        "orders",
        "2026-01-31T12:00:03Z",
        "2026-02-02T12:00:00Z",
    )
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("MODIFY", '{"pk":{"S":"a"}}', "user"),
        ("REMOVE", '{"pk":{"S":"b"}}', "ttl"),
        ("REMOVE", '{"pk":{"S":"a"}}', "user"),
        ("INSERT", '{"pk":{"S":"b"}}', "user"),
    ]


def test_ttl_vs_user_deletes_twin(history_archive: Archive) -> None:
    rows = run_twin(
        history_archive,
        "ttl_vs_user_deletes.sql",
        "orders",
        "2026-01-01T00:00:00Z",
        "2026-03-01T00:00:00Z",
    )
    assert [(day, int(ttl), int(user)) for day, ttl, user in rows] == [
        ("2026-02-01", 1, 1),
        ("2026-02-02", 1, 0),
    ]


# -- windows given in another zone than UTC ----------------------------------------------

C, D = {"pk": s("c")}, {"pk": s("d")}
MIDNIGHT = datetime(2026, 2, 1, tzinfo=UTC)
# The window [23:30, 00:30] UTC spans two dt partitions, and in every zone but UTC its ends
# fall on one local date: +01:00 reads 00:30..01:30 on 1 February, -02:00 21:30..22:30 on
# 31 January.
WINDOW = (MIDNIGHT - timedelta(minutes=30), MIDNIGHT + timedelta(minutes=30))


@pytest.fixture
def midnight_archive(archive: Archive) -> Archive:
    records = [
        record(1, B, "INSERT", new={**B, "v": n(1)}),
        record(2, D, "INSERT", new={**D, "v": n(2)}, at=MIDNIGHT - timedelta(minutes=20)),
        record(3, A, "INSERT", new={**A, "v": n(3)}, at=MIDNIGHT - timedelta(minutes=15)),
        record(4, B, "REMOVE", old={**B, "v": n(1)}, at=MIDNIGHT - timedelta(minutes=10)),
        record(5, C, "INSERT", new={**C, "v": n(5)}, at=MIDNIGHT + timedelta(minutes=10)),
        record(6, A, "REMOVE", old={**A, "v": n(3)}, ttl=True, at=MIDNIGHT + timedelta(minutes=15)),
    ]
    write_changes(archive, "orders", records)
    assert sorted(archive.listdir(layout.changes_table_dir("orders"))) == [
        "dt=2026-01-31",
        "dt=2026-02-01",
    ]
    return archive


@pytest.mark.parametrize("time_zone", sorted(ZONES))
def test_windows_with_an_offset_read_the_utc_dates_they_span(
    midnight_archive: Archive, time_zone: str
) -> None:
    start, end = (at_offset(at, time_zone) for at in WINDOW)

    def run(name: str, *params: str) -> list[tuple[Any, ...]]:
        return run_twin(midnight_archive, name, *params, time_zone=time_zone)

    history = run("item_history.sql", "orders", canonical_json(A), start, end)
    assert [(iso(r[0]), r[1], r[2]) for r in history] == [
        ("2026-01-31T23:45:00.000Z", "INSERT", "user"),
        ("2026-02-01T00:15:00.000Z", "REMOVE", "ttl"),
    ]
    in_range = run("changes_in_range.sql", "orders", start, end)
    assert [(r[1], r[2]) for r in in_range] == [
        ("INSERT", canonical_json(D)),
        ("INSERT", canonical_json(A)),
        ("REMOVE", canonical_json(B)),
        ("INSERT", canonical_json(C)),
        ("REMOVE", canonical_json(A)),
    ]
    deletes = run("ttl_vs_user_deletes.sql", "orders", start, end)
    assert [(day, int(ttl), int(user)) for day, ttl, user in deletes] == [
        ("2026-01-31", 0, 1),
        ("2026-02-01", 1, 0),
    ]
    state = dict(run("table_state_at.sql", "orders", start, end, ""))
    assert state == {
        canonical_json(C): '{"pk":{"S":"c"},"v":{"N":"5"}}',
        canonical_json(D): '{"pk":{"S":"d"},"v":{"N":"2"}}',
    }


# -- the state at T, against a model -------------------------------------------------------


def random_workload(seed: int, count: int = 240) -> list[dict[str, Any]]:
    """Random puts, updates and deletes over 15 keys across three days, in stream order."""
    rng = random.Random(seed)
    state: dict[str, dict[str, Any]] = {}
    out = []
    at = T0
    for seq in range(1, count + 1):
        at += timedelta(seconds=rng.randint(1, 1200))
        name = f"k{rng.randint(0, 14)}"
        key = {"pk": s(name)}
        if name in state and rng.random() < 0.3:
            out.append(
                record(seq, key, "REMOVE", old=state.pop(name), at=at, ttl=rng.random() < 0.5)
            )
        else:
            new = {**key, "v": n(seq), "tags": {"SS": sorted({f"t{rng.randint(0, 3)}", "x"})}}
            event = "MODIFY" if name in state else "INSERT"
            out.append(record(seq, key, event, old=state.get(name), new=new, at=at))
            state[name] = new
    return out


def model_state(
    records: list[dict[str, Any]], log_from: datetime, at: datetime, base: dict[str, str]
) -> dict[str, str]:
    state = dict(base)
    for rec in records:
        ddb = rec["dynamodb"]
        if not log_from <= ddb["ApproximateCreationDateTime"] <= at:
            continue
        keys = canonical_json(ddb["Keys"])
        if rec["eventName"] == "REMOVE":
            state.pop(keys, None)
        else:
            state[keys] = canonical_json(ddb["NewImage"])
    return state


def write_snapshot(archive: Archive, table: str, snapshot_id: str, items: dict[str, str]) -> None:
    rows = pa.table({"keys": list(items), "item": list(items.values())}, schema=SNAPSHOT_SCHEMA)
    archive.write_parquet(layout.snapshot_part(table, snapshot_id, 0), rows)
    archive.write_json(layout.snapshot_manifest(table, snapshot_id), {"snapshot_id": snapshot_id})


def state_twin(
    archive: Archive, log_from: datetime, at: datetime, snapshot_id: str, time_zone: str = "UTC"
) -> dict[str, str]:
    times = at_offset(log_from, time_zone), at_offset(at, time_zone)
    rows = run_twin(
        archive, "table_state_at.sql", "orders", *times, snapshot_id, time_zone=time_zone
    )
    assert len(rows) == len({r[0] for r in rows})  # one row per key
    return dict(rows)


@pytest.mark.parametrize(("seed", "time_zone"), [(1, "UTC"), (2, "Etc/GMT-1"), (3, "Etc/GMT+2")])
def test_table_state_at_twin_equals_the_model(archive: Archive, seed: int, time_zone: str) -> None:
    records = random_workload(seed)
    write_changes(archive, "orders", records, per_file=17)
    write_changes(archive, "orders", records[40:80], shard_id="shardId-00000001")  # duplicates
    rng = random.Random(seed)
    times = [r["dynamodb"]["ApproximateCreationDateTime"] for r in records]
    # From the table's creation, no base.
    for at in [*sorted(rng.sample(times, 4)), times[-1] + timedelta(hours=1)]:
        expected = model_state(records, T0, at, {})
        assert state_twin(archive, T0, at, "", time_zone) == expected
    # From a base snapshot taken at S: log_from = S - 5 s, T after it.
    taken_at = times[100]
    base = model_state(records, T0, taken_at, {})
    snapshot_id = f"{layout.label_stamp(taken_at.isoformat())}-base01"
    write_snapshot(archive, "orders", snapshot_id, base)
    log_from = taken_at - timedelta(seconds=5)
    for at in [taken_at + timedelta(seconds=5), *sorted(rng.sample(times[101:], 3))]:
        expected = model_state(records, log_from, at, base)
        assert state_twin(archive, log_from, at, snapshot_id, time_zone) == expected


def test_table_state_at_counts_only_the_generation_alive_at_t(archive: Archive) -> None:
    old = [
        record(1, A, "INSERT", new={**A, "v": n(1)}),
        record(2, B, "INSERT", new={**B, "v": n(2)}),
    ]
    write_changes(archive, "orders", old, table_id="generation-1")
    later = T0 + timedelta(hours=1)
    new = [record(1, A, "INSERT", new={**A, "v": n(9)}, at=later, event_id="new-1")]
    write_changes(archive, "orders", new, table_id="generation-2", label="2026-01-31T12:30:00.000")
    assert state_twin(archive, T0, T0 + timedelta(minutes=5), "") == {
        canonical_json(A): '{"pk":{"S":"a"},"v":{"N":"1"}}',
        canonical_json(B): '{"pk":{"S":"b"},"v":{"N":"2"}}',
    }
    # After the table was recreated, the old generation's items are gone.
    assert state_twin(archive, T0, later, "") == {
        canonical_json(A): '{"pk":{"S":"a"},"v":{"N":"9"}}'
    }


# -- history_of with bounds: only the dt partitions in range --------------------------------

# Key A's changes across five UTC dates, two of them either side of the lower bound on its
# date; key B's on a sixth date. The lower bound 00:30 at +01:00 is 23:30 UTC the day before:
# a query that took the bound's wall-clock date would skip that day's partition and lose a row.
HISTORY_FROM = "2026-02-02T00:30:00+01:00"
HISTORY_TO = "2026-02-03T23:59:59Z"
IN_RANGE = {"2026-02-01", "2026-02-02", "2026-02-03"}


@pytest.fixture
def spread_archive(archive: Archive) -> Archive:
    day = datetime(2026, 2, 1, tzinfo=UTC)
    records = [
        record(1, A, "INSERT", new={**A, "v": n(1)}),  # 2026-01-31
        record(2, A, "MODIFY", new={**A, "v": n(2)}, at=day + timedelta(hours=23, minutes=20)),
        record(3, A, "MODIFY", new={**A, "v": n(3)}, at=day + timedelta(hours=23, minutes=40)),
        record(4, A, "MODIFY", new={**A, "v": n(4)}, at=day + timedelta(days=1, minutes=10)),
        record(5, A, "MODIFY", new={**A, "v": n(5)}, at=day + timedelta(days=2, hours=12)),
        record(6, A, "REMOVE", old={**A, "v": n(5)}, at=day + timedelta(days=3, hours=12)),
        record(7, B, "INSERT", new={**B, "v": n(7)}, at=day + timedelta(days=4)),
    ]
    write_changes(archive, "orders", records, per_file=1)
    write_changes(archive, "orders", records[2:4], shard_id="shardId-00000002")  # duplicates
    return archive


def in_window(rows: list[tuple[Any, ...]], start: str, end: str) -> list[tuple[Any, ...]]:
    """The rows whose ``event_time`` (the first column) is in [start, end]."""
    lo, hi = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (start, end))
    return [r for r in rows if lo <= r[0].astimezone(UTC) <= hi]


def test_a_bounded_history_of_reads_only_the_partitions_in_range(spread_archive: Archive) -> None:
    # Every file of a partition outside the range is made unreadable for the bounded call: the
    # call succeeding with the right rows shows none of them was opened.
    files = {rel: Path(spread_archive.path(rel)) for rel in change_files(spread_archive, "orders")}

    def dt_of(rel: str) -> str:
        return rel.split("dt=")[1].split("/")[0]

    def history_of(*bounds: str, readable: set[str] | None = None) -> list[tuple[Any, ...]]:
        args = ", ".join(f"'{a}'" for a in ("orders", canonical_json(A), *bounds))
        sql = f"SELECT * FROM history_of({args})"
        kept = {rel: path.read_bytes() for rel, path in files.items()}
        try:
            for rel, path in files.items():
                if readable is not None and dt_of(rel) not in readable:
                    path.write_bytes(b"not parquet")
            return list(run_query(spread_archive, expand(spread_archive, sql)).rows())
        finally:
            for rel, data in kept.items():
                files[rel].write_bytes(data)

    assert {dt_of(rel) for rel in files} == {"2026-01-31", *IN_RANGE, "2026-02-04", "2026-02-05"}
    everything = history_of()
    assert [r[1] for r in everything] == ["INSERT", *["MODIFY"] * 4, "REMOVE"]
    # The check itself can fail: an unbounded call over the same unreadable files is refused.
    with pytest.raises(DamagedFile, match=r"dt=2026-01-31/.*cannot be read as Parquet"):
        history_of(readable=IN_RANGE)
    bounded = history_of(HISTORY_FROM, HISTORY_TO, readable=IN_RANGE)
    assert bounded == in_window(everything, HISTORY_FROM, HISTORY_TO)
    assert [r[4] for r in bounded] == [f'{{"pk":{{"S":"a"}},"v":{{"N":"{v}"}}}}' for v in (3, 4, 5)]
    # One bound alone, and '' for none.
    later = history_of(HISTORY_FROM, "", readable={*IN_RANGE, "2026-02-04", "2026-02-05"})
    assert later == in_window(everything, HISTORY_FROM, "2026-12-31T00:00:00Z")


@pytest.mark.parametrize(
    ("start", "end"), [(HISTORY_FROM, HISTORY_TO), ("", HISTORY_TO), (HISTORY_FROM, ""), ("", "")]
)
def test_the_named_history_of_with_bounds_is_the_unbounded_one_restricted(
    spread_archive: Archive, start: str, end: str
) -> None:
    named = to_duckdb(named_history_of())
    keys = canonical_json(A)
    everything = list(run_query(spread_archive, named, ["orders", keys, "", ""]).rows())
    assert len(everything) == 6
    bounded = list(run_query(spread_archive, named, ["orders", keys, start, end]).rows())
    window = (start or "1970-01-01T00:00:00Z", end or "9999-12-31T00:00:00Z")
    assert bounded == in_window(everything, *window)
    local = f"SELECT * FROM history_of('orders', '{keys}', '{start}', '{end}')"
    assert list(run_query(spread_archive, expand(spread_archive, local)).rows()) == bounded
