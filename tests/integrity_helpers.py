"""Chained archives built fast, and the ways a file can be damaged, for the integrity tests.

:func:`build_archive` writes change files the way the poller does (``changefiles.write_builder``
with chain links, checkpoints with their head, coverage with a watermark) from records held
by a :class:`tests.streams_double.StreamsDouble` shard, so ``check --repair`` can re-read them
from the double — which models the trim horizon for the "no longer retained" case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow.parquet as pq

from archiver.format import layout
from archiver.format.changefiles import RunBuilder, write_builder, write_checkpoint
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from tests.replay_helpers import LABEL, T0, TABLE, TABLE_ID, write_coverage
from tests.streams_double import DoubleShard, DoubleStream, StreamsDouble


@dataclass
class Built:
    double: StreamsDouble
    stream: DoubleStream
    shard: DoubleShard
    files: list[str]  # in sequence order
    records: list[dict[str, Any]]

    @property
    def checkpoint(self) -> str:
        return layout.checkpoint(TABLE, LABEL, self.shard.shard_id)


def build_archive(
    archive: Archive, sizes: Sequence[int], *, keys: int = 4, step_seconds: float = 1.0
) -> Built:
    """One shard whose records are split into files of ``sizes`` records, chained."""
    double = StreamsDouble(latency=0)
    stream = double.add_stream(TABLE, LABEL)
    shard = stream.add_shard()
    records: list[dict[str, Any]] = []
    for i in range(sum(sizes)):
        k = {"pk": {"S": f"k{i % keys}"}}
        at = T0 + timedelta(seconds=1 + i * step_seconds)
        if i % 5 == 4:
            records.append(stream.put(shard, k, new=None, old={**k, "v": {"N": "0"}}, at=at))
        else:
            records.append(stream.put(shard, k, new={**k, "v": {"N": str(i)}}, at=at))
    write_coverage(archive, watermark=T0 + timedelta(days=2))
    files: list[str] = []
    prev: str | None = None
    start = 0
    for size in sizes:
        builder = RunBuilder(
            stream_arn=stream.arn,
            shard_id=shard.shard_id,
            table_id=TABLE_ID,
            origin="stream",
            prev_last_seq=prev,
            prev_chained=prev is not None,
        )
        for record in records[start : start + size]:
            builder.add(record)
        files.extend(write_builder(archive, TABLE, builder))
        prev = builder.last_seq
        start += size
        last = records[start - 1]
        write_checkpoint(
            archive,
            TABLE,
            {
                "stream_arn": stream.arn,
                "shard_id": shard.shard_id,
                "parent_shard_id": None,
                "sequence_number": str(last["dynamodb"]["SequenceNumber"]),
                "event_time": iso_ms(last["dynamodb"]["ApproximateCreationDateTime"]),
                "caught_up_at": None,
                "closed": False,
                "updated_at": iso_ms(T0),
                "chain_head": {
                    "last_seq": builder.last_seq,
                    "dt": layout.dt_of(last["dynamodb"]["ApproximateCreationDateTime"]),
                },
            },
        )
    return Built(double, stream, shard, files, records)


# -- damage ---------------------------------------------------------------------------------


def delete(archive: Archive, rel: str) -> None:
    archive.delete(rel)


def truncate(archive: Archive, rel: str) -> None:
    data = archive.get_bytes(rel)
    archive.put_bytes(rel, data[: len(data) // 2])


def replace_rows(archive: Archive, rel: str, *, keep_footer: bool = False) -> None:
    """Other rows under the same name: the same records with one image changed."""
    rows = pq.read_table(archive.path(rel))
    images = rows.column("new_image").to_pylist()
    images[0] = '{"pk":{"S":"forged"}}'
    import pyarrow as pa

    forged = rows.set_column(
        rows.schema.get_field_index("new_image"), "new_image", pa.array(images, pa.string())
    )
    if not keep_footer:
        forged = forged.replace_schema_metadata(None)
    archive.write_parquet(rel, forged)
