"""``ddb-replayer history``: one item's timeline with attribute-level diffs."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from archiver.format import tables
from archiver.format.storage import Archive
from replayer.cli import main as replayer_main
from replayer.read.history import diff_images, render
from tests.changes_builder import T0, n, record, s, write_changes

A = {"pk": s("a"), "sk": n(1)}
V1 = {**A, "name": s("Alice"), "age": n(30), "addr": {"M": {"city": s("Oslo"), "zip": s("0150")}}}
V2 = {
    **A,
    "name": s("Alice"),
    "age": n(31),
    "tags": {"SS": ["x", "y"]},
    "addr": {"M": {"city": s("Bergen"), "zip": s("0150")}},
}


def build(archive: Archive) -> None:
    other = {"pk": s("b"), "sk": n(1)}
    records = [
        record(1, A, "INSERT", new=V1),
        record(2, other, "INSERT", new={**other, "v": n(1)}),
        record(3, A, "MODIFY", old=V1, new=V2),
        record(4, A, "REMOVE", old=V2, ttl=True, at=T0 + timedelta(days=1)),
    ]
    write_changes(archive, "orders", records, per_file=2)
    # The same record archived twice (a retried write) appears once.
    write_changes(archive, "orders", [records[2]], shard_id="shardId-00000001")
    describe(archive, "orders", ["pk", "sk"])


def describe(archive: Archive, table: str, keys: list[str]) -> None:
    schema = [{"AttributeName": keys[0], "KeyType": "HASH"}]
    schema += [{"AttributeName": k, "KeyType": "RANGE"} for k in keys[1:]]
    table_doc = {"TableName": table, "TableId": "t", "KeySchema": schema}
    tables.store_description(archive, tables.description_document(table, table_doc, captured_at=T0))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = replayer_main(["history", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_timeline_shows_time_event_who_and_attribute_diffs(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    build(archive)
    # Spacing, attribute order and number form differ from the canonical key: still found.
    key = '{ "sk": {"N": "1.0"},  "pk": {"S": "a"} }'
    code, out, err = run(capsys, "--table-name", "orders", "--archive", archive.url, "--key", key)
    assert code == 0, err
    assert out.splitlines() == [
        'History of {"pk":{"S":"a"},"sk":{"N":"1"}} in orders: 3 changes',
        "2026-01-31T12:00:01.000Z  INSERT  user",
        '    + addr: {city: "Oslo", zip: "0150"}',
        "    + age: 30",
        '    + name: "Alice"',
        '    + pk: "a"',
        "    + sk: 1",
        "2026-01-31T12:00:03.000Z  MODIFY  user",
        '    + tags: <<"x", "y">>',
        '    ~ addr.city: "Oslo" → "Bergen"',
        "    ~ age: 30 → 31",
        "2026-02-01T12:00:00.000Z  REMOVE  TTL",
        '    - addr: {city: "Bergen", zip: "0150"}',
        "    - age: 31",
        '    - name: "Alice"',
        '    - pk: "a"',
        "    - sk: 1",
        '    - tags: <<"x", "y">>',
    ]


def test_json_format_and_time_window(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    build(archive)
    code, out, _ = run(
        capsys,
        "--table-name",
        "orders",
        "--archive",
        archive.url,
        "--key",
        '{"pk": {"S": "a"}, "sk": {"N": "1"}}',
        "--from",
        "2026-01-31T12:00:02Z",
        "--to",
        str((T0 + timedelta(days=1)).timestamp()),
        "--format",
        "json",
    )
    assert code == 0
    changes = json.loads(out)
    assert [(c["event_time"], c["event_name"], c["who"]) for c in changes] == [
        ("2026-01-31T12:00:03.000Z", "MODIFY", "user"),
        ("2026-02-01T12:00:00.000Z", "REMOVE", "ttl"),
    ]
    assert changes[0]["diff"] == {
        "added": {"tags": {"SS": ["x", "y"]}},
        "removed": {},
        "changed": {
            "addr.city": {"old": {"S": "Oslo"}, "new": {"S": "Bergen"}},
            "age": {"old": {"N": "30"}, "new": {"N": "31"}},
        },
    }
    assert changes[1]["new_image"] is None
    assert changes[1]["old_image"] == V2
    assert changes[1]["user_identity"] == "Service/dynamodb.amazonaws.com"


def test_new_image_streams_diff_against_the_previous_change(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    key = {"pk": s("k")}
    write_changes(
        archive,
        "plain",
        [
            record(1, key, "INSERT", new={**key, "v": n(1)}),
            record(2, key, "MODIFY", new={**key, "v": n(2)}),
            record(3, key, "REMOVE"),
        ],
    )
    code, out, _ = run(
        capsys, "--table-name", "plain", "--archive", archive.url, "--key", '{"pk":{"S":"k"}}'
    )
    assert code == 0
    assert out.splitlines()[1:] == [
        "2026-01-31T12:00:01.000Z  INSERT  user",
        '    + pk: "k"',
        "    + v: 1",
        "2026-01-31T12:00:02.000Z  MODIFY  user",
        "    (old image from the previous change: the stream has no old images)",
        "    ~ v: 1 → 2",
        "2026-01-31T12:00:03.000Z  REMOVE  user",
        "    (old image from the previous change: the stream has no old images)",
        '    - pk: "k"',
        "    - v: 2",
    ]


def test_a_recreated_table_is_marked_in_the_timeline(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    key = {"pk": s("k")}
    write_changes(archive, "t", [record(1, key, "INSERT", new={**key, "v": n(1)})], table_id="old")
    write_changes(
        archive,
        "t",
        [
            record(
                1, key, "INSERT", new={**key, "v": n(5)}, at=T0 + timedelta(hours=1), event_id="x"
            )
        ],
        table_id="new",
        label="2026-01-31T13:00:00.000",
    )
    code, out, _ = run(
        capsys, "--table-name", "t", "--archive", archive.url, "--key", '{"pk":{"S":"k"}}'
    )
    assert code == 0
    lines = out.splitlines()
    assert "--- table recreated: table_id new ---" in lines
    assert lines.index("--- table recreated: table_id new ---") == 4


def test_no_history_says_so_and_exits_0(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    build(archive)
    key = '{"pk": {"S": "nobody"}, "sk": {"N": "1"}}'
    code, out, _ = run(capsys, "--table-name", "orders", "--archive", archive.url, "--key", key)
    assert code == 0
    assert out == 'No history for {"pk":{"S":"nobody"},"sk":{"N":"1"}} in orders.\n'
    code, out, err = run(
        capsys, "--table-name", "orders", "--archive", archive.url, "--key", key, "--format", "json"
    )
    assert (code, out) == (0, "[]\n")
    assert "no history" in err


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("not json", "not valid JSON"),
        ('{"pk": "a"}', "not an attribute value"),
        ("[1]", "must be an object"),
        ("{}", "names no attribute"),
        ('{"pk": {"S": "a"}}', "exactly the key attributes of orders: pk, sk"),
        ('{"pk": {"N": "x"}, "sk": {"N": "1"}}', "not a DynamoDB number"),
    ],
)
def test_malformed_key_exits_2_on_one_line(
    archive: Archive, capsys: pytest.CaptureFixture[str], key: str, expected: str
) -> None:
    build(archive)
    code, out, err = run(capsys, "--table-name", "orders", "--archive", archive.url, "--key", key)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert expected in err


def test_unknown_table_and_bad_times_exit_2(
    archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    build(archive)
    key = '{"pk": {"S": "a"}, "sk": {"N": "1"}}'
    code, _, err = run(capsys, "--table-name", "ordrs", "--archive", archive.url, "--key", key)
    assert code == 2
    assert "'ordrs' is not in the archive" in err
    args = ("--table-name", "orders", "--archive", archive.url, "--key", key)
    code, _, err = run(capsys, *args, "--from", "yesterday")
    assert code == 2
    assert "malformed time" in err
    code, _, err = run(
        capsys, *args, "--from", "2026-02-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z"
    )
    assert code == 2
    assert "--from is after --to" in err


def test_history_over_an_s3_archive(
    s3_archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    build(s3_archive)
    key = '{"pk": {"S": "a"}, "sk": {"N": "1"}}'
    code, out, err = run(
        capsys, "--table-name", "orders", "--archive", s3_archive.url, "--key", key
    )
    assert code == 0, err
    assert out.splitlines()[0].endswith("3 changes")


def test_diff_and_render_cover_every_type() -> None:
    old = {
        "b": {"B": "AAE="},
        "l": {"L": [{"N": "1"}, {"S": "x"}]},
        "m": {"M": {"deep": {"M": {"x": {"N": "1"}}}, "gone": {"NULL": True}}},
        "ns": {"NS": ["1", "2"]},
        "flag": {"BOOL": False},
    }
    new = {
        "b": {"B": "AAE="},
        "l": {"L": [{"N": "1"}]},
        "m": {"M": {"deep": {"M": {"x": {"N": "2"}}}, "odd key": {"BS": ["AAE="]}}},
        "ns": {"NS": ["1", "2"]},
        "flag": {"BOOL": True},
    }
    diff = diff_images(old, new)
    assert diff.added == {'m."odd key"': {"BS": ["AAE="]}}
    assert diff.removed == {"m.gone": {"NULL": True}}
    assert sorted(diff.changed) == ["flag", "l", "m.deep.x"]
    assert render(old["l"]) == '[1, "x"]'
    assert render(old["m"]) == "{deep: {x: 1}, gone: null}"
    assert render(new["m"]["M"]["odd key"]) == "<<b64:AAE=>>"
    assert render(old["ns"]) == "<<1, 2>>"
    assert render(old["b"]) == "b64:AAE="
    assert render(new["flag"]) == "true"
