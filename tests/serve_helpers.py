"""Helpers for the ``serve`` tests: archives of tables with indexes, and the endpoint running
in-process on a free loopback port, read with boto3 as any client would.

Archives are written with the archiver's own format code (``tests.replay_helpers``): a table
description (keys, GSIs, LSIs) and change records at chosen instants.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config

from archiver.format import tables
from archiver.format.codec import canonical_json, key_of
from archiver.format.storage import Archive
from replayer.engines.fold import FoldSettings
from replayer.serve.catalog import Catalog
from replayer.serve.endpoint import Endpoint
from replayer.serve.http_server import Server
from replayer.serve.signatures import SignatureVerifier
from replayer.serve.state import StateStore
from tests import changes_builder
from tests.replay_helpers import T0, TABLE, TABLE_ID, Change, write_changes

REGION = "us-east-1"


@dataclass
class Running:
    server: Server
    store: StateStore
    catalog: Catalog

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, key: str = "anything", secret: str = "anything", **config: Any) -> Any:
        return boto3.client(
            "dynamodb",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
        )


@contextmanager
def serving(
    archive: Archive,
    *,
    at: datetime | None = None,
    cache_bytes: int = 1 << 30,
    credentials: Mapping[str, str] | None = None,
    memory_limit: str = "512MB",
) -> Iterator[Running]:
    """The endpoint over ``archive`` while the block runs."""
    catalog = Catalog(archive, at=at)
    store = StateStore.open(catalog.archive, FoldSettings(memory_limit=memory_limit), cache_bytes)
    verifier = SignatureVerifier(credentials) if credentials else None
    server = Server(Endpoint(catalog, store), "127.0.0.1", 0, verifier).start()
    try:
        yield Running(server, store, catalog)
    finally:
        server.stop()
        store.close()


def describe(
    archive: Archive,
    *,
    table: str = TABLE,
    table_id: str = TABLE_ID,
    keys: Sequence[tuple[str, str]] = (("pk", "S"),),
    gsis: Sequence[Mapping[str, Any]] = (),
    lsis: Sequence[Mapping[str, Any]] = (),
    attributes: Mapping[str, str] | None = None,
    captured: datetime = T0,
) -> dict[str, Any]:
    """Archive a table description with these keys and indexes (index dicts as in
    ``CreateTable``); ``attributes``: the index key types."""
    definitions = dict(keys) | dict(attributes or {})
    table_doc: dict[str, Any] = {
        "TableName": table,
        "TableArn": changes_builder.table_arn(table),
        "TableId": table_id,
        "TableStatus": "ACTIVE",
        "CreationDateTime": captured,
        "KeySchema": [
            {"AttributeName": name, "KeyType": "HASH" if i == 0 else "RANGE"}
            for i, (name, _) in enumerate(keys)
        ],
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": kind} for name, kind in definitions.items()
        ],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0},
        "ItemCount": 0,
        "TableSizeBytes": 0,
    }
    if gsis:
        table_doc["GlobalSecondaryIndexes"] = [
            {**g, "IndexStatus": "ACTIVE", "ItemCount": 0, "IndexSizeBytes": 0} for g in gsis
        ]
    if lsis:
        table_doc["LocalSecondaryIndexes"] = [dict(index) for index in lsis]
    doc = tables.description_document(table, table_doc, captured_at=captured, tags=[])
    tables.store_description(archive, doc)
    return doc


def put_items(
    archive: Archive,
    items: Sequence[Mapping[str, Any]],
    key_names: Sequence[str],
    *,
    start_seq: int = 1,
    at: datetime = T0,
    table: str = TABLE,
) -> int:
    """Archive one INSERT per item (all at ``at``); returns the next sequence number."""
    changes = []
    seq = start_seq
    for item in items:
        changes.append(Change(seq, key_of(item, list(key_names)), dict(item), at))
        seq += 1
    write_changes(archive, changes, table=table)
    return seq


def canon_items(items: Sequence[Mapping[str, Any]]) -> list[str]:
    return [canonical_json(item) for item in items]
