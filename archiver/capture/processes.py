"""``ddb-archiver run --processes N``: a table's shards read and written by N worker processes.

One process archives some 17,000 records a second on one core (``docs/performance.md``,
"Capture throughput"): 15–20 shards at DynamoDB's per-shard write ceiling. A wider table needs
more cores. The poller — this process — keeps every decision and the table's state, and hands
the work that costs CPU to worker processes (:mod:`archiver.capture.worker`):

* **the consumer is unchanged** (:class:`archiver.capture.reader.StreamConsumer`: discovery, older
  streams before newer ones, parents before children, one reader task per shard, the
  caught-up rule); :class:`PooledWriter` is its sink *and* its page reader. The reader task of
  a shard asks a worker for each page; the worker keeps the records and answers their count,
  last record and next iterator; the task then commits the page (the worker buffers it and
  flushes when due) or, on an empty page, says idle or caught up.
* **ownership**: a shard is given to a worker the first time it is read — the one reading
  the fewest shards — and stays with it for the run; with one reader task per shard in the
  consumer, each shard is read and written by exactly one process at a time. A child shard
  goes to whichever worker has least to do, once its parent has ended.
* **one watermark**: every answer carries the shard's progress
  (:meth:`archiver.capture.change_writer.ShardProgress.state`); the poller writes coverage.json from
  all of them. Checkpoints are written as before, by the worker that holds the shard, after its
  file.
* **gaps** are held and written by the poller alone (gaps.jsonl has one writer): a page's
  records reach a worker's buffer only after any hole before them is on record — the worker
  reports the page's first new record, the poller records the hole up to it, then commits.
* **stopping together**: the poller stops its workers when it stops (after they flushed and
  saved their checkpoints) and fails — exit 1, naming the worker — when one dies; a worker
  dies with the poller (:mod:`archiver.capture.worker`).

The pool is shared by every table of the run (``--table-name`` repeated): each table's
writer is a session in each worker it uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from archiver.aws.clients import AwsSettings
from archiver.aws.retry import RetryPolicy
from archiver.capture.change_writer import ChangeWriter, FlushPolicy, LiveGeneration, ShardProgress
from archiver.capture.channel import Caller, WorkerDied, receive, send
from archiver.capture.streams_api import Page, Shard, StreamInfo
from archiver.capture.worker import PageSummary, Setup
from archiver.format.changefiles import ms_to_datetime
from archiver.format.storage import Archive

log = logging.getLogger("archiver.run")

ShardKey = tuple[str, str]
START_SECONDS = 120.0  # for a worker to import, open its client and answer
STOP_SECONDS = 30.0  # for a worker to exit once its socket is closed


def available_cores() -> int:
    """The cores this process may run on (``--processes auto``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def processes_count(text: str) -> int:
    """``N`` (at least 1) or ``auto`` (argparse type)."""
    if text.strip().lower() == "auto":
        return available_cores()
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of processes or 'auto'"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def add_processes_argument(parser: argparse.ArgumentParser) -> None:
    """``--processes N|auto`` of ``ddb-archiver run``."""
    parser.add_argument(
        "--processes",
        type=processes_count,
        default=1,
        metavar="N",
        help="read and write the shards in N worker processes (auto: one per core), for "
        "tables with more shards at their write ceiling than one core keeps up with (15-20 "
        "at 1,000 records/s each); this process keeps the order of reading, the gaps and the "
        "watermark. Default 1: this process reads every shard itself",
    )


@dataclass
class WorkerSlot:
    """One worker process and how many shards it is reading."""

    index: int
    process: subprocess.Popen[bytes]
    caller: Caller
    reading: int = 0  # shards given to it and not ended
    given: int = 0  # shards given to it in all


class ShardPool:
    """The worker processes of one run (see the module doc)."""

    def __init__(self, workers: list[WorkerSlot]) -> None:
        self.workers = workers
        # (table, shard ID, worker index) as each shard was given out, for the record.
        self.assignments: list[tuple[str, str, int]] = []
        self._sessions = itertools.count(1)

    def new_session(self) -> str:
        return f"s{next(self._sessions)}"

    def give(self, table: str, shard_id: str) -> WorkerSlot:
        """The worker reading the fewest shards (then: given the fewest) takes ``shard_id``."""
        worker = min(self.workers, key=lambda w: (w.reading, w.given, w.index))
        worker.reading += 1
        worker.given += 1
        self.assignments.append((table, shard_id, worker.index))
        return worker

    async def close(self) -> None:
        """Close every worker's socket (it exits), then wait for each; kill one that lingers."""
        for worker in self.workers:
            await worker.caller.close()
        for worker in self.workers:
            try:
                await asyncio.wait_for(asyncio.to_thread(worker.process.wait), STOP_SECONDS)
            except TimeoutError:
                log.warning(
                    "worker %d (pid %d) did not exit: killing it", worker.index, worker.process.pid
                )
                worker.process.kill()
                await asyncio.to_thread(worker.process.wait)


@asynccontextmanager
async def shard_pool(
    processes: int, settings: AwsSettings, archive: Archive, *, debug: bool = False
) -> AsyncIterator[ShardPool | None]:
    """``processes`` worker processes for the run (``None`` for one: the poller reads itself)."""
    if processes <= 1:
        yield None
        return
    setup = Setup(settings=settings, archive_url=archive.url, file_mode=archive.file_mode)
    started: list[tuple[subprocess.Popen[bytes], socket.socket]] = []
    workers: list[WorkerSlot] = []
    try:
        for _ in range(processes):
            ours, theirs = socket.socketpair()
            # Started from this (the main) thread: the parent-death signal a worker asks for
            # fires when the thread that started it ends.
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "archiver.capture.worker",
                    str(theirs.fileno()),
                    str(os.getpid()),
                    *(["--debug"] if debug else []),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
            theirs.close()
            started.append((process, ours))
        workers = list(
            await asyncio.wait_for(
                asyncio.gather(
                    *(
                        _connect(i, process, sock, setup)
                        for i, (process, sock) in enumerate(started)
                    )
                ),
                START_SECONDS,
            )
        )
        log.info("reading shards in %d worker processes", len(workers))
        pool = ShardPool(workers)
        try:
            yield pool
        finally:
            await pool.close()
    finally:
        for process, sock in started:
            sock.close()
            if process.poll() is None and not workers:
                process.kill()
                process.wait()


async def _connect(
    index: int, process: subprocess.Popen[bytes], sock: socket.socket, setup: Setup
) -> WorkerSlot:
    reader, writer = await asyncio.open_connection(sock=sock)
    await send(writer, setup)
    try:
        ready = await receive(reader)
    except EOFError:
        raise WorkerDied(
            f"worker {index} (pid {process.pid}) exited while starting (code {process.poll()})"
        ) from None
    assert ready == "ready", ready
    name = f"worker {index} (pid {process.pid})"
    return WorkerSlot(index, process, Caller(reader, writer, name))


@dataclass(frozen=True)
class HeldPage(Page):
    """A page a worker keeps: the consumer sees its count, last record and next iterator."""

    summary: PageSummary | None = None

    @property
    def count(self) -> int:
        return self.summary.count if self.summary else 0

    def last(self) -> tuple[str, datetime]:
        if self.summary is None or self.summary.last is None:
            raise ValueError("the page's last record lacks its sequence number or time")
        return self.summary.last


class PooledWriter(ChangeWriter):
    """The table's writer with its shards read and written in worker processes.

    The consumer's sink and page reader (see the module doc); its own state is what the
    workers report, plus what only the poller does: gaps and the watermark.
    """

    def __init__(
        self,
        archive: Archive,
        table: str,
        generation: LiveGeneration,
        policy: FlushPolicy,
        *,
        pool: ShardPool,
        retry: RetryPolicy,
        stop: asyncio.Event,
    ) -> None:
        super().__init__(archive, table, generation, policy)
        self.pool = pool
        self.retry = retry
        self.session = pool.new_session()
        self.owners: dict[ShardKey, WorkerSlot] = {}
        self._opened: set[int] = set()
        self._worker_stats: dict[int, tuple[int, int, int]] = {}
        self._owner_lock = asyncio.Lock()
        self._stop = stop
        self._stop_watch: asyncio.Task[None] | None = None

    # -- ownership --------------------------------------------------------------------------

    async def _owner(self, progress: ShardProgress) -> WorkerSlot:
        key = (progress.stream.arn, progress.shard.shard_id)
        async with self._owner_lock:
            worker = self.owners.get(key)
            if worker is not None:
                return worker
            if self._stop_watch is None:
                self._stop_watch = asyncio.create_task(self._stop_reading(self._stop))
            worker = self.pool.give(self.table, progress.shard.shard_id)
            if worker.index not in self._opened:
                await worker.caller.call(
                    "open_session",
                    self.session,
                    self.table,
                    self.generation,
                    self.policy,
                    self.retry,
                )
                self._opened.add(worker.index)
            await worker.caller.call(
                "adopt",
                self.session,
                progress.stream,
                progress.shard,
                progress.table_id,
                progress.current,
                progress.state(),
            )
            self.owners[key] = worker
            log.debug("%s: shard %s read by %s", self.table, key[1], worker.caller.name)
            return worker

    def _release(self, key: ShardKey) -> None:
        worker = self.owners.get(key)
        if worker is not None and worker.reading > 0:
            worker.reading -= 1

    async def _call(self, progress: ShardProgress, method: str, *args: Any) -> None:
        """``method`` on the shard's worker; takes over the progress it answers."""
        worker = await self._owner(progress)
        key = (progress.stream.arn, progress.shard.shard_id)
        self._apply(worker, progress, await worker.caller.call(method, self.session, key, *args))

    def _apply(self, worker: WorkerSlot, progress: ShardProgress, state: dict[str, Any]) -> None:
        before = (progress.durable_seq, progress.finished)
        progress.apply(state)
        if (progress.durable_seq, progress.finished) != before:
            self._durable_since_watermark = True  # files became durable: as after a flush
        self._worker_stats[worker.index] = state["stats"]
        read, written, files = (sum(s[i] for s in self._worker_stats.values()) for i in range(3))
        self.stats.records_read, self.stats.records_written, self.stats.files_written = (
            read,
            written,
            files,
        )

    async def _stop_reading(self, stop: asyncio.Event) -> None:
        await stop.wait()
        for worker in {w.index: w for w in self.owners.values()}.values():
            with contextlib.suppress(WorkerDied):
                await worker.caller.call("stop_reading", self.session)

    # -- the consumer's page reader ---------------------------------------------------------

    async def page(self, shard: Shard, iterator: str, limit: int) -> Page:
        progress = self.shards[(shard.stream_arn, shard.shard_id)]
        worker = await self._owner(progress)
        summary: PageSummary = await worker.caller.call(
            "page", self.session, (shard.stream_arn, shard.shard_id), iterator, limit
        )
        return HeldPage((), summary.next_iterator, summary)

    # -- ShardSink ----------------------------------------------------------------------------

    async def records(self, stream: StreamInfo, shard: Shard, page: Page) -> None:
        assert isinstance(page, HeldPage) and page.summary is not None
        progress = self._progress(stream, shard)
        if page.summary.first_new_ms is not None:
            # A hole must be on record before any record after it can reach a file.
            await self._resolve_gaps(progress, ms_to_datetime(page.summary.first_new_ms))
        await self._call(progress, "commit", shard)

    async def idle(self, stream: StreamInfo, shard: Shard) -> None:
        await self._call(self._progress(stream, shard), "idle")

    async def caught_up(self, stream: StreamInfo, shard: Shard, at: datetime) -> None:
        progress = self._progress(stream, shard)
        await self._resolve_gaps(progress, None, stream_too=False)
        await self._call(progress, "caught_up", at)

    async def ended(self, stream: StreamInfo, shard: Shard) -> None:
        progress = self._progress(stream, shard)
        await self._call(progress, "flush")
        # Before the checkpoint that says the shard is done: a hole in it must be on record.
        await self._resolve_gaps(progress, None, stream_too=False)
        await self._call(progress, "ended", shard)
        self._durable_since_watermark = True
        self._release((stream.arn, shard.shard_id))

    async def flush(self, progress: ShardProgress) -> None:
        if (progress.stream.arn, progress.shard.shard_id) in self.owners:
            await self._call(progress, "flush")

    async def flush_all(self) -> None:
        await self._each_worker("flush_all")

    async def finish(self) -> None:
        try:
            await super().finish()  # flush_all, the holes still held, persist(force=True)
        finally:
            if self._stop_watch is not None:
                self._stop_watch.cancel()

    async def persist(self, *, force: bool = False) -> None:
        await self._each_worker("persist", force)
        await self._write_watermark()

    async def _each_worker(self, method: str, *args: Any) -> None:
        workers = {w.index: w for w in self.owners.values()}.values()
        answers = await asyncio.gather(
            *(w.caller.call(method, self.session, *args) for w in workers)
        )
        for worker, states in zip(workers, answers, strict=True):
            for key, state in states.items():
                progress = self.shards.get(key)
                if progress is not None:
                    self._apply(worker, progress, state)
