"""A worker process of ``ddb-archiver run --processes N``: reads and writes the shards it is given.

    python -m archiver.capture.worker <socket fd> <poller pid>

Started by :mod:`archiver.capture.processes`, never by hand. The poller keeps every decision
— which streams and shards exist, which shard is read when (parents before children), when a
shard is caught up, gaps, the watermark — and gives each shard to one worker, which does the
work that costs CPU: ``GetRecords`` (parsed by orjson, :mod:`archiver.capture.raw_records`),
the records into change rows, the rows into Parquet files, the shard's checkpoints. It answers
the poller's calls (:mod:`archiver.capture.channel`) with a
:class:`archiver.capture.change_writer.ChangeWriter` per table of the poller (``session``), which
holds only the shards given to it:

* ``open_session`` — a table's writer (``owns_watermark=False``: the poller writes the
  watermark of all shards) and its ``GetRecords`` retry policy;
* ``adopt`` — a shard, from where the poller's state says it is;
* ``page`` — one ``GetRecords`` page, kept here; the poller gets its count, last record,
  next iterator and first new record's time (to record a gap before it);
* ``commit`` — the kept page into the shard's buffer (flushed when due);
* ``idle``, ``caught_up``, ``flush``, ``ended``, ``flush_all``, ``persist`` — the writer's
  own steps; each answers the shard's progress
  (:meth:`archiver.capture.change_writer.ShardProgress.state`);
* ``stop_reading`` — abandon ``GetRecords`` retries: the poller is stopping.

It dies with the poller: Linux's parent-death signal (SIGKILL) is asked for at start, and the
poller's end of the socket closing ends it too (nothing buffered is lost for good: the
checkpoints say only what is in files, and the next run reads the rest again). SIGINT and
SIGTERM are ignored: a Ctrl-C in a terminal reaches the whole process group, and the poller
asks its workers to flush before it exits.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from archiver.aws.clients import AwsSettings
from archiver.aws.retry import RetryPolicy
from archiver.capture import raw_records
from archiver.capture.change_writer import ChangeWriter, FlushPolicy, LiveGeneration, ShardProgress
from archiver.capture.channel import receive, send, serve
from archiver.capture.streams_api import Page, Shard, StreamInfo, StreamsApi
from archiver.cliutil import install_redaction
from archiver.format.layout import pad_seq
from archiver.format.records import event_time_ms
from archiver.format.storage import Archive

log = logging.getLogger("archiver.run")

_PR_SET_PDEATHSIG = 1

ShardKey = tuple[str, str]


def die_with_parent(parent: int) -> None:
    """Be killed when the process that started this one dies (Linux); exit now if it already
    has. Elsewhere the poller's end of the socket closing is what ends a worker."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)  # it died before the signal was asked for


@dataclass(frozen=True)
class Setup:
    """What every worker needs, whatever it reads."""

    settings: AwsSettings
    archive_url: str
    file_mode: int


@dataclass(frozen=True)
class PageSummary:
    """What the poller needs of a page kept in a worker."""

    count: int
    next_iterator: str | None
    last: tuple[str, datetime] | None  # None when the last record lacks its parts (poison)
    first_new_ms: int | None  # event time of its first record not read before, if known


class _Session:
    def __init__(self, writer: ChangeWriter, api: StreamsApi, stop: asyncio.Event) -> None:
        self.writer = writer
        self.api = api
        self.stop = stop
        self.kept: dict[ShardKey, Page] = {}


class Worker:
    """The calls a worker answers (see the module doc)."""

    def __init__(self, setup: Setup, archive: Archive, streams_client: Any) -> None:
        self.setup = setup
        self.archive = archive
        self.client = streams_client
        self.sessions: dict[str, _Session] = {}

    async def handle(self, method: str, args: tuple[Any, ...]) -> Any:
        if method.startswith("_") or not hasattr(self, method):
            raise ValueError(f"no such call: {method}")
        return await getattr(self, method)(*args)

    async def open_session(
        self,
        session: str,
        table: str,
        generation: LiveGeneration,
        policy: FlushPolicy,
        retry: RetryPolicy,
    ) -> None:
        writer = ChangeWriter(self.archive, table, generation, policy, owns_watermark=False)
        stop = asyncio.Event()
        self.sessions[session] = _Session(writer, StreamsApi(self.client, retry, stop=stop), stop)

    async def adopt(
        self,
        session: str,
        stream: StreamInfo,
        shard: Shard,
        table_id: str,
        current: bool,
        state: dict[str, Any],
    ) -> None:
        self.sessions[session].writer.adopt(stream, shard, table_id, current, state)

    async def page(self, session: str, key: ShardKey, iterator: str, limit: int) -> PageSummary:
        s = self.sessions[session]
        progress = s.writer.shards[key]
        page = await s.api.page(progress.shard, iterator, limit)
        s.kept[key] = page
        if not page.count:
            return PageSummary(0, page.next_iterator, None, None)
        try:
            last: tuple[str, datetime] | None = page.last()
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError):
            last = None  # the writer names the record when the page is committed
        return PageSummary(page.count, page.next_iterator, last, _first_new_ms(page, progress))

    async def commit(self, session: str, key: ShardKey, shard: Shard) -> dict[str, Any]:
        s = self.sessions[session]
        page = s.kept.pop(key)
        progress = s.writer.shards[key]
        await s.writer.records(progress.stream, shard, page)
        return self._answer(s, key)

    async def idle(self, session: str, key: ShardKey) -> dict[str, Any]:
        s = self.sessions[session]
        progress = s.writer.shards[key]
        await s.writer.idle(progress.stream, progress.shard)
        return self._answer(s, key)

    async def caught_up(self, session: str, key: ShardKey, at: datetime) -> dict[str, Any]:
        s = self.sessions[session]
        progress = s.writer.shards[key]
        await s.writer.caught_up(progress.stream, progress.shard, at)
        return self._answer(s, key)

    async def flush(self, session: str, key: ShardKey) -> dict[str, Any]:
        s = self.sessions[session]
        await s.writer.flush(s.writer.shards[key])
        return self._answer(s, key)

    async def ended(self, session: str, key: ShardKey, shard: Shard) -> dict[str, Any]:
        s = self.sessions[session]
        progress = s.writer.shards[key]
        await s.writer.ended(progress.stream, shard)
        return self._answer(s, key)

    async def flush_all(self, session: str) -> dict[ShardKey, dict[str, Any]]:
        s = self.sessions[session]
        await s.writer.flush_all()
        return {key: self._answer(s, key) for key in s.writer.shards}

    async def persist(self, session: str, force: bool) -> dict[ShardKey, dict[str, Any]]:
        s = self.sessions[session]
        await s.writer.persist(force=force)
        return {key: self._answer(s, key) for key in s.writer.shards}

    async def stop_reading(self, session: str) -> None:
        self.sessions[session].stop.set()

    def _answer(self, s: _Session, key: ShardKey) -> dict[str, Any]:
        stats = s.writer.stats
        return {
            **s.writer.shards[key].state(),
            "stats": (stats.records_read, stats.records_written, stats.files_written),
        }


def _first_new_ms(page: Page, progress: ShardProgress) -> int | None:
    """The event time of the page's first record after the shard's last one read (records
    a fresh iterator repeats are skipped by the writer); ``None`` when there is none or the
    record lacks its parts."""
    last = progress.read_seq or ""
    try:
        for record in page.records:
            ddb = record["dynamodb"]
            if pad_seq(ddb["SequenceNumber"]) > last:
                return event_time_ms(ddb["ApproximateCreationDateTime"])
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError):
        return None
    return None


async def _run(sock: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    # The first message is the setup, before any call; "ready" answers it.
    setup: Setup = await receive(reader)
    archive = Archive.open(
        setup.archive_url, endpoint_url=setup.settings.endpoint_url, file_mode=setup.file_mode
    )
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            setup.settings.aio_client("dynamodbstreams", own_retries=True)
        )
        await send(writer, "ready")
        await serve(reader, writer, Worker(setup, archive, client).handle)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fd, parent = int(argv[0]), int(argv[1])
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    debug = "--debug" in argv
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format=f"ddb-archiver[worker {os.getpid()}]: %(message)s",
        stream=sys.stderr,
    )
    install_redaction()
    if not debug:
        for noisy in ("botocore", "aiobotocore", "s3fs", "urllib3", "asyncio", "fsspec"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    raw_records.collect_less()
    asyncio.run(_run(socket.socket(fileno=fd)))
    return 0


if __name__ == "__main__":
    # Run the module under its own name, not as __main__: what it sends the poller is pickled
    # by class name, and the poller knows the classes as archiver.capture.worker's.
    from archiver.capture import worker

    raise SystemExit(worker.main())
