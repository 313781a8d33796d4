"""Archived table descriptions: what is captured, when a new one is written, which applies."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from archiver.aws import describe
from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import TableNotFound
from archiver.capture.runner import RunConfig, execute
from archiver.format import layout, tables
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow
from tests.conftest import create_table
from tests.helpers import client_error
from tests.replay_helpers import at, write_description, write_snapshot

TABLE = "catalog"


def capture(archive: Archive, client: Any = None) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        if client is not None:
            async with AwsSettings().aio_client("dynamodb") as real:
                return await describe.capture_description(
                    AwsSettings(), archive, TABLE, client=client(real)
                )
        return await describe.capture_description(AwsSettings(), archive, TABLE)

    return asyncio.run(go())


def description_files(archive: Archive) -> list[str]:
    return [
        n
        for n in archive.listdir(layout.state_dir(TABLE))
        if n.startswith(layout.TABLE_DESCRIPTION_PREFIX)
    ]


def test_description_holds_what_a_restore_needs(ddb: Any, archive: Archive) -> None:
    created = create_table(
        ddb,
        TABLE,
        range_key="sk",
        gsis=[
            {
                "IndexName": "by-owner",
                "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        extra_attributes=[{"AttributeName": "owner", "AttributeType": "S"}],
    )
    ddb.tag_resource(ResourceArn=created["TableArn"], Tags=[{"Key": "team", "Value": "data"}])
    ddb.update_time_to_live(
        TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
    )
    doc = capture(archive)

    assert doc["table_name"] == TABLE
    assert doc["table_arn"] == created["TableArn"]
    assert doc["table_id"] == tables.table_id_of(created)
    assert doc["Table"]["CreationDateTime"] == iso_ms(created["CreationDateTime"])
    assert doc["Table"]["GlobalSecondaryIndexes"][0]["IndexName"] == "by-owner"
    assert doc["Table"]["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert doc["Tags"] == [{"Key": "team", "Value": "data"}]
    assert doc["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires",
    }
    assert "ContinuousBackupsStatus" in doc["ContinuousBackupsDescription"]
    assert isinstance(doc["extras"], dict)
    assert isinstance(doc["unavailable"], dict)
    parse_iso(doc["captured_at"])
    (name,) = description_files(archive)
    stored = archive.read_json(f"{layout.state_dir(TABLE)}/{name}")
    assert stored == doc
    assert tables.table_id_of(stored["Table"]) == doc["table_id"]  # JSON form gives the same id


def test_a_new_description_is_written_only_when_a_setting_changed(
    ddb: Any, archive: Archive
) -> None:
    created = create_table(ddb, TABLE)
    capture(archive)
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}})  # ItemCount moves: not a setting
    capture(archive)
    assert len(description_files(archive)) == 1
    ddb.tag_resource(ResourceArn=created["TableArn"], Tags=[{"Key": "env", "Value": "prod"}])
    capture(archive)
    ddb.update_time_to_live(
        TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
    )
    capture(archive)
    docs = tables.list_descriptions(archive, TABLE)
    assert len(docs) == 3
    prod = [{"Key": "env", "Value": "prod"}]
    assert [d["Tags"] for d in docs] == [[], prod, prod]
    assert docs[-1]["TimeToLiveDescription"]["AttributeName"] == "ttl"
    assert tables.latest_description(archive, TABLE) == docs[-1]


class _DeniesTags:
    """A DynamoDB client whose ListTagsOfResource is denied (a narrow IAM policy)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def list_tags_of_resource(self, **kwargs: Any) -> Any:
        raise client_error("AccessDeniedException", operation="ListTagsOfResource")


def test_parts_that_cannot_be_read_are_noted_not_fatal(ddb: Any, archive: Archive) -> None:
    create_table(ddb, TABLE)
    doc = capture(archive, client=_DeniesTags)
    assert doc["Tags"] is None
    assert doc["unavailable"]["tags"] == "AccessDeniedException"
    assert doc["TimeToLiveDescription"] == {"TimeToLiveStatus": "DISABLED"}


def test_extras_are_stored_and_their_gaps_merged(
    ddb: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_table(ddb, TABLE)
    seen: list[Any] = []

    async def fake_extras(settings: AwsSettings, description: Any) -> dict[str, Any]:
        seen.append(description)
        return {"auto_scaling": {"targets": []}, "unavailable": {"alarms": "AccessDeniedException"}}

    monkeypatch.setattr(describe, "capture_extras", fake_extras)
    doc = capture(archive)
    assert seen[0]["TableName"] == TABLE
    assert doc["extras"] == {
        "auto_scaling": {"targets": []},
        "unavailable": {"alarms": "AccessDeniedException"},
    }
    assert doc["unavailable"]["alarms"] == "AccessDeniedException"


def test_missing_table_is_a_clear_error(archive: Archive) -> None:
    with pytest.raises(TableNotFound, match=r"table 'catalog' does not exist in us-east-1"):
        capture(archive)
    assert description_files(archive) == []


def test_description_at_picks_the_one_in_force(archive: Archive) -> None:
    now = utcnow()

    def doc(minutes: int, table_id: str, tag: str) -> dict[str, Any]:
        return tables.description_document(
            TABLE,
            {"TableName": TABLE, "TableId": table_id},
            captured_at=now + timedelta(minutes=minutes),
            tags=[{"Key": "v", "Value": tag}],
        )

    for d in (doc(0, "g1", "a"), doc(10, "g1", "b"), doc(20, "g2", "c"), doc(30, "g2", "d")):
        assert tables.store_description(archive, d) is not None

    def tag_at(minutes: float, table_id: str | None = None) -> str | None:
        found = tables.description_at(archive, TABLE, now + timedelta(minutes=minutes), table_id)
        return found["Tags"][0]["Value"] if found else None

    assert [tag_at(m) for m in (-1, 0, 5, 10, 25, 99)] == [None, "a", "a", "b", "c", "d"]
    assert tag_at(25, "g1") == "b"  # the older generation's last description
    assert tag_at(5, "g2") == "c"  # described later than it existed: its earliest
    assert tag_at(5, "nope") is None
    assert [d["Tags"][0]["Value"] for d in tables.list_descriptions(archive, TABLE)] == list("abcd")


def test_the_running_archiver_captures_changes_while_it_runs(ddb: Any, archive: Archive) -> None:
    create_table(ddb, TABLE)
    config = RunConfig(
        table_name=TABLE,
        archive_url=archive.url,
        poll_seconds=0.05,
        describe_seconds=0.2,
        progress_seconds=60,
    )

    async def go() -> int:
        stop = asyncio.Event()

        async def change_then_stop() -> None:
            while len(description_files(archive)) < 1:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(
                ddb.update_time_to_live,
                TableName=TABLE,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
            )
            for _ in range(200):
                if len(description_files(archive)) >= 2:
                    break
                await asyncio.sleep(0.05)
            stop.set()

        helper = asyncio.create_task(change_then_stop())
        code = await execute(config, AwsSettings(), archive, stop=stop)
        await helper
        return code

    assert asyncio.run(go()) == 0
    docs = tables.list_descriptions(archive, TABLE)
    assert [d["TimeToLiveDescription"]["TimeToLiveStatus"] for d in docs] == ["DISABLED", "ENABLED"]


# -- key names: one derivation for live, archived and snapshot schemas -----------------------


def test_key_names_put_the_hash_key_first_whatever_the_order_given() -> None:
    schema = [
        {"AttributeName": "sk", "KeyType": "RANGE"},
        {"AttributeName": "pk", "KeyType": "HASH"},
    ]
    assert tables.key_names(schema) == tables.key_names(schema[::-1]) == ["pk", "sk"]
    assert tables.key_names([{"AttributeName": "id", "KeyType": "HASH"}]) == ["id"]


def test_archived_key_names_come_from_a_description_else_a_snapshot(archive: Archive) -> None:
    assert tables.archived_key_names(archive, "orders") is None
    write_snapshot(archive, [], valid_from=at(10), log_from=at(0), key_names=("a", "b"))
    assert tables.archived_key_names(archive, "orders") == ["a", "b"]
    write_description(archive, key_types={"pk": "S", "sk": "N"})
    assert tables.archived_key_names(archive, "orders") == ["pk", "sk"]
