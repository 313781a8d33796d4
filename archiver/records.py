"""Stream records → change rows, for both shapes the archiver meets.

* aiobotocore/boto3 ``GetRecords`` records: binary as ``bytes``, ``ApproximateCreationDateTime``
  as a ``datetime`` (in the local zone: normalised to UTC here).
* Lambda event records: binary as base64 text, times as epoch-second numbers, plus
  ``eventSourceARN``.

The same record gives the same row whichever shape it came in (the poller and the Lambda
handler share this module).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa

from archiver.codec import canonical_json
from archiver.layout import pad_seq
from archiver.schema import CHANGE_COLUMNS, CHANGE_SCHEMA


def event_time_ms(value: Any) -> int:
    """``ApproximateCreationDateTime`` in epoch milliseconds, from a datetime or epoch seconds."""
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    return round(float(value) * 1000)


def user_identity(record: Mapping[str, Any]) -> str | None:
    """``<type>/<principalId>`` (``Service/dynamodb.amazonaws.com`` marks a TTL deletion)."""
    identity = record.get("userIdentity")
    if not identity:
        return None
    return f"{identity.get('type', '')}/{identity.get('principalId', '')}"


class ChangeRows:
    """Column buffers for change rows: append records, then take an Arrow table.

    Columnar from the start: building Python dicts per row and converting them costs more than
    the canonicalisation itself.
    """

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in CHANGE_COLUMNS}
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
        ddb = record["dynamodb"]
        keys = canonical_json(ddb["Keys"])
        new_image = ddb.get("NewImage")
        old_image = ddb.get("OldImage")
        new_text = canonical_json(new_image) if new_image is not None else None
        old_text = canonical_json(old_image) if old_image is not None else None
        cols = self.columns
        cols["event_id"].append(record["eventID"])
        cols["event_name"].append(record["eventName"])
        cols["event_time"].append(event_time_ms(ddb["ApproximateCreationDateTime"]))
        cols["sequence_number"].append(pad_seq(ddb["SequenceNumber"]))
        cols["shard_id"].append(shard_id)
        cols["stream_arn"].append(stream_arn)
        cols["table_id"].append(table_id)
        cols["keys"].append(keys)
        cols["new_image"].append(new_text)
        cols["old_image"].append(old_text)
        cols["size_bytes"].append(int(ddb.get("SizeBytes", 0)))
        cols["user_identity"].append(user_identity(record))
        cols["origin"].append(origin)
        self.nbytes += len(keys) + len(new_text or "") + len(old_text or "") + 200

    def extend(self, records: Iterable[Mapping[str, Any]], **fields: Any) -> None:
        for record in records:
            self.append(record, **fields)

    def to_table(self) -> pa.Table:
        """The buffered rows as an Arrow table in :data:`CHANGE_SCHEMA`."""
        cols = self.columns
        arrays = []
        for field in CHANGE_SCHEMA:
            if field.name == "event_time":
                arrays.append(pa.array(cols["event_time"], pa.int64()).cast(field.type))
            else:
                arrays.append(pa.array(cols[field.name], field.type))
        return pa.Table.from_arrays(arrays, schema=CHANGE_SCHEMA)
