"""Crash anywhere while capturing from Kinesis: after every archive write in turn the process
dies (an injected fault), and a rerun leaves every record archived exactly once, the chain
intact and restores right — as for the stream poller (tests/test_run.py)."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archiver.format import chain
from archiver.format.changefiles import WriteFailed
from archiver.format.storage import Archive
from tests.conftest import Crash, create_table
from tests.kinesis_double import DestinationDouble, KinesisDouble
from tests.kinesis_helpers import (
    History,
    capture,
    micros_of,
    restored,
    seed_coverage,
    shuffled_with_duplicates,
)

TABLE = "orders"


def test_a_crash_after_any_write_loses_and_doubles_nothing(
    ddb: Any, tmp_path: Path, crash_after: Any
) -> None:
    description = create_table(ddb, TABLE, stream=None)
    created = description["CreationDateTime"]
    base = micros_of(created) + 50_000
    history = History(TABLE)
    for n in range(5):
        history.write(f"k{n % 2}", base + n * 2_000, f"v{n}")
    history.write("k1", base + 6_000, None)  # at the same time as the record of k1 before
    delivered = list(shuffled_with_duplicates(history.steps, seed=3))
    time.sleep(max(0.0, (base + 20_000) / 1e6 + 0.4 - time.time()))

    def attempt(folder: Path, crash_at: int | None) -> tuple[Archive, KinesisDouble, Any]:
        archive = Archive.open(str(folder))
        with crash_after.paused():
            seed_coverage(archive, TABLE, description)
        stream = KinesisDouble(shards=2, page_size=3)
        destinations = DestinationDouble()
        destinations.set(TABLE, stream.arn)
        for n, step in enumerate(delivered):
            # Each arrives when it was created (a record's arrival trails its creation by less
            # than the reordering margin: what the watermark and the tie memory rely on).
            arrival = datetime.fromtimestamp(step.micros / 1e6, UTC)
            stream.put(step.doc, shard=n % 2, arrival=arrival)
        if crash_at is not None:
            crash_after(crash_at)
        return archive, stream, destinations

    # How many writes a clean run makes.
    writes = []
    from archiver.format.storage import Archive as Storage

    original = Storage.put_bytes

    def counting(self: Storage, *args: Any, **kwargs: Any) -> Any:
        writes.append(args[0])
        return original(self, *args, **kwargs)

    archive, stream, destinations = attempt(tmp_path / "clean", None)
    Storage.put_bytes = counting  # type: ignore[method-assign]
    try:
        assert (
            capture(
                archive, TABLE, stream.arn, destinations, kinesis_client=stream, flush_records=3
            )
            == 0
        )
    finally:
        Storage.put_bytes = original  # type: ignore[method-assign]
    print("WRITES", writes)
    assert len(writes) > 10
    expected = sorted(s.event_id for s in history.steps)

    for crash_at in range(len(writes)):
        archive, stream, destinations = attempt(tmp_path / f"crash-{crash_at}", crash_at)
        with contextlib.suppress(Crash, WriteFailed):  # the process dies there
            capture(
                archive, TABLE, stream.arn, destinations, kinesis_client=stream, flush_records=3
            )
        crash_after(-1)
        code = capture(
            archive, TABLE, stream.arn, destinations, kinesis_client=stream, flush_records=3
        )
        assert code == 0, crash_at
        files = archive.find("changes", ".parquet")
        ids = sorted(r["event_id"] for f in files for r in archive.read_parquet(f).to_pylist())
        assert ids == expected, f"crash after write {crash_at}: {writes[crash_at]}"
        assert chain.verify_files(archive, files, context=files) == [], crash_at
        last = history.instants()[-1]
        assert restored(archive, TABLE, last) == history.state_at(last), crash_at
