"""Poison records: a stream record that cannot be archived as it is gets a defined outcome.

An attribute value that is not DynamoDB JSON, an INSERT or MODIFY without its NewImage (it
would fold as a delete), a record without ``dynamodb``, ``SequenceNumber`` or ``Keys``: never
archived, never skipped. The Lambda handler archives the records before it and reports it as
the batch item failure; the poller stops with exit 2 and a line naming it, and a rerun once
the stream holds a good record continues from there.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from archiver.aws.error_table import EXIT_OK, EXIT_USAGE, PoisonRecord
from archiver.format import layout
from archiver.format.records import ChangeRows
from archiver.format.storage import Archive
from archiver.lambda_mode import handler as lh
from tests.conftest import create_table
from tests.helpers import stream_records
from tests.streams_double import StreamsDouble
from tests.test_lambda_handler import TABLE, all_rows, lambda_event, write_workload
from tests.test_stream_lineage import archived_rows, put, run, stream_of


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def corrupt(record: dict[str, Any]) -> None:
        target = record
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return corrupt


def _drop(path: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def corrupt(record: dict[str, Any]) -> None:
        target = record
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return corrupt


# (what is wrong, how to make a MODIFY record so, what the log line says)
POISONS = [
    ("two tags", _set(("dynamodb", "NewImage", "v"), {"S": "x", "N": "1"}), "one type tag"),
    ("unknown tag", _set(("dynamodb", "NewImage", "v"), {"Q": "x"}), "unknown DynamoDB type"),
    ("lower-case tag", _set(("dynamodb", "NewImage", "v"), {"s": "x"}), "unknown DynamoDB type"),
    ("S not a string", _set(("dynamodb", "NewImage", "v"), {"S": 5}), "S must be a string"),
    ("BOOL as text", _set(("dynamodb", "OldImage", "v"), {"BOOL": "true"}), "BOOL must be"),
    ("M as a list", _set(("dynamodb", "NewImage", "v"), {"M": []}), "M must be an object"),
    ("bad key", _set(("dynamodb", "Keys", "pk"), {"Q": "b"}), "Keys"),
    ("nested", _set(("dynamodb", "NewImage", "v"), {"L": [{"M": {"x": {"N": "abc"}}}]}), "abc"),
    ("no NewImage", _drop(("dynamodb", "NewImage")), "MODIFY without a NewImage"),
    ("no dynamodb", _drop(("dynamodb",)), "no dynamodb"),
    ("no Keys", _drop(("dynamodb", "Keys")), "no Keys"),
]


@pytest.fixture(autouse=True)
def fresh_container(monkeypatch: pytest.MonkeyPatch) -> None:
    lh.reset()
    monkeypatch.setenv("MAX_ITERATOR_AGE_SECONDS", "600")


@pytest.mark.parametrize(("what", "corrupt", "said"), POISONS, ids=[p[0] for p in POISONS])
def test_lambda_archives_the_records_before_a_poison_record_and_reports_it(
    ddb: Any,
    archive: Archive,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    what: str,
    corrupt: Callable[[dict[str, Any]], None],
    said: str,
) -> None:
    create_table(ddb, TABLE)
    write_workload(ddb)
    stream_arn, _, records = stream_records(TABLE)
    event = lambda_event(stream_arn, records)
    good = copy.deepcopy(event["Records"])
    poisoned = event["Records"][3]
    assert poisoned["eventName"] == "MODIFY"
    corrupt(poisoned)
    monkeypatch.setenv("ARCHIVE_URL", archive.url)

    with caplog.at_level(logging.ERROR, logger="archiver.lambda_mode.handler"):
        response = lh.handler(event, None)

    # It is the failure (a record without a sequence number of its own: the whole batch).
    first = 0 if what == "no dynamodb" else 3
    reported = good[first]["dynamodb"]["SequenceNumber"]
    assert response == {"batchItemFailures": [{"itemIdentifier": reported}]}
    # The good records before it are archived; it and the later ones are not.
    assert all_rows(archive)["event_id"].to_pylist() == [r["eventID"] for r in good[:3]]
    (line,) = [r.getMessage() for r in caplog.records if "POISON" in r.getMessage()]
    assert good[3]["eventID"] in line and said in line
    # The event source mapping retries from it; once the record is good, everything lands once.
    lh.reset()
    retry = [r for r in good if int(r["dynamodb"]["SequenceNumber"]) >= int(reported)]
    assert lh.handler({"Records": retry}, None) == {"batchItemFailures": []}
    # (A whole batch retried archives its first records twice; the fold counts them once.)
    archived = all_rows(archive)["event_id"].to_pylist()
    assert list(dict.fromkeys(archived)) == [r["eventID"] for r in good]


def test_lambda_poison_without_a_sequence_number_fails_the_whole_batch(
    ddb: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_table(ddb, TABLE)
    write_workload(ddb)
    stream_arn, _, records = stream_records(TABLE)
    event = lambda_event(stream_arn, records)
    del event["Records"][3]["dynamodb"]["SequenceNumber"]
    monkeypatch.setenv("ARCHIVE_URL", archive.url)
    # The event source mapping retries the whole batch (the records before the poison
    # rewrite the same file).
    first = records[0]["dynamodb"]["SequenceNumber"]
    assert lh.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": first}]}
    assert all_rows(archive).num_rows == 3


def test_change_rows_refuse_an_insert_without_its_image_and_stay_as_they_were() -> None:
    def record(n: int, **ddb: Any) -> dict[str, Any]:
        return {
            "eventID": f"e{n}",
            "eventName": "INSERT",
            "dynamodb": {
                "ApproximateCreationDateTime": datetime(2026, 1, 1, tzinfo=UTC),
                "Keys": {"pk": {"S": str(n)}},
                "SequenceNumber": str(100 + n),
                **ddb,
            },
        }

    rows = ChangeRows()
    fields = {"stream_arn": "arn", "shard_id": "shard-1", "table_id": "t", "origin": "stream"}
    rows.extend([record(1, NewImage={"pk": {"S": "1"}})], **fields)
    with pytest.raises(PoisonRecord) as caught:
        rows.extend([record(2, NewImage={"pk": {"S": "2"}}), record(3)], **fields)
    assert caught.value.exit_code == EXIT_USAGE
    assert str(caught.value).startswith(
        "stream record (event id e3, shard shard-1, sequence number 103) cannot be archived: "
        "an INSERT without a NewImage"
    )
    assert rows.to_table()["event_id"].to_pylist() == ["e1"]


# -- the poller -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "corrupt", "said"),
    [POISONS[0], POISONS[8], POISONS[9]],
    ids=["bad value", "no NewImage", "no dynamodb"],
)
def test_the_poller_stops_at_a_poison_record_and_a_rerun_continues(
    ddb: Any,
    archive: Archive,
    what: str,
    corrupt: Callable[[dict[str, Any]], None],
    said: str,
) -> None:
    table = create_table(ddb, TABLE)
    double = StreamsDouble(describe_page_size=2)
    stream = stream_of(double, table)
    shard = stream.add_shard()
    start = datetime.now(UTC).replace(microsecond=0)
    records = put(stream, shard, 6, start)
    fixed = copy.deepcopy(records[3])
    # A MODIFY whose images the corruption spoils.
    records[3]["eventName"] = fixed["eventName"] = "MODIFY"
    records[3]["dynamodb"]["OldImage"] = fixed["dynamodb"]["OldImage"] = dict(
        records[3]["dynamodb"]["NewImage"]
    )
    records[3]["dynamodb"]["NewImage"]["v"] = {"S": "ok"}
    corrupt(records[3])

    with pytest.raises(PoisonRecord) as caught:
        run(double, archive)
    assert caught.value.exit_code == EXIT_USAGE
    message = str(caught.value)
    assert fixed["eventID"] in message and shard.shard_id in message and said in message
    # A record without its dynamodb part is named by the one before it.
    named = records[2] if what == "no dynamodb" else fixed
    assert named["dynamodb"]["SequenceNumber"] in message
    # Nothing at or after it was archived.
    archived = [row["event_id"] for row in archived_rows(archive)]
    assert set(archived) <= {r["eventID"] for r in records[:3]}

    # Once the stream holds a good record there (the test double allows what AWS would not),
    # a rerun continues and every record lands exactly once.
    shard.records[3] = fixed
    assert run(double, archive) == EXIT_OK
    assert [row["event_id"] for row in archived_rows(archive)] == [
        r["eventID"] for r in shard.records
    ]
    assert all(row["new_image"] is not None for row in archived_rows(archive))
    assert archive.find(layout.changes_table_dir(TABLE), ".parquet")
