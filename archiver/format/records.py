"""Stream records → change rows, for both shapes the archiver meets.

* aiobotocore/boto3 ``GetRecords`` records: binary as ``bytes``, ``ApproximateCreationDateTime``
  as a ``datetime`` (in the local zone: normalised to UTC here), ``userIdentity`` as
  ``{"Type", "PrincipalId"}``.
* Lambda event records: binary as base64 text, times as epoch-second numbers,
  ``userIdentity`` as ``{"type", "principalId"}``, plus ``eventSourceARN``.

The same record gives the same row whichever shape it came in (the poller and the Lambda
handler share this module).

A record that cannot be archived as it is — a part missing (``dynamodb``, ``SequenceNumber``,
``Keys``, ``ApproximateCreationDateTime``, the ``NewImage`` of an INSERT or MODIFY, which
would otherwise fold as a delete), an unknown ``eventName``, an attribute value that is not
valid DynamoDB JSON — raises :class:`~archiver.format.errors.PoisonRecord` naming it
(:func:`check_record`); rows are never built from it, and the rows built so far stay as they
were.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import accumulate, islice
from typing import Any

import pyarrow as pa

from archiver.format.codec import CodecError, canonical_bytes, canonical_many
from archiver.format.errors import PoisonRecord
from archiver.format.layout import pad_seq
from archiver.format.schema import CHANGE_COLUMNS, CHANGE_SCHEMA

EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})

# Rough per-row size of the small columns, for flush-by-size decisions.
_ROW_OVERHEAD = 200
_IMAGE_COLUMNS = ("keys", "new_image", "old_image")
# Records appended one by one are canonicalised in batches of up to this many: the codec's
# per-call cost is then paid once per batch, not once per record.
_BATCH = 1_000

Fields = tuple[str, str | None, str, str]  # stream_arn, shard_id, table_id, origin


def event_time_ms(value: Any) -> int:
    """``ApproximateCreationDateTime`` in epoch milliseconds, from a datetime or epoch seconds.

    A naive datetime is taken to be UTC (as everywhere in the archive), not local time.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return round(value.timestamp() * 1000)
    return round(float(value) * 1000)


# The ``user_identity`` of the deletions DynamoDB's TTL makes (every other record has none).
TTL_IDENTITY = "Service/dynamodb.amazonaws.com"


def user_identity(record: Mapping[str, Any]) -> str | None:
    """``<type>/<principalId>`` (``Service/dynamodb.amazonaws.com`` marks a TTL deletion).

    GetRecords spells the fields ``Type``/``PrincipalId``, Lambda events ``type``/``principalId``.
    """
    identity = record.get("userIdentity")
    if not identity:
        return None
    kind = identity.get("Type", identity.get("type", ""))
    principal = identity.get("PrincipalId", identity.get("principalId", ""))
    return f"{kind}/{principal}"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def poison(
    record: Any, reason: str, shard_id: str | None = None, after: str | None = None
) -> PoisonRecord:
    """The error naming ``record`` (its event id and sequence number, as far as it has them;
    ``after``: the sequence number of the record before it, for one that has none)."""
    event_id = sequence_number = None
    if isinstance(record, Mapping):
        event_id = _text(record.get("eventID"))
        ddb = record.get("dynamodb")
        if isinstance(ddb, Mapping) and isinstance(ddb.get("SequenceNumber"), str | int):
            sequence_number = _text(str(ddb["SequenceNumber"]))
    return PoisonRecord(
        reason,
        event_id=event_id,
        sequence_number=sequence_number,
        shard_id=shard_id,
        after=after,
    )


def record_problem(record: Any) -> str | None:
    """What makes ``record`` impossible to archive as it is (its shape; attribute values are
    the codec's), or ``None``."""
    if not isinstance(record, Mapping):
        return f"not a stream record: {type(record).__name__}"
    if not _text(record.get("eventID")):
        return "no eventID"
    event_name = record.get("eventName")
    if event_name not in EVENT_NAMES:
        return f"eventName {event_name!r:.40} is not INSERT, MODIFY or REMOVE"
    ddb = record.get("dynamodb")
    if not isinstance(ddb, Mapping):
        return "no dynamodb part"
    sequence_number = ddb.get("SequenceNumber")
    if not isinstance(sequence_number, str | int) or not str(sequence_number).isdigit():
        return f"no SequenceNumber (got {sequence_number!r:.40})"
    keys = ddb.get("Keys")
    if not isinstance(keys, Mapping) or not keys:
        return "no Keys"
    when = ddb.get("ApproximateCreationDateTime")
    if isinstance(when, bool) or not isinstance(when, datetime | int | float):
        return f"no ApproximateCreationDateTime (got {when!r:.40})"
    for part in ("NewImage", "OldImage"):
        image = ddb.get(part)
        if image is not None and not isinstance(image, Mapping):
            return f"{part} is not an object"
    if event_name != "REMOVE" and ddb.get("NewImage") is None:
        return (
            f"an {event_name} without a NewImage (it would be archived as a delete): the "
            "stream must be NEW_IMAGE or NEW_AND_OLD_IMAGES"
        )
    return None


def check_record(record: Any, shard_id: str | None = None) -> None:
    """Raise :class:`PoisonRecord` when ``record`` cannot be archived as it is."""
    problem = record_problem(record)
    if problem is not None:
        raise poison(record, problem, shard_id)


def first_problem(records: Iterable[Any]) -> int | None:
    """The index of the first record whose shape cannot be archived, or ``None``."""
    for index, record in enumerate(records):
        if record_problem(record) is not None:
            return index
    return None


def _diagnose(records: list[Mapping[str, Any]], shard_id: str | None) -> PoisonRecord | None:
    """The error for the first record of ``records`` (in order) that cannot be archived."""
    for record in records:
        check_record(record, shard_id)
        ddb = record["dynamodb"]
        for part in ("Keys", "NewImage", "OldImage"):
            try:
                canonical_many([ddb.get(part)])
            except CodecError as exc:
                return poison(record, f"{part}: {exc}", shard_id)
    return None


def _keys_of(ddb: Mapping[str, Any]) -> Mapping[str, Any]:
    """The key attributes as the record's image holds them: the same values as ``Keys`` on
    AWS, and right where an endpoint garbles binary ones (moto base64-encodes them twice)."""
    keys: Mapping[str, Any] = ddb["Keys"]
    image = ddb.get("NewImage") or ddb.get("OldImage")
    if not image:
        return keys
    return {name: image.get(name, value) for name, value in keys.items()}


class _JsonColumn:
    """A string column kept as one UTF-8 buffer plus offsets, as Arrow lays it out.

    Each value is copied in and the codec's output freed at once: orjson returns its bytes in
    a buffer of several KB, and keeping those alive per row costs ~15× the memory (and the page
    faults to get it).
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.offsets = array("q", [0])
        self.valid: list[bool] = []
        self.nulls = 0

    def extend(self, values: list[bytes | None]) -> None:
        self.data += b"".join([value or b"" for value in values])
        lengths = [0 if value is None else len(value) for value in values]
        self.offsets.extend(islice(accumulate(lengths, initial=self.offsets[-1]), 1, None))
        self.valid += [value is not None for value in values]
        self.nulls += values.count(None)

    def to_array(self, field: pa.Field) -> pa.Array:
        validity = pa.array(self.valid, pa.bool_()).buffers()[1] if self.nulls else None
        # orjson's output is valid UTF-8: lay the bytes out as strings, no re-encoding, and
        # no copy either (the cast keeps the data buffer): while the array lives the column
        # cannot grow (a bytearray with an export refuses to be resized).
        large = pa.Array.from_buffers(
            pa.large_string(),
            len(self.valid),
            [validity, pa.py_buffer(self.offsets), pa.py_buffer(self.data)],
        )
        return large.cast(field.type)


class ChangeRows:
    """Column buffers for change rows: append records, then take an Arrow table.

    Columnar from the start, and the ``keys``/``new_image``/``old_image`` columns stay the
    UTF-8 bytes the codec produced: building a dict per row, or a ``str`` per image that Arrow
    then encodes back to UTF-8, costs more than the canonicalisation itself. Records given one
    by one are held briefly and canonicalised together (see :data:`_BATCH`); ``nbytes`` and
    :meth:`to_table` take them in first, so a bad record raises there at the latest.
    """

    def __init__(self) -> None:
        self._columns: dict[str, list[Any]] = {
            name: [] for name in CHANGE_COLUMNS if name not in _IMAGE_COLUMNS
        }
        self._images = {name: _JsonColumn() for name in _IMAGE_COLUMNS}
        self._nbytes = 0
        self._pending: list[Mapping[str, Any]] = []
        self._pending_fields: Fields | None = None

    def __len__(self) -> int:
        return len(self._columns["event_id"]) + len(self._pending)

    @property
    def nbytes(self) -> int:
        """An estimate of the rows' size in memory and in the file, for flushing by size."""
        self._take_pending()
        return self._nbytes

    def append(
        self,
        record: Mapping[str, Any],
        *,
        stream_arn: str,
        shard_id: str | None,
        table_id: str,
        origin: str,
    ) -> None:
        """Add one stream record (either shape)."""
        self.append_many((record,), (stream_arn, shard_id, table_id, origin))

    def append_many(self, records: Sequence[Mapping[str, Any]], fields: Fields) -> None:
        """Add stream records (either shape) that share ``fields`` (stream ARN, shard ID,
        table ID, origin), canonicalised with the records held before them in batches."""
        if self._pending and fields != self._pending_fields:
            self._take_pending()
        self._pending += records
        self._pending_fields = fields
        if len(self._pending) >= _BATCH:
            self._take_pending()

    def extend(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        stream_arn: str,
        shard_id: str | None,
        table_id: str,
        origin: str,
    ) -> None:
        """Add stream records (either shape) that share a stream, shard, table and origin."""
        self._take_pending()
        self._add((stream_arn, shard_id, table_id, origin), list(records))

    def to_table(self) -> pa.Table:
        """The rows as an Arrow table in :data:`CHANGE_SCHEMA`."""
        self._take_pending()
        arrays = []
        for field in CHANGE_SCHEMA:
            if field.name == "event_time":
                arrays.append(pa.array(self._columns["event_time"], pa.int64()).cast(field.type))
            elif field.name in _IMAGE_COLUMNS:
                arrays.append(self._images[field.name].to_array(field))
            else:
                arrays.append(pa.array(self._columns[field.name], field.type))
        return pa.Table.from_arrays(arrays, schema=CHANGE_SCHEMA)

    def _take_pending(self) -> None:
        if self._pending:
            assert self._pending_fields is not None
            self._add(self._pending_fields, self._pending)
            self._pending = []

    @staticmethod
    def _values(
        records: list[Mapping[str, Any]],
    ) -> tuple[list[bytes | None], dict[str, list[Any]]]:
        ddbs = [record["dynamodb"] for record in records]
        items: list[Any] = []
        for ddb in ddbs:
            items += (ddb["Keys"], ddb.get("NewImage"), ddb.get("OldImage"))
        texts = canonical_many(items)  # the whole batch at once: a fraction of the per-item cost
        for index, ddb in enumerate(ddbs):
            keys = texts[3 * index]
            if keys is None or keys == b"{}":
                raise KeyError("Keys")  # diagnosed as a missing key
            if b'"B":"' in keys:  # binary key attributes: see _keys_of
                texts[3 * index] = canonical_bytes(_keys_of(ddb))
        event_names = [record["eventName"] for record in records]
        if not EVENT_NAMES.issuperset(event_names):
            raise ValueError("eventName")
        values = {
            "event_id": [record["eventID"] for record in records],
            "event_name": event_names,
            "event_time": [event_time_ms(ddb["ApproximateCreationDateTime"]) for ddb in ddbs],
            "sequence_number": [pad_seq(ddb["SequenceNumber"]) for ddb in ddbs],
            "size_bytes": [int(ddb.get("SizeBytes", 0)) for ddb in ddbs],
            "user_identity": [
                user_identity(record) if "userIdentity" in record else None for record in records
            ],
        }
        return texts, values

    def _add(self, fields: Fields, records: list[Mapping[str, Any]]) -> None:
        # Every value is computed before any column grows, so a bad record leaves the rows
        # as they were.
        stream_arn, shard_id, table_id, origin = fields
        try:
            texts, values = self._values(records)
        except (CodecError, KeyError, TypeError, ValueError, AttributeError) as exc:
            found = _diagnose(records, shard_id)
            if found is None:
                raise
            raise found from exc
        # An INSERT or MODIFY without its image would fold as a delete.
        names = values["event_name"]
        if [n for n, t in zip(names, texts[1::3], strict=True) if t is None and n != "REMOVE"]:
            found = _diagnose(records, shard_id)
            if found is not None:
                raise found
        count = len(records)
        for name, column in values.items():
            self._columns[name] += column
        self._columns["shard_id"] += [shard_id] * count
        self._columns["stream_arn"] += [stream_arn] * count
        self._columns["table_id"] += [table_id] * count
        self._columns["origin"] += [origin] * count
        for offset, name in enumerate(_IMAGE_COLUMNS):
            self._images[name].extend(texts[offset::3])
        self._nbytes += sum(len(text) for text in texts if text) + _ROW_OVERHEAD * count
