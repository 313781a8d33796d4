"""Several tables' single-table runs side by side, each in a process of its own.

``restore`` and ``export`` of several tables (:mod:`replayer.write.several_tables`) run the
command's single-table run once per table; with ``--parallel-tables N``, up to N at once, each
in a process this module starts, listens to and stops.

Why a process per table rather than a thread: each run is then the single-table command
exactly as it runs alone. It keeps its own process-wide state — the metrics sink, logging's
handlers, the signal handlers, the fork server its writers are made by and the environment
handed to them, DuckDB's memory and threads, the one progress bar on stderr — and its own
interpreter lock for what it does in Python (a one-partition table's writer thread, the
verification's scan); and a stop ends it as a Ctrl-C ends a single restore (the fold
interrupted, the writer processes terminated, the progress saved, the resume command logged),
with no stop flag threaded through the fold, the writers and the verification. The cost: a
fork per table (from a fork server — the parent runs DuckDB, botocore and s3fs threads, which
a plain fork would copy mid-flight), and the run and its arguments are pickled, so the run is a
module-level function.

What a table's run shows or reports reaches the parent, which shows it (:class:`_Show`):

* its stdout lines, prefixed ``[table] ``; its log records, prefixed the same and handled by
  the parent's own logging (format, levels, the redaction of credentials);
* on a terminal, its progress bar — drawn by tqdm in the run as alone, arriving as text — as
  one status line per running table below the lines, and each bar's last state as a line;
* its metrics, forwarded to the parent's sink (``--metrics emf``: one line per table at exit,
  as alone);
* how it ended (:class:`Ended`): its result, or its error (exit code and message), or that it
  was stopped.

Stopping. A table's process ignores SIGINT — a Ctrl-C at a terminal reaches the whole process
group, and the process's fork server and writers inherit the disposition — so the parent alone
decides: on Ctrl-C or SIGTERM it sends each running table SIGTERM, which the table's process
turns into the KeyboardInterrupt a single run stops on; it starts no other table and waits for
those running (a second interrupt kills them: what their writers had acknowledged is saved every
0.2 s). A parent that dies without a word (``kill -9``, the OOM killer) takes them along: each
table's process watches its parent (:func:`replayer.write.batch_writers.exit_with_parent`) and
exits at once, which its own writer processes see in turn. ``--resume`` continues every
unfinished table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Generic, TypeVar

from tqdm import tqdm

from archiver.aws import metrics
from archiver.aws.error_table import EXIT_FAILURE
from archiver.cliutil import redact, unreachable_endpoint
from replayer.write.batch_writers import aws_environment, exit_with_parent, use_aws_environment

log = logging.getLogger(__name__)

R = TypeVar("R")
Message = tuple[Any, ...]
Send = Callable[[Message], None]


@dataclass
class Ended(Generic[R]):
    """How one table's run ended: its result, or why there is none."""

    result: R | None = None
    failed: tuple[int, str] | None = None  # (exit code, one line)
    stopped: bool = False  # interrupted, or (with ``started`` False) never started
    started: bool = True
    seconds: float = 0.0


@dataclass(frozen=True)
class Launch:
    """One table's run: the name its lines are prefixed with, the line that says it started,
    and its arguments (pickled: nothing unpicklable, such as a module)."""

    name: str
    header: str
    args: argparse.Namespace


# -- in the table's process ------------------------------------------------------------------


class _Sender:
    """The table's messages to the parent, from any thread of the run."""

    def __init__(self, connection: multiprocessing.connection.Connection) -> None:
        self.connection = connection
        self.lock = threading.Lock()

    def __call__(self, message: Message) -> None:
        with self.lock:
            self.connection.send(message)

    def put_nowait(self, record: logging.LogRecord) -> None:
        """A log record (the queue of :class:`logging.handlers.QueueHandler`)."""
        self(("log", record))


class _Relay(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of a table's run: what is written goes to the parent.

    A terminal when the parent's stderr is one, so that the run's progress bar is drawn."""

    encoding = "utf-8"

    def __init__(self, send: Send, stream: str, *, terminal: bool) -> None:
        super().__init__()
        self._send = send
        self._stream = stream
        self._terminal = terminal

    def isatty(self) -> bool:
        return self._terminal

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            self._send((self._stream, text))
        return len(text)


class _Forward(metrics.Metrics):
    """The run's metrics, recorded by the parent's sink."""

    def __init__(self, send: Send) -> None:
        self.send = send

    def record(self, metric: metrics.Metric, value: float, table: str = metrics.NO_TABLE) -> None:
        self.send(("metric", metric.name, value, table))


def _stop_once(signum: int, frame: FrameType | None) -> None:
    """SIGTERM from the parent: stop as a Ctrl-C stops a single run (once: the stop's own
    clean-up is not interrupted again)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _failure(exc: Exception) -> tuple[int, str]:
    """The exit code and the one line the command would have printed for ``exc``."""
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return code, str(exc)
    unreachable = unreachable_endpoint(exc)
    if unreachable is not None:
        return EXIT_FAILURE, unreachable
    log.debug("the run failed", exc_info=True)  # the traceback, with --debug
    return EXIT_FAILURE, f"unexpected failure: {type(exc).__name__}: {exc}"


def _table_main(
    run: Callable[[argparse.Namespace], Any],
    args: argparse.Namespace,
    connection: multiprocessing.connection.Connection,
    environment: dict[str, str],
    levels: dict[str, int],
    columns: int | None,
) -> None:
    """A table's process: its run, and one last message saying how it ended."""
    exit_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_once)
    use_aws_environment(environment)
    send = _Sender(connection)
    if columns is not None:  # tqdm sizes its bar from these when its file is not a terminal
        os.environ["COLUMNS"], os.environ["LINES"] = str(columns), "24"
    sys.stdout = _Relay(send, "out", terminal=False)
    sys.stderr = _Relay(send, "err", terminal=columns is not None)
    logging.getLogger().handlers = [logging.handlers.QueueHandler(send)]  # type: ignore[arg-type]
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    metrics.use(_Forward(send))
    try:
        send(("result", run(args)))
    except KeyboardInterrupt:
        send(("stopped",))
    except Exception as exc:
        send(("failed", *_failure(exc)))


# -- in the parent ---------------------------------------------------------------------------


class _Lines:
    """What a run wrote to one stream, as it arrives: its complete lines, and the line being
    drawn in place (the text after its last carriage return: a progress bar redrawn)."""

    def __init__(self) -> None:
        self.pending = ""

    def feed(self, text: str) -> tuple[list[str], str]:
        """The lines ``text`` completes, and the line now being drawn."""
        *done, pending = (self.pending + text).split("\n")
        self.pending = pending.rpartition("\r")[2]
        lines = [line.rpartition("\r")[2].rstrip() for line in done]
        return [line for line in lines if line], self.pending.rstrip()


class _Show:
    """Where the tables' output goes: lines on stdout and stderr, and on a terminal one status
    line per running table below them (tqdm draws them, and clears them for each line)."""

    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal
        self.bars: dict[str, Any] = {}

    def columns(self, name: str) -> int | None:
        """The width a table's own bar may take (None: no terminal, no bar)."""
        if not self.terminal:
            return None
        return max(40, shutil.get_terminal_size().columns - len(name) - 4)

    def line(self, text: str, file: Any) -> None:
        with tqdm.external_write_mode(file=file):
            print(text, file=file, flush=True)

    def record(self, record: logging.LogRecord) -> None:
        with tqdm.external_write_mode(file=sys.stderr):
            logging.getLogger(record.name).handle(record)

    def status(self, name: str, text: str) -> None:
        if not self.terminal:
            return
        bar = self.bars.get(name)
        if not text:
            if bar is not None:
                self.bars.pop(name).close()
            return
        if bar is None:
            bar = self.bars[name] = tqdm(
                bar_format="{desc}", file=sys.stderr, leave=False, dynamic_ncols=True
            )
        bar.set_description_str(f"[{name}] {text}")

    def close(self) -> None:
        for name in list(self.bars):
            self.bars.pop(name).close()


@dataclass
class _Table(Generic[R]):
    """A table's process, the reading end of its messages, and what it said so far."""

    launch: Launch
    process: Any
    connection: multiprocessing.connection.Connection
    started: float = field(default_factory=time.monotonic)
    ended: Ended[R] = field(default_factory=Ended)
    streams: dict[str, _Lines] = field(default_factory=lambda: {"out": _Lines(), "err": _Lines()})

    def take(self, message: Message, show: _Show) -> None:
        kind, name = message[0], self.launch.name
        if kind in ("out", "err"):
            lines, drawn = self.streams[kind].feed(message[1])
            file = sys.stdout if kind == "out" else sys.stderr
            if lines and kind == "err":
                show.status(name, "")
            for line in lines:
                show.line(f"[{name}] {line}", file)
            if kind == "err":
                show.status(name, drawn)
        elif kind == "log":
            record: logging.LogRecord = message[1]
            record.msg = f"[{name}] {record.msg}"
            show.record(record)
        elif kind == "metric":
            _, metric, value, table = message
            metrics.current().record(_METRICS[metric], value, table)
        elif kind == "result":
            self.ended.result = message[1]
        elif kind == "failed":
            self.ended.failed = (int(message[1]), redact(str(message[2])))
        elif kind == "stopped":
            self.ended.stopped = True

    def pump(self, show: _Show) -> bool:
        """Take every message waiting; False once the process closed its end (it is ending)."""
        while True:
            try:
                if not self.connection.poll():
                    return True
                message = self.connection.recv()
            except (EOFError, OSError):
                return False
            except Exception:
                # A message cut short (a process stopped in the middle of a big one): what
                # follows cannot be read either; how it ended is then its exit code's.
                log.warning("the rest of what table %s said was lost", self.launch.name)
                return False
            self.take(message, show)

    def end(self, show: _Show, stopping: bool) -> Ended[R]:
        self.process.join()
        self.connection.close()
        for kind, lines in self.streams.items():
            if lines.pending.strip():  # a last line without its newline
                show.line(f"[{self.launch.name}] {lines.pending.strip()}", _FILES[kind]())
        show.status(self.launch.name, "")
        ended = self.ended
        ended.seconds = time.monotonic() - self.started
        if ended.result is None and ended.failed is None:
            ended.stopped = True
            if not stopping:
                ended.failed = (
                    EXIT_FAILURE,
                    f"its process exited with code {self.process.exitcode} before it said how "
                    "it ended",
                )
        return ended


_METRICS = {metric.name: metric for metric in metrics.ALL}
_FILES: dict[str, Callable[[], Any]] = {"out": lambda: sys.stdout, "err": lambda: sys.stderr}


def _levels() -> dict[str, int]:
    """The parent's logging levels (root: ""), for a run to log at the same ones."""
    levels = {"": logging.getLogger().level}
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupts_after() -> Iterator[None]:
    """An interrupt (SIGINT, SIGTERM) during the block is raised after it: a process started
    is then known, a process that ended is counted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda s, _: caught.append(s))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the tables as a Ctrl-C does (only the main thread takes signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_side_by_side(
    launches: Sequence[Launch], run: Callable[[argparse.Namespace], R], parallel: int
) -> list[Ended[R]]:
    """``run`` of every launch, up to ``parallel`` at once, each in a process of its own;
    how each ended, in the launches' order (see the module doc for output and stopping)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, run.__module__])
    show = _Show(sys.stderr.isatty())
    ended: list[Ended[R] | None] = [None] * len(launches)
    waiting = deque(range(len(launches)))
    running: dict[Any, tuple[int, _Table[R]]] = {}
    stops = 0

    def start(index: int) -> None:
        launch = launches[index]
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(
            target=_table_main,
            args=(
                run,
                launch.args,
                writer,
                aws_environment(),
                _levels(),
                show.columns(launch.name),
            ),
            name=f"table {launch.name}",
        )
        show.line(launch.header, sys.stdout)
        with _interrupts_after():
            process.start()
            writer.close()
            running[reader] = (index, _Table(launch, process, reader))

    with _sigterm_interrupts():
        try:
            while waiting or running:
                try:
                    while waiting and len(running) < parallel:
                        start(waiting.popleft())
                    for reader in multiprocessing.connection.wait(list(running), timeout=0.5):
                        index, table = running[reader]
                        if not table.pump(show):
                            with _interrupts_after():
                                del running[reader]
                                ended[index] = table.end(show, stopping=stops > 0)
                except KeyboardInterrupt:
                    stops += 1
                    for index in waiting:
                        ended[index] = Ended(stopped=True, started=False)
                    waiting.clear()
                    for _, table in running.values():
                        if stops == 1:
                            table.process.terminate()  # SIGTERM: the run stops as on Ctrl-C
                        else:
                            table.process.kill()
                    if stops == 1 and running:
                        log.warning(
                            "stopping %d table(s): each saves what it wrote (interrupt again "
                            "to kill them; --resume continues every unfinished table)",
                            len(running),
                        )
        finally:
            for _, table in running.values():  # an error of the parent's own: none left behind
                table.process.kill()
                table.process.join()
            show.close()
    return [e if e is not None else Ended(stopped=True, started=False) for e in ended]
