"""Kinesis Data Streams records of DynamoDB changes, read into the archive's record shape.

A Kinesis data stream that a table streams to (``EnableKinesisStreamingDestination``) holds one
JSON document per change as each record's data (docs/format.md "Kinesis Data Streams
records")::

    {"awsRegion", "eventID", "eventName": "INSERT"|"MODIFY"|"REMOVE",
     "userIdentity": null | {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
     "recordFormat": "application/json", "tableName", "eventSource": "aws:dynamodb",
     "dynamodb": {"ApproximateCreationDateTime": <epoch ms, or µs>, "Keys", "NewImage",
                  "OldImage", "SizeBytes"}}

``GetRecords`` returns the data as bytes through botocore's parser, as base64 text when its
page is read by orjson (``archiver.capture.raw_records``), a Lambda event as base64 text
(``kinesis.data``). :func:`parse` reads any of them; a document that is not a DynamoDB change
record (another producer shares the stream) is ``None``, and the caller counts it.
:func:`creation_micros` reads ``ApproximateCreationDateTime`` in milliseconds or microseconds
(by its magnitude: the destination's precision decides which AWS sends).
:func:`archive_record` gives the shape ``archiver.format.records.ChangeRows`` archives — the
Lambda event shape of a DynamoDB Streams record, with ``SequenceNumber`` the Kinesis order key
(``archiver.format.ties``) and ``ApproximateCreationDateTime`` the creation time truncated to
the millisecond (the ``event_time`` column's resolution).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from archiver.format.errors import PoisonRecord

DYNAMODB_SOURCE = "aws:dynamodb"
# ApproximateCreationDateTime at or above this is in microseconds: 10^14 ms after the epoch is
# the year 5138, 10^14 µs is 1973.
_MICROS_FROM = 10**14


def creation_micros(value: Any) -> int:
    """``ApproximateCreationDateTime`` (epoch milliseconds, or microseconds at MICROSECOND
    precision) in microseconds.

    Raises:
        ValueError: not a number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"ApproximateCreationDateTime {value!r:.40} is not a number")
    number = float(value) if isinstance(value, str) else value
    if number >= _MICROS_FROM:
        return round(number)
    return round(number * 1000)


def parse(data: bytes | str, *, base64_text: bool = False) -> dict[str, Any] | None:
    """The change document in one Kinesis record's data; ``None`` when it is not a DynamoDB
    change record (not JSON, not an object, or another source's).

    ``base64_text``: the data is base64 text (a Lambda event's ``kinesis.data``). Base64 text
    without it (a ``GetRecords`` page read by orjson) is decoded as botocore decodes ``Data``.
    """
    try:
        if base64_text:
            raw: bytes | str = base64.b64decode(data, validate=True)
        elif type(data) is str:
            raw = binascii.a2b_base64(data)
        else:
            raw = data
        doc = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("tableName"), str):
        return None
    if doc.get("eventSource", DYNAMODB_SOURCE) != DYNAMODB_SOURCE:
        return None
    return doc


@dataclass(frozen=True)
class Change:
    """One change document of the archived table, with what ordering it needs."""

    doc: dict[str, Any]
    event_id: str
    micros: int
    # Groups a key's records before canonicalisation (records of one key come from one
    # table, which spells its keys the same way every time).
    key_text: bytes
    kinesis_sequence_number: str | None = None
    arrival: datetime | None = None


def change(
    doc: dict[str, Any],
    *,
    kinesis_sequence_number: str | None = None,
    arrival: datetime | None = None,
    shard_id: str | None = None,
) -> Change:
    """A change document of the archived table, checked for what ordering it needs.

    Raises:
        PoisonRecord: no ``eventID``, no ``dynamodb`` part, no ``Keys`` or no usable
            ``ApproximateCreationDateTime`` (the rest is checked with the rows).
    """
    event_id = doc.get("eventID")
    ddb = doc.get("dynamodb")
    # What AWS sends (and orjson parses into): checked without the generic path's ABC checks.
    keys = when = None
    if type(ddb) is dict:
        keys, when = ddb.get("Keys"), ddb.get("ApproximateCreationDateTime")
    if type(event_id) is str and event_id and type(keys) is dict and keys and type(when) is int:
        return Change(
            doc=doc,
            event_id=event_id,
            micros=when if when >= _MICROS_FROM else when * 1000,
            key_text=orjson.dumps(keys, option=orjson.OPT_SORT_KEYS),
            kinesis_sequence_number=kinesis_sequence_number,
            arrival=arrival,
        )
    problem = None
    micros = 0
    if not isinstance(event_id, str) or not event_id:
        problem = "no eventID"
    elif not isinstance(ddb, Mapping):
        problem = "no dynamodb part"
    elif not isinstance(ddb.get("Keys"), Mapping) or not ddb.get("Keys"):
        problem = "no Keys"
    else:
        try:
            micros = creation_micros(ddb.get("ApproximateCreationDateTime"))
        except ValueError as exc:
            problem = str(exc)
    if problem is not None:
        raise PoisonRecord(
            problem,
            event_id=event_id if isinstance(event_id, str) and event_id else None,
            sequence_number=kinesis_sequence_number,
            shard_id=shard_id,
        )
    assert isinstance(event_id, str) and isinstance(ddb, Mapping)
    return Change(
        doc=doc,
        event_id=event_id,
        micros=micros,
        key_text=orjson.dumps(ddb["Keys"], option=orjson.OPT_SORT_KEYS),
        kinesis_sequence_number=kinesis_sequence_number,
        arrival=arrival,
    )


def archive_record(item: Change, sequence_number: str) -> dict[str, Any]:
    """The record in the shape ``ChangeRows`` archives, ordered by ``sequence_number``."""
    doc = item.doc
    ddb = doc["dynamodb"]
    image: dict[str, Any] = {
        "ApproximateCreationDateTime": (item.micros // 1000) / 1000,
        "SequenceNumber": sequence_number,
        "Keys": ddb["Keys"],
        "SizeBytes": ddb.get("SizeBytes", 0),
    }
    for part in ("NewImage", "OldImage"):
        if ddb.get(part) is not None:
            image[part] = ddb[part]
    record: dict[str, Any] = {
        "eventID": item.event_id,
        "eventName": doc.get("eventName"),
        "dynamodb": image,
    }
    if doc.get("userIdentity"):
        record["userIdentity"] = doc["userIdentity"]
    return record
