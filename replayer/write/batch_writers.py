"""Writing a folded state into a DynamoDB table at DynamoDB's limit, from several processes.

The fold result is split by key hash into P partitions (:meth:`FoldResult.partition_files`:
one Parquet file each, rows ordered by key, so that a partition's n-th chunk of 25 items is
the same chunk on every run). Each partition is written by one worker — a process of its own
when P > 1, since one Python process saturates one core long before DynamoDB saturates —
with its own client, ``concurrency`` calls in flight and its own adaptive rate
(:class:`archiver.aws.retry.AdaptiveRate`: it starts at its share of what the target takes at
once — :func:`replayer.write.warm.starting_rate` — halves on throttling, grows while calls succeed,
never past its share of ``--max-write-rate``).

Workers report every acknowledged chunk to the parent, which draws the one progress bar and
keeps :class:`replayer.write.restore_state.RestoreProgress` (saved at most every 0.2 s), so a
restore that stops — a worker raising, a process killed — is continued by ``--resume`` from
what DynamoDB acknowledged. A worker that fails or dies fails the restore: the others are
stopped and the error names the partition.

Worker processes die with the restore. Their writes are only recorded by the parent, so a
worker that outlived it (a ``kill -9``, the OOM killer, a container stopped past its grace
period) would keep writing unrecorded beside a ``--resume``'s writers. Each worker watches
its parent's sentinel (:func:`multiprocessing.parent_process`: a pipe whose other end only
the parent holds, so it reads end-of-file the moment the parent is gone, however it died —
already at start if it died first) and exits at once. The parent-death signal
(``PR_SET_PDEATHSIG``) would not do: a worker's parent in the kernel's sense is the fork
server, which itself lives until its last worker has gone. The fork server and
multiprocessing's resource tracker then exit by themselves (each when the last process
holding its pipe is gone). Writes a dead worker had sent still arrive: at most
``concurrency`` calls per worker, within moments of the parent's death.

Requests are built from the stored text, not from Python objects: canonical DynamoDB JSON
*is* the wire form, so :class:`RawBatchWrites` joins the items' text into the
``BatchWriteItem`` body and hands it to botocore through a ``before-call`` hook, which
replaces the body botocore serialised for a one-item placeholder. botocore still signs,
sends, retries connection errors and parses the reply; it no longer converts each item to
Python and back. ``UnprocessedItems`` (parsed by botocore) are turned back into canonical
text, which is byte-identical to what was sent.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq
from tqdm import tqdm

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_FAILURE, Throttled, is_error
from archiver.aws.retry import DATA, AdaptiveRate, RetryPolicy, Stopped
from archiver.format.codec import canonical_json, to_wire
from replayer.exceptions import ReplayError, replay_error
from replayer.write.restore_state import CHUNK_ITEMS, RestoreProgress

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 16  # calls in flight per worker process
Request = tuple[str, str | None]  # (canonical keys, canonical item | None: delete the key)
# botocore validates and serialises this; the hook then swaps in the real body.
_PLACEHOLDER = [{"DeleteRequest": {"Key": {"_": {"S": "_"}}}}]


class WriteFailed(ReplayError):
    """A writer stopped before its partition was written (the target is partly written)."""


@dataclass
class WriteStats:
    """What the writers did."""

    items: int = 0
    deletes: int = 0
    seconds: float = 0.0
    throttles: int = 0
    retries: int = 0
    skipped: int = 0  # items already acknowledged by an earlier run (``--resume``)
    processes: int = 1
    final_rates: list[float] = field(default_factory=list)
    startup_seconds: float = 0.0  # until the first acknowledged chunk (process start included)

    @property
    def rate(self) -> float:
        return (self.items + self.deletes) / self.seconds if self.seconds > 0 else 0.0


def request_body(table: str, requests: Sequence[Request]) -> bytes:
    """The ``BatchWriteItem`` JSON body for ``requests``, from their canonical text."""
    parts = [
        '{"PutRequest":{"Item":' + item + "}}"
        if item is not None
        else '{"DeleteRequest":{"Key":' + keys + "}}"
        for keys, item in requests
    ]
    return ('{"RequestItems":{' + json.dumps(table) + ":[" + ",".join(parts) + "]}}").encode()


def _from_wire(request: dict[str, Any]) -> Request:
    if "PutRequest" in request:
        return "", canonical_json(request["PutRequest"]["Item"])
    return canonical_json(request["DeleteRequest"]["Key"]), None


class RawBatchWrites:
    """``BatchWriteItem`` calls whose body is built from stored text (see the module doc).

    A client without botocore's event system (a test double) gets ordinary parsed requests.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._local = threading.local()
        events = getattr(getattr(client, "meta", None), "events", None)
        self.raw = events is not None
        if events is not None:
            events.register("before-call.dynamodb.BatchWriteItem", self._inject)

    def _inject(self, params: dict[str, Any], **_: Any) -> None:
        body = getattr(self._local, "body", None)
        if body is not None:
            params["body"] = body
            # Content-Length follows the body when botocore prepares the request.
            params.get("headers", {}).pop("Content-Length", None)

    def send(self, table: str, requests: Sequence[Request]) -> list[Request]:
        """Send one call; returns the requests DynamoDB left unprocessed."""
        if not self.raw:
            wire = [
                {"PutRequest": {"Item": to_wire(item)}}
                if item is not None
                else {"DeleteRequest": {"Key": to_wire(keys)}}
                for keys, item in requests
            ]
            response = self.client.batch_write_item(RequestItems={table: wire})
        else:
            self._local.body = request_body(table, requests)
            try:
                response = self.client.batch_write_item(RequestItems={table: _PLACEHOLDER})
            finally:
                self._local.body = None
        back = (response.get("UnprocessedItems") or {}).get(table) or []
        return [_from_wire(r) for r in back]


class ChunkWriter:
    """Writes chunks of ≤ 25 requests, each retried until every request is acknowledged.

    Throttling (an error with a throttling code, or unprocessed items) feeds ``rate``'s
    back-off; success feeds its increase.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        rate: AdaptiveRate | None = None,
        policy: RetryPolicy = DATA,
        sleep: Callable[[float], None] = time.sleep,
        stop: threading.Event | None = None,
    ) -> None:
        self.raw = RawBatchWrites(client)
        self.table = table
        self.rate = rate
        self.policy = policy
        self.sleep = sleep
        self.stop = stop or threading.Event()
        self.retries = 0
        self.throttles = 0
        self._lock = threading.Lock()

    def _count(self, *, retry: bool, throttle: bool) -> None:
        with self._lock:
            self.retries += retry
            self.throttles += throttle
        if throttle and self.rate is not None:
            self.rate.throttled()

    def write(self, requests: Sequence[Request]) -> tuple[int, int]:
        """Write every request; returns (puts, deletes)."""
        pending = list(requests)
        attempts = self.policy.start(f"BatchWriteItem {self.table}")
        while pending:
            if self.stop.is_set():
                raise Stopped(attempts.what)
            if self.rate is not None:
                self.rate.acquire(len(pending))
            try:
                back = self.raw.send(self.table, pending)
            except Exception as exc:
                try:
                    delay = attempts.backoff(exc)
                except Exception as final:
                    raise replay_error(final, attempts.what)  # noqa: B904 (keeps its own cause)
                self._count(retry=True, throttle=is_error(exc, Throttled))
                self.sleep(delay)
                continue
            if not back:
                if self.rate is not None:
                    self.rate.succeeded()
                break
            self._count(retry=True, throttle=True)
            pending = back
            self.sleep(attempts.next_delay(None))
        deletes = sum(1 for _, item in requests if item is None)
        return len(requests) - deletes, deletes


# -- one partition ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientFactory:
    """Makes a worker's DynamoDB client (picklable, so a worker process can make its own).
    botocore's retries are off: throttling must reach the adaptive rate."""

    settings: AwsSettings = field(default_factory=AwsSettings)

    def __call__(self) -> Any:
        return self.settings.client("dynamodb", own_retries=True)


@dataclass(frozen=True)
class PartitionJob:
    """One worker's share: the rows of ``path`` after its first ``skip_chunks`` chunks, but
    for the chunks in ``skip_ahead`` (acknowledged before, by the run being resumed)."""

    partition: int
    path: str
    table: str
    skip_chunks: int = 0
    skip_ahead: frozenset[int] = frozenset()
    concurrency: int = DEFAULT_CONCURRENCY
    initial_rate: float | None = None  # items/s for this worker (None: unlimited)
    max_rate: float | None = None
    client_factory: Callable[[], Any] = field(default_factory=ClientFactory)


def _chunks(
    path: str, skip: int, skip_ahead: frozenset[int] = frozenset()
) -> Iterator[tuple[int, list[Request]]]:
    """The partition's chunks of 25 requests in file order, numbered from 0, from ``skip`` on
    and leaving out those in ``skip_ahead``."""
    index = 0
    chunk: list[Request] = []
    reader = pq.ParquetFile(path)
    for batch in reader.iter_batches(batch_size=10_000, columns=["keys", "item"]):
        keys = batch.column(0).to_pylist()
        items = batch.column(1).to_pylist()
        for pair in zip(keys, items, strict=True):
            chunk.append(pair)
            if len(chunk) == CHUNK_ITEMS:
                if index >= skip and index not in skip_ahead:
                    yield index, chunk
                index += 1
                chunk = []
    if chunk and index >= skip and index not in skip_ahead:
        yield index, chunk


Report = Callable[[tuple[Any, ...]], None]


def run_partition(job: PartitionJob, report: Report, stop: threading.Event | None = None) -> None:
    """Write one partition, reporting ``("chunk", partition, index, puts, deletes)`` for every
    acknowledged chunk and ``("done", partition, throttles, retries, rate)`` at the end."""
    stop = stop or threading.Event()
    rate = (
        AdaptiveRate(job.initial_rate, cap=job.max_rate)
        if job.initial_rate
        else (AdaptiveRate(job.max_rate, cap=job.max_rate) if job.max_rate else None)
    )
    writer = ChunkWriter(job.client_factory(), job.table, rate=rate, stop=stop)
    in_flight: set[Future[None]] = set()
    limit = job.concurrency * 2

    def one(index: int, chunk: list[Request]) -> None:
        puts, deletes = writer.write(chunk)
        report(("chunk", job.partition, index, puts, deletes))

    pool = ThreadPoolExecutor(job.concurrency, thread_name_prefix=f"write-{job.partition}")
    try:
        for index, chunk in _chunks(job.path, job.skip_chunks, job.skip_ahead):
            while len(in_flight) >= limit:
                finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
            in_flight.add(pool.submit(one, index, chunk))
        finished, in_flight = wait(in_flight)
        for future in finished:
            future.result()
    except BaseException:
        stop.set()
        for future in in_flight:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True)
    final = rate.per_second if rate is not None else 0.0
    report(("done", job.partition, writer.throttles, writer.retries, final))


_AWS_ENV_PREFIXES = ("AWS_", "BOTO")


def aws_environment() -> dict[str, str]:
    """The parent's AWS settings from the environment, for its worker processes."""
    return {k: v for k, v in os.environ.items() if k.startswith(_AWS_ENV_PREFIXES)}


def use_aws_environment(environment: dict[str, str]) -> None:
    """In a process made by a fork server (which holds the environment of its own start):
    the parent's AWS settings as they are now (:func:`aws_environment`) replace its own."""
    for name in [k for k in os.environ if k.startswith(_AWS_ENV_PREFIXES)]:
        del os.environ[name]
    os.environ.update(environment)


def exit_with_parent() -> None:
    """End this process at once when the process that started it is gone (see the module
    doc); nothing in a process that is not a multiprocessing child."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        # Not sys.exit: no cleanup that could wait on the dead parent, no write after this.
        os._exit(EXIT_FAILURE)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _process_main(job: PartitionJob, events: Any, environment: dict[str, str]) -> None:
    """A worker process: its partition, or one ``("error", …)`` event and exit 1.

    Forked from the fork server, which holds the environment of its own start: the parent's
    AWS settings as they are now replace it."""
    exit_with_parent()
    use_aws_environment(environment)
    logging.basicConfig(level=logging.WARNING)
    try:
        run_partition(job, events.put)
    except BaseException as exc:  # reported to the parent, which fails the restore
        events.put(("error", job.partition, f"{type(exc).__name__}: {exc}"))
        events.close()
        events.join_thread()
        sys.exit(EXIT_FAILURE)


# -- all partitions --------------------------------------------------------------------------


def _fork_server() -> Any:
    """The multiprocessing context worker processes are made in.

    Not fork: the parent runs DuckDB and botocore threads. A fork server, started once per
    process with this module imported, forks each worker ready to write (a spawned one would
    first spend seconds importing pyarrow and botocore)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def start_fork_server() -> None:
    """Start the fork server now, so that its start (an interpreter importing pyarrow and
    botocore: about a second) overlaps the work before the writes, not the writes."""
    _fork_server()
    multiprocessing.forkserver.ensure_running()


class _Workers:
    """P workers, as threads (P = 1, or ``processes=False``) or processes."""

    def __init__(self, jobs: Sequence[PartitionJob], processes: bool) -> None:
        self.jobs = list(jobs)
        self.processes = processes and len(self.jobs) > 1
        self.stop = threading.Event()
        self.procs: dict[int, Any] = {}
        self.threads: dict[int, threading.Thread] = {}
        if self.processes:
            context = _fork_server()
            self.events: Any = context.Queue()
            environment = aws_environment()
            for job in self.jobs:
                self.procs[job.partition] = context.Process(
                    target=_process_main, args=(job, self.events, environment), daemon=True
                )
        else:
            self.events = queue.Queue()
            for job in self.jobs:
                self.threads[job.partition] = threading.Thread(
                    target=self._thread_main, args=(job,), daemon=True
                )

    def _thread_main(self, job: PartitionJob) -> None:
        try:
            run_partition(job, self.events.put, self.stop)
        except BaseException as exc:
            self.events.put(("error", job.partition, f"{type(exc).__name__}: {exc}", exc))

    def start(self) -> None:
        for worker in [*self.procs.values(), *self.threads.values()]:
            worker.start()

    def dead(self, finished: set[int]) -> list[tuple[int, int | None]]:
        """Workers gone without reporting ``done`` (killed, crashed): (partition, exit code)."""
        out = []
        for partition, proc in self.procs.items():
            if partition not in finished and proc.exitcode is not None:
                out.append((partition, proc.exitcode))
        for partition, thread in self.threads.items():
            if partition not in finished and not thread.is_alive():
                out.append((partition, None))
        return out

    def shutdown(self) -> None:
        self.stop.set()
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs.values():
            proc.join(timeout=10)
        for thread in self.threads.values():
            thread.join(timeout=30)


def _waiting(events: Any, limit: int = 10_000) -> list[tuple[Any, ...]]:
    """The events already waiting in ``events`` (up to ``limit``), without blocking."""
    out: list[tuple[Any, ...]] = []
    while len(out) < limit:
        try:
            out.append(events.get_nowait())
        except queue.Empty:
            break
    return out


def write_partitions(
    jobs: Sequence[PartitionJob],
    *,
    progress: RestoreProgress | None = None,
    total: int | None = None,
    skipped: int = 0,
    processes: bool = True,
    desc: str = "writing",
) -> WriteStats:
    """Write every partition; returns what was written, the throttles and the rate.

    Raises:
        WriteFailed: a worker failed or died; what was acknowledged is in ``progress``.
    """
    stats = WriteStats(skipped=skipped, processes=len(jobs))
    workers = _Workers(jobs, processes)
    finished: set[int] = set()
    failure: tuple[int, str, BaseException | None] | None = None
    started = time.monotonic()
    bar = tqdm(
        total=total,
        initial=skipped,
        desc=desc,
        unit=" items",
        unit_scale=True,
        file=sys.stderr,
        disable=None,
        mininterval=0.5,
        smoothing=0.1,
    )
    grace: float | None = None

    def take(event: tuple[Any, ...]) -> None:
        nonlocal failure
        kind, partition = event[0], event[1]
        if kind == "chunk":
            _, _, index, puts, deletes = event
            if not stats.startup_seconds:
                stats.startup_seconds = time.monotonic() - started
            stats.items += puts
            stats.deletes += deletes
            if progress is not None:
                progress.acknowledged(partition, index)
        elif kind == "done":
            _, _, throttles, retries, rate = event
            stats.throttles += throttles
            stats.retries += retries
            stats.final_rates.append(rate)
            finished.add(partition)
        elif kind == "error" and failure is None:
            failure = (partition, event[2], event[3] if len(event) > 3 else None)

    try:
        workers.start()
        while len(finished) < len(jobs) and failure is None:
            try:
                batch = [workers.events.get(timeout=0.2)]
            except queue.Empty:
                gone = workers.dead(finished)
                if gone:
                    # Its last events may still be on their way: give them a moment.
                    grace = grace or time.monotonic() + 1.0
                    if time.monotonic() > grace:
                        partition, code = gone[0]
                        failure = (partition, f"the worker exited with code {code}", None)
                if progress is not None:
                    progress.save()  # what the last batch acknowledged, if not saved yet
                continue
            batch.extend(_waiting(workers.events))
            before = stats.items + stats.deletes
            for event in batch:
                take(event)
            bar.update(stats.items + stats.deletes - before)
            if progress is not None:
                progress.save()  # at most every 0.2 s: what a resume rewrites (restore_state)
    finally:
        if failure is not None or len(finished) < len(jobs):
            workers.shutdown()
        else:
            for proc in workers.procs.values():
                proc.join(timeout=10)
        bar.close()
        if progress is not None:
            progress.save(force=True)
    stats.seconds = time.monotonic() - started
    if failure is not None:
        partition, message, cause = failure
        exc = WriteFailed(f"writing partition {partition} of {len(jobs)} failed: {message}")
        if cause is not None and hasattr(cause, "exit_code"):
            exc.exit_code = cause.exit_code
        raise exc from cause
    return stats
