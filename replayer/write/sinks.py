"""Where a folded state goes: a new DynamoDB table, Parquet files or DynamoDB JSON files.

Every sink takes the fold's output — Arrow record batches with ``keys`` and ``item``
(canonical DynamoDB JSON) — through the same two calls: :meth:`Sink.prepare` (check and
create the destination; refuse before anything exists) and :meth:`Sink.write`. Sinks are
registered by name (:data:`SINKS`), the way the CLI's ``--format`` picks one.

The table sink creates its table (:mod:`replayer.write.target_table`) and writes with concurrent
``BatchWriteItem`` calls on a thread pool (built from the stored text by
:class:`replayer.write.batch_writers.ChunkWriter`), at most ``max_write_rate`` items per second. A
restore writes through :mod:`replayer.write.batch_writers` instead: several processes, an adaptive
rate, resumable progress. Nothing is dropped silently: ``UnprocessedItems`` and
throttling are retried under :mod:`archiver.aws.retry`'s policy (full-jitter backoff, an attempt
limit and a deadline) until written, and the restore stops with one clear line when the policy
gives up or on any other error. A ``NULL``
item means "delete this key" (log tails applied over a restored backup).
"""

from __future__ import annotations

import gzip
import io
import logging
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
from tqdm import tqdm

from archiver.aws.retry import DATA, AdaptiveRate, RetryPolicy
from archiver.format.schema import SNAPSHOT_SCHEMA
from archiver.format.storage import Archive
from replayer.exceptions import Refused, ReplayError
from replayer.write.batch_writers import ChunkWriter, Request
from replayer.write.target_table import create_target, wait_until_active

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

BATCH_WRITE_LIMIT = 25  # items per BatchWriteItem call (a DynamoDB limit)
DEFAULT_WORKERS = 16

SINKS: dict[str, type[Sink]] = {}


def register(name: str) -> Callable[[type[Sink]], type[Sink]]:
    """Class decorator: make a sink available under ``name``."""

    def add(cls: type[Sink]) -> type[Sink]:
        cls.kind = name
        SINKS[name] = cls
        return cls

    return add


def sink_class(name: str) -> type[Sink]:
    """The sink registered as ``name`` (``table``, ``parquet``, ``dynamodb-json``)."""
    try:
        return SINKS[name]
    except KeyError:
        raise ReplayError(f"unknown sink {name!r}; known: {', '.join(sorted(SINKS))}") from None


@dataclass
class WriteResult:
    """What a sink wrote."""

    items: int = 0  # puts (or rows written to files)
    deletes: int = 0
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Items (and deletes) per second."""
        return (self.items + self.deletes) / self.seconds if self.seconds > 0 else 0.0


class Sink(ABC):
    """A destination for a folded state (``keys``, ``item`` record batches)."""

    kind: ClassVar[str] = ""

    @abstractmethod
    def prepare(self) -> None:
        """Check and create the destination; raise :class:`Refused` before creating anything
        when it already exists."""

    @abstractmethod
    def write(self, batches: Iterable[pa.RecordBatch], total: int | None = None) -> WriteResult:
        """Write every row; ``total`` (when known) drives the progress bar's ETA."""

    def describe(self) -> str:
        """A short name of the destination for messages."""
        return self.kind


def _progress(total: int | None, desc: str) -> tqdm:
    # On a terminal only: logs and pipes get the one-line summary instead.
    return tqdm(
        total=total,
        desc=desc,
        unit=" items",
        unit_scale=True,
        file=sys.stderr,
        disable=None,
        mininterval=0.5,
        smoothing=0.1,
    )


# -- DynamoDB table ------------------------------------------------------------------------


def _requests(batch: pa.RecordBatch) -> Iterator[Request]:
    keys = batch.column("keys").to_pylist()
    items = batch.column("item").to_pylist()
    yield from zip(keys, items, strict=True)


@register("table")
class TableSink(Sink):
    """A new DynamoDB table, created from an archived description and filled in parallel.

    Args:
        client: a boto3 DynamoDB client (thread-safe; shared by the writer threads).
        table_name: the table to create.
        description: the archived ``DescribeTable`` ``Table`` to recreate (None: the table
            must exist already — :meth:`prepare` then only checks it is ACTIVE).
        max_write_rate: cap on items written per second (None: as fast as DynamoDB takes).
        workers: concurrent ``BatchWriteItem`` calls.
        policy: how throttled calls and unprocessed items are retried.
        sleep: how to wait between retries (tests pass a recorder).
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        description: Mapping[str, Any] | None,
        *,
        max_write_rate: float | None = None,
        workers: int = DEFAULT_WORKERS,
        policy: RetryPolicy = DATA,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.table_name = table_name
        self.description = description
        self.workers = max(1, workers)
        rate = AdaptiveRate(max_write_rate, cap=max_write_rate) if max_write_rate else None
        self.writer = ChunkWriter(client, table_name, rate=rate, policy=policy, sleep=sleep)

    @property
    def retries(self) -> int:
        """Calls repeated for throttling or unprocessed items."""
        return self.writer.retries

    def describe(self) -> str:
        return f"table {self.table_name}"

    def prepare(self) -> None:
        """Create the table (refusing if it exists) and wait until it is ACTIVE."""
        if self.description is None:
            wait_until_active(self.client, self.table_name)
        else:
            create_target(self.client, self.description, self.table_name)

    def write(self, batches: Iterable[pa.RecordBatch], total: int | None = None) -> WriteResult:
        """Write every row (NULL item: delete the key); returns counts and elapsed time."""
        result = WriteResult()
        counts_lock = threading.Lock()
        started = time.monotonic()
        bar = _progress(total, f"writing {self.table_name}")

        def done(puts: int, deletes: int) -> None:
            with counts_lock:
                result.items += puts
                result.deletes += deletes
            bar.update(puts + deletes)

        in_flight: set[Future[None]] = set()
        stop = self.writer.stop = threading.Event()
        limit = self.workers * 4  # chunks queued ahead: enough to keep every worker busy
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="batch-write")
        try:
            for chunk in self._chunks(batches):
                while len(in_flight) >= limit:
                    finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in finished:
                        future.result()  # a worker's failure surfaces here
                in_flight.add(pool.submit(self._write_chunk, chunk, done, stop))
            finished, in_flight = wait(in_flight)
            for future in finished:
                future.result()
        except BaseException:
            stop.set()  # workers still retrying give up instead of holding the exit
            for future in in_flight:
                future.cancel()
            raise
        finally:
            pool.shutdown(wait=True)
            bar.close()
        result.seconds = time.monotonic() - started
        return result

    @staticmethod
    def _chunks(batches: Iterable[pa.RecordBatch]) -> Iterator[list[Request]]:
        chunk: list[Request] = []
        for batch in batches:
            for request in _requests(batch):
                chunk.append(request)
                if len(chunk) == BATCH_WRITE_LIMIT:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def _write_chunk(
        self,
        requests: list[Request],
        done: Callable[[int, int], None],
        stop: threading.Event,
    ) -> None:
        """One chunk of ≤ 25 requests, retried until every request is written."""
        if not stop.is_set():
            done(*self.writer.write(requests))


# -- files ---------------------------------------------------------------------------------


class FileSink(Sink):
    """Files under an output root (local folder or ``s3://``): ``data/part-NNNNN.<ext>``.

    Refuses an output that already holds files (exports are never mixed).
    """

    extension: ClassVar[str] = ""
    DATA = "data"

    def __init__(self, output: Archive, *, items_per_file: int = 1_000_000) -> None:
        self.output = output
        self.items_per_file = max(1, items_per_file)
        # Resuming: a part already present was written whole (parts are written atomically)
        # from the same ordered rows, so it is kept rather than rewritten.
        self.keep_existing = False

    def describe(self) -> str:
        return f"{self.kind} files in {self.output.url}"

    def prepare(self) -> None:
        if self.output.find(""):
            raise Refused(
                f"output {self.output.url} already holds files: export into an empty location"
            )

    def part(self, n: int) -> str:
        return f"{self.DATA}/part-{n:05d}.{self.extension}"

    def write(self, batches: Iterable[pa.RecordBatch], total: int | None = None) -> WriteResult:
        result = WriteResult()
        started = time.monotonic()
        bar = _progress(total, f"writing {self.output.url}")
        pending: list[pa.RecordBatch] = []
        rows = 0
        try:
            for batch in batches:
                if batch.column("item").null_count:
                    raise ReplayError("a file export holds items only, not deletions")
                offset = 0
                while offset < batch.num_rows:
                    take = min(batch.num_rows - offset, self.items_per_file - rows)
                    pending.append(batch.slice(offset, take))
                    rows += take
                    offset += take
                    if rows == self.items_per_file:
                        self._flush(pending, result)
                        bar.update(rows)
                        pending, rows = [], 0
            if rows or not result.files:
                self._flush(pending, result)
                bar.update(rows)
        finally:
            bar.close()
        result.seconds = time.monotonic() - started
        return result

    def _flush(self, batches: list[pa.RecordBatch], result: WriteResult) -> None:
        rel = self.part(len(result.files))
        table = pa.Table.from_batches(batches, schema=_ROWS) if batches else _ROWS.empty_table()
        if not (self.keep_existing and self.output.exists(rel)):
            self.write_part(rel, table)
        result.files.append(rel)
        result.items += table.num_rows

    @abstractmethod
    def write_part(self, rel: str, rows: pa.Table) -> None:
        """Write one part file (atomically) with these ``keys``/``item`` rows."""


_ROWS = pa.schema([pa.field("keys", pa.string()), pa.field("item", pa.string())])


def file_sink(name: str, output: Archive, **kwargs: Any) -> FileSink:
    """The file sink registered as ``name`` (``parquet``, ``dynamodb-json``) writing to
    ``output``."""
    cls = sink_class(name)
    if not issubclass(cls, FileSink):
        raise ReplayError(f"{name!r} is not a file format")
    return cls(output, **kwargs)


@register("parquet")
class ParquetSink(FileSink):
    """Parquet parts with the snapshot schema (``keys``, ``item``: canonical DynamoDB JSON) —
    queryable with DuckDB or Athena, and usable as a base snapshot."""

    extension = "parquet"

    def write_part(self, rel: str, rows: pa.Table) -> None:
        self.output.write_parquet(rel, rows.cast(SNAPSHOT_SCHEMA))


@register("dynamodb-json")
class DynamoDBJsonSink(FileSink):
    """GZIP JSON lines ``{"Item": {...}}``: the DYNAMODB_JSON format ``ImportTable`` reads."""

    extension = "json.gz"

    def __init__(self, output: Archive, *, items_per_file: int = 250_000) -> None:
        super().__init__(output, items_per_file=items_per_file)

    def write_part(self, rel: str, rows: pa.Table) -> None:
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as gz:
            for item in rows.column("item").to_pylist():
                # Canonical text is DynamoDB JSON already: wrap it without parsing it again.
                gz.write(b'{"Item":' + item.encode("utf-8") + b"}\n")
        self.output.put_bytes(rel, buffer.getvalue())
