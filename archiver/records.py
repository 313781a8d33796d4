"""Stream records → change rows, for both shapes the archiver meets.

* aiobotocore/boto3 ``GetRecords`` records: binary as ``bytes``, ``ApproximateCreationDateTime``
  as a ``datetime`` (in the local zone: normalised to UTC here), ``userIdentity`` as
  ``{"Type", "PrincipalId"}``.
* Lambda event records: binary as base64 text, times as epoch-second numbers,
  ``userIdentity`` as ``{"type", "principalId"}``, plus ``eventSourceARN``.

The same record gives the same row whichever shape it came in (the poller and the Lambda
handler share this module).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from archiver.codec import canonical_many
from archiver.layout import pad_seq
from archiver.schema import CHANGE_COLUMNS, CHANGE_SCHEMA

# Rough per-row cost of the small columns, for flush-by-size decisions.
_ROW_OVERHEAD = 200
_IMAGE_COLUMNS = ("keys", "new_image", "old_image")


def event_time_ms(value: Any) -> int:
    """``ApproximateCreationDateTime`` in epoch milliseconds, from a datetime or epoch seconds.

    A naive datetime is taken to be UTC (as everywhere in the archive), not local time.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return round(value.timestamp() * 1000)
    return round(float(value) * 1000)


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


class _JsonColumn:
    """A string column kept as one UTF-8 buffer plus offsets, as Arrow lays it out.

    Each value is copied in as it comes and the codec's output freed at once: orjson returns
    its bytes inside a buffer of several KB, and keeping those alive per row would cost ~15×
    the memory (and the page faults to get it).
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.offsets = array("q", [0])
        self.valid: list[bool] = []
        self.nulls = 0

    def append(self, value: bytes | None) -> None:
        if value is None:
            self.nulls += 1
        else:
            self.data += value
        self.offsets.append(len(self.data))
        self.valid.append(value is not None)

    def to_array(self, field: pa.Field) -> pa.Array:
        validity = pa.array(self.valid, pa.bool_()).buffers()[1] if self.nulls else None
        # orjson's output is valid UTF-8: lay the bytes out as strings, no re-encoding.
        large = pa.Array.from_buffers(
            pa.large_string(),
            len(self.valid),
            [validity, pa.py_buffer(self.offsets), pa.py_buffer(bytes(self.data))],
        )
        return large.cast(field.type)


class ChangeRows:
    """Column buffers for change rows: append records, then take an Arrow table.

    Columnar from the start, and the ``keys``/``new_image``/``old_image`` columns stay the
    UTF-8 bytes the codec produced: building a dict per row, or a ``str`` per image that Arrow
    then encodes back to UTF-8, costs more than the canonicalisation itself. ``nbytes`` is an
    estimate of the rows' size, for flushing by size.
    """

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {
            name: [] for name in CHANGE_COLUMNS if name not in _IMAGE_COLUMNS
        }
        self.images = {name: _JsonColumn() for name in _IMAGE_COLUMNS}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.columns["event_id"])

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
        self.extend((record,), stream_arn=stream_arn, shard_id=shard_id, table_id=table_id,
                    origin=origin)  # fmt: skip

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
        cols = self.columns
        # One loop with the list appends bound once: this runs for every archived record.
        event_ids = cols["event_id"].append
        event_names = cols["event_name"].append
        event_times = cols["event_time"].append
        sequence_numbers = cols["sequence_number"].append
        shard_ids = cols["shard_id"].append
        stream_arns = cols["stream_arn"].append
        table_ids = cols["table_id"].append
        keys_col = self.images["keys"].append
        new_images = self.images["new_image"].append
        old_images = self.images["old_image"].append
        sizes = cols["size_bytes"].append
        identities = cols["user_identity"].append
        origins = cols["origin"].append
        records = records if isinstance(records, list | tuple) else list(records)
        items: list[Any] = []
        for record in records:
            ddb = record["dynamodb"]
            keys = ddb["Keys"]
            new_image = ddb.get("NewImage")
            old_image = ddb.get("OldImage")
            image = old_image if new_image is None else new_image
            if image is not None:
                # The key attributes as the image holds them: the same values on AWS, and
                # right where an endpoint garbles Keys (moto base64-encodes binary keys twice).
                keys = {name: image.get(name, value) for name, value in keys.items()}
            items += (keys, new_image, old_image)
        # The whole batch through the codec at once: a fraction of the cost per item.
        texts = iter(canonical_many(items))
        nbytes = 0
        for record in records:
            ddb = record["dynamodb"]
            keys = next(texts)
            new_raw = next(texts)
            old_raw = next(texts)
            event_ids(record["eventID"])
            event_names(record["eventName"])
            event_times(event_time_ms(ddb["ApproximateCreationDateTime"]))
            sequence_numbers(pad_seq(ddb["SequenceNumber"]))
            shard_ids(shard_id)
            stream_arns(stream_arn)
            table_ids(table_id)
            keys_col(keys)
            new_images(new_raw)
            old_images(old_raw)
            sizes(int(ddb.get("SizeBytes", 0)))
            identities(user_identity(record) if "userIdentity" in record else None)
            origins(origin)
            nbytes += len(keys or b"") + len(new_raw or b"") + len(old_raw or b"") + _ROW_OVERHEAD
        self.nbytes += nbytes

    def to_table(self) -> pa.Table:
        """The buffered rows as an Arrow table in :data:`CHANGE_SCHEMA`."""
        cols = self.columns
        arrays = []
        for field in CHANGE_SCHEMA:
            if field.name == "event_time":
                arrays.append(pa.array(cols["event_time"], pa.int64()).cast(field.type))
            elif field.name in _IMAGE_COLUMNS:
                arrays.append(self.images[field.name].to_array(field))
            else:
                arrays.append(pa.array(cols[field.name], field.type))
        return pa.Table.from_arrays(arrays, schema=CHANGE_SCHEMA)
