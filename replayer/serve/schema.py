"""A table's keys and indexes at an instant, read from its archived description.

The archiver keeps ``DescribeTable`` (``archiver.format.tables``) whenever it changes, so the
description in force at T says which keys the table had and which indexes — GSIs added or
dropped later are served as they were at T. An index entry exists for an item only when the
item has every key attribute of the index with the declared type (sparse indexes); it carries
the table's keys, the index's keys and, per the projection, nothing more (``KEYS_ONLY``),
some attributes (``INCLUDE``) or the whole item (``ALL``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from replayer.serve.values import AttributeValue, Item

KeyPart = tuple[str, str]  # (attribute name, S|N|B)


@dataclass(frozen=True)
class IndexSchema:
    name: str
    local: bool
    hash_key: KeyPart
    range_key: KeyPart | None
    projection: str  # ALL, KEYS_ONLY, INCLUDE
    non_key_attributes: tuple[str, ...]
    description: Mapping[str, Any]

    @property
    def key_names(self) -> tuple[str, ...]:
        return (self.hash_key[0],) + ((self.range_key[0],) if self.range_key else ())


@dataclass(frozen=True)
class TableSchema:
    hash_key: KeyPart
    range_key: KeyPart | None
    indexes: Mapping[str, IndexSchema]
    description: Mapping[str, Any]  # DescribeTable's Table, as archived

    @property
    def key_names(self) -> tuple[str, ...]:
        return (self.hash_key[0],) + ((self.range_key[0],) if self.range_key else ())

    @classmethod
    def of_description(cls, table: Mapping[str, Any]) -> TableSchema:
        """From ``DescribeTable``'s ``Table`` (raw or as archived)."""
        types = {
            str(d["AttributeName"]): str(d["AttributeType"])
            for d in table.get("AttributeDefinitions") or []
        }

        def keys(schema: Any) -> tuple[KeyPart, KeyPart | None]:
            hash_key: KeyPart | None = None
            range_key: KeyPart | None = None
            for element in schema or []:
                name = str(element["AttributeName"])
                part = (name, types.get(name, "S"))
                if element.get("KeyType") == "RANGE":
                    range_key = part
                else:
                    hash_key = part
            if hash_key is None:
                raise ValueError(f"a key schema without a partition key: {schema!r}")
            return hash_key, range_key

        hash_key, range_key = keys(table.get("KeySchema"))
        indexes: dict[str, IndexSchema] = {}
        for local, field in ((False, "GlobalSecondaryIndexes"), (True, "LocalSecondaryIndexes")):
            for index in table.get(field) or []:
                ihash, irange = keys(index.get("KeySchema"))
                projection = index.get("Projection") or {}
                indexes[str(index["IndexName"])] = IndexSchema(
                    name=str(index["IndexName"]),
                    local=local,
                    hash_key=ihash,
                    range_key=irange,
                    projection=str(projection.get("ProjectionType") or "ALL"),
                    non_key_attributes=tuple(projection.get("NonKeyAttributes") or ()),
                    description=index,
                )
        return cls(hash_key, range_key, indexes, table)

    def key_of(self, item: Mapping[str, AttributeValue]) -> Item:
        return {name: item[name] for name in self.key_names}

    def index_entry(self, index: IndexSchema, item: Mapping[str, AttributeValue]) -> Item | None:
        """The entry ``item`` has in ``index`` (None: the index does not hold it)."""
        for name, kind in (index.hash_key, *([index.range_key] if index.range_key else [])):
            value = item.get(name)
            if value is None or kind not in value:
                return None
        if index.projection == "ALL":
            return dict(item)
        wanted = set(self.key_names) | set(index.key_names)
        if index.projection == "INCLUDE":
            wanted |= set(index.non_key_attributes)
        return {name: value for name, value in item.items() if name in wanted}

    def start_key_names(self, index: IndexSchema | None) -> tuple[str, ...]:
        """The attributes of a ``LastEvaluatedKey``: the table's keys, plus the index's."""
        names = list(self.key_names)
        if index is not None:
            names += [name for name in index.key_names if name not in names]
        return tuple(names)
