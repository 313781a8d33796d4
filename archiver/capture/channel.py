"""Calls from the poller to one of its worker processes, over a socket they share.

A message is a pickle prefixed by its length (4 bytes, big-endian). The poller sends calls
``(id, method, args)``; the worker answers each with ``(id, ok, value)`` — the result, or the
exception it raised — in whatever order they finish, so calls for different shards run side
by side. Both ends are this program, started by it on one machine: pickle never crosses a
trust boundary here.

:class:`Caller` is the poller's end: :meth:`Caller.call` awaits the answer, and when the
worker's end closes (the process died) every call waiting and every later one raises
:class:`WorkerDied`. :func:`serve` is the worker's end: it answers calls with a handler until
the poller's end closes.

An exception travels as itself when it pickles and unpickles to the same message (botocore's
``ClientError``, re-made as the plain class, so the error table classifies it exactly as in
one process); otherwise as :class:`RemoteError`, which keeps its message and exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import pickle
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from botocore.exceptions import ClientError

from archiver.aws.error_table import ArchiverError

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")


class WorkerDied(ArchiverError):
    """A worker process ended while the poller still needed it."""


class RemoteError(ArchiverError):
    """An exception raised in a worker process that does not travel as itself."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteError, (str(self), self.exit_code))


def portable(exc: BaseException) -> BaseException:
    """``exc`` in a form that crosses to the other process and means the same there."""
    if isinstance(exc, ClientError):
        # aiobotocore raises modelled subclasses made at run time; the plain class carries
        # the same response, which is all the error table reads.
        plain = ClientError(exc.response, exc.operation_name)  # type: ignore[arg-type]
        return plain
    try:
        if str(pickle.loads(pickle.dumps(exc))) == str(exc):
            return exc
    except Exception:  # any failure to travel means: send it as text
        pass
    return RemoteError(f"{exc}" or type(exc).__name__, int(getattr(exc, "exit_code", 1)))


async def send(writer: asyncio.StreamWriter, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_HEADER.pack(len(data)) + data)
    await writer.drain()


async def receive(reader: asyncio.StreamReader) -> Any:
    """The next message; ``EOFError`` when the other end closed."""
    try:
        (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        return pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError as exc:
        raise EOFError from exc


class Caller:
    """The poller's end of one worker's socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str):
        self.name = name
        self._writer = writer
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._closed: str | None = None
        self._reading = asyncio.create_task(self._read_answers(reader), name=f"{name} answers")

    async def call(self, method: str, *args: Any) -> Any:
        """``method(*args)`` in the worker; its result, or the exception it raised."""
        if self._closed is not None:
            raise WorkerDied(self._closed)
        call_id = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = answer
        try:
            await send(self._writer, (call_id, method, args))
        except (ConnectionError, RuntimeError) as exc:
            self._waiting.pop(call_id, None)
            raise WorkerDied(f"{self.name} is gone ({exc})") from exc
        try:
            return await answer
        finally:
            self._waiting.pop(call_id, None)

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                call_id, ok, value = await receive(reader)
                answer = self._waiting.get(call_id)
                if answer is None or answer.done():
                    continue  # its caller gave up waiting
                if ok:
                    answer.set_result(value)
                else:
                    answer.set_exception(value)
        except (EOFError, ConnectionError):
            self._fail(f"{self.name} ended")
        except Exception as exc:  # an answer that does not unpickle: nothing more can be read
            self._fail(f"{self.name}: unreadable answer ({exc})")

    def _fail(self, reason: str) -> None:
        self._closed = reason
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(WorkerDied(reason))

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading


Handler = Callable[[str, tuple[Any, ...]], Awaitable[Any]]


async def serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handle: Handler
) -> None:
    """Answer calls with ``handle(method, args)`` until the poller's end closes."""
    running: set[asyncio.Task[None]] = set()

    async def answer(call_id: int, method: str, args: tuple[Any, ...]) -> None:
        try:
            reply: tuple[int, bool, Any] = (call_id, True, await handle(method, args))
        except Exception as exc:
            log.debug("%s failed", method, exc_info=True)
            reply = (call_id, False, portable(exc))
        with contextlib.suppress(ConnectionError, RuntimeError):
            await send(writer, reply)

    try:
        while True:
            try:
                call_id, method, args = await receive(reader)
            except (EOFError, ConnectionError):
                return
            task = asyncio.create_task(answer(call_id, method, args), name=method)
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
