"""The one metrics module: what the archiver and the replayer measure, and where it goes.

Capture (the poller, the Lambda handler, redrive), compaction and restores report events here,
each with **one call** at the place it happens — the archive lag after the watermark moved,
a change file written (records, bytes), poison records, a failed Lambda batch, gaps recorded,
a throttled or retried AWS call, a restore's items per second, a drill's result, a shard read.
Where the numbers go is chosen once per process, by :func:`use`:

- :class:`NullMetrics` (the default): nothing — library calls and tests pay one no-op call;
- :class:`EmfMetrics`: CloudWatch **Embedded Metric Format** lines on stdout (where
  CloudWatch is the home: the Lambda function — whose log lines CloudWatch turns into metrics
  with no API call — and the poller with ``--metrics emf``). Counters are summed and gauges kept
  per table between flushes; :meth:`EmfMetrics.flush` writes one JSON line per table (the
  Lambda handler flushes at the end of each invocation, the poller every minute and at exit);
- :class:`PrometheusMetrics`: the same numbers in a ``prometheus_client`` registry, served on
  ``--metrics-port`` at ``/metrics``, beside ``/healthz``, which answers 200 only while every
  open shard has been read (a GetRecords answer, empty or not) within ``--healthz-stale-seconds``,
  503 otherwise — so a container orchestrator restarts a stuck poller.

Why a process-wide sink rather than an object passed in (as clients are): the events happen
deep in code that several people change at once (the stream reader, the writers); one call
``metrics.current().x(...)`` at each place keeps those edits to a line, and a test swaps the
sink with :func:`use`. The module sits in ``archiver/aws/`` beside the retry policy that
reports through it: the shared mechanisms import only the format, so capture, Lambda mode,
integrity and the replayer (restores, drills) may all import it. ``prometheus_client`` is
imported only by the Prometheus sink.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

import orjson

from archiver.format.timefmt import as_utc, utcnow

log = logging.getLogger(__name__)

NAMESPACE = "DdbStreamArchive"
DEFAULT_STALE_SECONDS = 300.0
DEFAULT_PORT = 9108  # --metrics-port


@dataclass(frozen=True)
class Metric:
    """One metric: its CloudWatch name and unit, and whether it adds up (counter) or is a
    level (gauge). Prometheus names are derived: snake case, ``_total`` for counters."""

    name: str
    unit: str
    counter: bool
    help: str

    @property
    def prometheus_name(self) -> str:
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in self.name).lstrip("_")
        return f"ddb_archive_{snake}"


ARCHIVE_LAG = Metric("ArchiveLagSeconds", "Seconds", False, "now minus the watermark")
RECORDS_ARCHIVED = Metric("RecordsArchived", "Count", True, "change records written to files")
BYTES_ARCHIVED = Metric("BytesArchived", "Bytes", True, "bytes of change records written")
FILES_WRITTEN = Metric("FilesWritten", "Count", True, "change files written")
POISON_RECORDS = Metric("PoisonRecords", "Count", True, "malformed records set aside")
FAILED_BATCHES = Metric("FailedBatches", "Count", True, "Lambda batches that failed")
GAPS_RECORDED = Metric("GapsRecorded", "Count", True, "holes recorded in gaps.jsonl")
THROTTLES = Metric("Throttles", "Count", True, "AWS calls throttled")
RETRIES = Metric("Retries", "Count", True, "AWS calls retried (throttles included)")
RESTORE_RATE = Metric("RestoreItemsPerSecond", "Count/Second", False, "a restore's write rate")
DRILL_DIFFERENCES = Metric("DrillDifferences", "Count", False, "the last drill's differences")
DRILL_COMPARED = Metric("DrillItemsCompared", "Count", False, "the last drill's items compared")
ALL = (
    ARCHIVE_LAG, RECORDS_ARCHIVED, BYTES_ARCHIVED, FILES_WRITTEN, POISON_RECORDS, FAILED_BATCHES,
    GAPS_RECORDED, THROTTLES, RETRIES, RESTORE_RATE, DRILL_DIFFERENCES, DRILL_COMPARED,
)  # fmt: skip

# Calls not about one table (throttles and retries) carry this table dimension.
NO_TABLE = "-"


class Metrics:
    """The events, as one method each; this base records nothing (:class:`NullMetrics`)."""

    def record(self, metric: Metric, value: float, table: str = NO_TABLE) -> None:
        """Add to a counter, or set a gauge, for ``table``."""

    def flush(self) -> None:
        """Write out what is buffered (EMF); nothing for the others."""

    # -- events (one call at each place they happen) --------------------------------------

    def lag(self, table: str, watermark: datetime | None, now: datetime | None = None) -> None:
        if watermark is not None:
            seconds = ((now or utcnow()) - as_utc(watermark)).total_seconds()
            self.record(ARCHIVE_LAG, max(0.0, seconds), table)

    def file_written(self, table: str, records: int, nbytes: int, files: int = 1) -> None:
        self.record(FILES_WRITTEN, files, table)
        self.record(RECORDS_ARCHIVED, records, table)
        self.record(BYTES_ARCHIVED, nbytes, table)

    def poison(self, table: str, count: int = 1) -> None:
        self.record(POISON_RECORDS, count, table)

    def failed_batch(self, table: str) -> None:
        self.record(FAILED_BATCHES, 1, table)

    def gaps(self, table: str, count: int) -> None:
        if count:
            self.record(GAPS_RECORDED, count, table)

    def retried(self, throttled: bool) -> None:
        self.record(RETRIES, 1)
        if throttled:
            self.record(THROTTLES, 1)

    def restored(self, table: str, items: int, seconds: float) -> None:
        if seconds > 0:
            self.record(RESTORE_RATE, items / seconds, table)

    def drilled(self, table: str, differences: int, compared: int) -> None:
        self.record(DRILL_DIFFERENCES, differences, table)
        self.record(DRILL_COMPARED, compared, table)

    def shard_read(self, table: str, shard_id: str) -> None:
        """A GetRecords answer from this shard (the health check's evidence of progress)."""

    def shard_done(self, table: str, shard_id: str) -> None:
        """The shard ended (closed and read to its end): no longer expected to be read."""


class NullMetrics(Metrics):
    """Records nothing."""


class EmfMetrics(Metrics):
    """CloudWatch Embedded Metric Format: one JSON line per table per flush, on ``out``.

    The line's shape follows the published specification
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
    ``_aws.Timestamp`` (epoch ms), ``_aws.CloudWatchMetrics`` = one directive naming the
    namespace, the dimension set ``[["Table"]]`` and each metric with its unit, and at the top
    level the ``Table`` dimension's value and each metric's value.
    """

    def __init__(
        self,
        out: IO[str] | None = None,
        *,
        namespace: str = NAMESPACE,
        flush_seconds: float | None = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.namespace = namespace
        self.flush_seconds = flush_seconds
        self.clock = clock
        self._values: dict[str, dict[Metric, float]] = {}
        self._lock = threading.Lock()
        self._flushed = clock()

    def record(self, metric: Metric, value: float, table: str = NO_TABLE) -> None:
        with self._lock:
            values = self._values.setdefault(table, {})
            values[metric] = values.get(metric, 0.0) + value if metric.counter else value
        if self.flush_seconds is not None and self.clock() - self._flushed >= self.flush_seconds:
            self.flush()

    def lines(self) -> list[dict[str, Any]]:
        """The EMF documents for what is buffered (and empties the buffer)."""
        with self._lock:
            values, self._values = self._values, {}
            self._flushed = self.clock()
        stamp = int(time.time() * 1000)
        docs = []
        for table, metrics in sorted(values.items()):
            doc: dict[str, Any] = {
                "_aws": {
                    "Timestamp": stamp,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": self.namespace,
                            "Dimensions": [["Table"]],
                            "Metrics": [{"Name": m.name, "Unit": m.unit} for m in metrics],
                        }
                    ],
                },
                "Table": table,
            }
            doc.update({m.name: v for m, v in metrics.items()})
            docs.append(doc)
        return docs

    def flush(self) -> None:
        out = self.out or sys.stdout
        for doc in self.lines():
            out.write(orjson.dumps(doc).decode() + "\n")
        out.flush()


class PrometheusMetrics(Metrics):
    """A ``prometheus_client`` registry of every metric (label ``table``), and the shard reads
    the health check judges."""

    def __init__(
        self,
        *,
        stale_seconds: float = DEFAULT_STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.stale_seconds = stale_seconds
        self.clock = clock
        self._metrics: dict[Metric, Any] = {}
        for metric in ALL:
            kind = Counter if metric.counter else Gauge
            name = metric.prometheus_name
            self._metrics[metric] = kind(name, metric.help, ["table"], registry=self.registry)
        self._reads: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def record(self, metric: Metric, value: float, table: str = NO_TABLE) -> None:
        child = self._metrics[metric].labels(table=table)
        if metric.counter:
            child.inc(value)
        else:
            child.set(value)

    def shard_read(self, table: str, shard_id: str) -> None:
        with self._lock:
            self._reads[(table, shard_id)] = self.clock()

    def shard_done(self, table: str, shard_id: str) -> None:
        with self._lock:
            self._reads.pop((table, shard_id), None)

    def stalled(self) -> list[str]:
        """Shards not read within ``stale_seconds`` (``table/shard``, oldest first)."""
        now = self.clock()
        with self._lock:
            old = [(at, f"{t}/{s}") for (t, s), at in self._reads.items()]
        return [name for at, name in sorted(old) if now - at > self.stale_seconds]

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    def serve(self, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
        """Serve ``/metrics`` and ``/healthz`` on a daemon thread; returns the server (its
        ``server_address`` says the port when ``port`` is 0)."""
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/healthz":
                    stalled = sink.stalled()
                    status = 503 if stalled else 200
                    body = (f"stalled: {', '.join(stalled)}\n" if stalled else "ok\n").encode()
                    content_type = "text/plain; charset=utf-8"
                elif self.path.split("?")[0] in ("/metrics", "/"):
                    from prometheus_client import CONTENT_TYPE_LATEST

                    status, body, content_type = 200, sink.exposition(), CONTENT_TYPE_LATEST
                else:
                    status, body, content_type = 404, b"not found\n", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("metrics endpoint: " + format, *args)

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server


_current: Metrics = NullMetrics()


def current() -> Metrics:
    """The process's sink (:class:`NullMetrics` until :func:`use` sets another)."""
    return _current


def use(sink: Metrics) -> Metrics:
    """Make ``sink`` the process's sink; returns the previous one."""
    global _current
    previous, _current = _current, sink
    return previous


@contextlib.contextmanager
def using(sink: Metrics) -> Iterator[Metrics]:
    """``sink`` for the duration of a ``with`` block (tests, one Lambda invocation)."""
    previous = use(sink)
    try:
        yield sink
    finally:
        use(previous)


@contextlib.contextmanager
def emf_at_end(out: IO[str] | None = None) -> Iterator[EmfMetrics]:
    """An EMF sink for the duration of a ``with`` block (one Lambda invocation, one command),
    its lines written when the block ends, whatever the outcome."""
    sink = EmfMetrics(out, flush_seconds=None)
    with using(sink):
        try:
            yield sink
        finally:
            sink.flush()


# -- the command-line choice ----------------------------------------------------------------


def start_from_args(args: argparse.Namespace) -> Metrics:
    """Make the sink ``--metrics`` asks for the process's, starting its endpoint if any."""
    choice = getattr(args, "metrics", "none") or "none"
    sink: Metrics
    if choice == "emf":
        sink = EmfMetrics()
    elif choice == "prometheus":
        sink = PrometheusMetrics(stale_seconds=args.healthz_stale_seconds)
        server = sink.serve(args.metrics_port)
        log.info("metrics on http://%s:%d/metrics and /healthz", *server.server_address[:2])
    else:
        return current()
    use(sink)
    return sink
