"""Records of one key with the same creation time: ordered by what their images prove, the
undecided ones recorded and refused at restore (exit 4, naming the key) unless inexact results
are allowed; and a property: any history, delivered in any order with any duplicates over any
shards, restores exactly wherever the plan calls it exact, and is refused wherever the images
cannot tell the state."""

from __future__ import annotations

import itertools
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.capture import kinesis_records
from archiver.capture.kinesis_order import Orderer
from archiver.format import coverage, ties
from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from replayer.planning.kinesis_order import AmbiguousOrder, judge
from tests.conftest import create_table
from tests.kinesis_double import DestinationDouble, KinesisDouble
from tests.kinesis_helpers import History, Step, capture, micros_of, restored, seed_coverage
from tests.replay_helpers import write_snapshot

TABLE = "orders"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def place(orderer: Orderer, step: Step) -> tuple[str | None, dict[str, Any] | None]:
    return orderer.place(kinesis_records.change(step.doc), "tid", NOW)


# -- the capture's placement -------------------------------------------------------------------


def test_a_later_record_delivered_first_is_placed_after_by_its_images() -> None:
    history = History(TABLE)
    insert = history.write("a", 1_000_000, "x")
    modify = history.write("a", 1_000_000, "y")  # the same microsecond
    assert insert is not None and modify is not None
    orderer = Orderer()
    second, none = place(orderer, modify)
    first, entry = place(orderer, insert)
    assert none is None and entry is not None and entry["decided"]
    assert first is not None and second is not None and first < second
    assert entry["event_ids"] == [insert.event_id, modify.event_id]
    # A duplicate is dropped; one read after a restart gets the number it got.
    assert place(orderer, insert) == (None, None)
    again = Orderer(known=[entry])
    assert place(again, insert)[0] == first


def test_a_delete_and_a_re_insert_of_the_same_item_in_one_microsecond_are_undecided() -> None:
    history = History(TABLE)
    history.write("a", 1_000_000, "x")
    remove = history.write("a", 2_000_000, None)
    reinsert = history.write("a", 2_000_000, "x")  # the state comes back: x → absent → x
    assert remove is not None and reinsert is not None
    orderer = Orderer()
    place(orderer, reinsert)
    _, entry = place(orderer, remove)
    assert entry is not None and not entry["decided"]
    assert entry["key_sha256"] == coverage.key_hash(canonical_json({"pk": {"S": "a"}}))


def member(step: Step, seq: str) -> dict[str, Any]:
    ddb = step.doc["dynamodb"]
    new = ddb.get("NewImage")
    old = ddb.get("OldImage")
    return {
        "seq": seq,
        "event_id": step.event_id,
        "event_name": step.doc["eventName"],
        "new_image": canonical_json(new) if new else None,
        "old_image": canonical_json(old) if old else None,
    }


def test_the_planner_judges_what_the_archive_holds() -> None:
    history = History(TABLE)
    a = history.write("a", 5, "x")
    b = history.write("a", 5, "y")
    c = history.write("a", 5, "z")
    assert a and b and c
    # The true order, numbered so: proven (absent → x → y → z is the only chain).
    assert judge([member(a, "1"), member(b, "2"), member(c, "3")])
    # Numbered against the images (the capture never saw them together): not proven.
    assert not judge([member(a, "1"), member(b, "3"), member(c, "2")])
    # Delete and insert the same value: x → absent → x goes round, both orders chain …
    e = history.write("b", 6, "x")
    f = history.write("b", 7, None)
    g = history.write("b", 7, "x")
    assert e and f and g
    assert not judge([member(f, "1"), member(g, "2")])
    # … unless the state before them is known (an earlier row of the key in the window).
    assert judge([member(f, "1"), member(g, "2")], prior=canonical_json(e.new))
    # q → r → q: the archive's order (q last) is one the images allow, but so is r last.
    h = history.write("c", 8, "q")
    i = history.write("c", 9, "r")
    j = history.write("c", 9, "q")
    assert h and i and j
    assert not judge([member(i, "1"), member(j, "2")])
    assert judge([member(i, "1"), member(j, "2")], prior=canonical_json(h.new))
    assert judge([member(j, "1")])  # alone at its time


# -- end to end ---------------------------------------------------------------------------------


def setup(ddb: Any, archive: Archive) -> tuple[KinesisDouble, DestinationDouble, int]:
    description = create_table(ddb, TABLE, stream=None)
    _, created = seed_coverage(archive, TABLE, description)
    stream = KinesisDouble(shards=2)
    destinations = DestinationDouble()
    destinations.set(TABLE, stream.arn)
    return stream, destinations, micros_of(created) + 50_000


def settle(micros: int) -> None:
    time.sleep(max(0.0, micros / 1e6 + 0.4 - time.time()))


def test_an_undecided_pair_is_recorded_and_refused_unless_inexact_is_allowed(
    ddb: Any, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    stream, destinations, base = setup(ddb, archive)
    history = History(TABLE)
    # Item b is in the base snapshot only: its first rows in the log are the tie.
    table_id = coverage.current(archive, TABLE)["table_id"]
    created = datetime.fromtimestamp((base - 50_000) / 1e6, UTC)
    write_snapshot(
        archive,
        [history.seed("b", "p")],
        valid_from=created + timedelta(milliseconds=1),
        log_from=created + timedelta(milliseconds=1),
        table=TABLE,
        table_id=table_id,
    )
    history.write("a", base, "x")
    history.write("a", base + 2_000, None)
    history.write("a", base + 2_000, "x2")  # decided: the insert follows the delete
    history.write("b", base + 3_000, None)
    history.write("b", base + 3_000, "p")  # undecided: p → absent → p, p unknown to the log
    history.write("b", base + 6_000, "later")
    for n, step in enumerate(reversed(history.steps)):
        stream.put(step.doc, shard=n % 2)
    settle(base + 6_000)
    assert capture(archive, TABLE, stream.arn, destinations, kinesis_client=stream) == 0

    recorded = ties.read_ties(archive, TABLE)
    assert sorted(t["decided"] for t in recorded) == [False, True]
    at_a = (base + 2_000) // 1000
    at_b = (base + 3_000) // 1000
    assert restored(archive, TABLE, at_a)[canonical_json({"pk": {"S": "a"}})] == canonical_json(
        {"pk": {"S": "a"}, "v": {"S": "x2"}}
    )
    with pytest.raises(AmbiguousOrder) as refused:
        restored(archive, TABLE, at_b)
    message = str(refused.value)
    assert refused.value.exit_code == 4
    assert canonical_json({"pk": {"S": "b"}}) in message and "recorded by the archiver" in message
    inexact = restored(archive, TABLE, at_b, allow_inexact=True)
    assert canonical_json({"pk": {"S": "a"}}) in inexact
    # Once a later change of the key is in the window, its state is proven again.
    later = (base + 6_000) // 1000
    assert restored(archive, TABLE, later) == history.state_at(later)
    # The CLI says so in one line, exit 4, and --allow-inexact exports anyway.
    from replayer.cli import main

    when = datetime.fromtimestamp(at_b / 1000, UTC).isoformat()
    out = f"{archive.url}-export"
    args = ["export", "--table-name", TABLE, "--archive", archive.url, "--output", out,
            "--restore-date-time", when]  # fmt: skip
    assert main(args) == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-inexact" in err
    assert main([*args, "--allow-inexact"]) == 0
    assert "INEXACT" in capsys.readouterr().out
    # A query's state_at is planned as a restore is: refused there too, and exact later.
    stamp = datetime.fromtimestamp(at_b / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    query = ["query", "--archive", archive.url,
             f"SELECT count(*) AS n FROM state_at('{TABLE}', TIMESTAMP '{stamp}')"]  # fmt: skip
    assert main(query) == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and canonical_json({"pk": {"S": "b"}}) in err
    stamp = datetime.fromtimestamp(later / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    query[-1] = f"SELECT count(*) AS n FROM state_at('{TABLE}', TIMESTAMP '{stamp}')"
    assert main(query) == 0
    assert str(len(history.state_at(later))) in capsys.readouterr().out


def test_millisecond_precision_orders_by_images_when_accepted(ddb: Any, archive: Archive) -> None:
    stream, destinations, base = setup(ddb, archive)
    destinations.set(TABLE, stream.arn, precision="MILLISECOND")
    history = History(TABLE)
    ms = (base // 1000) * 1000
    for n, value in enumerate(["a", "b", "c", "d"]):  # four writes within one millisecond
        history.write("k", ms + n * 100, value, precision="MILLISECOND")
    for step in reversed(history.steps):
        stream.put(step.doc)
    settle(ms)
    assert (
        capture(
            archive,
            TABLE,
            stream.arn,
            destinations,
            kinesis_client=stream,
            accept_millisecond_order=True,
        )
        == 0
    )
    assert restored(archive, TABLE, ms // 1000) == history.state_at(ms // 1000)


# -- the property -------------------------------------------------------------------------------


_UNKNOWN = object()


def possible_states(group: list[Step], prior: object) -> set[str | None]:
    """Every final state of the orders of ``group`` its images allow: each record's old state
    the previous one's new state, the first one's the state before them (``prior``, when the
    log shows it). Every record's state when no order fits: the images then prove nothing."""

    def state(step: Step) -> str | None:
        return canonical_json(step.new) if step.new else None

    def old(step: Step) -> str | None:
        return canonical_json(step.old) if step.old else None

    finals = set()
    for order in itertools.permutations(group):
        if prior is not _UNKNOWN and old(order[0]) != prior:
            continue
        if all(old(b) == state(a) for a, b in itertools.pairwise(order)):
            finals.add(state(order[-1]))
    return finals or {state(s) for s in group}


def ambiguous_at(history: History, ms: int) -> bool:
    """Whether the log cannot tell some key's state at ``ms``: the orders its records of the
    same latest time allow end in different states."""
    by_key: dict[str, list[Step]] = {}
    for step in history.steps:
        if step.micros // 1000 <= ms:
            by_key.setdefault(step.pk, []).append(step)
    for steps in by_key.values():
        top = max(s.micros for s in steps)
        group = [s for s in steps if s.micros == top]
        earlier = [s for s in steps if s.micros < top]
        prior: object = _UNKNOWN
        if earlier:
            last = earlier[-1].new
            prior = canonical_json(last) if last else None
        if len(group) > 1 and len(possible_states(group, prior)) > 1:
            return True
    return False


CHANGE = st.tuples(
    st.sampled_from(["a", "b"]),
    st.sampled_from([0, 0, 1, 400, 1_000]),  # µs after the previous change (0: the same)
    st.sampled_from([None, "x", "y"]),
)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    changes=st.lists(CHANGE, min_size=1, max_size=8),
    order=st.randoms(use_true_random=False),
    shards=st.integers(1, 2),
)
def test_any_delivery_restores_exactly_where_the_plan_says_so_and_is_refused_where_ambiguous(
    ddb: Any, changes: list[tuple[str, int, str | None]], order: Any, shards: int
) -> None:
    try:
        description = create_table(ddb, TABLE, stream=None)
    except Exception:  # the table of an earlier example
        description = ddb.describe_table(TableName=TABLE)["Table"]
    with tempfile.TemporaryDirectory() as folder:
        archive = Archive.open(folder)
        _, created = seed_coverage(archive, TABLE, description)
        history = History(TABLE)
        micros = micros_of(created) + 10_000
        for pk, delta, value in changes:
            micros += delta
            history.write(pk, micros, value)
        if not history.steps:
            return
        stream = KinesisDouble(shards=shards, page_size=3)
        destinations = DestinationDouble()
        destinations.set(TABLE, stream.arn)
        delivered = list(history.steps) + [s for s in history.steps if order.random() < 0.4]
        order.shuffle(delivered)
        for step in delivered:
            stream.put(step.doc, shard=order.randrange(shards))
        settle(micros)
        assert capture(archive, TABLE, stream.arn, destinations, kinesis_client=stream) == 0
        for ms in history.instants(most=5):
            try:
                state = restored(archive, TABLE, ms)
            except AmbiguousOrder:
                continue  # refused: never wrong (whether the images could tell or not)
            assert not ambiguous_at(history, ms), f"not refused at {ms}"
            assert state == history.state_at(ms), ms
        assert timedelta(0) <= datetime.now(UTC) - created
