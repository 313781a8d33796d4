"""``--key``, ``--keys-file`` and ``--where`` on restore, export, verify and rollback: only the
selected items, as they were at T, read from the row groups that can hold them.

The archives are built directly (the archiver's own format code, times chosen by the test): a
base snapshot sorted by key in many small row groups, then a change log; the truth at any
instant is the model's. Rollback runs against moto's stream, archived by the real poller.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from replayer.planning import plan as planning
from replayer.planning.key_selection import KeySelection
from replayer.write.restore_state import plan_fingerprint
from tests.conftest import create_table
from tests.replay_helpers import (
    Change,
    at,
    canon,
    item,
    key,
    replayer,
    write_changes,
    write_coverage,
    write_description,
    write_snapshot,
)
from tests.test_rollback import wait_for_next_second
from tests.workload import scan_state

KEYS = 60
T = at(100)


def name(i: int) -> str:
    return f"k{i:03d}"


def build(archive: Archive) -> dict[str, str]:
    """Base snapshot of k000..k059, then changes; returns the truth at ``T``."""
    base = [item(name(i), v=i) for i in range(KEYS)]
    write_coverage(archive, covered_from=at(-100), from_table_creation=False, watermark=at(500))
    write_description(archive)
    write_snapshot(archive, base, valid_from=at(-10), log_from=at(-20))
    state = {name(i): item(name(i), v=i) for i in range(KEYS)}
    changes, truth = [], {}
    for seq, step in enumerate(range(150), 1):  # each key changed a few times, some deleted
        i = (step * 13) % (KEYS + 10)  # every key of 70, in turn
        if step % 11 == 0 and name(i) in state:
            changes.append(Change(seq, key(name(i)), None, at(step), event_name="REMOVE"))
            del state[name(i)]
        else:
            new = item(name(i), v=1000 + step)
            event = "MODIFY" if name(i) in state else "INSERT"
            changes.append(Change(seq, key(name(i)), new, at(step), event_name=event))
            state[name(i)] = new
        if at(step) <= T:
            truth = canon(list(state.values()))
    write_changes(archive, changes, per_file=40)
    return truth


def keys_of(*indexes: int) -> list[str]:
    return [canonical_json(key(name(i))) for i in indexes]


def restore(capsys: Any, archive: Archive, target: str, *more: str) -> tuple[int, str, str]:
    return replayer(capsys, "restore", "--source-table-name", "orders", "--target-table-name",
                    target, "--archive", archive.url, "--restore-date-time", T.isoformat(),
                    *more)  # fmt: skip


def test_a_partial_restore_equals_the_truth_restricted_to_its_keys(
    ddb: Any, archive: Archive, tmp_path: Path, capsys: Any
) -> None:
    truth = build(archive)
    deleted = next(i for i in range(KEYS) if canonical_json(key(name(i))) not in truth)
    chosen = [3, 17, 42, deleted, 65]  # 65: created by the log only
    flags = [f for i in chosen for f in ("--key", canonical_json(key(name(i))))]
    code, out, err = restore(capsys, archive, "part", *flags)
    assert code == 0, err
    want = {k: v for k, v in truth.items() if k in keys_of(*chosen)}
    assert scan_state(ddb, "part") == want and len(want) == 4
    assert "verify: identical: 4 items" in out
    # Only the row groups that can hold the keys were read: the base is sorted by key.
    read = re.search(r"read ([\d,]+) of ([\d,]+) rows: the ([\d,]+) of ([\d,]+) row groups", out)
    assert read is not None, out
    rows, total, groups, all_groups = (int(g.replace(",", "")) for g in read.groups())
    assert groups < all_groups and rows < total

    keys_file = tmp_path / "keys.jsonl"
    keys_file.write_text("\n".join(keys_of(5, 6)) + "\n\n")
    code, out, err = restore(capsys, archive, "from-file", "--keys-file", str(keys_file))
    assert code == 0, err
    assert scan_state(ddb, "from-file") == {k: truth[k] for k in keys_of(5, 6) if k in truth}

    # --where: every key with an archived row matching (here: one value ever held).
    code, out, err = restore(capsys, archive, "by-where", "--where", "new_image->>'$.v.N' = '7'")
    assert code == 0, err
    assert set(scan_state(ddb, "by-where")) == set(keys_of(7)) & set(truth)


def test_export_and_verify_only_the_selected_items(
    ddb: Any, archive: Archive, tmp_path: Path, capsys: Any
) -> None:
    truth = build(archive)
    chosen = keys_of(1, 2, 30)
    flags = [f for k in chosen for f in ("--key", k)]
    out_dir = tmp_path / "export"
    code, out, err = replayer(capsys, "export", "--table-name", "orders", "--archive",
                              archive.url, "--restore-date-time", T.isoformat(), "--output",
                              str(out_dir), *flags)  # fmt: skip
    assert code == 0, err
    rows = pq.read_table(out_dir / "data").to_pylist()
    assert {r["keys"]: r["item"] for r in rows} == {k: truth[k] for k in chosen if k in truth}
    assert "read " in out and "exported" in out

    # A target holding every item, one of them wrong: verify of other keys is identical.
    create_table(ddb, "copy")
    for text in truth.values():
        ddb.put_item(TableName="copy", Item=orjson.loads(text))
    wrong = keys_of(10)[0]
    ddb.put_item(TableName="copy", Item={**key(name(10)), "v": {"N": "-1"}})
    verify = ["verify", "--target-table-name", "copy", "--source-table-name", "orders",
              "--archive", archive.url, "--restore-date-time", T.isoformat()]  # fmt: skip
    code, out, err = replayer(capsys, *verify, *flags)
    assert code == 0, out + err
    assert f"identical: {len([k for k in chosen if k in truth])} items" in out
    code, out, err = replayer(capsys, *verify, "--key", wrong)
    assert code == 3 and "different" in out
    code, out, err = replayer(capsys, *verify)  # the whole table: the wrong item shows
    assert code == 3


def test_selection_refusals(archive: Archive, capsys: Any) -> None:
    build(archive)
    one = canonical_json(key(name(1)))
    code, _, err = restore(capsys, archive, "new-1", "--key", one, "--strategy", "pitr")
    assert code == 2 and "restored by replay" in err
    code, _, err = restore(capsys, archive, "new-2", "--key", one, "--engine", "athena")
    assert code == 2 and "athena" in err
    code, _, err = restore(capsys, archive, "new-3", "--key", '{"id": {"S": "a"}}')
    assert code == 2 and "key attributes" in err
    code, _, err = restore(capsys, archive, "new-4", "--where", "event_name = 'NOPE'")
    assert code == 2 and "selects no key" in err
    with pytest.raises(SystemExit):  # argparse: one selector at a time
        restore(capsys, archive, "new-5", "--key", one, "--where", "true")


def test_a_selection_is_part_of_the_restore_plan(archive: Archive) -> None:
    build(archive)
    plan = planning.plan_restore(archive, "orders", T)
    one, two = KeySelection.of(keys_of(1), "--key"), KeySelection.of(keys_of(1, 2), "--key")
    prints = {plan_fingerprint(plan), plan_fingerprint(plan, keys=one),
              plan_fingerprint(plan, keys=two)}  # fmt: skip
    assert len(prints) == 3  # a resume never mixes a partial restore with another


def test_rollback_of_only_the_selected_keys(ddb: Any, archive: Archive, capsys: Any) -> None:
    create_table(ddb, "orders")
    for i in range(3):
        ddb.put_item(TableName="orders", Item=item(name(i), v=1))
    then = wait_for_next_second(0.2)
    for i in range(3):
        ddb.put_item(TableName="orders", Item=item(name(i), v=2))
    wait_for_next_second(0.2)
    code, out, err = replayer(capsys, "rollback", "--table-name", "orders", "--archive",
                              archive.url, "--restore-date-time", then.isoformat(),
                              "--key", canonical_json(key(name(1))))  # fmt: skip
    assert code == 0, out + err
    now = scan_state(ddb, "orders")
    assert [now[k] for k in keys_of(0, 1, 2)] == [
        canonical_json(item(name(0), v=2)),
        canonical_json(item(name(1), v=1)),
        canonical_json(item(name(2), v=2)),
    ]
    assert "1 write(s)" in out


def test_a_partial_restore_stopped_mid_write_resumes_only_with_its_own_keys(
    ddb: Any, archive: Archive, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = build(archive)
    from replayer.strategies import replay

    real_write = replay._write

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(replay, "_write", dies)
    mine = ["--key", keys_of(3)[0], "--key", keys_of(4)[0]]
    code, _, err = restore(capsys, archive, "part", *mine)
    assert code == 1 and "killed while writing" in err
    monkeypatch.setattr(replay, "_write", real_write)

    code, _, err = restore(capsys, archive, "part", *mine)  # its own partial target
    assert code == 4 and "--resume" in err and keys_of(3)[0] in err  # the command to continue
    code, _, err = restore(capsys, archive, "part", "--key", keys_of(3)[0], "--resume")
    assert code == 4 and "another plan" in err  # never mixed with another selection
    code, out, err = restore(capsys, archive, "part", *mine, "--resume")
    assert code == 0, out + err
    assert scan_state(ddb, "part") == {k: truth[k] for k in keys_of(3, 4)}
