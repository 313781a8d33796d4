"""``from_table_creation`` refuted: the evidence is kept in coverage.json and base-less
restores are refused from then on (exit 4), pointing to ``ddb-archiver snapshot``."""

from __future__ import annotations

import pytest

from archiver.aws.error_table import EXIT_REFUSED
from archiver.format import coverage
from archiver.format.storage import Archive
from replayer.engines.fold import Fold
from replayer.exceptions import NoUsableBase
from replayer.planning import plan as planning
from tests.replay_helpers import (
    TABLE,
    TABLE_ID,
    Change,
    at,
    item,
    key,
    write_changes,
    write_coverage,
    write_snapshot,
)

# Neither the format, the codec nor planning talks to AWS (see tests/conftest.py).
pytestmark = pytest.mark.no_aws


def test_a_refuted_claim_is_recorded_once_and_refuses_base_less_restores(
    archive: Archive,
) -> None:
    write_coverage(archive, watermark=at(100))
    write_changes(archive, [Change(1, key("a"), item("a", v=1), at(10), event_name="INSERT")])
    assert planning.plan_restore(archive, TABLE, at(50), convert=False).base is None

    evidence = coverage.refute_from_table_creation(
        archive,
        TABLE,
        TABLE_ID,
        keys='{"pk":{"S":"b"}}',
        event_id="event-7",
        event_name="MODIFY",
        event_time=at(20),
        detected_by="replayer",
    )
    doc = coverage.current(archive, TABLE)
    assert doc is not None
    assert doc["from_table_creation"] is False
    assert doc["from_table_creation_refuted"] == evidence
    assert evidence["event_id"] == "event-7" and evidence["event_name"] == "MODIFY"
    assert evidence["key_sha256"] == coverage.key_hash('{"pk":{"S":"b"}}')
    assert len(evidence["key_sha256"]) == 16  # a hash, never the key itself
    # The first evidence stays: a second finding does not overwrite it.
    again = coverage.refute_from_table_creation(
        archive, TABLE, TABLE_ID, keys="{}", event_id="event-9", event_name="REMOVE",
        event_time=at(30), detected_by="archiver",
    )  # fmt: skip
    assert again == evidence
    # Continuing the generation (the archiver's next start) keeps the claim false.
    write_coverage(archive, watermark=at(100))
    assert coverage.current(archive, TABLE)["from_table_creation"] is False

    with pytest.raises(NoUsableBase) as refused:
        planning.plan_restore(archive, TABLE, at(50), convert=False)
    assert refused.value.exit_code == EXIT_REFUSED
    message = str(refused.value)
    assert "event-7" in message and evidence["key_sha256"] in message
    assert "ddb-archiver snapshot" in message

    # With a base snapshot the restore goes ahead.
    write_snapshot(archive, [item("a", v=1)], valid_from=at(40), log_from=at(30))
    plan = planning.plan_restore(archive, TABLE, at(50), convert=False)
    assert plan.base is not None


@pytest.mark.parametrize("first", ["MODIFY", "REMOVE"])
def test_the_fold_refutes_the_claim_when_a_key_starts_without_an_insert(
    archive: Archive, first: str
) -> None:
    write_coverage(archive, watermark=at(100))
    write_changes(
        archive,
        [
            Change(1, key("a"), item("a", v=1), at(10)),  # an INSERT: the key starts here
            Change(2, key("b"), None if first == "REMOVE" else item("b", v=2), at(20),
                   event_name=first, event_id="event-b"),
            Change(3, key("a"), item("a", v=3), at(30)),
        ],
    )  # fmt: skip
    plan = planning.plan_restore(archive, TABLE, at(50), convert=False)
    assert plan.base is None
    with Fold(archive) as fold, pytest.raises(NoUsableBase) as refused:
        fold.state_at(plan)
    assert refused.value.exit_code == EXIT_REFUSED
    assert "event-b" in str(refused.value) and "ddb-archiver snapshot" in str(refused.value)
    doc = coverage.current(archive, TABLE)
    assert doc is not None and doc["from_table_creation"] is False
    evidence = doc["from_table_creation_refuted"]
    assert evidence["event_id"] == "event-b" and evidence["event_name"] == first
    assert evidence["key_sha256"] == coverage.key_hash('{"pk":{"S":"b"}}')
    assert evidence["event_time"] == "2026-03-01T12:00:20.000Z"
    # From then on, base-less restores are refused at planning.
    with pytest.raises(NoUsableBase):
        planning.plan_restore(archive, TABLE, at(50), convert=False)


def test_a_log_where_every_key_starts_with_an_insert_keeps_the_claim(archive: Archive) -> None:
    write_coverage(archive, watermark=at(100))
    write_changes(
        archive,
        [
            Change(1, key("a"), item("a", v=1), at(10)),
            Change(2, key("a"), None, at(20)),
            Change(3, key("a"), item("a", v=3), at(30), event_name="INSERT"),
        ],
    )
    plan = planning.plan_restore(archive, TABLE, at(50), convert=False)
    with Fold(archive) as fold:
        assert fold.state_at(plan).count == 1
    assert coverage.current(archive, TABLE)["from_table_creation"] is True


@pytest.mark.parametrize(
    ("first", "old", "refuted"),
    [
        ("REMOVE", None, False),  # created and deleted inside its first window
        ("MODIFY", None, False),  # a NEW_IMAGE export names every change a MODIFY
        ("MODIFY", {"pk": {"S": "b"}, "v": {"N": "0"}}, True),  # existed before its window
    ],
)
def test_an_incremental_export_record_refutes_the_claim_only_with_an_old_image(
    archive: Archive, first: str, old: dict[str, object] | None, refuted: bool
) -> None:
    """An incremental export holds each key's last change in its window, so a key's first
    record may be a REMOVE or a MODIFY in a log that starts at table creation; an old image
    says the key existed before that window, which such a log cannot have missed."""
    write_coverage(archive, watermark=at(100))
    write_changes(
        archive,
        [
            Change(1, key("a"), item("a", v=1), at(10), event_name="INSERT"),
            Change(2, key("b"), None if first == "REMOVE" else item("b", v=2), at(20),
                   event_name=first, event_id="incremental-20000000-b", old=old),
        ],
    )  # fmt: skip
    plan = planning.plan_restore(archive, TABLE, at(50), convert=False)
    assert plan.base is None
    with Fold(archive) as fold:
        if refuted:
            with pytest.raises(NoUsableBase, match="incremental-20000000-b"):
                fold.state_at(plan)
        else:
            state = fold.state_at(plan)
            assert state.count == (1 if first == "REMOVE" else 2)
    doc = coverage.current(archive, TABLE)
    assert doc is not None and doc["from_table_creation"] is (not refuted)


@pytest.mark.parametrize("where", ["log", "pending"])
def test_an_erased_key_may_start_without_an_insert(archive: Archive, where: str) -> None:
    """``forget`` removed the key's earlier records; a REMOVE archived after the erasure is
    then its first record, and disproves nothing (finished or in-progress erasures alike)."""
    from archiver.format import erasure_log as erasures
    from archiver.format import layout

    secret = erasures.load_secret(archive)
    assert secret is not None
    hashes = erasures.key_hashes(secret, ['{"pk":{"S":"b"}}'])
    if where == "log":
        erasures.append_log(
            archive, TABLE,
            {"erasure_id": "e1", "at": "2026-03-01T12:00:15.000Z", "key_hashes": hashes,
             "objects_rewritten": 1, "rows_removed": 1},
        )  # fmt: skip
    else:
        archive.write_json(layout.forget_pending(TABLE), {"key_hashes": hashes})
    write_coverage(archive, watermark=at(100))
    write_changes(
        archive,
        [
            Change(1, key("a"), item("a", v=1), at(10), event_name="INSERT"),
            Change(2, key("b"), None, at(20), event_name="REMOVE"),
        ],
    )
    plan = planning.plan_restore(archive, TABLE, at(50), convert=False)
    with Fold(archive) as fold:
        assert fold.state_at(plan).count == 1
    assert coverage.current(archive, TABLE)["from_table_creation"] is True
    # A key never erased still refutes the claim.
    write_changes(
        archive,
        [Change(3, key("c"), item("c", v=1), at(30), event_name="MODIFY", event_id="event-c")],
    )
    plan = planning.plan_restore(archive, TABLE, at(50), convert=False)
    with Fold(archive) as fold, pytest.raises(NoUsableBase, match="event-c"):
        fold.state_at(plan)
