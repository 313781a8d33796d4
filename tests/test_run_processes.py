"""``ddb-archiver run --processes N``: shards read in worker processes, the rules kept.

The Streams test double (``tests/streams_double.py``) is served over HTTP
(``tests/streams_http.py``) so that the worker processes reach it the way they reach AWS,
through ``AWS_ENDPOINT_URL_DYNAMODB_STREAMS``; DescribeTable comes from moto. What must hold
across processes: each shard is read and written by one process, a parent is read to its end
before any child (whichever worker holds each), every record is archived once, holes are on
record before the records after them, one watermark — and no worker outlives the poller.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_NEW_GAP, EXIT_OK
from archiver.aws.retry import RetryPolicy
from archiver.capture.change_writer import FlushPolicy
from archiver.capture.many import execute_many
from archiver.capture.processes import available_cores, processes_count, shard_pool
from archiver.capture.runner import RunConfig, execute
from archiver.format import coverage, layout
from archiver.format.changefiles import read_checkpoints
from archiver.format.gap_log import read_gaps
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow
from tests.conftest import create_table
from tests.streams_double import DoubleShard, DoubleStream, StreamsDouble
from tests.streams_http import StreamsHttp

TABLE = "orders"
pytestmark = pytest.mark.slow


@pytest.fixture
def double() -> StreamsDouble:
    return StreamsDouble(describe_page_size=2)


@pytest.fixture
def server(double: StreamsDouble, monkeypatch: pytest.MonkeyPatch) -> Iterator[StreamsHttp]:
    with StreamsHttp(double) as served:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", served.url)
        yield served


@pytest.fixture
def stream(ddb: Any, double: StreamsDouble) -> DoubleStream:
    table = create_table(ddb, TABLE)
    return double.add_stream(TABLE, table["LatestStreamLabel"])


def put(
    stream: DoubleStream, shard: DoubleShard, n: int, start: datetime, step: float = 1.0
) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        key = {"pk": {"S": f"{shard.shard_id[-8:]}-{len(shard.records)}"}}
        new = {**key, "n": {"N": str(i)}, "b": {"M": {"x": {"B": bytes([i % 256])}}}}
        out.append(stream.put(shard, key, new=new, at=start + timedelta(seconds=i * step)))
    return out


def run(
    archive: Archive,
    *,
    processes: int = 2,
    once: bool = True,
    stop_when: Callable[[], bool] | None = None,
) -> tuple[int, list[tuple[str, str, int]]]:
    """``run`` with ``processes`` worker processes; the exit code and who read which shard."""
    config = RunConfig(
        table_name=TABLE,
        archive_url=archive.url,
        once=once,
        flush=FlushPolicy(records=100_000, seconds=60, bytes=1 << 30),
        poll_seconds=0.02,
        discover_seconds=0.2,
        persist_seconds=0.1,
        progress_seconds=0.5,
        retry=RetryPolicy(base_seconds=0.005, cap_seconds=0.02, give_up_after_seconds=20),
    )

    async def go() -> tuple[int, list[tuple[str, str, int]]]:
        stop = asyncio.Event()

        async def watch() -> None:
            while stop_when is not None and not stop_when():
                await asyncio.sleep(0.02)
            stop.set()

        async with shard_pool(processes, AwsSettings(), archive) as pool:
            assert pool is not None
            watcher = asyncio.create_task(watch()) if stop_when is not None else None
            try:
                code = await execute(config, AwsSettings(), archive, stop=stop, pool=pool)
            finally:
                if watcher is not None:
                    watcher.cancel()
            return code, pool.assignments

    return asyncio.run(go())


def archived_rows(archive: Archive) -> list[dict[str, Any]]:
    rows = []
    for rel in archive.find(layout.changes_table_dir(TABLE), ".parquet"):
        rows.extend(pq.read_table(archive.path(rel)).to_pylist())
    return sorted(rows, key=lambda r: (r["stream_arn"], r["sequence_number"]))


def event_ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["eventID"] for r in records]


def test_shards_spread_over_processes_parents_before_children(
    server: StreamsHttp, double: StreamsDouble, stream: DoubleStream, archive: Archive
) -> None:
    start = utcnow() - timedelta(minutes=30)
    roots = [stream.add_shard() for _ in range(3)]
    written: list[dict[str, Any]] = []
    for root in roots:
        written += put(stream, root, 300, start, step=0.5)
    left, right = stream.split(roots[0])
    written += put(stream, left, 200, start + timedelta(minutes=5))
    written += put(stream, right, 200, start + timedelta(minutes=5))
    (grandchild,) = stream.split(right, children=1)
    written += put(stream, grandchild, 100, start + timedelta(minutes=10))
    lineage = [(roots[0], left), (roots[0], right), (right, grandchild)]

    code, assignments = run(archive)

    assert code == EXIT_OK
    rows = archived_rows(archive)
    ids = [r["event_id"] for r in rows]
    assert sorted(ids) == sorted(event_ids(written)) and len(set(ids)) == len(ids)  # all, once
    # Each shard was given to exactly one worker, and both workers read.
    shard_ids = [shard_id for _, shard_id, _ in assignments]
    assert sorted(shard_ids) == sorted(s.shard_id for s in stream.shards.values())
    owner = {shard_id: worker for _, shard_id, worker in assignments}
    assert set(owner.values()) == {0, 1}
    # Some child was read by another process than its parent, and still after it.
    assert any(owner[c.shard_id] != owner[p.shard_id] for p, c in lineage)
    for parent, child in lineage:
        ended = [p.at for p in double.pages_of(parent) if p.ended]
        assert ended, f"{parent.shard_id} was read to its end"
        assert min(p.at for p in double.pages_of(child)) > ended[0]
    assert double.max_in_flight_per_shard == 1
    # Each file holds one shard's records, in order; checkpoints as in one process.
    for rel in archive.find(layout.changes_table_dir(TABLE), ".parquet"):
        name = layout.ChangeFileName.parse(rel)
        assert name is not None
        content = pq.read_table(archive.path(rel)).to_pylist()
        assert {r["shard_id"] for r in content} == {name.shard_id}
    checkpoints = read_checkpoints(archive, TABLE, layout.label_stamp(stream.label))
    assert {k: v["closed"] for k, v in checkpoints.items()} == {
        roots[0].shard_id: True,
        right.shard_id: True,
        roots[1].shard_id: False,
        roots[2].shard_id: False,
        left.shard_id: False,
        grandchild.shard_id: False,
    }
    # One watermark, from every shard: just before the newest records (all caught up).
    watermark = parse_iso((coverage.current(archive, TABLE) or {})["watermark"])
    assert watermark > written[-1]["dynamodb"]["ApproximateCreationDateTime"]

    # A second run reads only the open shards, each from where the first one stopped.
    double.calls.clear()
    code, _ = run(archive)
    assert code == EXIT_OK
    read_again = {kw["ShardId"] for kw in double.calls_to("get_shard_iterator")}
    assert read_again == {roots[1].shard_id, roots[2].shard_id, left.shard_id, grandchild.shard_id}
    assert len(archived_rows(archive)) == len(written)


def test_errors_in_a_worker_take_the_same_paths(
    server: StreamsHttp, double: StreamsDouble, stream: DoubleStream, archive: Archive
) -> None:
    """An expired iterator, throttling, a 5xx and records trimmed under the reader, met in a
    worker process: retried, resumed and recorded exactly as in one process."""
    shard = stream.add_shard()
    other = stream.add_shard()
    written = put(stream, shard, 2500, utcnow() - timedelta(hours=23), step=1)
    others = put(stream, other, 50, utcnow() - timedelta(hours=23))
    done: set[str] = set()

    def faults(target: DoubleShard, _: int) -> None:
        # After the first page (1,000 records, still buffered): the iterator expires; then,
        # before the reader is back, records 1,000..1,499 are trimmed unread.
        if target is not shard or len(double.pages_of(shard)) != 1:
            return
        if "expired" not in done:
            done.add("expired")
            double.expire_iterators()
        elif "trimmed" not in done:
            done.add("trimmed")
            shard.trim(1500)

    double.before_get_records = faults
    double.fail("get_records", "LimitExceededException", 2, shard_id=shard.shard_id)
    double.fail("get_records", "InternalServerError", 1, status=500, shard_id=other.shard_id)

    code, _ = run(archive)

    assert code == EXIT_NEW_GAP
    assert double.faults == []
    (gap,) = read_gaps(archive, TABLE)
    assert gap["reason"] == "trimmed" and gap["shard_id"] == shard.shard_id
    assert (gap["from"], gap["to"]) == (
        iso_ms(written[999]["dynamodb"]["ApproximateCreationDateTime"]),
        iso_ms(written[1500]["dynamodb"]["ApproximateCreationDateTime"]),
    )
    rows = [r for r in archived_rows(archive) if r["shard_id"] == shard.shard_id]
    assert [r["event_id"] for r in rows] == event_ids(written[:1000] + written[1500:])
    assert len(archived_rows(archive)) == len(rows) + len(others)
    iterators = [
        kw for kw in double.calls_to("get_shard_iterator") if kw["ShardId"] == shard.shard_id
    ]
    assert [kw.get("SequenceNumber") for kw in iterators][:2] == [
        None,
        written[999]["dynamodb"]["SequenceNumber"],
    ]


def test_a_long_run_stops_cleanly_with_its_workers(
    server: StreamsHttp, double: StreamsDouble, stream: DoubleStream, archive: Archive
) -> None:
    """Records arriving while the poller runs are archived; on stop every worker flushes,
    saves its checkpoints and exits."""
    shards = [stream.add_shard() for _ in range(3)]
    written: list[dict[str, Any]] = []

    def feed() -> None:
        for shard in shards:
            written.extend(put(stream, shard, 20, utcnow()))

    fed = {"rounds": 0}

    def keep_feeding() -> bool:
        """Feed five rounds, then stop once every record written was read."""
        if fed["rounds"] < 5:
            server.call(feed)
            fed["rounds"] += 1
            time.sleep(0.1)
            return False
        return all(
            max((p.position for p in double.pages_of(s)), default=0) == len(s.records)
            for s in shards
        )

    code, assignments = run(archive, once=False, stop_when=keep_feeding)

    assert code == EXIT_OK
    assert sorted(r["event_id"] for r in archived_rows(archive)) == sorted(event_ids(written))
    assert len({shard_id for _, shard_id, _ in assignments}) == 3
    checkpoints = read_checkpoints(archive, TABLE, layout.label_stamp(stream.label))
    assert set(checkpoints) == {s.shard_id for s in shards}


def test_tables_of_one_run_share_the_workers(
    server: StreamsHttp, double: StreamsDouble, ddb: Any, archive: Archive
) -> None:
    """``--table-name A --table-name B --processes 2``: one pool, each table its own
    session in the workers (its own writer, checkpoints and watermark)."""
    written: dict[str, list[dict[str, Any]]] = {}
    for name in ("orders", "users"):
        label = create_table(ddb, name)["LatestStreamLabel"]
        stream = double.add_stream(name, label)
        written[name] = []
        for _ in range(2):
            written[name] += put(stream, stream.add_shard(), 30, utcnow() - timedelta(minutes=5))
    config = RunConfig(
        table_name="",
        archive_url=archive.url,
        once=True,
        poll_seconds=0.02,
        discover_seconds=0.2,
        persist_seconds=0.1,
        retry=RetryPolicy(base_seconds=0.005, cap_seconds=0.02, give_up_after_seconds=20),
    )

    async def go() -> tuple[int, list[tuple[str, str, int]]]:
        async with shard_pool(2, AwsSettings(), archive) as pool:
            assert pool is not None
            code = await execute_many(
                config, AwsSettings(), archive, table_names=list(written), pool=pool
            )
            return code, pool.assignments

    code, assignments = asyncio.run(go())

    assert code == EXIT_OK
    for name, records in written.items():
        rows = []
        for rel in archive.find(layout.changes_table_dir(name), ".parquet"):
            rows.extend(pq.read_table(archive.path(rel)).to_pylist())
        assert sorted(r["event_id"] for r in rows) == sorted(event_ids(records))
        assert (coverage.current(archive, name) or {}).get("watermark")
    assert {table for table, _, _ in assignments} == set(written)
    assert {worker for _, _, worker in assignments} == {0, 1}


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_the_poller_killed_by_sigkill(
    server: StreamsHttp,
    double: StreamsDouble,
    stream: DoubleStream,
    archive_path: Path,
    aws_env: str,
) -> None:
    """``kill -9`` of ``ddb-archiver run --processes 2`` (the OOM killer, a container stopped
    past its grace period) leaves no worker reading or writing."""
    shards = [stream.add_shard() for _ in range(2)]
    for shard in shards:
        put(stream, shard, 50, utcnow() - timedelta(minutes=1))
    command = [
        str(Path(sys.executable).with_name("ddb-archiver")),
        "run",
        "--table-name",
        TABLE,
        "--archive",
        str(archive_path),
        "--processes",
        "2",
        "--poll-seconds",
        "0.05",
    ]
    poller = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = _children(poller.pid)
            if len(workers) == 2 and any(p.records for p in double.pages):
                break
            assert poller.poll() is None, poller.stderr.read() if poller.stderr else ""
            time.sleep(0.1)
        else:
            pytest.fail("the workers did not start reading")
        poller.send_signal(signal.SIGKILL)
        poller.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if _alive(w)], "a worker outlived the poller"
        # Nothing reads the stream any more.
        requests = server.requests
        time.sleep(1.0)
        assert server.requests == requests
    finally:
        if poller.poll() is None:
            poller.kill()
        if poller.stderr is not None:
            poller.stderr.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_killed_fails_the_run_and_the_next_run_loses_and_doubles_nothing(
    server: StreamsHttp,
    double: StreamsDouble,
    stream: DoubleStream,
    archive_path: Path,
    archive: Archive,
    aws_env: str,
) -> None:
    """A worker killed mid-run: the poller stops with exit 1 naming it; what was archived is
    whole (files then checkpoints), and the next run archives the rest, nothing twice."""
    shards = [stream.add_shard() for _ in range(3)]
    written: list[dict[str, Any]] = []
    for shard in shards:
        written += put(stream, shard, 40, utcnow() - timedelta(minutes=2))
    command = [
        str(Path(sys.executable).with_name("ddb-archiver")),
        "run",
        "--table-name",
        TABLE,
        "--archive",
        str(archive_path),
        "--processes",
        "2",
        "--poll-seconds",
        "0.05",
        "--flush-records",
        "30",
    ]
    poller = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not archive.find(
            layout.changes_table_dir(TABLE), ".parquet"
        ):
            assert poller.poll() is None
            time.sleep(0.05)
        workers = _children(poller.pid)
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        _, stderr = poller.communicate(timeout=60)
    finally:
        if poller.poll() is None:
            poller.kill()
    assert poller.returncode == 1
    assert f"pid {victim}" in stderr and "ended" in stderr
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)]

    # More records meanwhile; the next run picks up where the files say.
    for shard in shards:
        written += server.call(lambda shard=shard: put(stream, shard, 5, utcnow()))
    code, _ = run(archive)
    assert code == EXIT_OK
    ids = [r["event_id"] for r in archived_rows(archive)]
    assert sorted(ids) == sorted(event_ids(written))  # nothing lost
    assert len(ids) == len(set(ids))  # nothing twice


def test_processes_flag_takes_a_count_or_auto() -> None:
    assert processes_count("3") == 3
    assert processes_count("auto") == available_cores() >= 1
    for bad in ("0", "-2", "many"):
        with pytest.raises(argparse.ArgumentTypeError):
            processes_count(bad)
